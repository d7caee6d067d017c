"""WebSocket clients over real TLS: the line protocol's frames, limits and errors, one
frame per text message, beside line clients in the same rooms."""

import json
import socket
import ssl
import threading

import pytest
from websockets.exceptions import InvalidStatus

from securechat.server.cli import Limits
from securechat.server.web import StaticFiles, WebSite
from tests.chatclient import ChatClient
from tests.conftest import UNMETERED, USERS, run_server
from tests.server.web.conftest import WsClient, web_context


def test_welcome_login_join_and_messages_both_ways_with_a_line_client(ws_connect, line_connect):
    alice = ws_connect("alice")  # a browser
    bob = line_connect("bob")  # the terminal client
    assert alice.request(type="join", room="general")["type"] == "joined"
    assert bob.request(type="join", room="general")["members"] == ["alice", "bob"]
    assert alice.expect("presence", user="bob", event="join")

    mine = alice.request(type="send", room="general", text="hello from a browser")
    assert mine["type"] == "message" and mine["user"] == "alice"
    seen = bob.expect("message")
    assert (seen["id"], seen["text"]) == (mine["id"], "hello from a browser")
    assert "ref" not in seen

    reply = bob.request(type="send", room="general", text="hello from a terminal ✓")
    got = alice.expect("message", user="bob")
    assert (got["id"], got["text"]) == (reply["id"], "hello from a terminal ✓")

    dm = alice.request(type="dm", to="bob", text="psst")
    assert dm["type"] == "dm"
    assert bob.expect("dm")["text"] == "psst"
    assert alice.request(type="ping")["type"] == "pong"


def test_every_server_frame_is_one_text_message(ws_connect):
    alice = ws_connect("alice")
    alice.request(type="join", room="general")
    for n in range(5):  # pipelined: the replies leave in one write, still one message each
        alice.send(type="send", room="general", text=f"m{n}", ref=f"s{n}")
    frames = [alice.expect("message", ref=f"s{n}") for n in range(5)]
    assert [frame["text"] for frame in frames] == [f"m{n}" for n in range(5)]


def test_a_binary_message_is_bad_frame_and_the_connection_goes_on(ws_connect):
    alice = ws_connect("alice")
    alice.ws.send(b'{"type":"ping","ref":"b"}')
    error = alice.recv()
    assert (error["type"], error["code"]) == ("error", "bad_frame")
    assert "text message" in error["message"]
    assert alice.request(type="ping", ref="after")["ref"] == "after"


def test_invalid_json_in_a_text_message_is_bad_frame(ws_connect):
    alice = ws_connect("alice")
    alice.ws.send('{"type":"send","room":"general"')
    assert alice.recv()["code"] == "bad_frame"
    alice.ws.send('{"type":"ping",\n"ref":"nl"}')  # JSON whitespace may be a newline here
    assert alice.recv() == {"type": "pong", "ref": "nl"}


def test_an_oversized_message_is_frame_too_large_then_closed(certs, passwd_path, web_files):
    site = WebSite(StaticFiles.from_folder(web_files))
    limits = Limits(frame_bytes=16384)
    with run_server(certs, passwd_path, limits, web=site) as server:
        client = WsClient(server, certs)
        client.login("alice")
        head, tail = '{"type":"ping","ref":"', '"}'
        largest = head + "x" * (16384 - 1 - len(head) - len(tail)) + tail  # 16,384 with "\n"
        client.ws.send(largest)
        answer = client.recv()  # (too long a ref, but not too large a frame)
        assert (answer["type"], answer["code"]) == ("error", "bad_frame")
        assert client.request(type="ping")["type"] == "pong"
        client.ws.send(largest[:-2] + 'x"}')  # one byte over
        frames = client.wait_closed()
        assert [(f["type"], f["code"]) for f in frames] == [("error", "frame_too_large")]
        assert client.ws.close_code == 1000
        client.close()


def test_a_flood_is_rate_limited(ws_connect):
    alice = ws_connect("alice")  # default limits: a burst of 20, 10 frames a second
    for n in range(40):
        alice.send(type="ping", ref=f"p{n}")
    answers = [alice.wait_for(lambda f, n=n: f.get("ref") == f"p{n}") for n in range(40)]
    refused = [frame for frame in answers if frame["type"] == "error"]
    assert 10 <= len(refused) < 40
    assert {frame["code"] for frame in refused} == {"rate_limited"}
    assert all(frame["retry_after"] > 0 for frame in refused)


