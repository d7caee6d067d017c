"""The WebSocket half of the web edge: RFC 6455 messages <-> protocol frame lines.

Why this shape: the session speaks in frame lines (one JSON object, no newline) and
the hub hands the connection encoded frames (``...\\n``); a browser speaks WebSocket
messages. :class:`WebSocketCodec` translates at the edge, one text message per frame
each way, so nothing behind it learns WebSocket. The framing itself is a library's,
sans-I/O (bytes in, frames out; frames in, bytes out): nothing here parses or builds a
WebSocket frame by hand, and the connection's I/O thread drives it with the bytes it
reads, as it drives :class:`~securechat.protocol.framing.LineReader` for line clients.

Which library: the upgrade is h11's and wsproto's (:mod:`.http`); the frames after it
are ``websockets``' sans-I/O :class:`~websockets.protocol.Protocol`, made in the open
state for the connection the handshake accepted (no extension is ever agreed). Both
are sans-I/O; the frames are websockets' because they are the hot path of a busy room.
One exception, on the way out only: a server's unmasked text frame is two to ten bytes
of header before the payload (RFC 6455 5.2), which :func:`text_frame` writes itself,
five times faster than building websockets' ``Frame`` and serializing it (a test keeps
the bytes identical for every length class); whatever a client sends is still parsed by
the library.
Measured per message of a fanout (docs/benchmarks.md, "WebSocket against the line
protocol"): wsproto took
about 12 µs to read a client's masked text frame, most of it in Python around the
parse, and 3.6 µs to write one; websockets takes 2.7 and 0.9 (its unmasking is in C).

What the line protocol does with a line, this does with a message: a text message
over the frame limit (counted as the line it stands for: its bytes and the newline) is
:exc:`~securechat.exceptions.FrameTooLarge`, found while it arrives (a frame still
arriving is refused once its bytes pass the limit, so a huge message is never
buffered); a binary message is answered ``bad_frame`` in its place and the connection
goes on. WebSocket pings are answered here; our protocol's own ``ping`` frames travel
as text messages like every other frame. A close from the client is answered and ends
the connection (as EOF does for a line client); a text message that is not UTF-8 fails
the connection with 1007 and a broken frame with 1002 (RFC 6455 leaves no choice).

Writing is the hot path: the same frame goes to every member of a room. Members at the
same place in the room's feed share one :meth:`WebSocketCodec.wire` of a whole block
(the transport's fast path); the others (a sender, whose own copies are in its queue)
each wire their own block, and meet the same frames there: so the frames encoded
lately are kept, in one cache for all I/O threads (:class:`_EncodedFrames`), and a
frame is encoded about once whichever way and from whichever thread it goes out. A
server's frames are not masked, so a frame's bytes depend on its payload alone.
"""

import logging
import struct

from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, Side, State

from securechat.exceptions import FrameTooLarge, ProtocolError

__all__ = ["BINARY_MESSAGE", "WebSocketCodec", "text_frame"]

BINARY_MESSAGE = "binary messages are not frames: send each frame as one text message"
# The longest frame header a client sends (2 bytes, an 8-byte length, a 4-byte mask):
# buffered bytes past the limit by more than this are payload over it.
MAX_HEADER = 14
CACHE_BYTES = 2 << 20  # encoded frames kept for the other members (all I/O threads)
CACHE_FRAME = 16384  # larger frames are encoded each time (rare; they would crowd out)
TEXT, BINARY, CONT, CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE

log = logging.getLogger("securechat.server.websocket")


class _EncodedFrames:
    """The text frames encoded lately: protocol frame (with its newline, the object the
    feeds hand out) -> WebSocket frame bytes, for every I/O thread.

    A room's members are spread over the I/O threads, so one cache for all of them
    encodes each frame once, not once per thread. No lock: each step is one dict
    operation (atomic), and a race costs at most a frame encoded twice (the same bytes
    stored twice) or a size counted wrong (it only decides when to empty the cache).
    Emptied when it holds :data:`CACHE_BYTES` (cheaper than evicting one by one; a
    room's frames are all sent within a few turns, so only those in flight are encoded
    again).
    """

    def __init__(self) -> None:
        self.frames: dict[bytes, bytes] = {}
        self.size = 0

    def encode(self, frame: bytes) -> bytes:
        """``frame`` (an encoded protocol frame and its newline) as a text message."""
        payload = frame[:-1] if frame.endswith(b"\n") else frame
        encoded = text_frame(payload)
        if len(payload) <= CACHE_FRAME:
            if self.size > CACHE_BYTES:
                self.frames.clear()
                self.size = 0
            self.frames[frame] = encoded
            self.size += 2 * len(encoded)
        return encoded


