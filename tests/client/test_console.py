"""Unit tests of the client's pure half: command parsing, argv splitting, formatting,
and the decisions of reconnecting (backoff, what was shown, what to send again)."""

import itertools
import json
from datetime import UTC
from types import SimpleNamespace

import pytest

from securechat.client.console import (
    HELP,
    Backoff,
    Notice,
    Quit,
    ReadMarks,
    Request,
    ResumeState,
    Retry,
    RoomTracker,
    Switch,
    Unsent,
    clock,
    decode_server_frame,
    escape,
    format_frame,
    format_record,
    format_rejoined,
    json_line,
    not_stored,
    parse_command,
    split_argv,
    unconfirmed,
)
from securechat.protocol.frames import (
    Joined,
    MessageRecord,
    parse_client_frame,
    server_frame_adapter,
)

TS = "2026-11-26T12:01:02.123Z"


def frame_of(line: str, room: str | None = "general", joined: tuple[str, ...] = ("general",)):
    action = parse_command(line, room, joined)
    assert isinstance(action, Request), action
    # Everything the parser produces must be a frame the server accepts.
    parse_client_frame(json.dumps({**action.frame, "ref": "r1"}).encode())
    return action.frame


def error_of(line: str, room: str | None = "general", joined: tuple[str, ...] = ("general",)):
    action = parse_command(line, room, joined)
    assert isinstance(action, Notice) and action.error, action
    assert action.text.startswith("! ") and "\n" not in action.text
    return action.text


def fmt(data: dict) -> list[str]:
    return format_frame(server_frame_adapter.validate_python(data), tz=UTC)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("line", "frame"),
    [
        ("hello there", {"type": "send", "room": "general", "text": "hello there"}),
        ("  padded  ", {"type": "send", "room": "general", "text": "padded"}),
        ("//etc/passwd", {"type": "send", "room": "general", "text": "/etc/passwd"}),
        ("a\r\nb", {"type": "send", "room": "general", "text": "a\nb"}),
        ("tab\there", {"type": "send", "room": "general", "text": "tab\there"}),
        ("/join Random", {"type": "join", "room": "random"}),
        ("/JOIN random", {"type": "join", "room": "random"}),
        ("/leave", {"type": "leave", "room": "general"}),
        ("/leave Random", {"type": "leave", "room": "random"}),
        ("/rooms", {"type": "rooms"}),
        ("/who", {"type": "members", "room": "general"}),
        ("/who other", {"type": "members", "room": "other"}),
        ("/msg Bob hi  there", {"type": "dm", "to": "bob", "text": "hi  there"}),
        ("/msg bob line1\r\nline2", {"type": "dm", "to": "bob", "text": "line1\nline2"}),
        (
            "/edit 17 hello again",
            {"type": "edit", "room": "general", "id": 17, "text": "hello again"},
        ),
        ("/delete 3", {"type": "delete", "room": "general", "id": 3}),
        ("/history", {"type": "history", "room": "general", "limit": 20}),
        ("/history 5", {"type": "history", "room": "general", "limit": 5}),
        ("/dmhistory Bob", {"type": "dm_history", "with": "bob", "limit": 20}),
        ("/dmhistory bob 200", {"type": "dm_history", "with": "bob", "limit": 200}),
    ],
)
def test_commands_become_valid_frames(line: str, frame: dict) -> None:
    assert frame_of(line) == frame


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("/nope", "unknown command /nope"),
        ("/", "unknown command /"),
        ("/join", "usage: /join ROOM"),
        ("/join a b", "usage: /join ROOM"),
        ("/join bad!name", "not a valid room name"),
        ("/join " + "x" * 33, "not a valid room name"),
        ("/join _x", "not a valid room name"),
        ("/rooms extra", "usage: /rooms"),
        ("/msg bob", "usage: /msg USER TEXT"),
        ("/msg", "usage: /msg USER TEXT"),
        ("/msg bob    ", "usage: /msg USER TEXT"),
        ("/msg b@b hi", "not a valid user name"),
        ("/edit x text", "not a message id"),
        ("/edit 0 text", "not a message id"),
        ("/edit -1 text", "not a message id"),
        ("/edit 5", "usage: /edit ID TEXT"),
        ("/delete", "usage: /delete ID"),
        ("/delete 1.0", "not a message id"),
        ("/history x", "not a number"),
        ("/history 0", "limit"),
        ("/history 201", "limit"),
        ("/dmhistory", "usage: /dmhistory USER [N]"),
        ("/dmhistory bob 5 6", "usage: /dmhistory USER [N]"),
        ("/dmhistory b@b", "not a valid user name"),
        ("/dmhistory bob x", "not a number"),
        ("/dmhistory bob 0", "limit"),
        ("/dmhistory bob 201", "limit"),
        ("/switch elsewhere", "not in #elsewhere"),
        ("/quit now", "usage: /quit"),
        ("bell \x07 rings", "control character U+0007"),
        ("x" * 4001, "longer than 4000"),
    ],
)
def test_bad_input_gives_a_local_error(line: str, fragment: str) -> None:
    assert fragment in error_of(line)


