"""The web edge without sockets: :class:`WebEdge` (h11) and :class:`WebSocketCodec`
(wsproto) driven with bytes, as the connection's I/O thread drives them."""

import re

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from securechat.exceptions import FrameTooLarge, ProtocolError
from securechat.server.web import StaticFiles, WebSite, normalize_origin
from securechat.server.web.http import OUT_BUDGET, StaticFile
from tests.outbox import frames_of

LIMIT = 16384
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example (its accept key is below)
FILES = StaticFiles(
    {
        b"/index.html": StaticFile.of("index.html", b"<p>hi</p>"),
        b"/a.js": StaticFile.of("a.js", b"1"),
    }
)
SITE = WebSite(FILES, origins=["https://Chat.Example/"])


def request(target: bytes = b"/", method: bytes = b"GET", **headers: str) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method, target), b"host: chat.lan"]
    lines += [f"{name.replace('_', '-')}: {value}".encode() for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Parse what the edge sent with a client-side h11 (so it must be valid HTTP)."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    found: list[tuple[int, dict[bytes, bytes], bytes]] = []
    while True:
        if client.our_state is h11.IDLE:  # (h11 reads a response to a request it sent)
            client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            client.send(h11.EndOfMessage())
        event = client.next_event()
        if isinstance(event, h11.Response | h11.InformationalResponse):
            found.append((event.status_code, dict(event.headers), b""))
        elif isinstance(event, h11.Data):
            status, headers, body = found[-1]
            found[-1] = (status, headers, body + event.data)
        elif isinstance(event, h11.EndOfMessage):
            if client.their_state is h11.DONE:
                client.start_next_cycle()
        else:
            return found


def test_files_by_path_with_etag_and_no_cache():
    edge = SITE.open(frame_limit=LIMIT)
    assert edge.receive(request(b"/")) == []
    [(status, headers, body)] = responses(edge.wire([]))
    assert (status, body) == (200, b"<p>hi</p>")
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"etag"] == FILES.get(b"/index.html").etag
    assert headers[b"x-frame-options"] == b"DENY"
    assert not edge.finished and edge.heard and not edge.chatting


def test_if_none_match_gives_304():
    edge = SITE.open(frame_limit=LIMIT)
    etag = FILES.get(b"/a.js").etag.decode()
    edge.receive(request(b"/a.js", if_none_match=f'W/"x", {etag}'))
    [(status, _, body)] = responses(edge.wire([]))
    assert (status, body) == (304, b"")


def test_a_partial_request_is_partial_until_it_ends():
    edge = SITE.open(frame_limit=LIMIT)
    whole = request(b"/a.js")
    edge.receive(whole[:10])
    assert edge.partial and not edge.heard and edge.wire([]) == b""
    edge.receive(whole[10:])
    assert not edge.partial and edge.heard
    assert responses(edge.wire([]))[0][0] == 200