def test_binary_messages_count_against_the_rate_too(ws_connect):
    alice = ws_connect("alice")
    for _ in range(40):
        alice.ws.send(b"x")
    codes = [alice.recv()["code"] for _ in range(40)]
    assert set(codes) == {"bad_frame", "rate_limited"} and codes[0] == "bad_frame"


def test_logout_is_bye_then_a_websocket_close(ws_connect):
    alice = ws_connect("alice")
    alice.send(type="logout", ref="out")
    frames = alice.wait_closed()
    assert frames == [{"type": "bye", "ref": "out"}]
    assert alice.ws.close_code == 1000


def test_a_client_close_leaves_the_rooms(ws_connect, line_connect):
    alice = ws_connect("alice")
    alice.request(type="join", room="general")
    bob = line_connect("bob")
    bob.request(type="join", room="general")
    alice.ws.close()
    assert bob.expect("presence", user="alice", event="leave")


def test_websocket_pings_are_answered(ws_connect):
    alice = ws_connect("alice")
    assert alice.ws.ping(b"hi").wait(5)  # the pong came back
    assert alice.request(type="ping")["type"] == "pong"


def test_login_is_checked_as_for_a_line_client(ws_connect):
    client = ws_connect()
    assert client.login("alice", "wrong")["code"] == "auth_failed"
    assert client.request(type="rooms")["code"] == "auth_required"


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost", "null"])
def test_a_foreign_origin_is_refused_with_403(web_server, certs, origin):
    with pytest.raises(InvalidStatus) as refused:
        WsClient(web_server, certs, origin=origin)
    assert refused.value.response.status_code == 403


def test_a_listed_origin_may_connect(ws_connect):
    client = ws_connect(origin="https://chat.example")
    assert client.login("alice")["type"] == "login_ok"


def test_shutdown_says_shutting_down_then_closes(certs, passwd_path, web_files):
    site = WebSite(StaticFiles.from_folder(web_files))
    with run_server(certs, passwd_path, web=site) as server:
        client = WsClient(server, certs)
        client.login("alice")
        server.shutdown()
        frames = client.wait_closed()
        assert frames[-1]["code"] == "shutting_down"
        client.close()


def test_over_the_connection_cap_a_websocket_gets_server_busy(certs, passwd_path, web_files):
    site = WebSite(StaticFiles.from_folder(web_files))
    with run_server(certs, passwd_path, Limits(max_per_address=1), web=site) as server:
        first = ChatClient(server.address, certs.ca_cert)
        first.expect("welcome")
        second = WsClient(server, certs)
        frames = second.wait_closed()
        assert [(f["type"], f.get("code")) for f in frames] == [("error", "server_busy")]
        second.close()
        first.close()


def test_a_websocket_that_does_not_read_is_dropped_while_others_carry_on(
    certs, passwd_path, web_files
):
    site = WebSite(StaticFiles.from_folder(web_files))
    limits = Limits(queue_frames=50, queue_bytes=64 * 1024, **UNMETERED)
    with run_server(certs, passwd_path, limits, web=site) as server:
        stuck = WsClient(server, certs, rcvbuf=4096, max_queue=(4, 1))
        stuck.login("carol")
        stuck.request(type="join", room="general")  # carol reads nothing from here on
        alice = ChatClient(server.address, certs.ca_cert)
        alice.login("alice", USERS["alice"])
        alice.request(type="join", room="general")
        bob = WsClient(server, certs)
        bob.login("bob")
        bob.request(type="join", room="general")
        text = "y" * 3900
        dropped = False
        sent = 0
        while not dropped:  # until the server drops carol (bounded: 20 MB of traffic)
            assert sent < 5000, "the stuck client was never dropped"
            for _ in range(10):  # (in runs of 10, within the 64 KiB bound: a quicker test)
                sent += 1
                alice.send(type="send", room="general", text=f"{sent} {text}")
            for n in range(sent - 9, sent + 1):
                assert alice.expect("message")["id"] == n
                frame = bob.wait_for(lambda f: f["type"] in ("message", "presence"))
                if frame["type"] == "presence":
                    assert frame["user"] == "carol" and frame["event"] == "leave"
                    dropped = True
                    frame = bob.expect("message")
                assert frame["id"] == n  # bob got every message, in order
        # carol's slow_consumer error is best effort; the connection is closed either way.
        frames = stuck.wait_closed(timeout=10)
        assert {f.get("code") for f in frames if f["type"] == "error"} <= {"slow_consumer"}
        assert bob.request(type="ping")["type"] == "pong"
        for client in (stuck, bob):
            client.close()
        alice.close()


