"""The pure half of ``securechat-client``: commands in, frames out; frames in, lines out.

Why a separate module: what the user types and what the server sends are where a
chat client gets things wrong (a command that sends a half-valid frame, a message
whose escape sequences repaint the terminal), and both are easiest to get right
when they can be tested without a socket or a terminal. So this module does no
I/O: :func:`parse_command` turns one input line into an :data:`Action`,
:func:`split_argv` turns trailing command-line words into input lines,
:func:`decode_server_frame` validates what arrived, and :func:`format_frame` turns a
server frame into display lines with every terminal control character escaped.
:class:`RoomTracker` remembers the joined rooms and the current one, :class:`Unsent`
the writes the server could not store, for ``/retry``. What reconnecting
needs to decide is pure too: :class:`Backoff` says how long to wait before the next
attempt and :class:`ResumeState` what has been shown, so that after a reconnect each
message is shown exactly once and in order; both are tested with a fake clock and dice.
"""

import copy
import json
import random
import re
import shlex
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from securechat.protocol import frames
from securechat.protocol.frames import AnyServerFrame, server_frame_adapter
from securechat.protocol.names import is_valid_name

__all__ = [
    "HELP",
    "Action",
    "Backoff",
    "Download",
    "Notice",
    "Quit",
    "Request",
    "ResumeState",
    "Retry",
    "RoomTracker",
    "Switch",
    "Unsent",
    "Upload",
    "decode_server_frame",
    "describe_write",
    "download_target",
    "escape",
    "format_frame",
    "format_progress",
    "format_record",
    "format_rejoined",
    "format_size",
    "json_line",
    "local_name",
    "not_stored",
    "parse_command",
    "split_argv",
    "unconfirmed",
]

DEFAULT_HISTORY = 20
INDENT = "    "

# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Request:
    """A valid client frame to send (the client adds a fresh ``ref``)."""

    frame: dict[str, Any]


@dataclass(frozen=True)
class Switch:
    """Make a joined room the current one; nothing is sent."""

    room: str


@dataclass(frozen=True)
class Quit:
    """Log out and exit."""


@dataclass(frozen=True)
class Retry:
    """Send again the writes the server could not store (see :class:`Unsent`)."""


@dataclass(frozen=True)
class Notice:
    """Something to tell the user locally; ``error`` when their input was refused."""

    text: str
    error: bool = False


@dataclass(frozen=True)
class Upload:
    """Share the file at ``path`` in ``room`` or with ``to`` (over HTTPS, not a frame)."""

    path: str
    room: str | None
    to: str | None
    text: str = ""


@dataclass(frozen=True)
class Download:
    """Fetch the shared file ``file_id`` to ``path`` (None: its own name, here)."""

    file_id: str
    path: str | None = None


Action = Request | Switch | Quit | Retry | Notice | Upload | Download | None


def _error(text: str) -> Notice:
    return Notice(f"! {escape(text, newlines=False)}", error=True)


