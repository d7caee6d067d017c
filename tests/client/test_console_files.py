"""The pure half of the client's file sharing: the commands, how a file is shown, the
progress line, where a download goes."""

import pytest

from securechat.client import console
from securechat.client.console import Download, Notice, Upload, parse_command
from securechat.protocol.frames import DirectMessage, FileInfo, Message

FILE = FileInfo(id="AbC-12_x", name="notes.pdf", size=48213, sha256="ab" * 32,
                mime="application/octet-stream")  # fmt: skip
TS = "2026-11-26T02:20:28.123Z"


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("/upload notes.pdf", Upload("notes.pdf", "general", None, "")),
        ("/upload notes.pdf see  this ", Upload("notes.pdf", "general", None, "see  this")),
        ('/upload "my notes.pdf" hi', Upload("my notes.pdf", "general", None, "hi")),
        ("/upload my\\ notes.pdf", Upload("my notes.pdf", "general", None, "")),
        ("/upload @Bob ~/cat.png", Upload("~/cat.png", None, "bob", "")),
        ("/upload @bob cat.png for you", Upload("cat.png", None, "bob", "for you")),
        ("/download AbC-12_x", Download("AbC-12_x", None)),
        ("/download AbC-12_x ~/Downloads", Download("AbC-12_x", "~/Downloads")),
        ('/download AbC-12_x "a b.pdf"', Download("AbC-12_x", "a b.pdf")),
    ],
)
def test_transfer_commands(line, action):
    assert parse_command(line, "general") == action


@pytest.mark.parametrize(
    ("line", "current", "says"),
    [
        ("/upload", "general", "usage: /upload"),
        ("/upload @bob", "general", "usage: /upload"),
        ("/upload @Not!A!User x", "general", "not a valid user name"),
        ("/upload x", None, "no current room"),
        ('/upload "unclosed', "general", "No closing quotation"),
        ("/upload x bad\x1bcaption", "general", "control character"),
        ("/download", "general", "usage: /download"),
        ("/download ../etc", "general", "not a file id"),
        ("/download abc a b", "general", "usage: /download"),
    ],
)
def test_bad_transfer_commands_are_notices(line, current, says):
    action = parse_command(line, current)
    assert isinstance(action, Notice) and action.error and says in action.text


def test_a_message_with_a_file_shows_it():
    message = Message(room="general", id=7, user="ann", text="", ts=TS, file=FILE)
    [line] = console.format_frame(message)
    assert line.endswith("#general [7] ann: [file] notes.pdf (47.1 KiB, AbC-12_x)")
    captioned = message.model_copy(update={"text": "the notes"})
    assert console.format_frame(captioned)[0].endswith("(47.1 KiB, AbC-12_x) the notes")
    dm = DirectMessage(id=3, from_="ann", to="bob", text="", ts=TS, file=FILE)
    assert console.format_frame(dm)[0].endswith("ann -> bob: [file] notes.pdf (47.1 KiB, AbC-12_x)")


def test_a_file_name_cannot_repaint_the_terminal():
    evil = FILE.model_copy(update={"name": "a\x1b[2J\u202egpj.exe"})
    [line] = console.format_frame(Message(room="g", id=1, user="ann", text="", ts=TS, file=evil))
    assert "\x1b" not in line and "\u202e" not in line and "\\x1b" in line


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0 bytes"), (1, "1 byte"), (1023, "1023 bytes"), (1024, "1.00 KiB"),
     (48213, "47.1 KiB"), (25 << 20, "25.0 MiB"), (1 << 30, "1.00 GiB")],
)  # fmt: skip
def test_sizes(count, shown):
    assert console.format_size(count) == shown


def test_the_progress_line_has_bytes_rate_and_time_left():
    line = console.format_progress("up big.bin", 3 << 20, 12 << 20, 1.5)
    assert line == "up big.bin [#####...............]  25% 3.00 MiB of 12.0 MiB 2.00 MiB/s 4 s left"
    assert console.format_progress("x", 0, 100, 0.0).endswith("0 bytes/s ...")
    assert console.format_progress("x", 100, 100, 2.0).endswith("done")
    assert "min left" in console.format_progress("x", 1, 10**9, 1.0)
    assert console.format_progress("x", 2048, None, 1.0) == "x 2.00 KiB 2.00 KiB/s"


@pytest.mark.parametrize(
    ("name", "local"),
    [("notes.pdf", "notes.pdf"), ("../../.bashrc", "_.._.bashrc"), (".hidden", "hidden"),
     ("a/b\\c", "a_b_c"), ("\x00\x1b[31m", "__[31m"), ("gpj.\u202eexe", "gpj.exe"),
     ("", "download"), ("...", "download")],
)  # fmt: skip
def test_local_names_are_safe_to_save(name, local):
    assert console.local_name(name) == local


def test_where_a_download_goes():
    files = {"./notes.pdf", "./notes (1).pdf.part", "out/x.txt"}

    def target(given, name):
        return console.download_target(given, name, is_dir=lambda p: p in ("out", "out/"),
                                       exists=lambda p: p in files)  # fmt: skip

    assert target(None, "fresh.pdf") == "fresh.pdf"
    assert target(None, "notes.pdf") == "notes (2).pdf"  # (a .part is someone's download too)
    assert target("out", "../x.txt") == "out/_x.txt"
    assert target("out/", "y.txt") == "out/y.txt"
    assert target("copy.pdf", "notes.pdf") == "copy.pdf"
    with pytest.raises(ValueError, match="exists"):
        target("./notes.pdf", "whatever")
