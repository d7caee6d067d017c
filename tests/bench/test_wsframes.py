"""The bench's client-side WebSocket framing, checked against wsproto at both ends.

``wsproto`` is what the server frames with; each test has it make or read the other side
of what :mod:`securechat.bench.wsframes` reads or makes, including the bench's
traffic path (:class:`~securechat.bench.cli.WsConn`), which scans a server's frames for
marks without walking them.
"""

import asyncio
import json
import os

import pytest
from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from securechat.bench.cli import RoomPlan, Run, Sender, WsConn
from securechat.bench.irc import SecurechatDialect
from securechat.bench.wsframes import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    HandshakeError,
    UpgradeReader,
    accept_key,
    mask_frame,
    text_frames,
    upgrade_request,
)

SIZES = [0, 1, 3, 4, 5, 125, 126, 127, 1000, 65535, 65536, 70_000]


def server_reads(data: bytes) -> list:
    """What wsproto, as a server, makes of ``data`` sent by a client."""
    server = Connection(ConnectionType.SERVER)
    server.receive_data(data)
    return list(server.events())


def test_rfc_6455_accept_key():
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", SIZES)
def test_masked_frames_are_what_wsproto_reads(size):
    payload = bytes((i * 7 + 3) % 256 for i in range(size))
    text = payload.hex()[:size].encode()  # ASCII, to be a valid text message
    for opcode, body in ((TEXT, text), (PING, text[:125]), (PONG, text[:125])):
        frame = mask_frame(opcode, body, os.urandom(4))
        assert frame[1] & 0x80  # masked, as a client's frame must be
        [event] = server_reads(frame)
        if opcode == TEXT:
            assert isinstance(event, TextMessage) and event.message_finished
            assert event.data.encode() == body
        else:
            assert isinstance(event, Ping if opcode == PING else Pong)
            assert event.payload == body


def test_every_frame_gets_a_fresh_key():
    frames = text_frames(b'{"type":"pong"}\n' * 50)
    keys = set()
    pos = 0
    while pos < len(frames):
        n = frames[pos + 1] & 0x7F
        keys.add(frames[pos + 2 : pos + 6])
        pos += 6 + n
    assert len(keys) == 50


def test_text_frames_is_one_message_per_line():
    lines = b'{"type":"send","room":"r","text":"h\xc3\xa9"}\n{"type":"pong"}\n' + b"x" * 200 + b"\n"
    events = server_reads(text_frames(lines))
    assert [e.data.encode() for e in events] == lines.split(b"\n")[:-1]
    with pytest.raises(ValueError):
        text_frames(b'{"type":"pong"}')  # no newline: not a whole line