def _build(model: type[BaseModel], **fields: Any) -> Request | Notice:
    """Validate a frame with the protocol's own model, so nothing invalid is ever sent."""
    try:
        frame = model.model_validate(fields)
    except ValidationError as exc:
        return _error(_describe(exc, 0))
    return Request(frame.model_dump(exclude_none=True, by_alias=True))  # dm_history's "with"


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe(exc: ValidationError, skip: int) -> str:
    """pydantic's first error as one line; ``skip`` leading location parts (a union tag)."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"][skip:])
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _name(word: str, what: str) -> str | Notice:
    name = word.lower()
    if not is_valid_name(name):
        return _error(
            f"not a valid {what} name: {word!r} (1-32 of a-z 0-9 _ -, first a letter or digit)"
        )
    return name


def _message_id(word: str) -> int | Notice:
    if not (word.isascii() and word.isdigit()) or int(word) < 1:
        return _error(f"not a message id: {word!r}")
    return int(word)


def _text(text: str, current_room: str | None) -> Action:
    if not text.strip():
        return None
    if current_room is None:
        return _error("no current room: /join one first")
    return _build(frames.Send, type="send", room=current_room, text=text)


# name: (arguments, min and max words before any text, what it does); /help is made of it.
_COMMANDS = {
    "join": ("ROOM", 1, 1, "join a room; it becomes the current room"),
    "leave": ("[ROOM]", 0, 1, "leave a room (default: the current one)"),
    "switch": ("ROOM", 1, 1, "make a joined room the current one"),
    "rooms": ("", 0, 0, "list the rooms"),
    "who": ("[ROOM]", 0, 1, "list the members of a room (default: the current one)"),
    "msg": ("USER TEXT", 1, 1, "send a direct message"),
    "edit": ("ID TEXT", 1, 1, "edit your message ID in the current room"),
    "delete": ("ID", 1, 1, "delete message ID in the current room"),
    "history": ("[N]", 0, 1, f"show the last N messages of the current room ({DEFAULT_HISTORY})"),
    "dmhistory": (
        "USER [N]",
        1,
        2,
        f"show the last N direct messages with USER ({DEFAULT_HISTORY})",
    ),
    "upload": ("PATH [TEXT]", 1, 1, "share a file in the current room (@USER PATH: with USER)"),
    "download": ("ID [PATH]", 1, 2, "fetch a shared file, its hash checked"),
    "retry": ("", 0, 0, "send again what the server could not store"),
    "quit": ("", 0, 0, "log out and exit (Ctrl-D too)"),
    "help": ("", 0, 0, "this text"),
}
HELP = "\n".join(
    ["commands:"]
    + [f"  {f'/{name} {args}':<19}  {text}" for name, (args, _, _, text) in _COMMANDS.items()]
    + ["  any other line is sent to the current room; start it with // to send a leading /"]
)
_COMMAND_RE = re.compile(r"/(\S*)\s*(.*)", re.DOTALL)


def parse_command(line: str, current_room: str | None, joined: Collection[str] = ()) -> Action:
    """Turn one input line into what the client should do.

    ``joined`` are the rooms this connection is in (or is joining), for ``/switch``.
    Returns ``None`` for a blank line. Never returns a frame the server would refuse
    as ``bad_frame``: bad input becomes a :class:`Notice` instead.
    """
    line = line.replace("\r\n", "\n")
    if not _is_utf8(line):
        return _error("input is not valid UTF-8")  # e.g. undecodable bytes in argv
    if line.startswith("//"):
        return _text(line[1:], current_room)
    if not line.startswith("/"):
        return _text(line, current_room)
    match = _COMMAND_RE.fullmatch(line)
    assert match is not None  # the pattern matches any line starting with "/"
    command, rest = match.group(1).lower(), match.group(2)
    if command not in _COMMANDS:
        return _error(f"unknown command /{match.group(1)} (try /help)")
    args, low, high, _ = _COMMANDS[command]
    usage = f"/{command} {args}".rstrip()
    if command in ("msg", "edit"):
        parts = rest.split(None, 1)
        if len(parts) < 2 or not parts[1].strip():
            return _error(f"usage: {usage}")
        return _with_text(command, parts[0], parts[1], current_room)
    if command in ("upload", "download"):
        return _transfer(command, rest, usage, current_room)
    words = rest.split()
    if not low <= len(words) <= high:
        return _error(f"usage: {usage}")
    return _simple(command, words, current_room, joined)


def _with_text(command: str, target: str, text: str, current_room: str | None) -> Action:
    if command == "msg":
        user = _name(target, "user")
        if isinstance(user, Notice):
            return user
        return _build(frames.Dm, type="dm", to=user, text=text)
    message_id = _message_id(target)
    if isinstance(message_id, Notice):
        return message_id
    if current_room is None:
        return _error("no current room: /join one first")
    return _build(frames.Edit, type="edit", room=current_room, id=message_id, text=text)


def _simple(
    command: str, words: Sequence[str], current_room: str | None, joined: Collection[str]
) -> Action:
    if command == "quit":
        return Quit()
    if command == "retry":
        return Retry()
    if command == "help":
        return Notice(HELP)
    if command == "rooms":
        return _build(frames.Rooms, type="rooms")
    if command == "history":
        limit = _limit(words[0] if words else None)
        if isinstance(limit, Notice):
            return limit
        return _current(current_room, frames.History, type="history", limit=limit)
    if command == "dmhistory":
        user, limit = _name(words[0], "user"), _limit(words[1] if len(words) > 1 else None)
        if isinstance(user, Notice):
            return user
        if isinstance(limit, Notice):
            return limit
        return _build(frames.DmHistory, **{"type": "dm_history", "with": user, "limit": limit})
    if command == "delete":
        message_id = _message_id(words[0])
        if isinstance(message_id, Notice):
            return message_id
        return _current(current_room, frames.Delete, type="delete", id=message_id)
    # join, switch, leave, who: the room named, else the current room
    if words:
        room = _name(words[0], "room")
        if isinstance(room, Notice):
            return room
    elif current_room is None:
        return _error("no current room: /join one first")
    else:
        room = current_room
    if command == "join":
        return _build(frames.Join, type="join", room=room)
    if command == "switch":
        return Switch(room) if room in joined else _error(f"not in #{room}: /join {room} first")
    if command == "leave":
        return _build(frames.Leave, type="leave", room=room)
    return _build(frames.Members, type="members", room=room)


_FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _first_word(text: str) -> tuple[str, str]:
    """The first shell-style word of ``text`` (quotes and backslashes as in a shell, so a
    path may hold spaces) and the rest as typed; ValueError for an unclosed quote."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    word = lexer.get_token()
    if word is None:
        return "", ""
    return word, lexer.instream.read().strip()


