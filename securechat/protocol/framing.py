"""Line framing: newline-delimited frames with a size limit (sans-I/O)."""

from securechat.exceptions import FrameTooLarge

DEFAULT_FRAME_LIMIT = 65536
MIN_FRAME_LIMIT = 16384


class LineReader:
    """Split a byte stream into lines, refusing any line over ``limit`` bytes.

    The limit counts the newline, as the protocol does. A line that already holds
    more than ``limit`` bytes without a newline raises :exc:`FrameTooLarge` at once,
    so a client can never make the buffer grow without bound. ``\\r\\n`` endings are
    accepted and the ``\\r`` removed.
    """

    def __init__(self, limit: int = DEFAULT_FRAME_LIMIT) -> None:
        if limit < MIN_FRAME_LIMIT:
            raise ValueError(f"frame limit must be at least {MIN_FRAME_LIMIT} bytes")
        self.limit = limit
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete line held so far."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete lines, without line endings."""
        buffer = self._buffer
        start = len(buffer)
        buffer += data
        lines: list[bytes] = []
        begin = 0
        while (end := buffer.find(b"\n", start)) != -1:
            if end + 1 - begin > self.limit:
                raise FrameTooLarge(self.limit)
            stop = end - 1 if end > begin and buffer[end - 1] == 0x0D else end
            lines.append(bytes(buffer[begin:stop]))
            begin = start = end + 1
        if begin:
            del buffer[:begin]
        if len(buffer) > self.limit:
            raise FrameTooLarge(self.limit)
        return lines