def test_without_a_current_room() -> None:
    for line in ("hello", "/leave", "/who", "/history", "/edit 1 x", "/delete 1"):
        assert "no current room" in error_of(line, room=None, joined=())
    assert frame_of("/join general", room=None) == {"type": "join", "room": "general"}
    assert frame_of("/msg bob hi", room=None)["type"] == "dm"
    assert frame_of("/rooms", room=None) == {"type": "rooms"}
    assert frame_of("/dmhistory bob", room=None)["type"] == "dm_history"


def test_local_actions() -> None:
    assert parse_command("/quit", "general") == Quit()
    assert parse_command("/switch Random", "general", ["general", "random"]) == Switch("random")
    help_ = parse_command("/help", None)
    assert isinstance(help_, Notice) and not help_.error and help_.text == HELP
    assert parse_command("", "general") is None
    assert parse_command("   ", "general") is None
    assert parse_command("\r\n", "general") is None


def test_control_characters_in_error_messages_are_escaped() -> None:
    assert "\x1b" not in error_of("/join \x1b[2J")
    assert "\\x1b" in error_of("/nope\x1b[2J")


def test_split_argv() -> None:
    assert split_argv([]) == []
    assert split_argv(["/join", "general", "/join", "random"]) == ["/join general", "/join random"]
    assert split_argv(["/msg", "bob", "hi", "there"]) == ["/msg bob hi there"]
    assert split_argv(["hello", "world", "/quit"]) == ["hello world", "/quit"]
    assert split_argv(["/join", "general", "//slash", "text"]) == ["/join general", "//slash text"]


# ---------------------------------------------------------------- room tracking


def test_room_tracker_is_optimistic_and_rolls_back() -> None:
    rooms = RoomTracker()
    rooms.sent({"type": "join", "room": "general"})
    rooms.sent({"type": "join", "room": "random"})
    assert (rooms.current, rooms.joined) == ("random", ["general", "random"])
    rooms.switch("general")
    assert rooms.current == "general"
    rooms.switch("nowhere")
    assert rooms.current == "general"
    rooms.sent({"type": "leave", "room": "general"})
    assert (rooms.current, rooms.joined) == ("random", ["random"])
    rooms.sent({"type": "join", "room": "third"})
    rooms.refused({"type": "join", "room": "third"})
    assert (rooms.current, rooms.joined) == ("random", ["random"])
    rooms.sent({"type": "send", "room": "random", "text": "x"})
    rooms.refused({"type": "send", "room": "random", "text": "x"})
    assert rooms.joined == ["random"]
    rooms.sent({"type": "leave", "room": "random"})
    assert (rooms.current, rooms.joined) == (None, [])


# ---------------------------------------------------------------- formatting


def test_clock() -> None:
    assert clock(TS, UTC) == "12:01:02"
    assert clock("2026-11-26T12:01:02Z", UTC) == "12:01:02"
    assert clock("yesterday", UTC) == "--:--:--"


