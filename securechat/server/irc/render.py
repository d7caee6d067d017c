"""What IRC users see of securechat's frames: frames in, IRC lines out (sans-I/O).

Why a module of its own: the mapping from the JSON protocol's events to IRC lines is
the part people read when they ask "what does an IRC user see of an edit?", so it lives
in pure functions of a frame and of what the viewer negotiated (:class:`View`), tested
without a connection.

- A room message is ``PRIVMSG #room`` from its author; a direct message is ``PRIVMSG``
  to the recipient's nick. A text of several lines becomes several lines, each cut to
  fit 512 bytes (:func:`~securechat.server.irc.parse.split_text`); a text starting with
  ``/me `` is a CTCP ACTION (what ``/me`` sends from an IRC client comes in that way).
- ``msgid`` is the room's id, ``general/42``, or ``dm/17`` for a direct message (ids of
  direct messages are unique among all of them); it is on the first line of a message.
  ``time`` is the server's timestamp; ``account`` the author's user name.
- An edit is a ``NOTICE`` from the editor to the channel: ``[edited general/42] new
  text``. A deletion is ``REDACT #general general/42`` for clients that negotiated
  ``draft/message-redaction``, else a ``NOTICE``: ``[deleted general/42]``.
- A shared file is a line of text after the message's: ``[file] report.pdf (1.2 MiB,
  id ID) https://host:port/api/files/ID?link=...``, a signed link that works without a
  login token (:class:`~securechat.server.files.FileLinks`) for ``--file-link-days``
  after the message was sent (after the replay, for CHATHISTORY: ``now``).
"""

from dataclasses import dataclass

from securechat.server.files import FileLinks
from securechat.server.irc.parse import MAX_LINE, escape_tag, split_text

__all__ = ["HOST", "View", "add_tags", "source", "tag_prefix", "text_lines"]

HOST = "securechat"  # the host part of every user's IRC source: nick!nick@securechat


def source(nick: str) -> str:
    """The source (``nick!user@host``) of a user's lines: the user name throughout."""
    return f"{nick}!{nick}@{HOST}"


@dataclass(frozen=True)
class View:
    """What a client negotiated that changes the lines it gets (its rendering profile).

    Frozen and hashable: clients with the same profile get the same bytes for a room's
    message, which the gateway renders once for all of them. ``links`` makes the links
    to shared files (the gateway's, one object for every view, compared by identity;
    None: files are named without a link, as with ``--no-web``).
    """

    server_time: bool = False
    msgid: bool = False  # message-tags: msgid (and the other server tags)
    account: bool = False  # account-tag
    extended_join: bool = False
    redaction: bool = False
    links: FileLinks | None = None

    @classmethod
    def of(cls, caps: set[str], links: FileLinks | None = None) -> "View":
        tags = "message-tags" in caps
        return cls(
            server_time="server-time" in caps,
            msgid=tags,
            account="account-tag" in caps,
            extended_join="extended-join" in caps,
            redaction="draft/message-redaction" in caps,
            links=links,
        )

    def tags(self, ts: str | None, msgid: str | None, account: str | None) -> tuple[str, str]:
        """Tag prefixes (``"@...; "`` or ``""``) for a message's first line and the others."""
        rest = []
        if self.server_time and ts:
            rest.append(f"time={ts}")
        if self.account and account:
            rest.append(f"account={account}")
        first = [f"msgid={msgid}", *rest] if self.msgid and msgid else rest
        return tag_prefix(first), tag_prefix(rest)


def tag_prefix(items: list[str]) -> str:
    return "@" + ";".join(items) + " " if items else ""


def add_tags(line: str, **tags: str) -> str:
    """``line`` with more tags (values escaped), before those it has."""
    items = ";".join(f"{key}={escape_tag(value)}" for key, value in tags.items())
    if line.startswith("@"):
        return f"@{items};{line[1:]}"
    return f"@{items} {line}"


def text_lines(
    command: str, src: str, target: str, text: str, first_tags: str = "", rest_tags: str = ""
) -> list[str]:
    """``command`` (PRIVMSG or NOTICE) lines from ``src`` to ``target`` carrying ``text``.

    One line per line of text, each cut to fit 512 bytes with its CR LF (tags are not
    counted: they have their own limit); an empty line of text is sent as one space.
    """
    head = f":{src} {command} {target} :"
    budget = MAX_LINE - 2 - len(head.encode())
    lines = []
    tags = first_tags
    for number, line in enumerate(text.split("\n")):
        action = number == 0 and line.startswith("/me ") and command == "PRIVMSG"
        if action:
            line = line[4:]
        for piece in split_text(line or " ", budget - (9 if action else 0)):
            body = f"\x01ACTION {piece}\x01" if action else piece
            lines.append(f"{tags}{head}{body}")
            tags = rest_tags
    return lines


def room_msgid(room: str, message_id: int) -> str:
    return f"{room}/{message_id}"


def dm_msgid(dm_id: int) -> str:
    return f"dm/{dm_id}"


SHOWN_NAME_BYTES = 100  # a longer file name is shortened on IRC, so the link fits the line


def shown_name(name: str) -> str:
    """``name``, or (over 100 bytes) its start, ``…`` and its extension."""
    if len(name.encode()) <= SHOWN_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        stem, extension = name, ""
    tail = f"….{extension}" if extension else "…"
    budget = SHOWN_NAME_BYTES - len(tail.encode())
    return stem.encode()[:budget].decode("utf-8", errors="ignore") + tail


