"""Rendering frames as IRC lines: the plain-message hot path against the general one."""

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.protocol.frames import message_bytes
from securechat.server.irc.render import View, message_lines, plain_message

VIEWS = [View(*flags) for flags in itertools.product((False, True), repeat=5)]
NAMES = st.from_regex(r"[a-z0-9_-]{1,32}", fullmatch=True)
TS = "2026-12-06T10:00:00.000Z"


def general(view: View, frame: bytes) -> bytes:
    return ("\r\n".join(message_lines(view, json.loads(frame))) + "\r\n").encode()


@settings(max_examples=400)
@given(room=NAMES, user=NAMES, message_id=st.integers(1, 2**53), text=st.text(max_size=600),
       view=st.sampled_from(VIEWS))  # fmt: skip
def test_a_plain_message_read_off_its_bytes_is_what_the_general_path_renders(
    room: str, user: str, message_id: int, text: str, view: View
) -> None:
    frame = message_bytes(room, message_id, user, text, TS)
    fast = plain_message(view, frame)
    assert fast is None or fast == general(view, frame)


@given(text=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
                    min_size=1, max_size=300),
       view=st.sampled_from(VIEWS))  # fmt: skip
def test_ordinary_texts_take_the_hot_path(text: str, view: View) -> None:
    frame = message_bytes("general", 42, "nandini", text, TS)
    if text.startswith("/me "):
        assert plain_message(view, frame) is None  # (an ACTION: the general path)
    else:
        assert plain_message(view, frame) == general(view, frame)


def test_what_is_not_plain_takes_the_general_path() -> None:
    view = View()
    for text in ['say "hi"', "two\nlines", "tab\there", "x" * 600, "/me waves", ""]:
        assert plain_message(view, message_bytes("general", 1, "bob", text, TS)) is None
    with_file = (b'{"type":"message","room":"general","id":1,"user":"bob","text":"",'
                 b'"ts":"' + TS.encode() + b'","file":{"id":"abc"}}\n')  # fmt: skip
    assert plain_message(view, with_file) is None
    assert plain_message(view, b'{"type":"edited","room":"general"}\n') is None
    frame = message_bytes("general", 7, "bob", "héllo ✓", TS)
    assert plain_message(View(server_time=True, msgid=True), frame) == (
        "@msgid=general/7;time=2026-12-06T10:00:00.000Z :bob!bob@securechat PRIVMSG "
        "#general :héllo ✓\r\n".encode()
    )