def _transfer(command: str, rest: str, usage: str, current_room: str | None) -> Action:
    """``/upload [@USER] PATH [TEXT]`` and ``/download ID [PATH]``."""
    try:
        first, rest = _first_word(rest)
        second, rest = _first_word(rest) if command == "download" else ("", rest)
    except ValueError as exc:
        return _error(f"{usage}: {exc}")
    if not first or (command == "download" and rest):
        return _error(f"usage: {usage}")
    if command == "download":
        if not _FILE_ID.fullmatch(first):
            return _error(f"not a file id: {first!r}")
        return Download(first, second or None)
    to = None
    if first.startswith("@"):
        user = _name(first[1:], "user")
        if isinstance(user, Notice):
            return user
        to = user
        try:
            first, rest = _first_word(rest)
        except ValueError as exc:
            return _error(f"{usage}: {exc}")
        if not first:
            return _error(f"usage: {usage}")
    elif current_room is None:
        return _error("no current room: /join one first (or /upload @USER PATH)")
    if rest.strip():  # a caption: the rules of any text
        checked = _build(frames.Send, type="send", room=current_room or "x", text=rest)
        if isinstance(checked, Notice):
            return checked
        rest = checked.frame["text"]
    return Upload(first, None if to else current_room, to, rest.strip())


def _limit(word: str | None) -> int | Notice:
    """A count of messages to show; its range (1-200) is checked by the frame's model."""
    if word is None:
        return DEFAULT_HISTORY
    if not (word.isascii() and word.isdigit()):
        return _error(f"not a number: {word!r}")
    return int(word)


def _current(current_room: str | None, model: type[BaseModel], **fields: Any) -> Action:
    if current_room is None:
        return _error("no current room: /join one first")
    return _build(model, room=current_room, **fields)


def split_argv(words: Sequence[str]) -> list[str]:
    """Trailing command-line words as input lines: a new line at each word starting with ``/``.

    ``["/join", "general", "/msg", "bob", "hi", "there"]`` gives ``["/join general",
    "/msg bob hi there"]``; words before the first command form one text line.
    """
    lines: list[list[str]] = []
    for word in words:
        if word.startswith("/") or not lines:
            lines.append([word])
        else:
            lines[-1].append(word)
    return [" ".join(line) for line in lines]


# ---------------------------------------------------------------- room state


