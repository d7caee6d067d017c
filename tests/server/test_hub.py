"""Unit tests of the room hub, driven with fake members (no sockets)."""

import itertools
import json
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from securechat.exceptions import ProtocolError
from securechat.protocol.frames import Message
from securechat.server.hub import JOIN_HISTORY, NOT_STORED, RECENT_CACHE, Hub, encoded
from securechat.server.store import SqliteStore
from tests.faults import FaultyStore
from tests.outbox import FakeMember

USERS = {"ann", "bob", "cid", "dee", "root"}

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def make_clock():
    """A clock giving strictly increasing, well-formed timestamps."""
    base = datetime(2026, 11, 26, 2, 20, 28, tzinfo=UTC)
    ticks = itertools.count()

    def clock() -> str:
        moment = base + timedelta(milliseconds=next(ticks))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    return clock


def make_hub(**kwargs) -> Hub:
    kwargs.setdefault("user_exists", lambda user: user in USERS)
    kwargs.setdefault("admins", {"root"})
    kwargs.setdefault("clock", make_clock())
    return Hub(**kwargs)


@pytest.fixture
def hub() -> Hub:
    return make_hub()


def connect(hub: Hub, user: str) -> FakeMember:
    member = FakeMember(user)
    hub.register(member)
    return member


def joined(hub: Hub, member: FakeMember, room: str, ref: str | None = None) -> dict:
    """Join (dropping what the member had received before); return the joined frame."""
    member.take()
    hub.join(member, room, ref)
    return member.only("joined")


def clear(*members: FakeMember) -> None:
    for member in members:
        member.take()


def post(hub: Hub, member: FakeMember, room: str, *texts: str) -> list[int]:
    """Send messages; return their ids (from the sender's own copies)."""
    ids = []
    for text in texts:
        hub.send(member, room, text, None)
        ids.append(member.frames[-1]["id"])
    return ids