def test_format_room_events() -> None:
    message = {"room": "general", "id": 17, "user": "alice", "text": "hello", "ts": TS}
    assert fmt({"type": "message", **message}) == ["12:01:02 #general [17] alice: hello"]
    assert fmt({"type": "message", **message, "ref": "c3"}) == [
        "12:01:02 #general [17] alice: hello"
    ]
    assert fmt({"type": "edited", **message, "text": "hello again"}) == [
        "12:01:02 #general [17] alice (edited): hello again"
    ]
    assert fmt({"type": "deleted", "room": "general", "id": 17, "by": "bob", "ts": TS}) == [
        "12:01:02 #general [17] deleted by bob"
    ]
    dm = {"type": "dm", "id": 4, "from": "alice", "to": "bob", "text": "hi", "ts": TS}
    assert fmt(dm) == ["12:01:02 [dm 4] alice -> bob: hi"]
    presence = {"type": "presence", "room": "general", "user": "bob", "ts": TS}
    assert fmt({**presence, "event": "join"}) == ["* bob joined #general"]
    assert fmt({**presence, "event": "leave"}) == ["* bob left #general"]


def test_format_replies() -> None:
    record = {"room": "general", "id": 1, "user": "bob", "text": "old", "ts": TS}
    edited = {**record, "id": 2, "text": "new", "edited_ts": TS}
    joined = {
        "type": "joined",
        "room": "general",
        "members": ["alice", "bob"],
        "last_id": 2,
        "history": [record, edited],
    }
    assert fmt(joined) == [
        "* joined #general (2 members: alice, bob)",
        "12:01:02 #general [1] bob: old",
        "12:01:02 #general [2] bob (edited): new",
    ]
    assert fmt({**joined, "members": ["alice"], "history": []}) == [
        "* joined #general (1 member: alice)"
    ]
    assert fmt({"type": "history", "room": "general", "messages": [record]}) == [
        "* history of #general: 1 message",
        "12:01:02 #general [1] bob: old",
    ]
    rooms = {"type": "rooms", "rooms": [{"name": "a", "members": 1}, {"name": "b", "members": 0}]}
    assert fmt(rooms) == ["* rooms: #a (1 member), #b (0 members)"]
    assert fmt({"type": "rooms", "rooms": []}) == ["* rooms: none"]
    members = {"type": "members", "room": "general", "members": ["alice", "bob"]}
    assert fmt(members) == ["* members of #general: alice, bob"]
    assert fmt({"type": "left", "room": "general"}) == ["* left #general"]
    assert fmt({"type": "login_ok", "user": "alice"}) == ["* logged in as alice"]


def test_format_dm_history_and_resume_lines() -> None:
    dm = {"id": 7, "from": "bob", "to": "alice", "text": "psst\x1b[2J", "ts": TS}
    reply = {"type": "dm_history", "with": "bob", "messages": [{**dm, "type": "dm"}]}
    live = fmt({**dm, "type": "dm"})
    assert fmt(reply) == ["* direct messages with bob: 1 direct message", *live]
    assert live == ["12:01:02 [dm 7] bob -> alice: psst\\x1b[2J"]
    assert fmt({**reply, "messages": []}) == ["* direct messages with bob: 0 direct messages"]
    record = MessageRecord(room="general", id=3, user="bob", text="hi", ts=TS)
    assert format_record(record, UTC) == "12:01:02 #general [3] bob: hi"
    edited = record.model_copy(update={"edited_ts": TS})
    assert format_record(edited, UTC) == "12:01:02 #general [3] bob (edited): hi"
    joined = Joined(room="general", members=["alice", "bob"], last_id=3, history=[record])
    assert format_rejoined(joined) == "* rejoined #general (2 members: alice, bob)"


def test_format_errors() -> None:
    error = {"type": "error", "code": "not_member", "message": "join it first", "ref": "c1"}
    assert fmt(error) == ["! not_member: join it first"]
    limited = {"type": "error", "code": "rate_limited", "message": "slow down", "retry_after": 1.5}
    assert fmt(limited) == ["! rate_limited: slow down (retry after 1.5 s)"]


def test_quiet_frames() -> None:
    welcome = {"type": "welcome", "server": "securechat", "version": "1", "protocol": 1}
    for data in ({"type": "ping"}, {"type": "pong"}, {"type": "bye"}, welcome):
        assert fmt(data) == []


# ---------------------------------------------------------------- escaping