@dataclass
class RoomTracker:
    """The rooms this connection is in and the current one, updated optimistically.

    A ``/join`` makes its room current as soon as it is sent, so that piped input
    like ``/join general`` followed by text goes to that room without waiting for the
    reply; a refused join is rolled back when its error arrives.
    """

    joined: list[str] = field(default_factory=list)  # oldest first
    current: str | None = None

    def sent(self, frame: dict[str, Any]) -> None:
        """A request went out: a join or leave changes the rooms right away."""
        if frame["type"] == "join":
            self._forget(frame["room"])
            self.joined.append(frame["room"])
            self.current = frame["room"]
        elif frame["type"] == "leave":
            self._forget(frame["room"])

    def refused(self, frame: dict[str, Any]) -> None:
        """A request was answered with ``error``: undo a join."""
        if frame["type"] == "join":
            self._forget(frame["room"])

    def switch(self, room: str) -> None:
        if room in self.joined:
            self.current = room

    def _forget(self, room: str) -> None:
        if room in self.joined:
            self.joined.remove(room)
        if self.current == room:
            self.current = self.joined[-1] if self.joined else None


# ---------------------------------------------------------------- writes not stored

WRITES = frozenset({"send", "edit", "delete", "dm"})


def not_stored(frame: AnyServerFrame | None, request: dict[str, Any]) -> bool:
    """Whether ``frame``, the answer to ``request``, says the server stored nothing of it.

    The server answers a write it could not commit (its disk full or read-only...) with
    ``unavailable``; that write was not done at all, so it may simply be sent again.
    """
    return (
        isinstance(frame, frames.ErrorFrame)
        and frame.code == "unavailable"
        and request.get("type") in WRITES
    )


def describe_write(request: dict[str, Any]) -> str:
    """A write request in one escaped line: what the user would recognise as theirs."""
    text = escape(str(request.get("text", "")), newlines=False)
    match request["type"]:
        case "send":
            return f"#{_n(request['room'])}: {text}"
        case "dm":
            return f"direct message to {_n(request['to'])}: {text}"
        case "edit":
            return f"edit of [{request['id']}] in #{_n(request['room'])}: {text}"
        case _:
            return f"deletion of [{request['id']}] in #{_n(request['room'])}"


class Unsent:
    """The writes the server answered ``unavailable``, oldest first, kept for ``/retry``.

    Why keep them: the server stored nothing of such a write and said so, so the line
    the user typed would otherwise be lost; with it kept, sending it again is one command.
    ``/retry`` sends them all again, in order, to where they were going (not to the
    current room); one that fails again is kept again.
    """

    def __init__(self) -> None:
        self._requests: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._requests)

    def add(self, request: dict[str, Any]) -> Notice:
        """Keep a write that was not stored; the line to show the user for it."""
        self._requests.append({key: value for key, value in request.items() if key != "ref"})
        return Notice(
            f"! not sent (server could not store it): {describe_write(request)}"
            " — /retry to send again",
            error=True,
        )

    def retry(self) -> list[dict[str, Any]] | Notice:
        """The writes to send again (no longer kept), or a notice that there are none."""
        if not self._requests:
            return Notice("* nothing to send again")
        requests, self._requests = self._requests, []
        return requests


# ---------------------------------------------------------------- server frames

# Bidirectional formatting characters can make text display in another order than it
# was written ("Trojan source"); line and paragraph separators break lines on some
# terminals. None of them is a control character, so the server relays them.
_INVISIBLE = frozenset("\u061c\u200e\u200f\u2028\u2029") | frozenset(
    chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
)