def shown_text(frame: dict, links: FileLinks | None = None, now: float | None = None) -> str:
    """A message's text, and a line naming its file if it carries one (``[file] ...``).

    IRC has no attachments: the file is named with its size and id (the terminal
    client's ``/download ID``), then, with ``links``, a signed HTTPS link to it that a
    browser opens without logging in. It expires ``links.days`` after the message's
    ``ts`` (the same frame: the same line, for every viewer and every render), or
    after ``now`` when given (a replay of history: old files get links that work).
    """
    text, file = frame["text"], frame.get("file")
    if not file:
        return text
    size, shown = file["size"], f"{file['size']} bytes"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            shown = f"{size / scale:.1f} {unit}"
            break
    line = f"[file] {shown_name(file['name'])} ({shown}, id {file['id']})"
    url = links.url(str(file["id"]), frame.get("ts"), now) if links is not None else None
    if url is not None:
        line = f"{line} {url}"
    return f"{text}\n{line}" if text else line


def message_lines(
    view: View, frame: dict, command: str = "PRIVMSG", now: float | None = None
) -> list[str]:
    """A room ``message`` (or a history record) as the channel's lines (``now``: see
    :func:`shown_text`)."""
    user, room = frame["user"], frame["room"]
    first, rest = view.tags(frame["ts"], room_msgid(room, frame["id"]), user)
    text = shown_text(frame, view.links, now)
    return text_lines(command, source(user), "#" + room, text, first, rest)


_MESSAGE_HEAD = b'{"type":"message","room":"'
BACKSLASH, QUOTE = b'\\"'  # (as ints: a byte's test in bytes is cheapest so)
# The line heads of (room, user) pairs, as bytes: a room's people say many things.
HEAD_CACHE = 4096
_HEADS: dict[tuple[bytes, bytes], bytes] = {}


def plain_message(view: View, frame: bytes) -> bytes | None:
    """A room ``message`` frame's one IRC line (with CR LF) when it is plain, read from
    the frame's bytes: None for anything else, which :func:`message_lines` renders.

    The hot path of the gateway, which renders each message once per view: a plain
    message is what :func:`~securechat.protocol.frames.message_bytes` encodes, fields
    in its order, with a text that JSON did not escape (no quote, backslash, newline
    or control character), does not start with ``/me `` and fits one line. Its text is
    then the frame's bytes as they are. (Tested to give what the general path gives.)
    """
    if not frame.startswith(_MESSAGE_HEAD) or not frame.endswith(b'"}\n'):
        return None
    at = len(_MESSAGE_HEAD)
    room_end = frame.find(b'","id":', at)
    id_end = frame.find(b',"user":"', room_end)
    user_end = frame.find(b'","text":"', id_end)
    text_end = frame.find(b'","ts":"', user_end)
    if min(room_end, id_end, user_end, text_end) < 0:
        return None
    text = frame[user_end + 10 : text_end]
    if not text or BACKSLASH in text or QUOTE in text or text.startswith(b"/me "):
        return None
    names = (frame[at:room_end], frame[id_end + 9 : user_end])  # (room, user)
    head = _HEADS.get(names)
    if head is None:
        if len(_HEADS) >= HEAD_CACHE:
            _HEADS.clear()
        room, user = names[0].decode(), names[1].decode()
        head = _HEADS[names] = f":{source(user)} PRIVMSG #{room} :".encode()
    if len(head) + len(text) + 2 > MAX_LINE:
        return None
    if not (view.server_time or view.msgid or view.account):
        return head + text + b"\r\n"  # (no tags to read)
    room, user = names[0].decode(), names[1].decode()
    message_id = frame[room_end + 7 : id_end].decode()
    tags, _ = view.tags(frame[text_end + 8 : -3].decode(), f"{room}/{message_id}", user)
    return tags.encode() + head + text + b"\r\n"


def dm_lines(
    view: View, frame: dict, command: str = "PRIVMSG", now: float | None = None
) -> list[str]:
    """A ``dm`` as a line from its sender to its recipient's nick (``now``: see
    :func:`shown_text`)."""
    sender = frame["from"]
    first, rest = view.tags(frame["ts"], dm_msgid(frame["id"]), sender)
    text = shown_text(frame, view.links, now)
    return text_lines(command, source(sender), frame["to"], text, first, rest)


def edited_lines(view: View, frame: dict) -> list[str]:
    """An ``edited`` as a NOTICE from the editor naming the message and its new text."""
    user, room = frame["user"], frame["room"]
    first, rest = view.tags(frame["ts"], None, user)
    text = f"[edited {room_msgid(room, frame['id'])}] {frame['text']}"
    return text_lines("NOTICE", source(user), "#" + room, text, first, rest)


def deleted_lines(view: View, frame: dict) -> list[str]:
    """A ``deleted`` as REDACT (draft/message-redaction) or a NOTICE saying which."""
    by, room = frame["by"], frame["room"]
    msgid = room_msgid(room, frame["id"])
    tags, _ = view.tags(frame["ts"], None, by)
    if view.redaction:
        return [f"{tags}:{source(by)} REDACT #{room} {msgid}"]
    return [f"{tags}:{source(by)} NOTICE #{room} :[deleted {msgid}]"]


def join_line(view: View, user: str, room: str, ts: str | None = None) -> str:
    """``user`` joins ``#room`` (with account and real name for extended-join)."""
    tags, _ = view.tags(ts, None, user)
    if view.extended_join:
        return f"{tags}:{source(user)} JOIN #{room} {user} :{user}"
    return f"{tags}:{source(user)} JOIN #{room}"