def test_escape() -> None:
    assert escape("plain text") == "plain text"
    assert escape("clear\x1b[2Jscreen") == "clear\\x1b[2Jscreen"
    assert escape("a\rb\x00c\x7fd\x9be") == "a\\x0db\\x00c\\x7fd\\x9be"
    assert escape("tab\tok") == "tab\tok"
    assert escape("two\nlines") == "two\n    lines"
    assert escape("two\nlines", newlines=False) == "two\\x0alines"
    assert escape("abc\u202edef\u2066") == "abc\\u202edef\\u2066"
    assert escape("héllo wörld ✓ 日本") == "héllo wörld ✓ 日本"


def test_received_text_cannot_control_the_terminal() -> None:
    evil = "\x1b[2J\x1b]0;pwned\x07\x9b31m\rfake"
    lines = fmt(
        {"type": "message", "room": "general", "id": 1, "user": "mallory", "text": evil, "ts": TS}
    )
    assert lines == ["12:01:02 #general [1] mallory: \\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x0dfake"]
    # A newline cannot forge a line that looks like another user's message.
    lines = fmt(
        {
            "type": "dm",
            "id": 1,
            "from": "mallory",
            "to": "bob",
            "text": "hi\n12:00:00 [dm 2] alice -> bob: send money",
            "ts": TS,
        }
    )
    assert lines[0].split("\n")[1].startswith("    12:00:00")
    # Names and error messages are escaped too, and stay on one line.
    assert fmt(
        {"type": "presence", "room": "r", "user": "a\x1bb\nc", "event": "join", "ts": TS}
    ) == ["* a\\x1bb\\x0ac joined #r"]
    error = fmt({"type": "error", "code": "internal", "message": "boom\x1b[31m\nx"})
    assert error == ["! internal: boom\\x1b[31m\\x0ax"]
    for line in lines + error:
        assert not any(ch in line for ch in "\x1b\x07\x9b\r")


def test_json_line_is_safe_and_equal() -> None:
    raw = json.dumps({"type": "message", "text": "a\x1b\u009b\x7fz ü"}, ensure_ascii=False)
    assert "\x9b" in raw and "\x7f" in raw
    safe = json_line(raw + "\n")
    assert not any(ch in safe for ch in "\x1b\x9b\x7f\n")
    assert json.loads(safe) == json.loads(raw)
    assert "ü" in safe


# ---------------------------------------------------------------- decoding


def test_decode_server_frame() -> None:
    frame = decode_server_frame(b'{"type":"left","room":"general","ref":"c1"}\n')
    assert frame is not None and frame.type == "left"
    # The protocol allows new frame types and new optional fields.
    assert decode_server_frame('{"type":"typing","room":"general"}') is None
    record = {"room": "g", "id": 1, "user": "a", "text": "t", "ts": TS, "reactions": []}
    newer = decode_server_frame(
        json.dumps(
            {
                "type": "joined",
                "room": "g",
                "members": [],
                "last_id": 1,
                "mood": "x",
                "history": [record],
            }
        )
    )
    assert newer is not None and newer.type == "joined" and newer.history[0].text == "t"
    for bad in (b"not json", b"[1]", b'{"type":"message","room":"g"}', b'{"no":"type"}'):
        with pytest.raises(ValueError):
            decode_server_frame(bad)


def test_undecodable_argv_bytes_are_refused() -> None:
    # Python decodes argv with surrogateescape; such text cannot be sent as UTF-8.
    assert "not valid UTF-8" in error_of("caf\udce9")
    assert "not valid UTF-8" in error_of("/msg bob caf\udce9")


# ---------------------------------------------------------------- reconnecting


class Dice:
    """A ``random.random`` that returns what the test says, in turn."""

    def __init__(self, *values: float) -> None:
        self.values = itertools.cycle(values)

    def __call__(self) -> float:
        return next(self.values)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_first_retry_is_half_a_second_to_a_second() -> None:
    assert Backoff(rand=Dice(0.0)).next_delay() == 0.5
    assert Backoff(rand=Dice(0.5)).next_delay() == 0.75
    assert Backoff(rand=Dice(0.999999)).next_delay() == pytest.approx(1.0)


def test_backoff_ceiling_doubles_up_to_30_s() -> None:
    backoff = Backoff(rand=Dice(1.0))  # always the ceiling
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]
    assert Backoff().ceiling(10**6) == 30  # no overflow however long it has been down