def escape(text: str, *, newlines: bool = True) -> str:
    """``text`` made safe for a terminal: control characters shown as ``\\x1b`` etc.

    Tabs stay; a newline stays (followed by an indent, so a message cannot forge a
    line that looks like another user's) when ``newlines`` is true.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n" and newlines:
            out.append("\n" + INDENT)
        elif ch == "\t":
            out.append(ch)
        elif unicodedata.category(ch) == "Cc" or ch in _INVISIBLE:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


_UNSAFE_IN_JSON = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def json_line(raw: str) -> str:
    """A received JSON line made safe to print raw: DEL and C1 as ``\\u`` escapes.

    JSON requires C0 characters in strings to be escaped, but not DEL and C1 (which
    some terminals obey); outside strings only whitespace may appear, so replacing
    them everywhere keeps the line valid and equal in meaning.
    """
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", raw.rstrip("\r\n"))


def decode_server_frame(line: bytes | str) -> AnyServerFrame | None:
    """Validate one received line; ``None`` for a frame type this client does not know.

    The protocol allows new frame types and new optional fields, so unknown types
    are skipped and unknown fields dropped rather than treated as errors.
    Raises :exc:`ValueError` for a line that is not a valid frame.
    """
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for _ in range(2):
        try:
            return server_frame_adapter.validate_python(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if any(error["type"] == "union_tag_invalid" for error in errors):
                return None
            extra = [error["loc"] for error in errors if error["type"] == "extra_forbidden"]
            if len(extra) != len(errors):
                raise ValueError(_describe(exc, 1)) from None
            data = _without(data, extra)
    raise ValueError("unexpected fields")  # pragma: no cover - the second pass is clean


def _without(data: Any, locations: list[tuple[int | str, ...]]) -> Any:
    """A copy of ``data`` without the fields at ``locations`` (pydantic error locations)."""
    data = copy.deepcopy(data)
    for loc in locations:
        path = list(loc[1:])  # loc[0] is the union tag
        target = data
        for part in path[:-1]:
            target = target[part]
        target.pop(path[-1], None)
    return data


def clock(ts: str, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS`` of an RFC 3339 timestamp, in ``tz`` (default: local time)."""
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return "--:--:--"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(tz).strftime("%H:%M:%S")


def _message_line(
    message: frames.Message | frames.Edited | frames.MessageRecord, edited: bool, tz: tzinfo | None
) -> str:
    mark = " (edited)" if edited else ""
    return (
        f"{clock(message.ts, tz)} #{_n(message.room)} [{message.id}] "
        f"{_n(message.user)}{mark}: {_with_file(message)}"
    )


def _with_file(
    frame: frames.Message | frames.Edited | frames.MessageRecord | frames.DirectMessage,
) -> str:
    """The text of a frame, after ``[file] name (size, id)`` when it carries a file."""
    file = getattr(frame, "file", None)
    if file is None:
        return escape(frame.text)
    shown = f"[file] {_n(file.name)} ({format_size(file.size)}, {_n(file.id)})"
    return f"{shown} {escape(frame.text)}" if frame.text else shown


def _records(records: list[frames.MessageRecord], tz: tzinfo | None) -> list[str]:
    return [_message_line(record, record.edited_ts is not None, tz) for record in records]


def _n(name: str) -> str:
    """A name for display: one line, escaped (names are validated, but trust nothing)."""
    return escape(name, newlines=False)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def format_frame(frame: AnyServerFrame, tz: tzinfo | None = None) -> list[str]:
    """Display lines for one server frame (none for ping, pong, welcome and bye)."""
    match frame:
        case frames.Message():
            return [_message_line(frame, False, tz)]
        case frames.Edited():
            return [_message_line(frame, True, tz)]
        case frames.Deleted():
            return [
                f"{clock(frame.ts, tz)} #{_n(frame.room)} [{frame.id}] deleted by {_n(frame.by)}"
            ]
        case frames.DirectMessage():
            return [
                f"{clock(frame.ts, tz)} [dm {frame.id}] {_n(frame.from_)} -> {_n(frame.to)}: "
                f"{_with_file(frame)}"
            ]
        case frames.Presence():
            verb = "joined" if frame.event == "join" else "left"
            return [f"* {_n(frame.user)} {verb} #{_n(frame.room)}"]
        case frames.Joined():
            count = _plural(len(frame.members), "member")
            head = f"* joined #{_n(frame.room)} ({count}: {', '.join(map(_n, frame.members))})"
            return [head, *_records(frame.history, tz)]
        case frames.Left():
            return [f"* left #{_n(frame.room)}"]
        case frames.HistoryReply():
            count = _plural(len(frame.messages), "message")
            return [f"* history of #{_n(frame.room)}: {count}", *_records(frame.messages, tz)]
        case frames.DmHistoryReply():
            count = _plural(len(frame.messages), "direct message")
            head = f"* direct messages with {_n(frame.with_)}: {count}"
            return [head, *(line for dm in frame.messages for line in format_frame(dm, tz))]
        case frames.RoomsReply():
            rooms = ", ".join(
                f"#{_n(room.name)} ({_plural(room.members, 'member')})" for room in frame.rooms
            )
            return [f"* rooms: {rooms or 'none'}"]
        case frames.MembersReply():
            members = ", ".join(_n(user) for user in frame.members)
            return [f"* members of #{_n(frame.room)}: {members or 'none'}"]
        case frames.LoginOk():
            return [f"* logged in as {_n(frame.user)}"]
        case frames.ErrorFrame():
            retry = f" (retry after {frame.retry_after:g} s)" if frame.retry_after else ""
            return [f"! {frame.code}: {escape(frame.message, newlines=False)}{retry}"]
        case _:
            return []