def raises(code: str, call, *args, **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        call(*args, **kwargs)
    assert info.value.code == code
    assert info.value.message
    assert not info.value.fatal
    return info.value


def ids_of(frames: list[dict]) -> list[int]:
    return [frame["id"] for frame in frames]


# --- join -------------------------------------------------------------------------------


def test_join_new_room(hub: Hub) -> None:
    ann = connect(hub, "ann")
    frame = joined(hub, ann, "lobby", "j1")
    assert frame == {
        "type": "joined",
        "room": "lobby",
        "members": ["ann"],
        "last_id": 0,
        "history": [],
        "read_id": 0,
        "ref": "j1",
    }
    assert ann.rooms == {"lobby"}


def test_join_without_ref_has_no_ref_field(hub: Hub) -> None:
    assert "ref" not in joined(hub, connect(hub, "ann"), "lobby")


def test_joined_members_are_sorted_users(hub: Hub) -> None:
    for user in ("dee", "ann", "cid"):
        joined(hub, connect(hub, user), "lobby")
    connect(hub, "ann")  # a second connection that has not joined
    bob = connect(hub, "bob")
    assert joined(hub, bob, "lobby")["members"] == ["ann", "bob", "cid", "dee"]


def test_joined_history_is_the_last_50_oldest_first(hub: Hub) -> None:
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    post(hub, ann, "lobby", *(f"m{i}" for i in range(1, 61)))
    bob = connect(hub, "bob")
    frame = joined(hub, bob, "lobby")
    assert JOIN_HISTORY == 50
    assert frame["last_id"] == 60
    history = frame["history"]
    assert ids_of(history) == list(range(11, 61))
    assert [m["text"] for m in history] == [f"m{i}" for i in range(11, 61)]
    first = history[0]
    assert set(first) == {"room", "id", "user", "text", "ts"}
    assert (first["room"], first["user"]) == ("lobby", "ann")
    assert TS_RE.match(first["ts"])


def test_joined_history_shorter_than_50(hub: Hub) -> None:
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    post(hub, ann, "lobby", "a", "b", "c")
    frame = joined(hub, connect(hub, "bob"), "lobby")
    assert (frame["last_id"], ids_of(frame["history"])) == (3, [1, 2, 3])


def test_join_is_idempotent(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    clear(ann)
    post(hub, ann, "lobby", "hello")
    clear(ann, bob)
    again = joined(hub, ann, "lobby", "again")
    assert again["members"] == ["ann", "bob"]
    assert again["last_id"] == 1
    assert ids_of(again["history"]) == [1]
    assert again["ref"] == "again"
    assert bob.take() == []  # no second presence
    hub.send(ann, "lobby", "once", None)
    assert len(ann.take()) == 1  # still one delivery per event
    assert len(bob.take()) == 1
    hub.leave(ann, "lobby", None)
    assert ann.rooms == set()
    assert bob.only("presence")["event"] == "leave"


# --- presence ---------------------------------------------------------------------------


def test_presence_goes_to_other_connections_only(hub: Hub) -> None:
    ann, bob, cid = connect(hub, "ann"), connect(hub, "bob"), connect(hub, "cid")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    presence = ann.only("presence")
    assert presence["room"] == "lobby"
    assert presence["user"] == "bob"
    assert presence["event"] == "join"
    assert TS_RE.match(presence["ts"])
    assert set(presence) == {"type", "room", "user", "event", "ts"}
    assert cid.take() == []  # not in the room
    hub.leave(bob, "lobby", "bye")
    assert bob.only("left") == {"type": "left", "room": "lobby", "ref": "bye"}
    leave = ann.only("presence")
    assert (leave["user"], leave["event"]) == ("bob", "leave")
    assert cid.take() == []


def test_presence_only_for_first_and_last_connection_of_a_user(hub: Hub) -> None:
    bob = connect(hub, "bob")
    ann1, ann2 = connect(hub, "ann"), connect(hub, "ann")
    joined(hub, bob, "lobby")
    joined(hub, ann1, "lobby")
    assert bob.only("presence")["event"] == "join"
    frame = joined(hub, ann2, "lobby")
    assert frame["members"] == ["ann", "bob"]
    assert bob.take() == []  # ann was already in
    assert ann1.take() == []  # no presence about oneself
    hub.leave(ann1, "lobby", None)
    assert ann1.only("left")
    assert bob.take() == []  # ann is still in through ann2
    assert ann2.take() == []
    hub.leave(ann2, "lobby", None)
    assert ann2.only("left")
    presence = bob.only("presence")
    assert (presence["user"], presence["event"]) == ("ann", "leave")
    assert ann1.take() == []


def test_second_connection_of_a_user_gets_presence_of_others(hub: Hub) -> None:
    ann1, ann2 = connect(hub, "ann"), connect(hub, "ann")
    joined(hub, ann1, "lobby")
    joined(hub, ann2, "lobby")
    bob = connect(hub, "bob")
    joined(hub, bob, "lobby")
    assert ann1.only("presence")["user"] == "bob"
    assert ann2.only("presence")["user"] == "bob"


# --- leave ------------------------------------------------------------------------------


def test_leave_replies_left_and_stops_events(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    clear(ann)
    hub.leave(bob, "lobby", None)
    assert bob.only("left") == {"type": "left", "room": "lobby"}
    assert bob.rooms == set()
    clear(ann)
    post(hub, ann, "lobby", "after")
    assert bob.take() == []


def test_leave_room_not_joined(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    raises("not_member", hub.leave, ann, "nowhere", None)
    joined(hub, bob, "lobby")
    raises("not_member", hub.leave, ann, "lobby", None)
    hub.leave(bob, "lobby", None)
    raises("not_member", hub.leave, bob, "lobby", None)  # twice
    assert ann.take() == []


def test_rejoin_after_leave(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    post(hub, ann, "lobby", "one")
    hub.leave(bob, "lobby", None)
    post(hub, ann, "lobby", "two")
    clear(ann, bob)
    frame = joined(hub, bob, "lobby")
    assert frame["last_id"] == 2
    assert [m["text"] for m in frame["history"]] == ["one", "two"]
    assert ann.only("presence")["event"] == "join"


# --- send -------------------------------------------------------------------------------


def test_send_ids_count_up_per_room(hub: Hub) -> None:
    ann = connect(hub, "ann")
    joined(hub, ann, "one")
    joined(hub, ann, "two")
    assert post(hub, ann, "one", "a", "b", "c") == [1, 2, 3]
    assert post(hub, ann, "two", "x") == [1]
    assert post(hub, ann, "one", "d") == [4]
    assert post(hub, ann, "two", "y", "z") == [2, 3]


def test_send_message_frame(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    clear(ann, bob)
    hub.send(ann, "lobby", "hello\nworld", "s1")
    own, other = ann.only("message"), bob.only("message")
    assert own["ref"] == "s1"
    assert "ref" not in other
    assert TS_RE.match(other["ts"])
    assert other == {
        "type": "message",
        "room": "lobby",
        "id": 1,
        "user": "ann",
        "text": "hello\nworld",
        "ts": other["ts"],
    }
    assert {k: v for k, v in own.items() if k != "ref"} == other


@pytest.mark.parametrize("ref", ['q"uo\\te', "é✓", "\u2028", "x" * 64, "\x01"])
def test_the_senders_copy_is_the_frame_with_its_ref_whatever_the_ref(ref: str) -> None:
    frame = Message(room="lobby", id=7, user="ann", text='a "text"\n', ts="t")
    data, own = encoded(frame, ref)
    assert data == frame.encode()
    assert own.endswith(b"}\n") and own.count(b"\n") == 1
    assert json.loads(own) == json.loads(frame.model_copy(update={"ref": ref}).encode())
    assert encoded(frame, None) == (data, data)


def test_send_without_ref_gives_everyone_the_same_bytes(hub: Hub) -> None:
    members = [connect(hub, user) for user in ("ann", "bob", "cid")]
    for member in members:
        joined(hub, member, "lobby")
    for member in members:
        member.raw.clear()
        member.take()
    for i in range(10):
        hub.send(members[i % 3], "lobby", f"t{i}", None)
    assert members[0].raw == members[1].raw == members[2].raw
    assert len(members[0].raw) == 10


def test_send_with_refs_everyone_sees_the_same_order(hub: Hub) -> None:
    members = [connect(hub, user) for user in ("ann", "bob", "cid")]
    for member in members:
        joined(hub, member, "lobby")
    clear(*members)
    for i in range(12):
        hub.send(members[i % 3], "lobby", f"t{i}", f"r{i}")
    seen = []
    for member in members:
        frames = member.take()
        assert ids_of(frames) == list(range(1, 13))
        for i, frame in enumerate(frames):
            mine = members[i % 3] is member
            assert frame.get("ref") == (f"r{i}" if mine else None)
        seen.append([(f["id"], f["user"], f["text"], f["ts"]) for f in frames])
    assert seen[0] == seen[1] == seen[2]


def test_send_reaches_every_connection_of_a_member_user(hub: Hub) -> None:
    ann1, ann2, bob = connect(hub, "ann"), connect(hub, "ann"), connect(hub, "bob")
    for member in (ann1, ann2, bob):
        joined(hub, member, "lobby")
    clear(ann1, ann2, bob)
    hub.send(ann1, "lobby", "hi", "mine")
    assert ann1.only("message")["ref"] == "mine"
    assert "ref" not in ann2.only("message")
    assert "ref" not in bob.only("message")


def test_send_not_delivered_to_connections_of_the_user_outside_the_room(hub: Hub) -> None:
    ann1, ann2 = connect(hub, "ann"), connect(hub, "ann")
    joined(hub, ann1, "lobby")
    hub.send(ann1, "lobby", "hi", None)
    assert ann2.take() == []
    raises("not_member", hub.send, ann2, "lobby", "me too", None)


# --- edit -------------------------------------------------------------------------------


def test_edit_by_author(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    post(hub, ann, "lobby", "helo", "other")
    clear(ann, bob)
    hub.edit(ann, "lobby", 1, "hello", "e1")
    own, other = ann.only("edited"), bob.only("edited")
    assert own["ref"] == "e1"
    assert "ref" not in other
    assert other == {
        "type": "edited",
        "room": "lobby",
        "id": 1,
        "user": "ann",
        "text": "hello",
        "ts": other["ts"],
    }
    hub.history(bob, "lobby", before=None, after=None, limit=50, ref=None)
    first, second = bob.only("history")["messages"]
    assert first["text"] == "hello"
    assert first["edited_ts"] == other["ts"]
    assert first["ts"] < first["edited_ts"]
    assert "edited_ts" not in second
    cid = connect(hub, "cid")
    record = joined(hub, cid, "lobby")["history"][0]
    assert (record["text"], record["edited_ts"]) == ("hello", other["ts"])


def test_edit_twice_keeps_latest(hub: Hub) -> None:
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    post(hub, ann, "lobby", "v1")
    hub.edit(ann, "lobby", 1, "v2", None)
    hub.edit(ann, "lobby", 1, "v3", None)
    last_ts = ann.take()[-1]["ts"]
    hub.history(ann, "lobby", before=None, after=None, limit=5, ref=None)
    (record,) = ann.only("history")["messages"]
    assert (record["text"], record["edited_ts"]) == ("v3", last_ts)


def test_edit_by_someone_else_forbidden(hub: Hub) -> None:
    ann, bob, root = connect(hub, "ann"), connect(hub, "bob"), connect(hub, "root")
    for member in (ann, bob, root):
        joined(hub, member, "lobby")
    post(hub, ann, "lobby", "mine")
    clear(ann, bob, root)
    raises("forbidden", hub.edit, bob, "lobby", 1, "yours now", None)
    raises("forbidden", hub.edit, root, "lobby", 1, "admins cannot edit", None)
    assert ann.take() == bob.take() == root.take() == []


def test_edit_unknown_or_deleted_not_found(hub: Hub) -> None:
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    raises("not_found", hub.edit, ann, "lobby", 1, "x", None)  # empty room
    post(hub, ann, "lobby", "a", "b")
    raises("not_found", hub.edit, ann, "lobby", 3, "x", None)
    raises("not_found", hub.edit, ann, "lobby", 10**30, "x", None)
    hub.delete(ann, "lobby", 2, None)
    clear(ann)
    raises("not_found", hub.edit, ann, "lobby", 2, "x", None)
    assert ann.take() == []


def test_edit_by_another_connection_of_the_author(hub: Hub) -> None:
    ann1, ann2 = connect(hub, "ann"), connect(hub, "ann")
    joined(hub, ann1, "lobby")
    joined(hub, ann2, "lobby")
    post(hub, ann1, "lobby", "typo")
    clear(ann1, ann2)
    hub.edit(ann2, "lobby", 1, "fixed", "e")
    assert "ref" not in ann1.only("edited")
    assert ann2.only("edited")["ref"] == "e"


# --- delete -----------------------------------------------------------------------------


def test_delete_by_author(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    post(hub, ann, "lobby", "one", "two", "three")
    clear(ann, bob)
    hub.delete(ann, "lobby", 2, "d1")
    own, other = ann.only("deleted"), bob.only("deleted")
    assert own["ref"] == "d1"
    assert other == {"type": "deleted", "room": "lobby", "id": 2, "by": "ann", "ts": other["ts"]}
    assert TS_RE.match(other["ts"])
    hub.history(bob, "lobby", before=None, after=None, limit=50, ref=None)
    assert ids_of(bob.only("history")["messages"]) == [1, 3]
    frame = joined(hub, connect(hub, "cid"), "lobby")
    assert ids_of(frame["history"]) == [1, 3]
    assert frame["last_id"] == 3


def test_delete_by_admin(hub: Hub) -> None:
    ann, root = connect(hub, "ann"), connect(hub, "root")
    joined(hub, ann, "lobby")
    joined(hub, root, "lobby")
    post(hub, ann, "lobby", "spam")
    clear(ann, root)
    hub.delete(root, "lobby", 1, None)
    assert ann.only("deleted")["by"] == "root"
    assert root.only("deleted")["by"] == "root"


def test_delete_by_someone_else_forbidden(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    post(hub, ann, "lobby", "mine")
    clear(ann, bob)
    raises("forbidden", hub.delete, bob, "lobby", 1, None)
    assert ann.take() == bob.take() == []
    hub.history(ann, "lobby", before=None, after=None, limit=5, ref=None)
    assert ids_of(ann.only("history")["messages"]) == [1]


def test_delete_unknown_or_already_deleted_not_found(hub: Hub) -> None:
    ann, root = connect(hub, "ann"), connect(hub, "root")
    joined(hub, ann, "lobby")
    joined(hub, root, "lobby")
    raises("not_found", hub.delete, ann, "lobby", 1, None)
    post(hub, ann, "lobby", "x")
    raises("not_found", hub.delete, ann, "lobby", 2, None)
    hub.delete(ann, "lobby", 1, None)
    clear(ann, root)
    raises("not_found", hub.delete, ann, "lobby", 1, None)
    raises("not_found", hub.delete, root, "lobby", 1, None)
    assert ann.take() == root.take() == []


def test_deleted_ids_are_not_reused(hub: Hub) -> None:
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    post(hub, ann, "lobby", "a", "b")
    hub.delete(ann, "lobby", 2, None)
    assert post(hub, ann, "lobby", "c") == [3]
    hub.delete(ann, "lobby", 3, None)
    hub.delete(ann, "lobby", 1, None)
    hub.leave(ann, "lobby", None)
    frame = joined(hub, ann, "lobby")
    assert (frame["last_id"], frame["history"]) == (3, [])
    assert post(hub, ann, "lobby", "d") == [4]


def test_ids_not_reused_after_the_room_empties() -> None:
    hub = make_hub()
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    assert post(hub, ann, "lobby", "a") == [1]
    hub.delete(ann, "lobby", 1, None)
    hub.leave(ann, "lobby", None)
    assert joined(hub, ann, "lobby")["last_id"] == 1
    assert post(hub, ann, "lobby", "b") == [2]


# --- storage failures -------------------------------------------------------------------


@pytest.fixture
def faulty() -> FaultyStore:
    return FaultyStore(":memory:")


def unavailable(member: FakeMember, *refs: str | None) -> None:
    """``member`` got exactly one ``unavailable`` for each of ``refs``, in order."""
    frames = member.take()
    assert [(f["type"], f["code"], f.get("ref")) for f in frames] == [
        ("error", "unavailable", ref) for ref in refs
    ], frames
    assert all(f["message"] == NOT_STORED and f["retry_after"] > 0 for f in frames)


def test_a_send_that_was_not_stored_is_answered_to_its_sender_only(faulty) -> None:
    hub = make_hub(store=faulty)
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby"), joined(hub, bob, "lobby")
    post(hub, ann, "lobby", "one")
    clear(ann, bob)
    faulty.fail("disk full")
    hub.send_run(ann, "lobby", [("two", "r2"), ("three", "r3")])
    hub.send(ann, "lobby", "four", "r4")
    unavailable(ann, "r2", "r3", "r4")
    assert bob.take() == []
    frame = joined(hub, connect(hub, "cid"), "lobby")  # reads work, from what is committed
    assert (frame["last_id"], ids_of(frame["history"])) == (1, [1])
    clear(ann, bob)  # (cid's presence)
    faulty.heal()
    assert post(hub, ann, "lobby", "five") == [5]  # ids 2-4 are a gap, never reused
    assert ids_of(bob.take()) == [5]
    clear(ann)
    assert history(hub, ann) == [1, 5]
    assert [m.id for m in faulty.recent("lobby", 10)] == [1, 5]


def test_the_recent_cache_finds_messages_across_a_gap(faulty) -> None:
    hub = make_hub(store=faulty)
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    post(hub, ann, "lobby", "one", "two")
    faulty.fail("I/O error")
    hub.send(ann, "lobby", "lost", None)
    faulty.heal()
    post(hub, ann, "lobby", "four", "five")
    clear(ann)
    hub.edit(ann, "lobby", 5, "five, edited", None)
    hub.delete(ann, "lobby", 4, None)
    raises("not_found", hub.edit, ann, "lobby", 3, "never stored", None)
    frame = joined(hub, ann, "lobby")
    assert [(m["id"], m["text"]) for m in frame["history"]] == [
        (1, "one"), (2, "two"), (5, "five, edited")]  # fmt: skip


def test_an_edit_or_delete_that_was_not_stored_changes_nothing(faulty) -> None:
    hub = make_hub(store=faulty)
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby"), joined(hub, bob, "lobby")
    post(hub, ann, "lobby", "one")
    clear(ann, bob)
    faulty.fail("read-only")
    hub.edit(ann, "lobby", 1, "changed", "e")
    hub.delete(ann, "lobby", 1, "d")
    unavailable(ann, "e", "d")
    assert bob.take() == []
    faulty.heal()
    frame = joined(hub, connect(hub, "cid"), "lobby")
    assert [(m["id"], m["text"], "edited_ts" in m) for m in frame["history"]] == [
        (1, "one", False)]  # fmt: skip
    clear(ann)
    hub.delete(ann, "lobby", 1, "d2")  # not stuck as "being deleted"
    assert ann.only("deleted")["ref"] == "d2"


def test_a_dm_that_was_not_stored_reaches_nobody(faulty) -> None:
    hub = make_hub(store=faulty)
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    faulty.fail("database locked")
    hub.dm(ann, "bob", "psst", "m")
    frame = ann.only("error")
    assert (frame["code"], frame["ref"], frame["retry_after"]) == ("unavailable", "m", 1.0)
    assert bob.take() == []
    faulty.heal()
    hub.dm(ann, "bob", "again", "m2")
    assert (ann.only("dm")["id"], bob.only("dm")["text"]) == (2, "again")
    assert [dm.text for dm in faulty.dm_page("ann", "bob", before=None, limit=10)] == ["again"]


# --- history ----------------------------------------------------------------------------


def history(hub: Hub, member: FakeMember, room: str = "lobby", **kwargs) -> list[int]:
    kwargs.setdefault("before", None)
    kwargs.setdefault("after", None)
    kwargs.setdefault("limit", 50)
    kwargs.setdefault("ref", None)
    hub.history(member, room, **kwargs)
    frame = member.only("history")
    assert frame["room"] == room
    return ids_of(frame["messages"])


@pytest.fixture
def sixty(hub: Hub) -> FakeMember:
    """A member of 'lobby', which holds messages 1..60 (the member's inbox cleared)."""
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    post(hub, ann, "lobby", *(f"m{i}" for i in range(1, 61)))
    clear(ann)
    return ann


def test_history_of_an_empty_room(hub: Hub) -> None:
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    hub.history(ann, "lobby", before=None, after=None, limit=50, ref="h")
    assert ann.only("history") == {"type": "history", "room": "lobby", "messages": [], "ref": "h"}
    assert history(hub, ann, after=0) == []
    assert history(hub, ann, before=1) == []


def test_history_default_is_newest_50_oldest_first(hub: Hub, sixty: FakeMember) -> None:
    assert history(hub, sixty) == list(range(11, 61))


def test_history_records(hub: Hub, sixty: FakeMember) -> None:
    hub.history(sixty, "lobby", before=None, after=None, limit=1, ref=None)
    (record,) = sixty.only("history")["messages"]
    assert record == {"room": "lobby", "id": 60, "user": "ann", "text": "m60", "ts": record["ts"]}


def test_history_before(hub: Hub, sixty: FakeMember) -> None:
    assert history(hub, sixty, before=1) == []
    assert history(hub, sixty, before=2) == [1]
    assert history(hub, sixty, before=10, limit=3) == [7, 8, 9]
    assert history(hub, sixty, before=11) == list(range(1, 11))
    assert history(hub, sixty, before=61, limit=2) == [59, 60]
    assert history(hub, sixty, before=1000, limit=2) == [59, 60]


def test_history_after(hub: Hub, sixty: FakeMember) -> None:
    assert history(hub, sixty, after=0) == list(range(1, 51))
    assert history(hub, sixty, after=0, limit=3) == [1, 2, 3]
    assert history(hub, sixty, after=5, limit=3) == [6, 7, 8]
    assert history(hub, sixty, after=58) == [59, 60]
    assert history(hub, sixty, after=60) == []
    assert history(hub, sixty, after=1000) == []


def test_history_limit_bounds(hub: Hub, sixty: FakeMember) -> None:
    assert history(hub, sixty, limit=1) == [60]
    assert history(hub, sixty, limit=200) == list(range(1, 61))
    post(hub, sixty, "lobby", *(f"n{i}" for i in range(190)))
    clear(sixty)
    assert history(hub, sixty, limit=200) == list(range(51, 251))
    assert history(hub, sixty, after=0, limit=200) == list(range(1, 201))


def test_history_skips_deleted(hub: Hub, sixty: FakeMember) -> None:
    for message_id in (8, 9, 58):
        hub.delete(sixty, "lobby", message_id, None)
    clear(sixty)
    assert history(hub, sixty, before=11, limit=3) == [6, 7, 10]
    assert history(hub, sixty, after=6, limit=3) == [7, 10, 11]
    assert history(hub, sixty, limit=3) == [57, 59, 60]


def test_history_ref(hub: Hub, sixty: FakeMember) -> None:
    hub.history(sixty, "lobby", before=None, after=None, limit=1, ref="page")
    assert sixty.only("history")["ref"] == "page"


def test_history_beyond_the_recent_cache() -> None:
    hub = make_hub()
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    total = RECENT_CACHE + 60
    post(hub, ann, "lobby", *(f"m{i}" for i in range(1, total + 1)))
    clear(ann)
    assert history(hub, ann, after=0, limit=3) == [1, 2, 3]
    assert history(hub, ann, before=4) == [1, 2, 3]
    hub.edit(ann, "lobby", 2, "old but edited", None)  # not in the cache: from the store
    hub.delete(ann, "lobby", 3, None)
    raises("not_found", hub.delete, ann, "lobby", 3, None)
    clear(ann)
    assert history(hub, ann, after=0, limit=3) == [1, 2, 4]
    for message_id in range(total - RECENT_CACHE + 1, total + 1):  # all cached ones go
        hub.delete(ann, "lobby", message_id, None)
    frame = joined(hub, connect(hub, "bob"), "lobby")
    expected = list(range(total - RECENT_CACHE - 49, total - RECENT_CACHE + 1))
    assert (frame["last_id"], ids_of(frame["history"])) == (total, expected)


def test_a_new_hub_on_the_same_store_keeps_counters_and_history() -> None:
    store = SqliteStore(":memory:")
    hub = make_hub(store=store)
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    post(hub, ann, "lobby", "a", "b")
    hub.edit(ann, "lobby", 1, "a2", None)
    hub.delete(ann, "lobby", 2, None)
    restarted = make_hub(store=store)
    bob = connect(restarted, "bob")
    frame = joined(restarted, bob, "lobby")
    assert frame["last_id"] == 2
    assert [(m["id"], m["text"]) for m in frame["history"]] == [(1, "a2")]
    assert "edited_ts" in frame["history"][0]
    assert post(restarted, bob, "lobby", "c") == [3]


# --- members and rooms ------------------------------------------------------------------


def test_members_reply(hub: Hub) -> None:
    for user in ("dee", "bob", "ann"):
        joined(hub, connect(hub, user), "lobby")
    ann2 = connect(hub, "ann")
    joined(hub, ann2, "lobby")
    hub.members(ann2, "lobby", "m")
    assert ann2.only("members") == {
        "type": "members",
        "room": "lobby",
        "members": ["ann", "bob", "dee"],
        "ref": "m",
    }


def rooms_reply(hub: Hub, ref: str | None = None) -> dict:
    probe = FakeMember("probe")
    hub.rooms(probe, ref)
    return probe.only("rooms")


def test_rooms_reply(hub: Hub) -> None:
    assert rooms_reply(hub, "r") == {"type": "rooms", "rooms": [], "ref": "r"}
    ann1, ann2, bob = connect(hub, "ann"), connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann1, "zoo")
    joined(hub, ann2, "zoo")
    joined(hub, bob, "zoo")
    joined(hub, ann1, "attic")
    joined(hub, bob, "middle")
    assert rooms_reply(hub)["rooms"] == [
        {"name": "attic", "members": 1},
        {"name": "middle", "members": 1},
        {"name": "zoo", "members": 2},  # users, not connections
    ]
    assert "ref" not in rooms_reply(hub)


def test_room_with_history_but_no_members_is_listed(hub: Hub) -> None:
    ann = connect(hub, "ann")
    joined(hub, ann, "kept")
    post(hub, ann, "kept", "remember me")
    hub.leave(ann, "kept", None)
    assert rooms_reply(hub)["rooms"] == [{"name": "kept", "members": 0}]
    frame = joined(hub, ann, "kept")
    assert (frame["last_id"], [m["text"] for m in frame["history"]]) == (1, ["remember me"])


def test_room_without_members_or_history_disappears(hub: Hub) -> None:
    ann1, ann2 = connect(hub, "ann"), connect(hub, "ann")
    joined(hub, ann1, "brief")
    joined(hub, ann2, "brief")
    hub.leave(ann1, "brief", None)
    assert rooms_reply(hub)["rooms"] == [{"name": "brief", "members": 1}]
    hub.leave(ann2, "brief", None)
    assert rooms_reply(hub)["rooms"] == []
    joined(hub, ann1, "brief")
    assert rooms_reply(hub)["rooms"] == [{"name": "brief", "members": 1}]
    hub.disconnect(ann1)
    assert rooms_reply(hub)["rooms"] == []


# --- dm ---------------------------------------------------------------------------------


def test_dm_to_every_connection_of_recipient_and_sender(hub: Hub) -> None:
    ann1, ann2 = connect(hub, "ann"), connect(hub, "ann")
    bob1, bob2 = connect(hub, "bob"), connect(hub, "bob")
    cid = connect(hub, "cid")
    hub.dm(ann1, "bob", "psst", "d1")
    sent = ann1.only("dm")
    assert sent["ref"] == "d1"
    others = [ann2.only("dm"), bob1.only("dm"), bob2.only("dm")]
    assert TS_RE.match(sent["ts"])
    expected = {"type": "dm", "id": 1, "from": "ann", "to": "bob", "text": "psst", "ts": sent["ts"]}
    assert others == [expected] * 3
    assert {k: v for k, v in sent.items() if k != "ref"} == expected
    assert cid.take() == []
    assert ann2.raw[-1] == bob1.raw[-1] == bob2.raw[-1]


def test_dm_without_ref_same_bytes_for_all(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    hub.dm(ann, "bob", "hi", None)
    assert ann.raw == bob.raw
    assert "ref" not in ann.only("dm")


def test_dm_ids_increase(hub: Hub) -> None:
    ann, bob, cid = connect(hub, "ann"), connect(hub, "bob"), connect(hub, "cid")
    hub.dm(ann, "bob", "1", None)
    hub.dm(bob, "ann", "2", None)
    hub.dm(cid, "ann", "3", None)
    hub.dm(ann, "cid", "4", None)
    assert ids_of(ann.take()) == [1, 2, 3, 4]
    assert ids_of(bob.take()) == [1, 2]
    assert ids_of(cid.take()) == [3, 4]


def test_dm_unknown_user(hub: Hub) -> None:
    ann = connect(hub, "ann")
    raises("no_such_user", hub.dm, ann, "nobody", "hello?", None)
    assert ann.take() == []
    hub.dm(ann, "bob", "first", None)
    assert ann.only("dm")["id"] == 1  # the failure used no id


def test_dm_to_existing_user_offline_reaches_sender(hub: Hub) -> None:
    ann = connect(hub, "ann")
    hub.dm(ann, "dee", "when you are back", "x")
    frame = ann.only("dm")
    assert (frame["to"], frame["ref"]) == ("dee", "x")


def test_dm_to_self(hub: Hub) -> None:
    ann1, ann2 = connect(hub, "ann"), connect(hub, "ann")
    hub.dm(ann1, "ann", "note", "n")
    assert ann1.only("dm")["ref"] == "n"
    assert "ref" not in ann2.only("dm")


# --- dm catch-up ------------------------------------------------------------------------


class StepCommitter:
    """A committer that commits when the test says: one entry, or a batch as the
    GroupCommitter does (every write of the batch first, then the callbacks in order)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.queue: list[tuple[object, object]] = []

    def submit(self, write, then=None, failed=None) -> None:
        self.queue.append((write, then))

    def run(self, *, batch: bool) -> None:
        """Until nothing is queued (callbacks may queue more)."""
        while self.queue:
            jobs = self.queue if batch else self.queue[:1]
            self.queue = [] if batch else self.queue[1:]
            writes = [write for write, _ in jobs if write is not None]
            if writes:
                self.store.write(writes)  # type: ignore[arg-type]
            for _, then in jobs:
                if then is not None:
                    then()  # type: ignore[operator]


def stepped_hub() -> tuple[Hub, StepCommitter]:
    store = SqliteStore(":memory:")
    committer = StepCommitter(store)
    return make_hub(store=store, committer=committer), committer


def dms(frames: list[dict]) -> list[tuple[int, str, str, str]]:
    return [(f["id"], f["from"], f["to"], f["text"]) for f in frames if f["type"] == "dm"]


def test_dm_after_gets_exactly_the_later_dms_to_or_from_the_user_in_order(hub: Hub) -> None:
    ann, bob, cid = connect(hub, "ann"), connect(hub, "bob"), connect(hub, "cid")
    for sender, to, text in [(ann, "bob", "1"), (bob, "cid", "2"), (cid, "ann", "3"),
                             (ann, "bob", "4"), (bob, "bob", "5"), (cid, "bob", "6"),
                             (ann, "cid", "7")]:  # fmt: skip
        hub.dm(sender, to, text, None)
    clear(ann, bob, cid)
    again = FakeMember("bob")
    hub.register(again, dm_after=1)
    assert dms(again.take()) == [(2, "bob", "cid", "2"), (4, "ann", "bob", "4"),
                                 (5, "bob", "bob", "5"), (6, "cid", "bob", "6")]  # fmt: skip
    everything = FakeMember("bob")
    hub.register(everything, dm_after=0)
    assert [dm[0] for dm in dms(everything.take())] == [1, 2, 4, 5, 6]
    latest = FakeMember("bob")
    hub.register(latest, dm_after=6)
    assert latest.take() == []
    hub.dm(cid, "bob", "live", None)  # then live, to each connection once
    for member in (bob, again, everything, latest):
        assert dms(member.take()) == [(8, "cid", "bob", "live")]
    assert ann.take() == []


def test_dm_after_beyond_the_newest_dm_does_not_hide_the_next_ones(hub: Hub) -> None:
    ann = connect(hub, "ann")
    hub.dm(ann, "bob", "1", None)
    bob = FakeMember("bob")
    hub.register(bob, dm_after=500)  # e.g. a client of a server whose data was replaced
    assert bob.take() == []
    hub.dm(ann, "bob", "2", None)
    assert [dm[0] for dm in dms(bob.take())] == [2]


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "group-commit"])
def test_catch_up_is_not_overtaken_or_repeated_by_dms_committed_meanwhile(batch: bool) -> None:
    hub, committer = stepped_hub()
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    for n in range(1, 6):
        hub.dm(ann, "bob", f"m{n}", None)
    committer.run(batch=batch)
    clear(ann, bob)
    # DM 6 is submitted before the new connection logs in and committed after: its
    # delivery runs before the catch-up. DMs 7 and 8 come after the login.
    hub.dm(ann, "bob", "m6", None)
    again = FakeMember("bob")
    hub.register(again, dm_after=2)
    hub.dm(ann, "bob", "m7", None)
    hub.dm(bob, "ann", "m8", "mine")
    hub.dm(again, "ann", "m9", "its own")  # its reply: in id order, with its ref
    passed: list[int] = []
    hub.after_commits(lambda: passed.append(len(again.queue)), again)
    assert again.take() == []  # nothing before its commit
    committer.run(batch=batch)
    assert passed and passed[0] > 0  # the barrier passed once the reply was queued
    frames = again.take()
    assert [(dm[0], dm[3]) for dm in dms(frames)] == [(n, f"m{n}") for n in range(3, 10)]
    assert [frame.get("ref") for frame in frames][-2:] == [None, "its own"]
    live = bob.take()
    assert [dm[0] for dm in dms(live)] == [6, 7, 8, 9]  # the live connection: once each
    assert live[2]["ref"] == "mine" and "ref" not in live[3]


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "group-commit"])
def test_login_without_dm_after_is_not_overtaken_either(batch: bool) -> None:
    """A DM committed between the login and its catch-up no longer hides the DMs before
    it: the catch-up starts from the delivery marker, and the DM comes after them."""
    hub, committer = stepped_hub()
    ann = connect(hub, "ann")
    hub.dm(ann, "bob", "waiting 1", None)
    hub.dm(ann, "bob", "waiting 2", None)
    committer.run(batch=batch)
    hub.dm(ann, "bob", "in flight", None)
    bob = FakeMember("bob")
    hub.register(bob)
    committer.run(batch=batch)
    assert [dm[3] for dm in dms(bob.take())] == ["waiting 1", "waiting 2", "in flight"]


def test_catch_up_moves_the_delivery_marker(hub: Hub) -> None:
    ann = connect(hub, "ann")
    for n in (1, 2, 3):
        hub.dm(ann, "bob", f"m{n}", None)
    exact = FakeMember("bob")
    hub.register(exact, dm_after=1)
    assert [dm[0] for dm in dms(exact.take())] == [2, 3]
    hub.disconnect(exact)
    hub.dm(ann, "bob", "m4", None)
    later = FakeMember("bob")
    hub.register(later)  # without dm_after: only what no connection was sent
    assert [dm[0] for dm in dms(later.take())] == [4]
    assert hub.store.dm_state()[1]["bob"] == 4


def test_long_catch_up_goes_a_page_at_a_time_and_live_dms_wait_their_turn(hub: Hub) -> None:
    ann = connect(hub, "ann")
    for n in range(1, 41):
        hub.dm(ann, "bob", f"m{n}", None)
    bob = FakeMember("bob")
    bob.max_frames = 12  # a page is a quarter: 3 frames
    hub.register(bob, dm_after=0)
    assert len(bob.queue) == 3 and not bob.overflow
    hub.dm(ann, "bob", "live 1", None)  # committed now; sent after the catch-up
    got = [json.loads(line) for line in bob.next_chunk(1 << 20).splitlines()]
    assert [f["id"] for f in got] == [1, 2, 3]
    assert len(bob.queue) == 3  # the next page, read once the first was taken
    hub.dm(ann, "bob", "live 2", None)
    rest = bob.take()
    assert not bob.overflow
    assert [f["id"] for f in got + rest] == list(range(1, 43))
    assert [f["text"] for f in rest[-2:]] == ["live 1", "live 2"]
    hub.dm(ann, "bob", "live 3", None)
    assert [f["text"] for f in bob.take()] == ["live 3"]


def test_catch_up_pages_are_bounded_in_bytes_too(hub: Hub) -> None:
    ann = connect(hub, "ann")
    big = "\u20ac" * 4000
    for n in range(1, 6):
        hub.dm(ann, "bob", f"{n} {big}", None)
    bob = FakeMember("bob")
    bob.max_bytes = 4 * 13_000  # a page: one DM of about 12 KB
    hub.register(bob, dm_after=0)
    assert len(bob.queue) == 1
    assert [f["id"] for f in bob.take()] == [1, 2, 3, 4, 5]
    assert not bob.overflow


def test_own_dm_during_a_catch_up_keeps_its_place_and_the_order_of_replies(hub: Hub) -> None:
    ann = connect(hub, "ann")
    for n in range(1, 10):
        hub.dm(ann, "bob", f"m{n}", None)
    bob = FakeMember("bob")
    bob.max_frames = 8  # pages of 2
    hub.register(bob, dm_after=0)
    passed: list[bool] = []  # at each write barrier: was the reply queued before it?

    def barrier() -> None:
        passed.append(any(b'"ref":"mine"' in frame for frame in bob.queue))

    clear(ann)
    hub.dm(bob, "ann", "my own", "mine")  # id 10, a reply due after 1-9
    hub.after_commits(barrier, bob)
    assert passed == [] and b'"ref"' not in b"".join(bob.queue)
    assert ann.only("dm")["id"] == 10  # others get it at once
    frames = bob.take()
    assert [f["id"] for f in frames] == list(range(1, 11))
    assert frames[-1]["ref"] == "mine" and "ref" not in frames[-2]
    assert passed == [True]
    hub.after_commits(barrier, bob)  # nothing waits any more: at once
    assert passed == [True, False]


def test_disconnect_during_a_catch_up_lets_waiting_barriers_pass(hub: Hub) -> None:
    ann = connect(hub, "ann")
    for n in range(1, 10):
        hub.dm(ann, "bob", f"m{n}", None)
    bob = FakeMember("bob")
    bob.max_frames = 8
    hub.register(bob, dm_after=0)
    hub.dm(bob, "ann", "my own", "mine")
    passed: list[str] = []
    hub.after_commits(lambda: passed.append("passed"), bob)
    assert passed == []
    hub.disconnect(bob)
    assert passed == ["passed"]
    hub.dm(ann, "bob", "after", None)  # a gone connection is not looked at
    assert bob.queue and all(b"after" not in frame for frame in bob.queue)


# --- disconnect -------------------------------------------------------------------------


def test_disconnect_leaves_every_room(hub: Hub) -> None:
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    for room in ("a", "b", "c"):
        joined(hub, ann, room)
    joined(hub, bob, "a")
    joined(hub, bob, "c")
    clear(ann, bob)
    hub.disconnect(ann)
    assert ann.rooms == set()
    assert ann.take() == []  # no left frames to a gone connection
    frames = bob.take()
    assert [(f["type"], f["room"], f["user"], f["event"]) for f in frames] == [
        ("presence", "a", "ann", "leave"),
        ("presence", "c", "ann", "leave"),
    ]
    assert hub.online_users() == ["bob"]
    assert rooms_reply(hub)["rooms"] == [{"name": "a", "members": 1}, {"name": "c", "members": 1}]
    hub.disconnect(ann)  # idempotent
    assert ann.take() == bob.take() == []
    assert hub.online_users() == ["bob"]


def test_disconnect_one_of_two_connections(hub: Hub) -> None:
    ann1, ann2, bob = connect(hub, "ann"), connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann1, "lobby")
    joined(hub, ann2, "lobby")
    joined(hub, bob, "lobby")
    clear(ann1, ann2, bob)
    hub.disconnect(ann1)
    assert bob.take() == ann2.take() == []
    assert hub.online_users() == ["ann", "bob"]
    hub.dm(bob, "ann", "still there?", None)
    assert ann1.take() == []
    assert ann2.only("dm")["text"] == "still there?"
    hub.disconnect(ann2)
    assert bob.take()[-1]["event"] == "leave"
    raises("not_member", hub.send, ann1, "lobby", "ghost", None)


def test_disconnect_unregistered_member_without_rooms(hub: Hub) -> None:
    hub.disconnect(FakeMember("ann"))
    assert hub.online_users() == []


# --- not_member -------------------------------------------------------------------------

ROOM_CALLS = {
    "send": lambda hub, m, room: hub.send(m, room, "hi", "r"),
    "edit": lambda hub, m, room: hub.edit(m, room, 1, "hi", "r"),
    "delete": lambda hub, m, room: hub.delete(m, room, 1, "r"),
    "history": lambda hub, m, room: hub.history(m, room, before=None, after=None, limit=5, ref="r"),
    "members": lambda hub, m, room: hub.members(m, room, "r"),
    "leave": lambda hub, m, room: hub.leave(m, room, "r"),
}


@pytest.mark.parametrize("call", list(ROOM_CALLS.values()), ids=list(ROOM_CALLS))
@pytest.mark.parametrize("situation", ["no-such-room", "others-room", "left-room", "other-conn"])
def test_room_requests_need_membership(hub: Hub, call, situation: str) -> None:
    ann = connect(hub, "ann")
    bob = connect(hub, "bob")
    joined(hub, bob, "lobby")
    post(hub, bob, "lobby", "a message")
    if situation == "left-room":
        joined(hub, ann, "lobby")
        hub.leave(ann, "lobby", None)
    elif situation == "other-conn":
        joined(hub, connect(hub, "ann"), "lobby")
    clear(ann, bob)
    room = "nowhere" if situation == "no-such-room" else "lobby"
    error = raises("not_member", call, hub, ann, room)
    assert room in error.message
    assert ann.take() == bob.take() == []
    if situation == "no-such-room":
        assert [r["name"] for r in rooms_reply(hub)["rooms"]] == ["lobby"]


# --- threads ----------------------------------------------------------------------------


def test_concurrent_senders_one_order() -> None:
    hub = make_hub(clock=lambda: "2026-11-26T02:20:28.123Z")
    members = [connect(hub, user) for user in ("ann", "bob", "cid")]
    for member in members:
        joined(hub, member, "lobby")
    clear(*members)
    for member in members:
        member.raw.clear()
    threads_n, per_thread = 8, 200
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def sender(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            member = members[index % 3]
            for n in range(per_thread):
                hub.send(member, "lobby", f"t{index}-{n}", None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert errors == []
    total = threads_n * per_thread
    orders = []
    for member in members:
        frames = member.take()
        assert ids_of(frames) == list(range(1, total + 1))
        orders.append([(f["id"], f["text"]) for f in frames])
    assert orders[0] == orders[1] == orders[2]
    for index in range(threads_n):  # each thread's own messages in its order
        mine = [text for _, text in orders[0] if text.startswith(f"t{index}-")]
        assert mine == [f"t{index}-{n}" for n in range(per_thread)]
    assert members[0].raw == members[1].raw == members[2].raw


def test_concurrent_churn_does_not_deadlock_or_break_order() -> None:
    """Senders, joiners/leavers and disconnects at once: all finish, ids stay gapless."""
    hub = make_hub(clock=lambda: "2026-11-26T02:20:28.123Z")
    watchers = [connect(hub, "ann"), connect(hub, "bob")]
    for watcher in watchers:
        joined(hub, watcher, "a")
        joined(hub, watcher, "b")
    clear(*watchers)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def sender(room: str) -> None:
        member = connect(hub, "cid")
        hub.join(member, room, None)
        barrier.wait(timeout=10)
        for n in range(300):
            hub.send(member, room, f"{room}{n}", None)

    def churner(user: str) -> None:
        barrier.wait(timeout=10)
        for n in range(150):
            member = connect(hub, user)
            hub.join(member, "a", None)
            hub.join(member, f"tmp{n % 3}", None)
            if n % 2:
                hub.leave(member, "a", None)
            hub.rooms(member, None)
            hub.disconnect(member)

    def guarded(target, arg) -> None:
        try:
            target(arg)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=guarded, args=(sender, "a")),
        threading.Thread(target=guarded, args=(sender, "b")),
        threading.Thread(target=guarded, args=(sender, "a")),
        threading.Thread(target=guarded, args=(churner, "dee")),
        threading.Thread(target=guarded, args=(churner, "root")),
        threading.Thread(target=guarded, args=(churner, "dee")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "deadlock?"
    assert errors == []
    for watcher in watchers:
        frames = watcher.take()
        for room, total in (("a", 600), ("b", 300)):
            seen = [f["id"] for f in frames if f["type"] == "message" and f["room"] == room]
            assert seen == list(range(1, total + 1))
    assert hub.online_users() == ["ann", "bob", "cid"]
    rooms = {r["name"]: r["members"] for r in rooms_reply(hub)["rooms"]}
    assert rooms == {"a": 3, "b": 3}


# --- state machine ----------------------------------------------------------------------

MACHINE_USERS = ("ann", "bob", "root")
MACHINE_ROOMS = ("r1", "r2")
CONNS_PER_USER = 2
ROOM_EVENTS = {"message", "edited", "deleted", "presence"}


def normalise(frame: dict) -> dict:
    """A frame without its timestamps (edited_ts becomes a flag), for comparison."""
    frame = {k: v for k, v in frame.items() if k != "ts"}
    if "edited_ts" in frame:
        del frame["edited_ts"]
        frame["edited"] = True
    for key in ("history", "messages"):
        if key in frame:
            frame[key] = [normalise(record) for record in frame[key]]
    return frame


def by_room(frames: list[dict]) -> list[dict]:
    """The frames grouped by room, each room's in the order given."""
    return sorted(frames, key=lambda frame: frame.get("room", ""))


class HubMachine(RuleBasedStateMachine):
    """Random join/leave/send/edit/delete/disconnect against a simple model of the hub."""

    def __init__(self) -> None:
        super().__init__()
        self.hub = make_hub(user_exists=lambda u: u in MACHINE_USERS, admins={"root"})
        self.conns = [FakeMember(u) for u in MACHINE_USERS for _ in range(CONNS_PER_USER)]
        self.inside: dict[str, set[int]] = {room: set() for room in MACHINE_ROOMS}
        self.store: dict[str, dict[int, dict]] = {room: {} for room in MACHINE_ROOMS}
        self.last_id = dict.fromkeys(MACHINE_ROOMS, 0)
        self.next_seen: dict[tuple[int, str], int] = {}
        self.counter = itertools.count(1)

    # -- model helpers

    def users_in(self, room: str) -> set[str]:
        return {self.conns[i].user for i in self.inside[room]}

    def records(self, room: str, limit: int = JOIN_HISTORY) -> list[dict]:
        live = [
            {"room": room, "id": mid, "user": m["user"], "text": m["text"]}
            | ({"edited": True} if m["edited"] else {})
            for mid, m in sorted(self.store[room].items())
            if not m["deleted"]
        ]
        return live[-limit:]

    def check(self, expected: dict[int, list[dict]], before: dict[str, set[int]]) -> None:
        """Every connection got exactly the expected frames, and the invariants hold."""
        for index, conn in enumerate(self.conns):
            got = conn.take()
            # Each room's frames in order; frames of different rooms may interleave.
            assert by_room([normalise(f) for f in got]) == by_room(expected.get(index, [])), (
                index,
                got,
            )
            for frame in got:
                room = frame.get("room")
                if frame["type"] in ROOM_EVENTS:
                    # no room events to a connection outside the room, before or after
                    assert index in before[room]
                    assert index in self.inside[room]
                if frame["type"] == "joined":
                    self.next_seen[(index, room)] = frame["last_id"] + 1
                elif frame["type"] == "message":
                    key = (index, room)
                    assert frame["id"] == self.next_seen[key]  # +1 each time, no gap
                    self.next_seen[key] += 1

    def snapshot(self) -> dict[str, set[int]]:
        return {room: set(members) for room, members in self.inside.items()}

    def _leave_model(self, c: int, room: str, expected: dict[int, list[dict]]) -> None:
        user = self.conns[c].user
        self.inside[room].discard(c)
        self.next_seen.pop((c, room), None)
        if user not in self.users_in(room):
            for j in sorted(self.inside[room]):
                expected.setdefault(j, []).append(
                    {"type": "presence", "room": room, "user": user, "event": "leave"}
                )

    # -- rules

    conn_ids = st.integers(min_value=0, max_value=len(MACHINE_USERS) * CONNS_PER_USER - 1)
    rooms = st.sampled_from(MACHINE_ROOMS)
    picks = st.integers(min_value=0, max_value=99)

    def pick_conn(self, room: str, pick: int) -> int:
        """Mostly a connection inside ``room``, sometimes any connection."""
        inside = sorted(self.inside[room])
        if inside and pick < 85:
            return inside[pick % len(inside)]
        return pick % len(self.conns)

    def pick_id(self, room: str, pick: int) -> int:
        """Mostly an id that was sent in ``room`` (live or deleted), sometimes an unknown one."""
        known = sorted(self.store[room])
        if known and pick < 90:
            return known[-1 - pick % len(known)]
        return self.last_id[room] + 1 + pick % 3

    @initialize(joins=st.lists(st.tuples(conn_ids, rooms), max_size=8))
    def register_and_join(self, joins: list[tuple[int, str]]) -> None:
        for conn in self.conns:
            self.hub.register(conn)
        for c, room in joins:
            self.join(c, room, with_ref=False)

    @rule(c=conn_ids, room=rooms, with_ref=st.booleans())
    def join(self, c: int, room: str, with_ref: bool) -> None:
        before = self.snapshot()
        conn = self.conns[c]
        ref = f"j{next(self.counter)}" if with_ref else None
        expected: dict[int, list[dict]] = {}
        if conn.user not in self.users_in(room):
            for j in sorted(self.inside[room]):
                expected.setdefault(j, []).append(
                    {"type": "presence", "room": room, "user": conn.user, "event": "join"}
                )
        self.inside[room].add(c)
        reply = {
            "type": "joined",
            "room": room,
            "members": sorted(self.users_in(room)),
            "last_id": self.last_id[room],
            "history": self.records(room),
            "read_id": 0,
        }
        expected[c] = [reply | ({"ref": ref} if ref else {})]
        self.hub.join(conn, room, ref)
        assert conn.rooms == {r for r in MACHINE_ROOMS if c in self.inside[r]}
        self.check(expected, before)

    @rule(c=conn_ids, room=rooms)
    def leave(self, c: int, room: str) -> None:
        before = self.snapshot()
        conn = self.conns[c]
        if c not in self.inside[room]:
            raises("not_member", self.hub.leave, conn, room, "l")
            self.check({}, before)
            return
        expected: dict[int, list[dict]] = {}
        self._leave_model(c, room, expected)
        expected[c] = [{"type": "left", "room": room, "ref": "l"}]
        self.hub.leave(conn, room, "l")
        self.check(expected, before)

    @rule(who=picks, room=rooms, with_ref=st.booleans())
    def send(self, who: int, room: str, with_ref: bool) -> None:
        before = self.snapshot()
        c = self.pick_conn(room, who)
        conn = self.conns[c]
        n = next(self.counter)
        text, ref = f"m{n}", (f"s{n}" if with_ref else None)
        if c not in self.inside[room]:
            raises("not_member", self.hub.send, conn, room, text, ref)
            self.check({}, before)
            return
        self.last_id[room] += 1
        mid = self.last_id[room]
        self.store[room][mid] = {"user": conn.user, "text": text, "deleted": False, "edited": False}
        frame = {"type": "message", "room": room, "id": mid, "user": conn.user, "text": text}
        expected = {j: [dict(frame)] for j in self.inside[room]}
        if ref:
            expected[c][0]["ref"] = ref
        self.hub.send(conn, room, text, ref)
        self.check(expected, before)

    def _target(self, c: int, room: str, mid: int, *, admin_ok: bool) -> str | None:
        """The error code the model expects for an edit/delete, or None."""
        if c not in self.inside[room]:
            return "not_member"
        stored = self.store[room].get(mid)
        if stored is None or stored["deleted"]:
            return "not_found"
        user = self.conns[c].user
        if stored["user"] != user and not (admin_ok and user == "root"):
            return "forbidden"
        return None

    @rule(who=picks, room=rooms, pick=picks)
    def edit(self, who: int, room: str, pick: int) -> None:
        before = self.snapshot()
        c = self.pick_conn(room, who)
        mid = self.pick_id(room, pick)
        conn = self.conns[c]
        text = f"e{next(self.counter)}"
        code = self._target(c, room, mid, admin_ok=False)
        if code:
            raises(code, self.hub.edit, conn, room, mid, text, "e")
            self.check({}, before)
            return
        self.store[room][mid].update(text=text, edited=True)
        frame = {"type": "edited", "room": room, "id": mid, "user": conn.user, "text": text}
        expected = {j: [dict(frame)] for j in self.inside[room]}
        expected[c][0]["ref"] = "e"
        self.hub.edit(conn, room, mid, text, "e")
        self.check(expected, before)

    @rule(who=picks, room=rooms, pick=picks)
    def delete(self, who: int, room: str, pick: int) -> None:
        before = self.snapshot()
        c = self.pick_conn(room, who)
        mid = self.pick_id(room, pick)
        conn = self.conns[c]
        code = self._target(c, room, mid, admin_ok=True)
        if code:
            raises(code, self.hub.delete, conn, room, mid, None)
            self.check({}, before)
            return
        self.store[room][mid]["deleted"] = True
        frame = {"type": "deleted", "room": room, "id": mid, "by": conn.user}
        expected = {j: [dict(frame)] for j in self.inside[room]}
        self.hub.delete(conn, room, mid, None)
        self.check(expected, before)

    @precondition(lambda self: any(self.inside.values()))
    @rule(c=conn_ids)
    def disconnect_and_reconnect(self, c: int) -> None:
        before = self.snapshot()
        conn = self.conns[c]
        expected: dict[int, list[dict]] = {}
        for room in sorted(MACHINE_ROOMS):
            if c in self.inside[room]:
                self._leave_model(c, room, expected)
        self.hub.disconnect(conn)
        self.check(expected, before)
        assert conn.rooms == set()
        self.hub.register(conn)  # the same client logs in again

    # -- invariants

    @invariant()
    def member_sets_match_the_model(self) -> None:
        for room in MACHINE_ROOMS:
            for index, conn in enumerate(self.conns):
                assert (room in conn.rooms) == (index in self.inside[room])
            if self.inside[room]:
                asker = self.conns[min(self.inside[room])]
                self.hub.members(asker, room, None)
                assert asker.only("members")["members"] == sorted(self.users_in(room))

    @invariant()
    def rooms_listing_matches_the_model(self) -> None:
        listed = {r["name"]: r["members"] for r in rooms_reply(self.hub)["rooms"]}
        expected = {
            room: len(self.users_in(room))
            for room in MACHINE_ROOMS
            if self.inside[room] or self.last_id[room]
        }
        assert listed == expected


TestHubMachine = HubMachine.TestCase
TestHubMachine.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_replies_never_exceed_the_frame_limit() -> None:
    hub = make_hub(max_frame_bytes=16384)
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    big = "\u20ac" * 4000  # 12,000 bytes of UTF-8
    post(hub, ann, "lobby", *(f"{n} {big}" for n in range(1, 11)))
    clear(ann)
    hub.join(ann, "lobby", None)
    raw = ann.raw[-1]
    assert len(raw) <= 16384
    frame = json.loads(raw)
    assert ids_of(frame["history"]) == [10]  # the newest that fit
    hub.history(ann, "lobby", before=None, after=0, limit=200, ref=None)
    assert len(ann.raw[-1]) <= 16384
    assert ids_of(json.loads(ann.raw[-1])["messages"]) == [1]  # paging forward: oldest