def test_backoff_full_jitter_stays_within_bounds() -> None:
    backoff = Backoff()  # the real random numbers
    for attempt in range(40):
        delay = backoff.next_delay()
        assert 0.5 <= delay <= min(30.0, 2.0**attempt)
    low = Backoff(rand=Dice(0.0))
    assert {low.next_delay() for _ in range(20)} == {0.5}  # never a tight loop


def test_backoff_growth_restarts_only_after_a_stable_connection() -> None:
    clock = Clock()
    backoff = Backoff(rand=Dice(1.0), clock=clock)
    assert [backoff.next_delay() for _ in range(4)] == [1, 2, 4, 8]
    backoff.connected()
    clock.now += 3  # dropped again soon after: a flapping server
    backoff.lost()
    assert backoff.next_delay() == 16
    backoff.connected()
    clock.now += 10
    backoff.lost()
    assert backoff.next_delay() == 1
    backoff.lost()  # lost without having connected: no change
    assert backoff.next_delay() == 2


def rec(room: str, message_id: int, user: str = "bob", text: str = "x") -> SimpleNamespace:
    return SimpleNamespace(room=room, id=message_id, user=user, text=text)


def test_resume_state_dedupes_by_room_and_id() -> None:
    state: ResumeState[str] = ResumeState()
    assert state.seen("general") is None
    state.joined("general", 3)  # shown with its history: 1..3 count as shown
    assert state.seen("general") == 3
    assert not state.fresh("general", 3)
    assert state.fresh("general", 4)
    assert not state.fresh("general", 4)
    assert state.fresh("random", 1)  # each room its own ids
    assert not state.fresh("random", 1)
    state.joined("general", 2)  # a joined older than what was seen: history was replaced
    assert state.is_reset("general", 1) and not state.is_reset("general", 2)
    assert state.seen("general") == 2


def test_resume_state_catch_up_pages_to_the_joined_last_id() -> None:
    state: ResumeState[str] = ResumeState()
    state.joined("general", 3)
    state.hold("general")
    assert state.holding() == ["general"]
    assert state.held("general", "live 7") and state.held("general", "live 8")
    assert not state.held("random", "other room")
    assert state.rejoined("general", 6) == 3  # fetch after 3, up to 6
    # A short page is not the end (the server shortens pages that do not fit a frame).
    new, after = state.page("general", [rec("general", 4)])
    assert ([r.id for r in new], after) == ([4], 4)
    # Ids 5 was deleted; the page goes past 6 because more came meanwhile.
    new, after = state.page("general", [rec("general", 6), rec("general", 7)])
    assert ([r.id for r in new], after) == ([6, 7], None)
    assert state.release("general") == ["live 7", "live 8"]
    assert state.holding() == []
    assert not state.fresh("general", 7)  # the held copy of 7 is a duplicate now
    assert state.fresh("general", 8)
    assert not state.held("general", "live 9")  # released: shown at once again


def test_resume_state_nothing_missed_and_empty_pages() -> None:
    state: ResumeState[str] = ResumeState()
    state.joined("general", 5)
    assert state.rejoined("general", 5) is None
    assert state.rejoined("general", 9) == 5
    assert state.page("general", []) == ([], None)  # 6..9 deleted
    assert state.release("general") == []


def test_resume_state_remembers_recent_dm_ids() -> None:
    state: ResumeState[str] = ResumeState(dm_memory=3)
    assert [state.fresh_dm(n) for n in (1, 2, 1, 3, 2)] == [True, True, False, True, False]
    assert state.fresh_dm(4)  # forgets 1, the oldest
    assert state.fresh_dm(1)
    assert not state.fresh_dm(4)


def test_resume_state_keeps_the_newest_dm_shown_for_dm_after() -> None:
    state: ResumeState[str] = ResumeState(dm_memory=2)
    assert state.last_dm == 0  # none shown: a login without dm_after
    for dm_id in (3, 7, 5, 7):
        state.fresh_dm(dm_id)
    assert state.last_dm == 7  # the newest, not the last to come; forgetting 3 changes nothing