def format_record(record: frames.MessageRecord, tz: tzinfo | None = None) -> str:
    """A stored message (from ``history``) shown like a live one, marked if edited."""
    return _message_line(record, record.edited_ts is not None, tz)


def format_rejoined(frame: frames.Joined) -> str:
    """The line for a room joined again after a reconnect (its history is not repeated)."""
    count = _plural(len(frame.members), "member")
    return f"* rejoined #{_n(frame.room)} ({count}: {', '.join(map(_n, frame.members))})"


# ---------------------------------------------------------------- files


def format_size(count: int) -> str:
    """``512 bytes``, ``47.1 KiB``, ``25.0 MiB``, ``1.00 GiB``: sizes as people read them."""
    if count < 1024:
        return f"{count} byte" + ("" if count == 1 else "s")
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            value = count / scale
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_progress(
    label: str, done: int, total: int | None, elapsed: float, width: int = 20
) -> str:
    """One line of a transfer's progress: a bar, bytes, rate and time left.

    ``notes.pdf [#########...........] 45% 12.3/27.0 MiB 8.1 MiB/s 2 s left``
    """
    rate = done / elapsed if elapsed > 0 else 0.0
    speed = f"{format_size(int(rate))}/s"
    if not total:
        return f"{label} {format_size(done)} {speed}"
    share = min(1.0, done / total)
    filled = int(share * width)
    bar = "#" * filled + "." * (width - filled)
    if rate > 0 and done < total:
        left = (total - done) / rate
        eta = f"{left:.0f} s left" if left < 120 else f"{left / 60:.0f} min left"
    else:
        eta = "done" if done >= total else "..."
    return f"{label} [{bar}] {share:4.0%} {format_size(done)} of {format_size(total)} {speed} {eta}"


_LOCAL_UNSAFE = re.compile(r'[/\\\x00-\x1f\x7f-\x9f:*?"<>|]')


def local_name(name: str) -> str:
    """A name the server gave a file, safe to save as here: no path, no hidden file.

    The server sanitises names already; a client trusts no server with its disk.
    """
    name = "".join(ch for ch in name if ch not in _INVISIBLE and unicodedata.category(ch) != "Cf")
    name = _LOCAL_UNSAFE.sub("_", name).strip().lstrip(".").strip()
    return name[:200] or "download"


def download_target(
    given: str | None, name: str, *, is_dir: Callable[[str], bool], exists: Callable[[str], bool]
) -> str:
    """Where ``/download`` saves a file: ``given`` (a file, or a folder to save ``name`` in),
    else ``name`` here; a name of our choosing never replaces a file (``a (1).pdf``).

    Raises :exc:`ValueError` when ``given`` names a file that exists.
    """
    if given is not None and not is_dir(given):
        if exists(given):
            raise ValueError(f"{given} exists; give another path")
        return given
    folder = given or "."
    safe = local_name(name)
    stem, dot, extension = safe.rpartition(".")
    if not stem:
        stem, dot, extension = safe, "", ""
    candidate, number = safe, 1
    while exists(f"{folder}/{candidate}") or exists(f"{folder}/{candidate}.part"):
        candidate = f"{stem} ({number}){dot}{extension}"
        number += 1
    return candidate if folder == "." else f"{folder.rstrip('/')}/{candidate}"


