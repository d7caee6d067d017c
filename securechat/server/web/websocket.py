"""The WebSocket half of the web edge: RFC 6455 messages <-> protocol frame lines.

Why this shape: the session speaks in frame lines (one JSON object, no newline) and
the hub hands the connection encoded frames (``...\\n``); a browser speaks WebSocket
messages. :class:`WebSocketCodec` translates at the edge, one text message per frame
each way, so nothing behind it learns WebSocket. The framing itself is ``wsproto``'s
(sans-I/O: bytes in, events out; events in, bytes out): nothing here parses or builds
a WebSocket frame by hand, and the connection's I/O thread drives it with the bytes it
reads, as it drives :class:`~securechat.protocol.framing.LineReader` for line clients.

What the line protocol does with a line, this does with a message: a text message
over the frame limit (counted as the line it stands for: its bytes and the newline) is
:exc:`~securechat.exceptions.FrameTooLarge`, found while it arrives (wsproto hands
payloads over as they come, so a huge message is never buffered); a binary message is
answered ``bad_frame`` in its place and the connection goes on. WebSocket pings are
answered here; our protocol's own ``ping`` frames travel as text messages like every
other frame. A close from the client is answered and ends the connection (as EOF does
for a line client); a text message that is not UTF-8 or a broken frame fails the
connection (RFC 6455 leaves no choice): wsproto reports it as a close, which is answered
with the same code.
"""

from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason

from securechat.exceptions import FrameTooLarge, ProtocolError

__all__ = ["BINARY_MESSAGE", "WebSocketCodec"]

BINARY_MESSAGE = "binary messages are not frames: send each frame as one text message"


class WebSocketCodec:
    """One WebSocket connection, after the upgrade, as frame lines in and bytes out."""

    def __init__(self, connection: Connection, frame_limit: int) -> None:
        self._ws = connection
        self._limit = frame_limit
        self._parts: list[bytes] = []  # the text message being received
        self._size = 0  # its bytes so far (also counts a binary message, not kept)
        self._out = bytearray()  # our own frames (pongs, close), sent before the next data
        self.finished = False  # a close was received, or we sent ours: nothing more to say
        self.heard = False  # the last receive completed a message or a control frame
        self.partial = False  # part of a message is held

    @property
    def plain(self) -> bool:
        """Open, with nothing of our own waiting: :meth:`wire` encodes ``frames`` alone."""
        return not self._out and self._ws.state is ConnectionState.OPEN

    def receive(self, data: bytes) -> list[bytes | ProtocolError]:
        """Feed bytes read from the client; the frame lines of the messages they completed.

        A binary message becomes a ``bad_frame`` error in its place (the session answers
        it in order, after the rate limit, like an invalid line). Raises
        :exc:`FrameTooLarge` as soon as a message outgrows the frame limit.
        """
        ws = self._ws
        items: list[bytes | ProtocolError] = []
        self.heard = False
        if self.finished:
            return items  # (anything after a close is ignored)
        if data:
            ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                text = isinstance(event, TextMessage)
                chunk = event.data.encode() if text else event.data
                self._size += len(chunk)
                if self._size + 1 > self._limit:  # (+1: the newline of the line it stands for)
                    raise FrameTooLarge(self._limit)
                if text:
                    self._parts.append(chunk)  # type: ignore[arg-type]
                if event.message_finished:
                    self.heard = True
                    if text:
                        items.append(b"".join(self._parts))
                    else:
                        items.append(ProtocolError("bad_frame", BINARY_MESSAGE))
                    self._parts.clear()
                    self._size = 0
            elif isinstance(event, Ping):
                self.heard = True
                self._out += ws.send(event.response())
            elif isinstance(event, CloseConnection):
                # Sent by the client, or made by wsproto for a frame it could not parse
                # (then with the code that says why).
                if ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    self._out += ws.send(event.response())
                self.finished = True
                break
            else:  # a Pong: the client is there
                self.heard = True
        self.partial = bool(self._size) or (bool(data) and not self.heard and not items)
        return items

    def wire(self, frames: bytes) -> bytes:
        """Our own frames waiting, then each encoded frame of ``frames`` as a text message.

        ``frames`` are whole protocol frames, each ending in a newline (what the mailbox
        hands out); after a close they are dropped, as the peer would not read them.
        """
        out, self._out = self._out, bytearray()
        if frames and self._ws.state is ConnectionState.OPEN:
            send = self._ws.send
            for frame in frames.split(b"\n"):
                if frame:
                    out += send(TextMessage(data=frame.decode()))
        return bytes(out)

    def close(self) -> bytes:
        """Our close frame, once (after the last frame has been sent); then nothing."""
        if self._ws.state is ConnectionState.OPEN:
            self._out += self._ws.send(CloseConnection(code=CloseReason.NORMAL_CLOSURE))
        self.finished = True
        return self.wire(b"")