def test_unconfirmed_sends_are_matched_by_room_and_text_once_each() -> None:
    def send(room: str, text: str) -> dict:
        return {"type": "send", "room": room, "text": text}

    sent = [
        send("general", "hi"),
        send("general", "hi"),
        send("random", "hi"),
        send("general", "x"),
    ]
    seen = [("general", "hi"), ("random", "other")]
    assert unconfirmed(sent, seen) == [send("general", "hi"), send("random", "hi"), sent[3]]
    assert unconfirmed(sent, []) == sent
    assert unconfirmed([], seen) == []


# ---------------------------------------------------------------- writes not stored


def test_retry_is_a_command_in_the_help() -> None:
    assert parse_command("/retry", None) == Retry()
    assert parse_command("/RETRY", "general") == Retry()
    assert error_of("/retry now") == "! usage: /retry"
    assert "/retry" in HELP and "could not store" in HELP


def unavailable(ref: str = "c1"):
    return server_frame_adapter.validate_python({
        "type": "error", "code": "unavailable", "ref": ref, "retry_after": 5.0,
        "message": "not stored: the server could not write to its disk; try again",
    })  # fmt: skip


def test_only_an_unavailable_write_counts_as_not_stored() -> None:
    send = {"type": "send", "room": "general", "text": "hi", "ref": "c1"}
    assert not_stored(unavailable(), send)
    for kind in ("edit", "delete", "dm"):
        assert not_stored(unavailable(), {"type": kind, "ref": "c1"})
    assert not not_stored(unavailable(), {"type": "history", "room": "general"})
    forbidden = server_frame_adapter.validate_python(
        {"type": "error", "code": "forbidden", "message": "no", "ref": "c1"}
    )
    assert not not_stored(forbidden, send)
    assert not not_stored(None, send)


def test_unsent_keeps_each_write_and_retry_sends_them_again_in_order() -> None:
    unsent = Unsent()
    assert unsent.retry() == Notice("* nothing to send again")
    requests = [
        {"type": "send", "room": "general", "text": "hello", "ref": "c1"},
        {"type": "dm", "to": "bob", "text": "psst", "ref": "c2"},
        {"type": "edit", "room": "general", "id": 3, "text": "fixed", "ref": "c3"},
        {"type": "delete", "room": "random", "id": 4, "ref": "c4"},
    ]
    notices = [unsent.add(request) for request in requests]
    assert all(notice.error for notice in notices)
    dash = "\u2014"
    assert [notice.text for notice in notices] == [
        f"! not sent (server could not store it): #general: hello {dash} /retry to send again",
        f"! not sent (server could not store it): direct message to bob: psst {dash} /retry "
        "to send again",
        f"! not sent (server could not store it): edit of [3] in #general: fixed {dash} /retry "
        "to send again",
        f"! not sent (server could not store it): deletion of [4] in #random {dash} /retry to "
        "send again",
    ]
    assert len(unsent) == 4
    again = unsent.retry()
    assert again == [{k: v for k, v in r.items() if k != "ref"} for r in requests]  # fresh refs
    assert len(unsent) == 0
    assert unsent.retry() == Notice("* nothing to send again")


def test_a_line_not_sent_is_shown_on_one_line_and_escaped() -> None:
    notice = Unsent().add({"type": "send", "room": "general", "text": "two\nlines\x1b[2J"})
    assert "\n" not in notice.text and "\x1b" not in notice.text
    assert "#general: two\\x0alines\\x1b[2J \u2014" in notice.text


def test_read_marks_follow_what_was_shown_in_the_current_room() -> None:
    marks = ReadMarks()
    marks.told("general", 2)  # joined: read up to 2 already
    marks.shown("general", 2, current="general")
    assert marks.take() == []  # nothing new
    for message_id in (3, 4, 5):
        marks.shown("general", message_id, current="general")
    marks.shown("random", 9, current="general")  # shown, but not in the current room
    assert marks.take() == [{"type": "mark_read", "room": "general", "id": 5}]  # one frame
    assert marks.take() == []
    marks.switched("random")
    marks.told("random", 4)  # another device had read less
    assert marks.take() == [{"type": "mark_read", "room": "random", "id": 9}]
    marks.shown("random", 10, current="random")
    marks.told("random", 12)  # another device read further meanwhile
    assert marks.take() == []