# ---------------------------------------------------------------- read markers


@dataclass
class ReadMarks:
    """What the user has read, room by room, and the ``mark_read`` frames that says.

    A message counts as read once it was shown while its room was the current one (or
    when its room becomes current). ``known`` is the server's marker as last heard
    (``joined.read_id``, ``read`` frames from this or another device); :meth:`take`
    gives a frame for each room where more was read than the server knows, once.
    """

    known: dict[str, int] = field(default_factory=dict)
    last_shown: dict[str, int] = field(default_factory=dict)
    wanted: dict[str, int] = field(default_factory=dict)

    def shown(self, room: str, message_id: int, current: str | None) -> None:
        """A message of ``room`` was shown (or the room's history, up to ``message_id``)."""
        self.last_shown[room] = max(self.last_shown.get(room, 0), message_id)
        if room == current:
            self.switched(room)

    def switched(self, room: str) -> None:
        """``room`` is now current: what was shown of it is read."""
        upto = self.last_shown.get(room, 0)
        if upto > max(self.known.get(room, 0), self.wanted.get(room, 0)):
            self.wanted[room] = upto

    def told(self, room: str, read_id: int) -> None:
        """The server says the user has read ``room`` up to ``read_id``."""
        self.known[room] = max(self.known.get(room, 0), read_id)
        if self.wanted.get(room, 0) <= self.known[room]:
            self.wanted.pop(room, None)

    def take(self) -> list[dict[str, Any]]:
        """The ``mark_read`` frames due now (each room's newest read message)."""
        due = [
            {"type": "mark_read", "room": room, "id": upto} for room, upto in self.wanted.items()
        ]
        for frame in due:
            self.known[frame["room"]] = frame["id"]  # (the reply says the same, or more)
        self.wanted.clear()
        return due


# ---------------------------------------------------------------- reconnecting


@dataclass
class Backoff:
    """How long to wait before each reconnect attempt: doubling, full jitter, capped.

    Why jitter: after a server restart every client reconnects at once; delays drawn at
    random up to a doubling ceiling spread them out instead of making them arrive
    together at each doubling. Why a floor: a server that accepts and drops at once must
    not be hit in a tight loop. Why ``stable``: growth restarts only after a connection
    that lasted, so a server that drops each client right after login still sees the
    delays grow. ``rand`` and ``clock`` are injectable for the tests.
    """

    first: float = 1.0  # the ceiling of the first delay, which is thus 0.5 to 1 s
    floor: float = 0.5
    cap: float = 30.0
    stable: float = 10.0
    rand: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic
    attempts: int = 0
    _up_since: float | None = None

    def ceiling(self, attempt: int) -> float:
        """The most the delay before attempt ``attempt`` (0-based) can be."""
        return min(self.cap, self.first * 2.0 ** min(attempt, 64))

    def next_delay(self) -> float:
        """The delay before the next attempt, uniformly between the floor and the ceiling."""
        ceiling = self.ceiling(self.attempts)
        self.attempts += 1
        low = min(self.floor, ceiling)
        return low + self.rand() * (ceiling - low)

    def connected(self) -> None:
        """A connection is up (logged in, rooms rejoined)."""
        self._up_since = self.clock()

    def lost(self) -> None:
        """The connection is gone: start from short delays again if it had lasted."""
        if self._up_since is not None and self.clock() - self._up_since >= self.stable:
            self.attempts = 0
        self._up_since = None


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_HasId)
H = TypeVar("H")


