"""The IRC gateway's pure parts: lines, tags, limits, text rules, rendering of frames."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securechat.server.irc.parse import (
    MAX_LINE,
    MAX_TAGS,
    TOO_LONG,
    InvalidUtf8,
    LineSplitter,
    escape_tag,
    format_line,
    parse,
    split_text,
    strip_formatting,
    unescape_tag,
)
from securechat.server.irc.render import (
    View,
    add_tags,
    deleted_lines,
    dm_lines,
    edited_lines,
    message_lines,
    text_lines,
)


def test_parse_tags_source_command_and_trailing() -> None:
    msg = parse(b"@label=a\\sb;+draft/reply=general/4;flag :nick!u@h privmsg #general :hi :) there")
    assert msg is not None
    assert msg.tags == {"label": "a b", "+draft/reply": "general/4", "flag": ""}
    assert msg.source == "nick!u@h"
    assert msg.command == "PRIVMSG"
    assert msg.params == ["#general", "hi :) there"]


@pytest.mark.parametrize(
    ("line", "command", "params"),
    [
        (b"PING", "PING", []),
        (b"PING :", "PING", [""]),
        (b"JOIN   #a,#b   key", "JOIN", ["#a,#b", "key"]),
        (b"USER alice 0 * :Alice Liddell", "USER", ["alice", "0", "*", "Alice Liddell"]),
        (b"CAP REQ :sasl message-tags", "CAP", ["REQ", "sasl message-tags"]),
        (b"  nick alice", "NICK", ["alice"]),
    ],
)
def test_parse_params(line: bytes, command: str, params: list[str]) -> None:
    msg = parse(line)
    assert msg is not None
    assert (msg.command, msg.params) == (command, params)


def test_a_line_with_no_command_is_none_and_bad_utf8_names_its_command() -> None:
    assert parse(b"") is None
    assert parse(b"@a=b :src") is None
    with pytest.raises(InvalidUtf8) as caught:
        parse(b"@t=1 :x privmsg #a :\xff\xfe")
    assert caught.value.command == "PRIVMSG"


@given(st.text())
def test_tag_escaping_round_trips(value: str) -> None:
    assert unescape_tag(escape_tag(value)) == value
    assert not set(escape_tag(value)) & {";", " ", "\r", "\n"}


def test_format_line_writes_a_trailing_parameter_only_when_needed() -> None:
    assert format_line("JOIN", "#a", source="n!n@h") == ":n!n@h JOIN #a"
    assert format_line("PRIVMSG", "#a", "two words") == "PRIVMSG #a :two words"
    assert format_line("PRIVMSG", "#a", ":)") == "PRIVMSG #a ::)"
    assert format_line("PING", "") == "PING :"
    assert format_line("X", "y", tags={"label": "a;b", "flag": ""}) == "@label=a\\:b;flag X y"


def test_splitter_limits_a_line_to_512_bytes_without_its_tags() -> None:
    splitter = LineSplitter()
    body = b"PRIVMSG #a :" + b"x" * (MAX_LINE - 2 - 12)
    assert splitter.feed(body + b"\r\n") == [body]
    assert splitter.feed(body + b"y\r\n") == [TOO_LONG]
    tags = b"@" + b"t" * (MAX_TAGS - 2) + b" "
    assert splitter.feed(tags + body + b"\r\n") == [tags + body]
    assert splitter.feed(b"@" + b"t" * (MAX_TAGS - 1) + b" " + body + b"\n") == [TOO_LONG]
    assert splitter.feed(b"a\nb\r\nc") == [b"a", b"b"]
    assert splitter.partial
    assert splitter.feed(b"\n") == [b"c"]
    assert not splitter.partial


_LINES = st.lists(
    st.tuples(
        st.sampled_from([b"PING a", b"PRIVMSG #a :hi", b"@label=x PING b", b"", b"x"]),
        st.integers(0, 9000),  # padding: lines at, under and far over the limits
        st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n"]),
    ),
    max_size=8,
)


@given(_LINES, st.lists(st.integers(1, 700), min_size=1, max_size=20))
def test_splitter_cuts_any_stream_in_any_chunks_into_the_same_lines(
    lines: list[tuple[bytes, int, bytes]], cuts: list[int]
) -> None:
    """Whole reads take a fast path, reads that end inside a line the general one: a
    stream gives the same lines however the reads cut it."""
    stream = b"".join(head + b"y" * pad + end for head, pad, end in lines)
    expected = []
    for head, pad, _ in lines:
        line = head + b"y" * pad
        if line:
            too_long = len(line) + 2 > MAX_LINE and not (
                line.startswith(b"@") and line.find(b" ") + 1 <= MAX_TAGS
                and len(line) - line.find(b" ") + 1 <= MAX_LINE
            )  # fmt: skip
            expected.append(TOO_LONG if too_long else line)
    assert LineSplitter().feed(stream) == expected
    splitter, got, at = LineSplitter(), [], 0
    for size in cuts * (len(stream) // sum(cuts) + 1):
        got += splitter.feed(stream[at : at + size])
        at += size
    assert got == expected and not splitter.partial


def test_splitter_throws_a_huge_line_away_as_it_comes() -> None:
    splitter = LineSplitter()
    for _ in range(100):  # a million bytes without a newline
        assert splitter.feed(b"x" * 10_000) == []
        assert len(splitter._buffer) <= MAX_LINE + MAX_TAGS
    assert splitter.partial
    assert splitter.feed(b"xx\nPING a\n") == [TOO_LONG, b"PING a"]
    assert not splitter.partial


@given(st.text(min_size=1, max_size=600), st.integers(min_value=4, max_value=120))
def test_split_text_cuts_at_character_boundaries_within_the_budget(text: str, budget: int) -> None:
    pieces = split_text(text, budget)
    assert "".join(pieces) == text
    assert all(len(piece.encode()) <= budget for piece in pieces)
    assert all(pieces)


def test_split_text_keeps_words_whole_when_it_can() -> None:
    assert split_text("hello wonderful world", 18) == ["hello wonderful ", "world"]
    assert split_text("hello wonderful world", 14) == ["hello wonderfu", "l world"]
    assert split_text("é" * 5, 4) == ["éé", "éé", "é"]  # (2 bytes each: never half of one)


def test_strip_formatting() -> None:
    text = "\x02bold\x02 \x0304,12red\x03 \x1ditalic\x1d \x04ff0000hex\x0f plain\ttab\x07"
    assert strip_formatting(text) == "bold red italic hex plain\ttab"
    assert strip_formatting("\x0399 late") == " late"


MESSAGE = {"type": "message", "room": "general", "id": 42, "user": "bob", "text": "hi",
           "ts": "2026-12-06T10:00:00.000Z"}  # fmt: skip
ALL = View(server_time=True, msgid=True, account=True, extended_join=True, redaction=True)


def test_a_message_with_and_without_tags() -> None:
    assert message_lines(View(), MESSAGE) == [":bob!bob@securechat PRIVMSG #general :hi"]
    assert message_lines(ALL, MESSAGE) == [
        "@msgid=general/42;time=2026-12-06T10:00:00.000Z;account=bob "
        ":bob!bob@securechat PRIVMSG #general :hi"
    ]


def test_lines_of_a_text_are_lines_and_msgid_is_on_the_first() -> None:
    frame = {**MESSAGE, "text": "one\n\nthree"}
    lines = message_lines(ALL, frame)
    assert [line.split(" :", 2)[-1] for line in lines] == ["one", " ", "three"]
    assert "msgid=general/42" in lines[0]
    assert all("msgid" not in line and "time=" in line for line in lines[1:])


def test_a_long_text_is_cut_to_fit_512_bytes_with_its_source() -> None:
    text = "ü" * 1000 + " end"
    lines = text_lines("PRIVMSG", "bob!bob@securechat", "#general", text)
    assert all(len(line.encode()) + 2 <= MAX_LINE for line in lines)
    assert "".join(line.split(" :", 1)[1] for line in lines) == text


def test_me_is_an_action_and_dms_go_to_the_nick() -> None:
    dm = {"type": "dm", "id": 17, "from": "bob", "to": "alice", "text": "/me waves",
          "ts": "2026-12-06T10:00:00.000Z"}  # fmt: skip
    assert dm_lines(View(msgid=True), dm) == [
        "@msgid=dm/17 :bob!bob@securechat PRIVMSG alice :\x01ACTION waves\x01"
    ]


def test_edits_are_notices_and_deletions_redact_or_notices() -> None:
    edited = {**MESSAGE, "type": "edited", "text": "hi again"}
    assert edited_lines(View(), edited) == [
        ":bob!bob@securechat NOTICE #general :[edited general/42] hi again"
    ]
    deleted = {"type": "deleted", "room": "general", "id": 42, "by": "bob", "ts": MESSAGE["ts"]}
    assert deleted_lines(View(redaction=True), deleted) == [
        ":bob!bob@securechat REDACT #general general/42"
    ]
    assert deleted_lines(View(), deleted) == [
        ":bob!bob@securechat NOTICE #general :[deleted general/42]"
    ]


def test_add_tags_goes_before_the_tags_a_line_has() -> None:
    assert add_tags(":s ACK", label="a b") == "@label=a\\sb :s ACK"
    assert add_tags("@time=x :s X", batch="1") == "@batch=1;time=x :s X"


def test_a_lone_cr_ends_a_line_and_nul_is_dropped() -> None:
    # (else "FROB\rPING" would be echoed in a 421 that a client reads as two lines)
    splitter = LineSplitter()
    assert splitter.feed(b"FROB\rPING x\r\n\r\n\nNICK a\n") == [b"FROB", b"PING x", b"NICK a"]
    msg = parse(b"NICK al\0ice")
    assert msg is not None and msg.params == ["alice"]


def test_a_message_with_a_file_names_it_on_a_line_of_its_own() -> None:
    file = {"id": 7, "name": "notes.pdf", "size": 3 * 1024 * 1024 // 2, "sha256": "0" * 64,
            "mime": "application/octet-stream"}  # fmt: skip
    frame = {"room": "general", "id": 4, "user": "ann", "ts": "2026-12-06T00:00:00.000Z"}
    captioned = message_lines(View(), {**frame, "text": "the minutes", "file": file})
    assert captioned == [
        ":ann!ann@securechat PRIVMSG #general :the minutes",
        ":ann!ann@securechat PRIVMSG #general :[file] notes.pdf (1.5 MiB, id 7)",
    ]
    bare = dm_lines(View(), {"id": 9, "from": "ann", "to": "bob", "ts": frame["ts"], "text": "",
                             "file": {**file, "size": 12}})  # fmt: skip
    assert bare == [":ann!ann@securechat PRIVMSG bob :[file] notes.pdf (12 bytes, id 7)"]