def test_line_and_websocket_clients_under_load_see_every_message_once_in_order(
    certs, passwd_path, web_files
):
    """20 line and 20 WebSocket clients in one room send 50 messages each."""
    site = WebSite(StaticFiles.from_folder(web_files))
    each, per_kind = 50, 20
    users = [f"user{index}" for index in range(2 * per_kind)]
    total = each * len(users)
    joined = threading.Barrier(len(users), timeout=30)
    failures: list[str] = []

    def run(index: int, user: str, server) -> None:
        web = index % 2 == 1
        client = WsClient(server, certs) if web else ChatClient(server.address, certs.ca_cert)
        try:
            assert client.login(user, f"{user}-pw")["type"] == "login_ok"
            assert client.request(type="join", room="load")["type"] == "joined"
            joined.wait()
            for n in range(each):
                client.send(type="send", room="load", text=f"{user} {n}")
            seen = [client.expect("message", timeout=30) for _ in range(total)]
            assert [frame["id"] for frame in seen] == list(range(1, total + 1))
            by_sender: dict[str, list[int]] = {}
            for frame in seen:
                sender, n = frame["text"].split()
                assert sender == frame["user"]
                by_sender.setdefault(sender, []).append(int(n))
            assert len(by_sender) == len(users)
            assert all(ns == list(range(each)) for ns in by_sender.values())
        except Exception as exc:  # reported by the main thread
            errors = [frame for frame in client.backlog if frame["type"] == "error"]
            failures.append(f"{user} ({'ws' if web else 'line'}): {exc!r} {errors}")
            joined.abort()
        finally:
            client.close()

    # 2,000 frames in one room: 40 reading threads in this process may fall more than
    # the default 1,000 frames behind on a busy machine (that is the slow-consumer test).
    limits = Limits(queue_frames=4 * total, queue_bytes=16 * 1024 * 1024, **UNMETERED)
    with run_server(certs, passwd_path, limits, web=site) as server:
        threads = [threading.Thread(target=run, args=(i, u, server)) for i, u in enumerate(users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert not failures, sorted(failures, key=lambda f: "BrokenBarrier" in f)[:5]
        assert not any(thread.is_alive() for thread in threads)


def test_websocket_over_tls13(web_server, certs):
    """The same session over TLS 1.3 with a one-thread client (wsproto over a blocking
    socket): upgrade, welcome, login, a ping and our close."""
    from wsproto import WSConnection
    from wsproto.connection import ConnectionType
    from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

    context = web_context(certs)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    port = web_server.address[1]
    ws = WSConnection(ConnectionType.CLIENT)
    with (
        socket.create_connection(web_server.address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"
        origin = [(b"origin", f"https://localhost:{port}".encode())]
        tls.sendall(ws.send(Request(host=f"localhost:{port}", target="/ws", extra_headers=origin)))

        waiting: list = []

        def event():  # the next event, reading as needed
            while not waiting:
                waiting.extend(ws.events())
                if not waiting:
                    ws.receive_data(tls.recv(65536))
            return waiting.pop(0)

        def frame() -> dict:
            got = event()
            assert isinstance(got, TextMessage), got
            return json.loads(got.data)

        assert isinstance(event(), AcceptConnection)
        assert frame()["type"] == "welcome"
        login = {"type": "login", "user": "alice", "password": USERS["alice"]}
        tls.sendall(ws.send(TextMessage(data=json.dumps(login))))
        assert frame()["type"] == "login_ok"
        tls.sendall(ws.send(TextMessage(data='{"type":"ping","ref":"p"}')))
        assert frame() == {"type": "pong", "ref": "p"}
        tls.sendall(ws.send(TextMessage(data='{"type":"logout"}')))
        assert frame()["type"] == "bye"
        close = event()
        assert isinstance(close, CloseConnection) and close.code == 1000