def test_pipelined_requests_beyond_the_budget_wait_for_the_output():
    big = StaticFiles({b"/big": StaticFile.of("big", b"x" * (OUT_BUDGET // 2 + 1))})
    edge = WebSite(big).open(frame_limit=LIMIT)
    edge.receive(request(b"/big") * 5)
    assert edge.backlogged
    sent = edge.wire([])
    while edge.backlogged:
        edge.receive(b"")
        sent += edge.wire([])
    assert [status for status, _, _ in responses(sent)] == [200] * 5


def test_frames_before_the_upgrade_are_dropped():
    edge = SITE.open(frame_limit=LIMIT)
    assert edge.wire(frames_of(b'{"type":"error","code":"shutting_down"}\n')) == b""
    assert edge.close() == b"" and edge.finished


def upgrade(origin: str = "https://chat.lan", extra: bytes = b"") -> tuple:
    """An edge upgraded to a WebSocket, and a wsproto client for the other end."""
    edge = SITE.open(frame_limit=LIMIT)
    head = request(b"/ws", origin=origin, upgrade="websocket", connection="Upgrade",
                   sec_websocket_key=KEY, sec_websocket_version="13")  # fmt: skip
    lines = edge.receive(head + extra)
    sent = edge.wire([])
    assert sent.startswith(b"HTTP/1.1 101 "), sent
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in sent  # RFC 6455's example accept key
    assert edge.chatting
    return edge, Connection(ConnectionType.CLIENT), lines


@pytest.mark.parametrize(
    "origin", ["https://chat.lan", "https://CHAT.example", "https://chat.example"]
)
def test_the_own_or_a_listed_origin_may_upgrade(origin):
    upgrade(origin)


@pytest.mark.parametrize(
    "origin", [None, "null", "http://chat.lan", "https://chat.lan.evil", "https://evil"]
)
def test_other_origins_get_403(origin):
    edge = SITE.open(frame_limit=LIMIT)
    headers = {"upgrade": "websocket", "connection": "Upgrade", "sec_websocket_version": "13",
               "sec_websocket_key": KEY}  # fmt: skip
    if origin is not None:
        headers["origin"] = origin
    edge.receive(request(b"/ws", **headers))
    [(status, _, _)] = responses(edge.wire([]))
    assert status == 403 and not edge.chatting and edge.finished


def test_bad_upgrades_are_400_or_426():
    edge = SITE.open(frame_limit=LIMIT)
    edge.receive(request(b"/ws", origin="https://chat.lan", upgrade="websocket",
                         connection="Upgrade", sec_websocket_version="8",
                         sec_websocket_key="x"))  # fmt: skip
    [(status, headers, _)] = responses(edge.wire([]))
    assert status == 426 and headers[b"sec-websocket-version"] == b"13"
    edge = SITE.open(frame_limit=LIMIT)
    edge.receive(request(b"/ws", origin="https://chat.lan"))
    assert responses(edge.wire([]))[0][0] == 400


def test_bytes_after_the_upgrade_request_are_websocket():
    client = Connection(ConnectionType.CLIENT)
    _, _, lines = upgrade(extra=client.send(TextMessage(data='{"type":"ping"}')))
    assert lines == [b'{"type":"ping"}']


def test_text_messages_are_lines_and_frames_are_text_messages():
    edge, client, _ = upgrade()
    data = client.send(TextMessage(data='{"type":"ping","ref":"é"}'))
    data += client.send(TextMessage(data='{"type":', message_finished=False))
    data += client.send(TextMessage(data='"rooms"}'))
    assert edge.receive(data) == ['{"type":"ping","ref":"é"}'.encode(), b'{"type":"rooms"}']
    client.receive_data(
        edge.wire(frames_of('{"type":"pong","ref":"é"}\n{"type":"rooms"}\n'.encode()))
    )
    assert [event.data for event in client.events()] == ['{"type":"pong","ref":"é"}',
                                                         '{"type":"rooms"}']  # fmt: skip


def test_a_binary_message_is_a_bad_frame_in_its_place():
    edge, client, _ = upgrade()
    data = client.send(TextMessage(data="a")) + client.send(BytesMessage(data=b"\x00\x01"))
    data += client.send(TextMessage(data="b"))
    first, error, last = edge.receive(data)
    assert (first, last) == (b"a", b"b")
    assert isinstance(error, ProtocolError) and error.code == "bad_frame" and not error.fatal


def test_the_frame_limit_counts_the_message_as_its_line():
    edge, client, _ = upgrade()
    assert edge.receive(client.send(TextMessage(data="x" * (LIMIT - 1)))) == [b"x" * (LIMIT - 1)]
    with pytest.raises(FrameTooLarge):
        edge.receive(client.send(TextMessage(data="x" * LIMIT)))


def test_a_huge_message_is_refused_as_it_arrives_not_once_buffered():
    edge, client, _ = upgrade()
    data = client.send(TextMessage(data="x" * (10 * LIMIT)))
    with pytest.raises(FrameTooLarge):
        edge.receive(data[: LIMIT + 100])


def test_a_message_in_pieces_is_partial():
    edge, client, _ = upgrade()
    data = client.send(TextMessage(data='{"type":"ping"}'))
    assert edge.receive(data[:5]) == [] and edge.partial and not edge.heard
    assert edge.receive(data[5:]) == [b'{"type":"ping"}'] and not edge.partial and edge.heard


def test_pings_are_answered_and_count_as_heard():
    edge, client, _ = upgrade()
    assert edge.receive(client.send(Ping(payload=b"p"))) == [] and edge.heard
    client.receive_data(edge.wire([]))
    assert [type(event) for event in client.events()] == [Pong]
    assert edge.receive(client.send(Pong(payload=b"q"))) == [] and edge.heard


def test_a_client_close_is_answered_and_finishes():
    edge, client, _ = upgrade()
    edge.receive(client.send(CloseConnection(code=1000)))
    assert edge.finished
    client.receive_data(
        edge.wire(frames_of(b'{"type":"late"}\n'))
    )  # (dropped: the peer has closed)
    [event] = client.events()
    assert isinstance(event, CloseConnection) and event.code == 1000


def test_our_close_comes_after_the_last_frame():
    edge, client, _ = upgrade()
    client.receive_data(edge.wire(frames_of(b'{"type":"bye"}\n')) + edge.close())
    events = list(client.events())
    assert events[0] == TextMessage(data='{"type":"bye"}')
    assert isinstance(events[1], CloseConnection) and events[1].code == CloseReason.NORMAL_CLOSURE
    assert edge.finished and edge.close() == b""


def test_invalid_utf8_fails_the_websocket_with_1007():
    edge, client, _ = upgrade()
    frame = bytearray(client.send(BytesMessage(data=b"\xff\xfe")))
    frame[0] = (frame[0] & 0xF0) | 0x1  # the same payload as a text frame
    edge.receive(bytes(frame))
    assert edge.finished
    client.receive_data(edge.wire([]))
    [event] = client.events()
    assert event.code == CloseReason.INVALID_FRAME_PAYLOAD_DATA


def test_static_files_list_plain_names_only(tmp_path):
    (tmp_path / "index.html").write_text("i")
    (tmp_path / ".env").write_text("secret")
    (tmp_path / "with space.js").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.css").write_text("b")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_text("x")
    assert sorted(StaticFiles.from_folder(tmp_path).files) == [b"/", b"/index.html", b"/sub/b.css"]


def test_the_packaged_folder_loads():
    assert isinstance(StaticFiles.packaged(), StaticFiles)


@pytest.mark.parametrize(
    ("url", "origin"),
    [("https://Chat.Example", "https://chat.example"), ("https://h:8443/", "https://h:8443")],
)
def test_normalize_origin(url, origin):
    assert normalize_origin(url) == origin


@pytest.mark.parametrize(
    "url", ["chat.example", "https://h/path", "https://h?q", "ftp://h", "https://u@h"]
)
def test_normalize_origin_refuses_what_is_not_an_origin(url):
    with pytest.raises(ValueError):
        normalize_origin(url)


# --- fuzz: whatever bytes come, the edge answers with a 4xx, a file, or nothing; never crashes

METHODS = [b"GET", b"HEAD", b"POST", b"OPTIONS", b"G\x00T", b""]
TARGETS = [b"/", b"/a.js", b"/ws", b"/../a.js", b"/%2e%2e/", b"*", b"http://x/", b"/\xff"]
fragments = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"\r\n",
            b"\r\n\r\n",
            b": ",
            b"host: x\r\n",
            b"content-length: 5\r\n",
            b"transfer-encoding: chunked\r\n",
            b"HTTP/1.1",
            b"HTTP/1.0",
            b" ",
            b"upgrade: websocket\r\n",
            b"connection: upgrade, close\r\n",
            b"origin: https://x\r\n",
            b"sec-websocket-version: 13\r\n",
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            b"\x81\x85abcd",
        ]
    ),
)


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    start = draw(st.sampled_from(METHODS)) + b" " + draw(st.sampled_from(TARGETS))
    return start + b"".join(draw(st.lists(fragments, max_size=12)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(request_bytes(), st.binary(max_size=200)), cuts=st.lists(st.integers(0, 300)))
def test_fuzzed_requests_never_crash_the_edge(data, cuts):
    edge = SITE.open(frame_limit=LIMIT)
    sent = b""
    pieces = [
        data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=True)
    ]
    for piece in pieces:
        try:
            edge.receive(piece)
        except FrameTooLarge:  # (only once upgraded: the session answers it)
            assert edge.chatting
            break
        sent += edge.wire([])
        if edge.finished:
            break
    statuses = [int(code) for code in re.findall(rb"^HTTP/1\.1 (\d{3}) ", sent, re.M)]
    assert all(status in (101, 200, 304, 400, 403, 404, 405, 426, 431) for status in statuses)
    if statuses and statuses[-1] >= 400 and not edge.finished:
        assert statuses[-1] in (403, 404)  # (only those keep the connection)