class ResumeState(Generic[H]):
    """What the client has shown, so that after a reconnect each message shows once, in order.

    Room message ids only grow, also across server restarts, and one connection gets a
    room's events in id order; so the last id shown per room is the whole memory needed
    to drop a duplicate, and the ``after`` of the ``history`` request that fetches what
    was missed. While a room catches up, its live events (``H``: whatever the client
    keeps of a frame) are held, and released after the missed messages.
    """

    def __init__(self, dm_memory: int = 4096) -> None:
        self._last: dict[str, int] = {}
        self._target: dict[str, int] = {}
        self._held: dict[str, list[H]] = {}
        self._dms: set[int] = set()
        self._dm_order: deque[int] = deque()
        self._dm_memory = dm_memory
        # The newest direct message shown: a reconnect logs in with it as ``dm_after``,
        # so a DM lost with the old connection comes again, and only those after it.
        self.last_dm = 0

    def seen(self, room: str) -> int | None:
        """The last message id shown in ``room``; None for a room never joined."""
        return self._last.get(room)

    def fresh(self, room: str, message_id: int) -> bool:
        """Whether a message is new (then it counts as shown) or was shown already."""
        if message_id <= self._last.get(room, 0):
            return False
        self._last[room] = message_id
        return True

    def fresh_dm(self, dm_id: int) -> bool:
        """The same for direct messages, whose ids are unique; remembers the latest ones."""
        if dm_id in self._dms:
            return False
        self._dms.add(dm_id)
        self._dm_order.append(dm_id)
        self.last_dm = max(self.last_dm, dm_id)
        if len(self._dm_order) > self._dm_memory:
            self._dms.discard(self._dm_order.popleft())
        return True

    def joined(self, room: str, last_id: int) -> None:
        """A ``joined`` was shown with its history: everything up to ``last_id`` is shown.

        A ``last_id`` below what was seen means the server's history was replaced (not
        something this server does); then its ids are what counts from now on.
        """
        if self.is_reset(room, last_id):
            self._last[room] = last_id
        else:
            self._last[room] = max(self._last.get(room, 0), last_id)

    def is_reset(self, room: str, last_id: int) -> bool:
        """Whether the server's ``last_id`` of a room is below what was shown there."""
        return last_id < self._last.get(room, 0)

    def hold(self, room: str) -> None:
        """A rejoin is on its way: hold the room's live events until it has caught up."""
        self._held.setdefault(room, [])

    def holding(self) -> list[str]:
        """The rooms whose live events are being held."""
        return list(self._held)

    def held(self, room: str, item: H) -> bool:
        """Keep ``item`` if its room is catching up (True), else it may be shown (False)."""
        if room in self._held:
            self._held[room].append(item)
            return True
        return False

    def rejoined(self, room: str, last_id: int) -> int | None:
        """``joined`` came back after a reconnect: the ``after`` for the first ``history``
        request, or None when nothing was missed."""
        self._target[room] = last_id
        seen = self._last.get(room, 0)
        return seen if seen < last_id else None

    def page(self, room: str, records: Sequence[R]) -> tuple[list[R], int | None]:
        """A ``history`` page came: the messages not shown yet, and the ``after`` of the
        next page, or None when done.

        Done means the page reached the ``last_id`` of the ``joined``, or was empty:
        everything later comes live. "Fewer than the limit" is no sign of the end,
        because the server shortens a page that would not fit in one frame.
        """
        new = [record for record in records if self.fresh(room, record.id)]
        if not records or records[-1].id >= self._target.get(room, 0):
            return new, None
        return new, records[-1].id

    def release(self, room: str) -> list[H]:
        """The room has caught up (or gave up): stop holding; what was held, in order."""
        self._target.pop(room, None)
        return self._held.pop(room, [])


def unconfirmed(sent: Sequence[dict[str, Any]], seen: Sequence[tuple[str, str]]) -> list[Any]:
    """The ``send`` frames whose message is not among ``seen`` ``(room, text)`` pairs.

    A send whose answer was lost with the connection may or may not have been
    stored. What the catch-up showed from this user tells: each message seen
    accounts for one send of the same text to the same room; the rest are sent again.
    """
    left = Counter(seen)
    missing = []
    for frame in sent:
        key = (frame["room"], frame["text"])
        if left[key]:
            left[key] -= 1
        else:
            missing.append(frame)
    return missing