_ENCODED = _EncodedFrames()


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked, final text frame (what a server sends)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class WebSocketCodec:
    """One WebSocket connection, after the upgrade, as frame lines in and bytes out.

    ``connection`` is what the handshake made (wsproto's), passed to say the upgrade
    was accepted; the frames from here on are this codec's (see the module's docstring).
    """

    def __init__(self, connection: object, frame_limit: int) -> None:
        del connection  # (accepted, without extensions: plain RFC 6455 frames follow)
        self._ws = Protocol(Side.SERVER, state=State.OPEN, max_size=None, logger=log)
        self._limit = frame_limit
        self._opcode: Opcode | None = None  # of the message being received
        self._parts: list[bytes] = []  # its text so far
        self._size = 0  # its bytes so far (also counts a binary message, not kept)
        self._out = b""  # our own frames (pongs, close), sent before the next data
        self.finished = False  # a close was received, or we sent ours: nothing more to say
        self.heard = False  # the last receive completed a message or a control frame
        self.partial = False  # part of a message is held
        # Open, with nothing of our own waiting: :meth:`wire` encodes ``frames`` alone.
        # (An attribute, kept up to date where it changes: the transport's fast path
        # asks it of every member every turn.)
        self.plain = True

    def receive(self, data: bytes) -> list[bytes | ProtocolError]:
        """Feed bytes read from the client; the frame lines of the messages they completed.

        A binary message becomes a ``bad_frame`` error in its place (the session answers
        it in order, after the rate limit, like an invalid line). Raises
        :exc:`FrameTooLarge` as soon as a message outgrows the frame limit.
        """
        items: list[bytes | ProtocolError] = []
        self.heard = False
        if self.finished:
            return items  # (anything after a close is ignored)
        ws = self._ws
        if data:
            ws.receive_data(data)
        try:
            self._take(ws.events_received(), items)
            if ws.state is not State.OPEN:
                # A close from the client (echoed), or a broken frame or bad text (failed
                # with the code that says why): our last bytes are queued; nothing follows.
                self.finished = True
            elif self._size + len(ws.reader.buffer) - MAX_HEADER + 1 > self._limit:
                raise FrameTooLarge(self._limit)  # (a frame still arriving, already over)
        finally:  # (pongs and closes the protocol made go out, whatever happened)
            if writes := ws.data_to_send():
                self._out += b"".join(writes)
            self.plain = not self._out and not self.finished
            self.partial = bool(self._size) or bool(ws.reader.buffer)
        return items

    def _take(self, frames: list[Frame], items: list[bytes | ProtocolError]) -> None:
        """Add the lines (or errors) of the messages ``frames`` complete to ``items``."""
        limit = self._limit
        for frame in frames:
            opcode, data = frame.opcode, frame.data
            if opcode is TEXT and frame.fin and self._opcode is None:
                # The usual case, a message in one frame: the general case below, shorter.
                if len(data) + 1 > limit:  # (+1: the newline of the line it stands for)
                    raise FrameTooLarge(limit)
                if not (data.isascii() or self._utf8(data)):
                    return
                items.append(data)
                self.heard = True
            elif opcode is TEXT or opcode is BINARY or opcode is CONT:
                if opcode is not CONT:
                    self._opcode = opcode
                self._size += len(data)
                if self._size + 1 > limit:
                    raise FrameTooLarge(limit)
                text = self._opcode is TEXT
                if text:
                    self._parts.append(data)
                if not frame.fin:
                    continue
                self.heard = True
                if text:
                    line = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
                    if not self._utf8(line):
                        return
                    items.append(line)
                else:
                    items.append(ProtocolError("bad_frame", BINARY_MESSAGE))
                self._parts = []
                self._size = 0
                self._opcode = None
            elif opcode is CLOSE:
                return  # (answered by the protocol: its state says so)
            else:  # a ping (answered by the protocol) or a pong: the client is there
                self.heard = True

    def _utf8(self, text: bytes) -> bool:
        """Whether ``text`` is UTF-8 (RFC 6455 8.1); if not, fail the connection with 1007."""
        try:
            text.decode()
        except UnicodeDecodeError as error:
            self._ws.fail(CloseCode.INVALID_DATA, f"not UTF-8 at byte {error.start}")
            return False
        return True

    def wire(self, frames: list[bytes]) -> bytes:
        """Our own frames waiting, then each encoded frame of ``frames`` as a text message.

        ``frames`` are whole protocol frames, each ending in a newline (what the mailbox
        hands out: the same objects for every member, so a cached message is found by
        identity); after a close they are dropped, as the peer would not read them.
        """
        out, self._out = self._out, b""
        self.plain = not self.finished
        if not frames or self._ws.state is not State.OPEN:
            return out
        encoded = list(map(_ENCODED.frames.get, frames))  # (one C loop for the usual case)
        if not all(encoded):  # (an encoded frame is never empty: some are not known)
            for i, known in enumerate(encoded):
                if not known:
                    encoded[i] = _ENCODED.encode(frames[i]) if frames[i] != b"\n" else b""
        if out:
            encoded.insert(0, out)
        return b"".join(encoded)

    def close(self) -> bytes:
        """Our close frame, once (after the last frame has been sent); then nothing."""
        if self._ws.state is State.OPEN:
            self._ws.send_close(CloseCode.NORMAL_CLOSURE)
            self._out += b"".join(self._ws.data_to_send())
        self.finished = True
        self.plain = False
        return self.wire([])
