"""Unit tests of Session: one connection's protocol state, driven without sockets."""

import json
from collections import deque

import pytest

from securechat.exceptions import StoreUnavailable
from securechat.server.hub import NOT_STORED, Hub
from securechat.server.session import AUTH_FAILED_MESSAGE, MAX_LOGIN_FAILURES, Session
from securechat.server.store import SqliteStore
from tests.outbox import Outbox

PASSWORDS = {"ann": "ann-pw", "bob": "bob-pw", "root": "root-pw"}


class FakeAuth:
    """Checks passwords against a dict and records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, user: str, password: str) -> bool:
        self.calls.append((user, password))
        return PASSWORDS.get(user) == password


@pytest.fixture
def hub() -> Hub:
    return Hub(user_exists=lambda user: user in PASSWORDS, admins={"root"})


def open_session(hub: Hub) -> tuple[Session, Outbox]:
    outbox = Outbox()
    return Session(hub, outbox, FakeAuth()), outbox


def send(session: Session, obj: object) -> None:
    session.receive_line(json.dumps(obj).encode())


def logged_in(hub: Hub, user: str = "ann") -> tuple[Session, Outbox]:
    session, outbox = open_session(hub)
    send(session, {"type": "login", "user": user, "password": PASSWORDS[user]})
    assert outbox.only("login_ok")["user"] == user
    return session, outbox


def error(outbox: Outbox, code: str, ref: str | None = None) -> dict:
    frame = outbox.only("error")
    assert frame["code"] == code, frame
    assert frame.get("ref") == ref
    assert isinstance(frame["message"], str)
    assert " " in frame["message"]
    return frame


# --- before login -----------------------------------------------------------------------


def test_ping_before_login(hub: Hub) -> None:
    session, outbox = open_session(hub)
    send(session, {"type": "ping", "ref": "p1"})
    assert outbox.only() == {"type": "pong", "ref": "p1"}
    send(session, {"type": "ping"})
    assert outbox.only() == {"type": "pong"}
    assert not session.closing


def test_pong_before_login_needs_auth(hub: Hub) -> None:
    # PROTOCOL.md: before login only ping is answered; any other valid frame is
    # auth_required (the server pings only logged-in clients).
    session, outbox = open_session(hub)
    send(session, {"type": "pong", "ref": "p"})
    error(outbox, "auth_required", "p")
    assert not session.closing


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "join", "room": "lobby"},
        {"type": "leave", "room": "lobby"},
        {"type": "send", "room": "lobby", "text": "hi"},
        {"type": "edit", "room": "lobby", "id": 1, "text": "hi"},
        {"type": "delete", "room": "lobby", "id": 1},
        {"type": "dm", "to": "bob", "text": "hi"},
        {"type": "history", "room": "lobby"},
        {"type": "rooms"},
        {"type": "members", "room": "lobby"},
        {"type": "logout"},
    ],
    ids=lambda obj: obj["type"],
)
def test_other_valid_frames_before_login_need_auth(hub: Hub, obj: dict) -> None:
    session, outbox = open_session(hub)
    send(session, {**obj, "ref": "r1"})
    error(outbox, "auth_required", "r1")
    send(session, obj)
    error(outbox, "auth_required")
    assert not session.closing
    assert not session.logged_in
    assert session.rooms == set()
    assert hub.online_users() == []


@pytest.mark.parametrize(
    "raw",
    [b"garbage", b"{}", b'{"type":"join","room":"Lobby"}', b"\xff", b"[]", b'{"type":"nope"}'],
    ids=ascii,
)
def test_invalid_frame_before_login_is_bad_frame(hub: Hub, raw: bytes) -> None:
    session, outbox = open_session(hub)
    session.receive_line(raw)
    error(outbox, "bad_frame")
    assert not session.closing


def test_bad_frame_before_login_keeps_its_ref(hub: Hub) -> None:
    session, outbox = open_session(hub)
    send(session, {"type": "join", "room": "NO", "ref": "x1"})
    error(outbox, "bad_frame", "x1")


# --- login ------------------------------------------------------------------------------


def test_login_success(hub: Hub) -> None:
    session, outbox = open_session(hub)
    send(session, {"type": "login", "user": "ann", "password": "ann-pw", "ref": "L"})
    assert outbox.only() == {"type": "login_ok", "user": "ann", "ref": "L"}
    assert session.logged_in
    assert session.user == "ann"
    assert hub.online_users() == ["ann"]
    send(session, {"type": "join", "room": "lobby"})
    assert outbox.only("joined")["members"] == ["ann"]


def test_login_failure_same_for_unknown_user_and_wrong_password(hub: Hub) -> None:
    session, outbox = open_session(hub)
    send(session, {"type": "login", "user": "ann", "password": "wrong", "ref": "a"})
    wrong_password = error(outbox, "auth_failed", "a")
    send(session, {"type": "login", "user": "nobody", "password": "ann-pw", "ref": "a"})
    unknown_user = error(outbox, "auth_failed", "a")
    assert wrong_password == unknown_user
    assert wrong_password["message"] == AUTH_FAILED_MESSAGE
    assert "nobody" not in unknown_user["message"]
    assert not session.logged_in
    assert not session.closing
    assert session._authenticate.calls == [("ann", "wrong"), ("nobody", "ann-pw")]
    assert hub.online_users() == []


def test_login_after_failures_still_possible(hub: Hub) -> None:
    session, outbox = open_session(hub)
    for _ in range(MAX_LOGIN_FAILURES - 1):
        send(session, {"type": "login", "user": "ann", "password": "nope"})
        error(outbox, "auth_failed")
    send(session, {"type": "login", "user": "ann", "password": "ann-pw"})
    assert outbox.only("login_ok")
    assert not session.closing


def test_five_failed_logins_close_the_connection(hub: Hub) -> None:
    assert MAX_LOGIN_FAILURES == 5
    session, outbox = open_session(hub)
    for attempt in range(1, 6):
        assert not session.closing
        send(session, {"type": "login", "user": "ann", "password": f"guess{attempt}"})
        error(outbox, "auth_failed")
    assert session.closing
    send(session, {"type": "login", "user": "ann", "password": "ann-pw"})
    send(session, {"type": "ping"})
    assert outbox.take() == []
    assert not session.logged_in
    assert len(session._authenticate.calls) == 5


def test_max_login_failures_is_configurable(hub: Hub) -> None:
    outbox = Outbox()
    session = Session(hub, outbox, FakeAuth(), max_login_failures=2)
    send(session, {"type": "login", "user": "ann", "password": "x"})
    assert not session.closing
    send(session, {"type": "login", "user": "ann", "password": "y"})
    assert session.closing
    assert [f["code"] for f in outbox.take()] == ["auth_failed", "auth_failed"]


def test_login_twice_is_bad_frame(hub: Hub) -> None:
    session, outbox = logged_in(hub, "ann")
    send(session, {"type": "login", "user": "bob", "password": "bob-pw", "ref": "again"})
    error(outbox, "bad_frame", "again")
    assert session.user == "ann"
    assert hub.online_users() == ["ann"]
    assert not session.closing


def test_one_user_on_two_connections(hub: Hub) -> None:
    first, out1 = logged_in(hub, "ann")
    second, out2 = logged_in(hub, "ann")
    assert hub.online_users() == ["ann"]
    send(first, {"type": "join", "room": "lobby"})
    send(second, {"type": "join", "room": "lobby"})
    assert out1.only("joined")
    assert out2.only("joined")["members"] == ["ann"]
    assert out1.take() == []  # no presence for one's own second connection


# --- logout and close -------------------------------------------------------------------


def test_logout(hub: Hub) -> None:
    session, outbox = logged_in(hub)
    send(session, {"type": "logout", "ref": "out"})
    assert outbox.only() == {"type": "bye", "ref": "out"}
    assert session.closing
    send(session, {"type": "ping"})
    assert outbox.take() == []


def test_bye_is_the_last_frame(hub: Hub) -> None:
    ann, ann_out = logged_in(hub, "ann")
    bob, bob_out = logged_in(hub, "bob")
    send(ann, {"type": "join", "room": "lobby"})
    send(bob, {"type": "join", "room": "lobby"})
    ann_out.take()
    send(ann, {"type": "logout"})
    assert ann_out.only("bye")
    send(bob, {"type": "send", "room": "lobby", "text": "are you there?"})
    send(bob, {"type": "dm", "to": "ann", "text": "hello?"})
    assert ann_out.take() == []
    ann.close()
    assert bob_out.take()[-1]["type"] == "presence"


def test_close_leaves_rooms_and_is_idempotent(hub: Hub) -> None:
    ann, _ = logged_in(hub, "ann")
    bob, bob_out = logged_in(hub, "bob")
    send(ann, {"type": "join", "room": "a"})
    send(ann, {"type": "join", "room": "b"})
    send(bob, {"type": "join", "room": "a"})
    bob_out.take()
    ann.close()
    assert ann.closing
    assert ann.rooms == set()
    presence = bob_out.only("presence")
    assert (presence["room"], presence["user"], presence["event"]) == ("a", "ann", "leave")
    assert hub.online_users() == ["bob"]
    ann.close()
    assert bob_out.take() == []


def test_close_before_login(hub: Hub) -> None:
    session, outbox = open_session(hub)
    session.close()
    session.close()
    assert session.closing
    assert outbox.take() == []


# --- requests after login ---------------------------------------------------------------


def test_hub_error_carries_the_request_ref(hub: Hub) -> None:
    session, outbox = logged_in(hub)
    send(session, {"type": "send", "room": "lobby", "text": "hi", "ref": "q1"})
    error(outbox, "not_member", "q1")
    send(session, {"type": "send", "room": "lobby", "text": "hi"})
    error(outbox, "not_member")
    send(session, {"type": "dm", "to": "nobody", "text": "hi", "ref": "q2"})
    error(outbox, "no_such_user", "q2")
    assert not session.closing


def test_not_found_and_forbidden_carry_ref(hub: Hub) -> None:
    ann, ann_out = logged_in(hub, "ann")
    bob, bob_out = logged_in(hub, "bob")
    for session in (ann, bob):
        send(session, {"type": "join", "room": "lobby"})
    send(ann, {"type": "send", "room": "lobby", "text": "mine"})
    ann_out.take()
    bob_out.take()
    send(bob, {"type": "edit", "room": "lobby", "id": 1, "text": "x", "ref": "e"})
    error(bob_out, "forbidden", "e")
    send(bob, {"type": "delete", "room": "lobby", "id": 9, "ref": "d"})
    error(bob_out, "not_found", "d")
    assert ann_out.take() == []


def test_invalid_json_keeps_the_session_open(hub: Hub) -> None:
    session, outbox = logged_in(hub)
    send(session, {"type": "join", "room": "lobby"})
    outbox.take()
    for raw in (b"{not json", b"\xfe\xff", b"[" * 100_000, b"", b'{"type":"send"}'):
        session.receive_line(raw)
        error(outbox, "bad_frame")
        assert not session.closing
    send(session, {"type": "send", "room": "lobby", "text": "still here", "ref": "s"})
    assert outbox.only("message")["ref"] == "s"
    assert session.rooms == {"lobby"}


def test_text_is_stripped_before_relay(hub: Hub) -> None:
    ann, ann_out = logged_in(hub, "ann")
    bob, bob_out = logged_in(hub, "bob")
    send(ann, {"type": "join", "room": "lobby"})
    send(bob, {"type": "join", "room": "lobby"})
    ann_out.take()
    bob_out.take()
    send(ann, {"type": "send", "room": "lobby", "text": "  \n hello\tworld \n"})
    assert bob_out.only("message")["text"] == "hello\tworld"
    send(ann, {"type": "edit", "room": "lobby", "id": 1, "text": " edited "})
    assert bob_out.only("edited")["text"] == "edited"
    send(ann, {"type": "dm", "to": "bob", "text": "\tpsst\n"})
    assert bob_out.only("dm")["text"] == "psst"


def test_full_conversation(hub: Hub) -> None:
    ann, ann_out = logged_in(hub, "ann")
    root, root_out = logged_in(hub, "root")
    send(ann, {"type": "join", "room": "lobby", "ref": "1"})
    assert ann_out.only("joined")["ref"] == "1"
    send(root, {"type": "join", "room": "lobby"})
    assert ann_out.only("presence")["user"] == "root"
    root_out.take()
    send(ann, {"type": "send", "room": "lobby", "text": "hello", "ref": "2"})
    assert ann_out.only("message")["ref"] == "2"
    assert "ref" not in root_out.only("message")
    send(root, {"type": "delete", "room": "lobby", "id": 1, "ref": "3"})
    assert root_out.only("deleted") | {"ts": ""} == {
        "type": "deleted",
        "room": "lobby",
        "id": 1,
        "by": "root",
        "ts": "",
        "ref": "3",
    }
    assert ann_out.only("deleted")["by"] == "root"
    send(ann, {"type": "history", "room": "lobby", "after": 0, "limit": 10, "ref": "4"})
    assert ann_out.only() == {"type": "history", "room": "lobby", "messages": [], "ref": "4"}
    send(ann, {"type": "members", "room": "lobby", "ref": "5"})
    assert ann_out.only()["members"] == ["ann", "root"]
    send(ann, {"type": "rooms", "ref": "6"})
    assert ann_out.only() == {
        "type": "rooms",
        "rooms": [{"name": "lobby", "members": 2}],
        "ref": "6",
    }
    send(ann, {"type": "leave", "room": "lobby", "ref": "7"})
    assert ann_out.only() == {"type": "left", "room": "lobby", "ref": "7"}
    assert root_out.only("presence")["event"] == "leave"
    send(ann, {"type": "pong"})
    assert ann_out.take() == []


def test_session_repr(hub: Hub) -> None:
    session, _ = logged_in(hub)
    send(session, {"type": "join", "room": "lobby"})
    assert "ann" in repr(session)
    assert "lobby" in repr(session)


@pytest.mark.parametrize("logged", [False, True], ids=["before-login", "after-login"])
def test_lone_surrogate_ref_gives_bad_frame(hub: Hub, logged: bool) -> None:
    session, outbox = logged_in(hub) if logged else open_session(hub)
    session.receive_line(b'{"type":"join","room":"lobby","ref":"\\ud800"}')
    frame = outbox.only("error")
    assert frame["code"] == "bad_frame"
    assert not session.closing


def test_a_bug_in_a_handler_answers_internal_and_the_session_goes_on(hub: Hub, monkeypatch) -> None:
    session, outbox = logged_in(hub)

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(hub, "rooms", broken)
    session.receive_line(b'{"type":"rooms","ref":"r"}')
    session.receive_line(b'{"type":"ping","ref":"p"}')
    frames = outbox.take()
    assert frames[-2]["code"] == "internal" and frames[-2]["ref"] == "r"
    assert frames[-1] == {"type": "pong", "ref": "p"}
    assert not session.closing


class StepCommitter:
    """A committer that commits one queued entry at a time, when the test says so.

    ``step(fail=error)`` makes that entry's write fail with ``error`` instead.
    """

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.queue: list[tuple[object, object, object]] = []

    def submit(self, write, then=None, failed=None) -> None:
        self.queue.append((write, then, failed))

    def drain(self) -> None:
        """Commit everything queued (e.g. the logins' catch-up)."""
        while self.queue:
            self.step()

    def step(self, fail: Exception | None = None) -> None:
        write, then, failed = self.queue.pop(0)
        if write is not None and fail is not None:
            if failed is not None:
                failed(fail)
            return
        if write is not None:
            self.store.write([write])
        if then is not None:
            then()


def stepped_hub() -> tuple[StepCommitter, Hub]:
    """A hub whose commits happen one at a time, when the test steps them (its store is
    ``committer.store``)."""
    committer = StepCommitter(SqliteStore(":memory:"))
    hub = Hub(user_exists=PASSWORDS.__contains__, store=committer.store, committer=committer)
    return committer, hub


def test_pipelined_writes_share_a_barrier_and_later_requests_wait_for_all() -> None:
    committer, hub = stepped_hub()
    session, outbox = logged_in(hub)
    committer.drain()  # the login's catch-up
    send(session, {"type": "join", "room": "lobby"})
    outbox.only("joined")
    for n in range(4):
        send(session, {"type": "send", "room": "lobby", "text": f"m{n}", "ref": f"s{n}"})
    send(session, {"type": "members", "room": "lobby", "ref": "who"})
    writes = [entry for entry in committer.queue if entry[0] is not None]
    assert len(writes) == 4 and len(committer.queue) == 5  # one barrier for the four
    assert session.waiting
    replies = []
    while committer.queue:
        assert not any(frame["type"] == "members" for frame in replies)
        committer.step()
        session.resume()  # what the transport does when woken
        replies += outbox.take()
    assert [frame.get("ref") for frame in replies] == ["s0", "s1", "s2", "s3", "who"]
    assert not session.waiting
    send(session, {"type": "send", "room": "lobby", "text": "again", "ref": "s4"})
    assert len(committer.queue) == 2  # a new barrier once the last one has passed


def test_a_run_of_sends_in_one_read_is_one_commit_and_replies_keep_the_order() -> None:
    committer, hub = stepped_hub()
    store = committer.store
    session, outbox = logged_in(hub)
    bob, bob_box = logged_in(hub, "bob")
    committer.drain()  # the logins' catch-up
    for who in (session, bob):
        send(who, {"type": "join", "room": "lobby"})
    send(session, {"type": "join", "room": "side"})
    outbox.take(), bob_box.take()

    def line(room: str, ref: str) -> bytes:
        return json.dumps({"type": "send", "room": room, "text": f"t-{ref}", "ref": ref}).encode()

    lines = deque(
        [line("lobby", "a1"), line("lobby", "a2"), line("lobby", "a3"),
         b'{"type":"send","ref":"bad"}',  # no room: bad_frame, between two runs
         line("side", "b1"), line("side", "b2"),
         line("nowhere", "n1"), line("nowhere", "n2"),  # not joined: an error each
         line("lobby", "c1"),
         b'{"type":"members","room":"lobby","ref":"who"}',  # waits for the writes
         line("lobby", "after")]
    )  # fmt: skip
    session.receive_lines(lines)
    assert session.waiting and list(lines) == [line("lobby", "after")]  # the rest waits
    writes = [write for write, _, _ in committer.queue if write is not None]
    assert [(w.room, [m.text for m in w.messages]) for w in writes] == [
        ("lobby", ["t-a1", "t-a2", "t-a3"]),
        ("side", ["t-b1", "t-b2"]),
        ("lobby", ["t-c1"]),
    ]
    replies = []
    while committer.queue:
        committer.step()
        session.resume()
        replies += outbox.take()
    assert [(f["type"], f.get("ref"), f.get("code")) for f in replies] == [
        ("message", "a1", None), ("message", "a2", None), ("message", "a3", None),
        ("error", "bad", "bad_frame"),
        ("message", "b1", None), ("message", "b2", None),
        ("error", "n1", "not_member"), ("error", "n2", "not_member"),
        ("message", "c1", None),
        ("members", "who", None),
    ]  # fmt: skip
    lobby = [f for f in replies if f["type"] == "message" and f["room"] == "lobby"]
    assert [f["id"] for f in lobby] == [1, 2, 3, 4]
    seen = bob_box.take()
    assert [(f["id"], f["text"]) for f in seen] == [(1, "t-a1"), (2, "t-a2"), (3, "t-a3"),
                                                    (4, "t-c1")]  # fmt: skip
    assert all("ref" not in f for f in seen)
    assert [m.text for m in store.recent("lobby", 10)] == [
        "t-a1", "t-a2", "t-a3", "t-c1"]  # fmt: skip
    session.receive_lines(lines)  # the held line's turn
    assert not lines and len(committer.queue) == 2  # its write and a new barrier


def test_failed_writes_are_answered_unavailable_and_release_the_held_requests_in_order() -> None:
    committer, hub = stepped_hub()
    session, outbox = logged_in(hub)
    bob, bob_box = logged_in(hub, "bob")
    committer.drain()  # the logins' catch-up
    for who in (session, bob):
        send(who, {"type": "join", "room": "lobby"})
    send(session, {"type": "send", "room": "lobby", "text": "kept", "ref": "k"})
    committer.step(), committer.step()  # its write and its barrier
    outbox.take(), bob_box.take()

    lines = deque(json.dumps(frame).encode() for frame in [
        {"type": "send", "room": "lobby", "text": "a", "ref": "s1"},
        {"type": "send", "room": "lobby", "text": "b", "ref": "s2"},  # (one run: one write)
        {"type": "edit", "room": "lobby", "id": 1, "text": "changed", "ref": "e"},
        {"type": "members", "room": "lobby", "ref": "who"},  # held until those are answered
        {"type": "delete", "room": "lobby", "id": 1, "ref": "d"},
        {"type": "dm", "to": "bob", "text": "psst", "ref": "m"},
        {"type": "history", "room": "lobby", "ref": "h"},  # held again
    ])  # fmt: skip
    session.receive_lines(lines)
    full = StoreUnavailable("disk full", "database or disk is full", 5.0)
    replies = []
    while committer.queue:
        write = committer.queue[0][0]
        committer.step(fail=full if write is not None else None)
        session.resume()  # what the transport does when woken, then it reads on
        if not session.waiting:
            session.receive_lines(lines)
        replies += outbox.take()
    assert not lines
    assert [(f["type"], f.get("ref"), f.get("code")) for f in replies] == [
        ("error", "s1", "unavailable"), ("error", "s2", "unavailable"),
        ("error", "e", "unavailable"),
        ("members", "who", None),
        ("error", "d", "unavailable"), ("error", "m", "unavailable"),
        ("history", "h", None),
    ]  # fmt: skip
    errors = [f for f in replies if f["type"] == "error"]
    assert {f["message"] for f in errors} == {NOT_STORED}
    assert all(f["retry_after"] == 5.0 for f in errors)
    assert [(m["id"], m["text"]) for m in replies[-1]["messages"]] == [(1, "kept")]
    assert bob_box.take() == []  # nothing of it reached anyone else
    assert not session.waiting
    send(session, {"type": "send", "room": "lobby", "text": "again", "ref": "s3"})
    committer.step(), committer.step()
    assert outbox.only("message")["id"] == 4  # ids 2 and 3 were taken by the failed run
    assert bob_box.only("message")["text"] == "again"


def test_a_write_that_fails_by_a_bug_is_answered_internal() -> None:
    committer, hub = stepped_hub()
    session, outbox = logged_in(hub)
    committer.drain()
    send(session, {"type": "dm", "to": "bob", "text": "hi", "ref": "m"})
    committer.step(fail=RuntimeError("bug"))
    committer.step()
    error(outbox, "internal", "m")