def server_frames() -> tuple[bytes, list[tuple[int, bytes]]]:
    """Frames a wsproto server sends, and what a reader should make of them."""
    server = Connection(ConnectionType.SERVER)
    wire, want = b"", []
    for size in SIZES:
        text = "é" * (size // 2) + "x" * (size % 2)
        wire += server.send(TextMessage(data=text))
        want.append((TEXT, text.encode()))
    wire += server.send(TextMessage(data="frag", message_finished=False))
    wire += server.send(Ping(payload=b"between"))  # a control frame between fragments
    wire += server.send(TextMessage(data="mented", message_finished=True))
    want += [(PING, b"between"), (TEXT, b"fragmented")]
    wire += server.send(Pong(payload=b"p"))
    wire += server.send(CloseConnection(code=1000, reason="bye"))
    want += [(PONG, b"p"), (CLOSE, b"\x03\xe8bye")]
    return wire, want


def test_reader_reads_wsproto_frames_whole_and_byte_by_byte():
    wire, want = server_frames()
    assert FrameReader().feed(wire) == want
    reader, got = FrameReader(), []
    for i in range(len(wire)):
        got += reader.feed(wire[i : i + 1])
    assert got == want and reader.buffer == b""


@pytest.mark.parametrize("bad", [
    mask_frame(TEXT, b"masked", b"abcd"),  # a client's frame
    b"\xc1\x00",  # RSV1 without an extension
    b"\x83\x00",  # a reserved opcode
    b"\x09\x00",  # a fragmented ping
    b"\x80\x00",  # a continuation with nothing to continue
])  # fmt: skip
def test_reader_refuses_what_a_server_must_not_send(bad):
    with pytest.raises(ValueError):
        FrameReader().feed(bad)


def wsproto_server_answer(request: bytes, accept: bool = True) -> bytes:
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(request)
    [event] = list(server.events())
    assert isinstance(event, Request)
    assert event.target == "/ws" and event.host == "127.0.0.1:4433"
    assert ("origin", "https://127.0.0.1:4433") in [
        (k.decode(), v.decode()) for k, v in event.extra_headers
    ]
    if not accept:
        return server.send(RejectConnection(status_code=403))
    return server.send(AcceptConnection()) + server.send(TextMessage(data='{"type":"welcome"}'))


def test_upgrade_with_wsproto_as_the_server():
    request, key = upgrade_request("127.0.0.1", 4433)
    answer = wsproto_server_answer(request)
    reader = UpgradeReader(key)
    cut = answer.index(b"\r\n\r\n")
    assert reader.feed(answer[:cut]) is None  # the head is not complete yet
    rest = reader.feed(answer[cut:])
    assert FrameReader().feed(rest) == [(TEXT, b'{"type":"welcome"}')]


def test_upgrade_refused_or_with_a_wrong_key():
    request, key = upgrade_request("127.0.0.1", 4433)
    with pytest.raises(HandshakeError, match="403"):
        UpgradeReader(key).feed(wsproto_server_answer(request, accept=False))
    _, other = upgrade_request("127.0.0.1", 4433)
    with pytest.raises(HandshakeError, match="Accept"):
        UpgradeReader(other).feed(wsproto_server_answer(request))


# -- the bench's connection over WebSocket


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def abort(self) -> None:
        pass


def upgraded(run: Run) -> tuple[WsConn, FakeTransport, bytes]:
    """A WsConn past its upgrade (answered by wsproto), in traffic mode."""
    conn = WsConn(run, SecurechatDialect(), 5, "u5", "pw", "127.0.0.1", 4433)
    transport = FakeTransport()
    conn.connection_made(transport)
    request, transport.written = transport.written, b""
    key = next(line.split(b": ")[1] for line in request.split(b"\r\n")
               if line.startswith(b"Sec-WebSocket-Key"))  # fmt: skip
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(request)
    list(server.events())
    answer = server.send(AcceptConnection())
    assert accept_key(key) in answer
    conn.data_received(answer)
    return conn, transport, b""


def message(seq: int, sender: int = 1, text: str = "pad") -> str:
    return json.dumps({"type": "message", "room": "r", "id": seq, "user": f"u{sender}",
                       "text": f"~{sender}.{seq}.0~ {text}", "ts": 1.5},
                      separators=(",", ":"))  # fmt: skip


def test_ws_conn_counts_marks_split_anywhere_and_answers_controls():
    """Every cut of a stream of wsproto frames (marks, a ping, a refusal) counts the same."""
    server = Connection(ConnectionType.SERVER)
    texts = [message(1), message(2, text="~9.9"), message(3, text="x" * 130),
             '{"type":"ping"}', message(4, text="é~}{"),
             '{"type":"error","code":"rate_limited","message":"slow down {}","ref":7}',
             message(2)]  # fmt: skip
    wire = b"".join(server.send(TextMessage(data=t)) for t in texts)
    for cut in range(len(wire) + 1):

        async def scenario(cut: int = cut) -> tuple:
            run = Run()
            conn, transport, _ = upgraded(run)
            plan = RoomPlan("r", [conn])
            sender = Sender(conn, "r", b"")
            plan.senders = [sender]
            conn.go_fast()
            conn.data_received(wire[:cut])
            conn.data_received(wire[cut:])
            return run, conn, transport, sender

        run, conn, transport, sender = asyncio.run(scenario())
        assert (conn.count, conn.dups, conn.last) == (5, 1, {1: 4}), cut
        assert run.delivered == 5 and sender.refused == 1, cut
        assert [e.data for e in server_reads(transport.written)] == ['{"type":"pong"}'], cut
        assert conn.tail == b"", cut


def test_ws_conn_setup_lines_and_writes():
    async def scenario() -> tuple:
        run = Run()
        conn, transport, _ = upgraded(run)
        server = Connection(ConnectionType.SERVER)
        wire = server.send(TextMessage(data='{"type":"welcome"}'))
        wire += server.send(Ping(payload=b"are you there"))
        wire += server.send(TextMessage(data='{"type":"login_ok","user":"u5"}'))
        first = server.send(TextMessage(data=message(1)))
        conn.data_received(wire[:5])
        conn.data_received(wire[5:] + first[:4])
        await conn.handshake(5)
        conn.go_fast()  # the frame begun during setup is the first in traffic
        conn.data_received(first[4:])
        return conn, transport

    conn, transport = asyncio.run(scenario())
    events = server_reads(transport.written)
    assert isinstance(events[0], Pong) and events[0].payload == b"are you there"
    login = json.loads(events[1].data)
    assert login == {"type": "login", "user": "u5", "password": "pw"}
    assert conn.count == 1


def test_ws_conn_refused_upgrade_fails_the_handshake():
    async def scenario() -> None:
        conn = WsConn(Run(), SecurechatDialect(), 5, "u5", "pw", "127.0.0.1", 4433)
        conn.connection_made(FakeTransport())
        conn.data_received(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await conn.handshake(5)

    with pytest.raises(ConnectionError, match="403"):
        asyncio.run(scenario())
