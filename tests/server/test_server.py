"""End-to-end tests of the server over real TLS on 127.0.0.1, one frame type at a time."""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from types import SimpleNamespace
from unittest.mock import ANY

import pytest

from securechat import __version__
from securechat.protocol import PROTOCOL_VERSION
from securechat.server.cli import Limits
from securechat.server.connection import TCP_CORK, TLS_RECORD, Connection
from securechat.server.mailbox import Feed
from securechat.server.passwd import delete_user, set_password
from securechat.server.transport import IOThread
from tests.chatclient import ChatClient
from tests.conftest import UNMETERED, USERS, run_server

TS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def test_welcome_then_login(connect):
    client = connect()
    welcome = client.recv()
    assert welcome == {
        "type": "welcome",
        "server": "securechat",
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
    }
    client.send(type="login", user="alice", password=USERS["alice"], ref="l1")
    login_ok = client.recv()
    token = login_ok.pop("token")  # a login token (tests/server/test_tokens.py)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert login_ok == {"type": "login_ok", "user": "alice", "ref": "l1"}


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_below_1_2_is_refused(server, certs):
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with (
        socket.create_connection(server.address, timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(raw, server_hostname="localhost")


def test_auth_failed_is_the_same_for_unknown_user_and_wrong_password(connect):
    client = connect()
    client.expect("welcome")
    wrong = client.request(type="login", user="alice", password="nope")
    unknown = client.request(type="login", user="nosuchuser", password="nope")
    for reply in (wrong, unknown):
        assert reply["type"] == "error" and reply["code"] == "auth_failed"
    assert wrong["message"] == unknown["message"]
    assert client.request(type="login", user="alice", password=USERS["alice"])["type"] == (
        "login_ok"
    )


def test_five_failed_logins_close_the_connection(connect):
    client = connect()
    client.expect("welcome")
    for _ in range(5):
        client.send(type="login", user="bob", password="wrong")
    frames = client.wait_closed()
    assert [f["code"] for f in frames] == ["auth_failed"] * 5


def test_before_login_ping_is_answered_and_others_need_auth(connect):
    client = connect()
    client.expect("welcome")
    assert client.request(type="ping") == {"type": "pong", "ref": client_ref(client)}
    reply = client.request(type="join", room="general")
    assert reply["code"] == "auth_required"
    reply = client.request(type="join", room="General")
    assert reply["code"] == "bad_frame"


def client_ref(client: ChatClient) -> str:
    """The ref ``request`` used last (requests use monotonic refs)."""
    return client.last_ref


def test_bad_frames_get_errors_and_the_connection_goes_on(connect):
    client = connect("alice")
    bad_lines = [
        b"not json",
        b"[1,2]",
        b'{"type":"nope"}',
        b'{"type":"send","room":"general","text":"x","extra":1}',
        b'{"type":"history","room":"general","before":"5"}',
        b'{"type":"history","room":"general","before":1.0}',
        b'{"type":"send","room":"general","text":true}',
        b'{"type":"send","room":"general","text":"a\\u0007b"}',
        b'{"type":"history","room":"general","before":5,"after":1}',
        b"\xff\xfe{}",
    ]
    for line in bad_lines:
        client.send_raw(line + b"\n")
        reply = client.recv()
        assert reply["type"] == "error" and reply["code"] == "bad_frame", (line, reply)
        assert reply["message"]
    client.send_raw(b'{"type":"nope","ref":"keep-me"}\r\n')
    assert client.recv()["ref"] == "keep-me"
    assert client.request(type="ping")["type"] == "pong"


def test_frame_too_large_closes(server, connect):
    client = connect("alice")
    client.send_raw(b"x" * (server.limits.frame_bytes + 10))
    frames = client.wait_closed()
    assert frames[-1]["code"] == "frame_too_large"


def test_rooms_messages_edits_deletes(connect):
    alice, bob = connect("alice"), connect("bob")
    joined = alice.request(type="join", room="general")
    assert joined == {
        "type": "joined",
        "room": "general",
        "members": ["alice"],
        "last_id": 0,
        "history": [],
        "read_id": 0,
        "ref": joined["ref"],
    }
    bob.request(type="join", room="general")
    presence = alice.expect("presence")
    assert presence["user"] == "bob" and presence["event"] == "join"
    assert presence["room"] == "general"

    sent = alice.request(type="send", room="general", text="  hello bob  ")
    assert sent["type"] == "message" and sent["id"] == 1 and sent["text"] == "hello bob"
    assert sent["user"] == "alice"
    assert __import__("re").match(TS, sent["ts"])
    seen = bob.expect("message")
    assert "ref" not in seen and seen["id"] == 1

    reply = bob.request(type="edit", room="general", id=1, text="mine now")
    assert reply["code"] == "forbidden"
    edited = alice.request(type="edit", room="general", id=1, text="hello, bob")
    assert edited["type"] == "edited" and edited["text"] == "hello, bob"
    assert bob.expect("edited")["id"] == 1
    assert alice.request(type="edit", room="general", id=99, text="x")["code"] == "not_found"

    history = bob.request(type="history", room="general")
    assert [m["text"] for m in history["messages"]] == ["hello, bob"]
    assert "edited_ts" in history["messages"][0]

    assert bob.request(type="delete", room="general", id=1)["code"] == "forbidden"
    deleted = alice.request(type="delete", room="general", id=1)
    assert deleted["type"] == "deleted" and deleted["by"] == "alice"
    assert bob.expect("deleted")["id"] == 1
    assert alice.request(type="delete", room="general", id=1)["code"] == "not_found"
    assert bob.request(type="history", room="general")["messages"] == []
    again = bob.request(type="send", room="general", text="next")
    assert again["id"] == 2  # ids are never reused

    rejoin = alice.request(type="join", room="general")  # idempotent
    assert rejoin["type"] == "joined" and rejoin["last_id"] == 2
    assert [m["id"] for m in rejoin["history"]] == [2]


def test_admin_may_delete_any_message(connect):
    alice, admin = connect("alice"), connect("admin")
    alice.request(type="join", room="ops")
    admin.request(type="join", room="ops")
    alice.request(type="send", room="ops", text="spam")
    deleted = admin.request(type="delete", room="ops", id=1)
    assert deleted["type"] == "deleted" and deleted["by"] == "admin"


def test_not_member_errors(connect):
    alice = connect("alice")
    requests = [
        {"type": "send", "room": "lobby", "text": "hi"},
        {"type": "edit", "room": "lobby", "id": 1, "text": "hi"},
        {"type": "delete", "room": "lobby", "id": 1},
        {"type": "history", "room": "lobby"},
        {"type": "members", "room": "lobby"},
        {"type": "leave", "room": "lobby"},
    ]
    for request in requests:
        reply = alice.request(**request)
        assert reply["type"] == "error" and reply["code"] == "not_member", request


def test_rooms_members_leave(connect):
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    alice.request(type="join", room="b-room")
    alice.request(type="join", room="a-room")
    bob.request(type="join", room="a-room")
    carol.request(type="join", room="a-room")
    rooms = carol.request(type="rooms")
    assert rooms["rooms"] == [{"name": "a-room", "members": 3}, {"name": "b-room", "members": 1}]
    members = carol.request(type="members", room="a-room")
    assert members["members"] == ["alice", "bob", "carol"]
    assert bob.request(type="leave", room="a-room")["type"] == "left"
    leave = carol.expect("presence", event="leave")
    assert leave["user"] == "bob"
    assert carol.request(type="members", room="a-room")["members"] == ["alice", "carol"]


def test_user_in_several_rooms_gets_each_rooms_events(connect):
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    for room in ("one", "two"):
        alice.request(type="join", room=room)
    bob.request(type="join", room="one")
    carol.request(type="join", room="two")
    bob.request(type="send", room="one", text="in one")
    carol.request(type="send", room="two", text="in two")
    got = {alice.expect("message", room=r)["text"] for r in ("one", "two")}
    assert got == {"in one", "in two"}
    assert bob.request(type="ping")["type"] == "pong"
    assert not any(f.get("room") == "two" for f in bob.backlog)


def test_direct_messages_reach_every_connection(connect):
    alice1, alice2, bob1, bob2 = connect("alice"), connect("alice"), connect("bob"), connect("bob")
    own = alice1.request(type="dm", to="bob", text="psst")
    assert own["type"] == "dm" and own["from"] == "alice" and own["to"] == "bob"
    for other in (alice2, bob1, bob2):
        frame = other.expect("dm")
        assert frame["id"] == own["id"] and "ref" not in frame and frame["text"] == "psst"
    assert alice1.request(type="dm", to="nosuchuser", text="x")["code"] == "no_such_user"


def test_presence_counts_users_not_connections(connect):
    alice1, alice2, bob = connect("alice"), connect("alice"), connect("bob")
    bob.request(type="join", room="general")
    alice1.request(type="join", room="general")
    assert bob.expect("presence", event="join")["user"] == "alice"
    alice2.request(type="join", room="general")
    alice1.request(type="leave", room="general")
    alice2.request(type="leave", room="general")
    assert bob.expect("presence", event="leave")["user"] == "alice"
    assert [f for f in bob.backlog if f["type"] == "presence"] == []


def test_logout_says_bye_and_closes(connect):
    alice = connect("alice")
    assert alice.request(type="logout")["type"] == "bye"
    assert alice.wait_closed() == []


def test_client_pong_is_accepted_silently(connect):
    alice = connect("alice")
    alice.send(type="pong")
    assert alice.request(type="ping")["type"] == "pong"
    assert not alice.backlog


def test_vanishing_clients_leave_their_rooms(connect, server):
    watcher = connect("carol")
    watcher.request(type="join", room="general")
    # A client that drops mid-frame, one that resets, one that half-closes.
    for user in ("alice", "bob", "dave"):
        client = connect(user)
        client.request(type="join", room="general")
        watcher.expect("presence", user=user, event="join")
        if user == "alice":
            client.send_raw(b'{"type":"send","room":"gen')
            client.sock.close()
        elif user == "bob":
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            client.sock.close()  # RST
        else:
            client.sock.shutdown(socket.SHUT_WR)
        watcher.expect("presence", user=user, event="leave")
    assert watcher.request(type="members", room="general")["members"] == ["carol"]


def test_login_deadline(certs, passwd_path):
    with run_server(certs, passwd_path, Limits(login_timeout=0.3)) as server:
        client = ChatClient(server.address, certs.ca_cert)
        client.expect("welcome")
        frames = client.wait_closed()
        assert [f["code"] for f in frames] == ["auth_required"]
        client.close()


def test_idle_clients_are_pinged_then_dropped(certs, passwd_path):
    with run_server(certs, passwd_path, Limits(idle_ping=0.2, idle_drop=0.4)) as server:
        lively = ChatClient(server.address, certs.ca_cert)
        silent = ChatClient(server.address, certs.ca_cert)
        for client, user in ((lively, "alice"), (silent, "bob")):
            client.login(user, USERS[user])
        for _ in range(3):
            lively.expect("ping")
            lively.send(type="pong")
        assert silent.expect("ping")
        assert silent.wait_closed() == []
        for client in (lively, silent):
            client.close()


def test_shutdown_tells_everyone(certs, passwd_path):
    with run_server(certs, passwd_path) as server:
        clients = [ChatClient(server.address, certs.ca_cert) for _ in range(3)]
        for client, user in zip(clients, ("alice", "bob", "carol"), strict=True):
            client.login(user, USERS[user])
            client.request(type="join", room="general")
        clients[0].request(type="send", room="general", text="last words")
        server.shutdown()
        for client in clients:
            frames = client.wait_closed()
            assert frames[-1]["code"] == "shutting_down"
            client.close()


def test_password_file_changes_apply_without_restart(certs, passwd_path, tmp_path):
    path = tmp_path / "users.passwd"
    shutil.copy(passwd_path, path)
    with run_server(certs, path) as server:
        client = ChatClient(server.address, certs.ca_cert)
        assert client.login("newbie", "first-pw")["code"] == "auth_failed"
        set_password(path, "newbie", "first-pw", rounds=4)
        assert client.request(type="login", user="newbie", password="first-pw")["type"] == (
            "login_ok"
        )
        client.close()
        delete_user(path, "newbie")
        client = ChatClient(server.address, certs.ca_cert)
        assert client.login("newbie", "first-pw")["code"] == "auth_failed"
        client.close()


def test_stuck_client_is_dropped_while_others_carry_on(certs, passwd_path):
    limits = Limits(queue_frames=50, queue_bytes=64 * 1024, **UNMETERED)
    with run_server(certs, passwd_path, limits) as server:
        stuck = ChatClient(server.address, certs.ca_cert, rcvbuf=4096)
        stuck.login("carol", USERS["carol"])
        stuck.request(type="join", room="general")
        alice = ChatClient(server.address, certs.ca_cert)
        bob = ChatClient(server.address, certs.ca_cert)
        for client, user in ((alice, "alice"), (bob, "bob")):
            client.login(user, USERS[user])
            client.request(type="join", room="general")
        text = "y" * 3000
        dropped = False
        sent = 0
        while not dropped:  # until the server drops carol (bounded: 20 MB of traffic)
            assert sent < 7000, "the stuck client was never dropped"
            sent += 1
            alice.send(type="send", room="general", text=f"{sent} {text}")
            assert alice.expect("message")["id"] == sent
            frame = bob.wait_for(lambda f: f["type"] in ("message", "presence"))
            if frame["type"] == "presence":
                assert frame["user"] == "carol" and frame["event"] == "leave"
                dropped = True
                frame = bob.expect("message")
            assert frame["id"] == sent
        # The slow_consumer error is best effort: carol's socket buffers are full, so it
        # may not get through; the connection must be closed either way.
        frames = stuck.wait_closed(timeout=10)
        errors = [f for f in frames if f["type"] == "error"]
        assert errors in ([], [{"type": "error", "code": "slow_consumer", "message": ANY}])
        for client in (stuck, alice, bob):
            client.close()


def test_json_reply_is_one_line_per_frame(connect):
    alice = connect("alice")
    alice.send_raw(b'{"type":"ping","ref":"a"}\n{"type":"ping","ref":"b"}\n')
    assert [alice.recv()["ref"], alice.recv()["ref"]] == ["a", "b"]
    raw = json.dumps({"type": "rooms"}).encode() + b"\n"
    alice.send_raw(raw)
    assert alice.recv()["type"] == "rooms"


def test_sends_pipelined_in_one_write_are_each_answered_in_order(connect):
    """A run of sends in one TLS record is carried out as a batch; every frame still
    gets its own answer, in order, errors included, and every member sees each once."""
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        assert client.request(type="join", room="burst")["type"] == "joined"
    alice.wait_for(lambda f: f["type"] == "presence" and f["user"] == "bob")
    frames = [{"type": "send", "room": "burst", "text": f"m{n}", "ref": f"s{n}"} for n in range(8)]
    frames[3:3] = [{"type": "send", "ref": "bad"}, {"type": "send", "room": "elsewhere",
                                                     "text": "x", "ref": "away"}]  # fmt: skip
    frames.append({"type": "ping", "ref": "last"})
    alice.send_raw(b"".join(json.dumps(frame).encode() + b"\n" for frame in frames))
    replies = [alice.recv() for _ in frames]
    assert [(f["type"], f.get("ref"), f.get("code")) for f in replies] == [
        ("message", "s0", None), ("message", "s1", None), ("message", "s2", None),
        ("error", "bad", "bad_frame"), ("error", "away", "not_member"),
        *[("message", f"s{n}", None) for n in range(3, 8)],
        ("pong", "last", None),
    ]  # fmt: skip
    messages = [f for f in replies if f["type"] == "message"]
    assert [f["id"] for f in messages] == list(range(1, 9))
    seen = [bob.recv() for _ in range(8)]
    assert [(f["type"], f["id"], f["text"], "ref" in f) for f in seen] == [
        ("message", n + 1, f"m{n}", False) for n in range(8)
    ]
    history = alice.request(type="history", room="burst")
    assert [m["text"] for m in history["messages"]] == [f"m{n}" for n in range(8)]


@pytest.mark.parametrize(
    "io_threads",
    [
        pytest.param(1, marks=pytest.mark.limits(io_threads=1, **UNMETERED)),
        pytest.param(3, marks=pytest.mark.limits(io_threads=3, **UNMETERED)),
        pytest.param(2, id="at-once", marks=pytest.mark.limits(
            io_threads=2, flush_interval=0.0, **UNMETERED)),
        pytest.param(2, id="coalesced", marks=pytest.mark.limits(
            io_threads=2, flush_interval=0.05, **UNMETERED)),
    ],
)  # fmt: skip
def test_a_room_reaches_members_on_every_io_thread_once_in_order(connect, io_threads):
    """Each member follows the room's feed from its own I/O thread; interleaved with
    replies (pings), everyone sees every message once, each sender's in order, and a
    sender's own copies carry its refs (whether the room's frames go out at once or
    are gathered for a flush interval)."""
    users = ["alice", "bob", "carol", "dave"]
    clients = [connect(user) for user in users]
    for client in clients:
        assert client.request(type="join", room="busy")["type"] == "joined"
    for n in range(25):
        for user, client in zip(users, clients, strict=True):
            client.send(type="send", room="busy", text=f"{user} {n}", ref=f"{user}-{n}")
            client.send(type="ping", ref=f"ping-{n}")
    for user, client in zip(users, clients, strict=True):
        seen: dict[str, list[int]] = {other: [] for other in users}
        ids, pongs = [], 0
        while len(ids) < 100 or pongs < 25:
            frame = client.recv()
            if frame["type"] in ("pong", "presence"):
                pongs += frame["type"] == "pong"
                continue
            assert frame["type"] == "message", frame
            sender, n = frame["text"].split()
            seen[sender].append(int(n))
            ids.append(frame["id"])
            assert (frame.get("ref") == f"{sender}-{n}") == (sender == user), frame
        assert ids == list(range(1, 101))
        assert all(numbers == list(range(25)) for numbers in seen.values())


@pytest.mark.limits(io_threads=1, flush_interval=0.05, **UNMETERED)
def test_members_of_a_busy_room_get_everything_whatever_their_position(connect):
    """With one I/O thread and a long flush interval, the members of a room wait at
    different positions in its feed: in step (who share one joined block), far behind
    (more than a write's worth), with replies of their own queued, or in a second room.
    Every member still gets every message once, in order."""
    users = ["alice", "bob", "carol", "dave"]
    clients = {user: connect(user) for user in users}
    for client in clients.values():
        assert client.request(type="join", room="busy")["type"] == "joined"
    assert clients["dave"].request(type="join", room="other")["type"] == "joined"
    for user in ("alice", "bob", "carol"):  # everyone has joined
        clients[user].wait_for(lambda f: f["type"] == "presence" and f["user"] == "dave")
    text = "x" * 2000
    burst = b"".join(
        json.dumps({"type": "send", "room": "busy", "text": f"{n} {text}"}).encode() + b"\n"
        for n in range(200)
    )  # 200 frames of about 2 KB: more than one write's worth (256 KiB) behind
    clients["alice"].send_raw(burst)
    clients["carol"].send(type="ping", ref="mine")  # a reply queued among the room's frames
    clients["alice"].send_raw(burst)
    for user, client in clients.items():
        numbers = []
        while len(numbers) < 400:
            frame = client.recv()
            if frame["type"] in ("pong", "presence"):
                continue
            assert frame["type"] == "message" and frame["room"] == "busy", frame
            numbers.append(int(frame["text"].split()[0]))
        assert numbers == list(range(200)) * 2, user


@pytest.mark.skipif(TCP_CORK is None, reason="TCP_CORK is Linux's")
@pytest.mark.limits(io_threads=1, flush_interval=0.05, **UNMETERED)
def test_a_block_of_several_tls_records_arrives_whole_and_uncorks(server, connect):
    """A member behind by more than one TLS record (16 KiB) gets them in one corked
    write: every frame arrives, and no server socket is left corked afterwards (its
    records would otherwise wait for the kernel's 200 ms cork timer)."""
    clients = [connect(user) for user in ("alice", "bob", "carol")]
    for client in clients:
        assert client.request(type="join", room="big")["type"] == "joined"
    for client in clients[:2]:
        client.wait_for(lambda f: f["type"] == "presence" and f["user"] == "carol")
    burst = b"".join(
        json.dumps({"type": "send", "room": "big", "text": f"{n} {'y' * 1000}"}).encode() + b"\n"
        for n in range(60)
    )  # about 62 KiB of frames: each member's writes are more than one record
    clients[0].send_raw(burst)
    for client in clients:
        numbers = [int(client.expect("message")["text"].split()[0]) for _ in range(60)]
        assert numbers == list(range(60))
    corks = [c.tls.getsockopt(socket.IPPROTO_TCP, TCP_CORK) for c in server._connections]
    assert corks == [0, 0, 0]


class RecordingTls:
    """The part of an SSLSocket that ``_send_pending`` uses; records the cork."""

    def __init__(self, outcome: int | Exception) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        assert (level, option) == (socket.IPPROTO_TCP, TCP_CORK)
        self.calls.append(("cork", value))

    def send(self, data: bytes) -> int:
        self.calls.append(("send", len(data)))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.mark.skipif(TCP_CORK is None, reason="TCP_CORK is Linux's")
@pytest.mark.parametrize(
    ("size", "outcome", "calls"),
    [
        (TLS_RECORD, TLS_RECORD, [("send", TLS_RECORD)]),  # one record: no cork
        (TLS_RECORD + 1, TLS_RECORD + 1, [("cork", 1), ("send", TLS_RECORD + 1), ("cork", 0)]),
        (100_000, ssl.SSLWantWriteError(), [("cork", 1), ("send", 100_000), ("cork", 0)]),
        (100_000, ssl.SSLWantReadError(), [("cork", 1), ("send", 100_000), ("cork", 0)]),
        (100_000, ConnectionResetError(), [("cork", 1), ("send", 100_000), ("cork", 0)]),
    ],
)
def test_a_write_of_several_records_is_corked_and_always_uncorked(size, outcome, calls):
    connection = Connection.__new__(Connection)  # only what _send_pending touches
    connection.tls = RecordingTls(outcome)  # type: ignore[assignment]
    connection.pending, connection.want_write, connection.want_read = b"x" * size, False, False
    connection.loop = SimpleNamespace(bytes_sent=0)  # type: ignore[assignment] # (the metrics)
    if isinstance(outcome, ConnectionResetError):
        with pytest.raises(ConnectionResetError):
            connection._send_pending()
    else:
        assert connection._send_pending() is isinstance(outcome, int)
    assert connection.tls.calls == calls  # type: ignore[union-attr]
    assert connection.loop.bytes_sent == (outcome if isinstance(outcome, int) else 0)


def test_a_busy_feed_waits_for_its_flush_interval_and_a_quiet_one_does_not():
    loop = IOThread("test", flush_interval=0.002)
    busy, quiet = Feed(), Feed()
    try:
        loop.appended(busy)
        assert loop._woken
        assert loop._grown_feeds(now=10.0) == {busy}  # after a quiet spell: at once
        loop._woken = False
        loop.appended(busy)
        assert loop._woken  # the loop must look: is it due?
        assert loop._grown_feeds(now=10.001) == set()  # written to 1 ms ago: wait
        assert loop._flush_at == pytest.approx(10.002)
        loop._woken = False
        loop.appended(busy)
        assert not loop._woken  # waiting already: appends meanwhile wake nobody
        loop.appended(quiet)
        assert loop._woken  # another room's frame is not held up by the busy one
        assert loop._grown_feeds(now=10.0015) == {quiet}
        assert loop._flush_at == pytest.approx(10.002)
        assert loop._grown_feeds(now=10.002) == {busy}
        assert loop._flush_at is None
        assert loop._grown_feeds(now=10.003) == set()  # nothing new
        sizes = []
        for second in range(1000):  # a room after another, each quiet afterwards
            feed = Feed()
            loop.appended(feed)
            assert loop._grown_feeds(now=20.0 + second) == {feed}
            sizes.append(len(loop._flushed))
        assert max(sizes) < 100  # quiet rooms are forgotten, not kept by the thousand
    finally:
        loop._epoll.close()
        os.close(loop._wake_fd)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--io-threads", "0"), ("--flush-interval", "-1"), ("--flush-interval", "1001")],
)
def test_io_options_out_of_range_are_usage_errors(tmp_path, option, value):
    result = subprocess.run(
        [sys.executable, "-m", "securechat.server.cli", "--cert", str(tmp_path / "none.pem"),
         option, value],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert option in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
