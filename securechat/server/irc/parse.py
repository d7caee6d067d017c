"""IRC lines, sans-I/O: splitting the byte stream, parsing, formatting, text rules.

Why a module of its own: everything here is a pure function of its input (no state but
:class:`LineSplitter`'s buffer), so the rules an IRC client meets first (what a line is,
how long it may be, how tags are escaped, where a long text is cut) are tested without a
socket, and the edge (:mod:`securechat.server.irc.edge`) only decides what to say.

The rules are those of RFC 1459/2812 as modern clients use them
(https://modern.ircdocs.horse) and IRCv3 message tags:

- A line ends in ``\\r\\n``, ``\\n`` or ``\\r`` (so no ``\\r`` is ever echoed back inside
  a line: a client would take it for the end of one); empty lines are skipped. Without
  its tags it is at most 512 bytes with the CR LF; the tags (``@...`` and the space after
  them) may add 8,191 bytes. A longer line is not parsed: it is answered 417 and the
  connection goes on. Bytes of a line that outgrows both limits are thrown away as they
  come, so a million-byte line costs no memory.
- A line must be UTF-8 (the server says ``UTF8ONLY``); one that is not is refused.
- securechat text has no formatting and no control characters but ``\\n`` and ``\\t``,
  so IRC formatting codes (bold ``\\x02``, colours ``\\x03``, ...) and other control
  characters are stripped from what IRC users send (:func:`strip_formatting`), and a
  text with several lines is sent to them as several lines, each cut to fit 512 bytes
  at character boundaries (:func:`split_text`).
"""

import re
from dataclasses import dataclass, field

__all__ = [
    "MAX_LINE",
    "MAX_TAGS",
    "InvalidUtf8",
    "LineSplitter",
    "Message",
    "TooLong",
    "escape_tag",
    "format_line",
    "parse",
    "split_text",
    "strip_formatting",
    "unescape_tag",
]

MAX_LINE = 512  # bytes of a line without its tags, CR LF included
MAX_TAGS = 8191  # bytes of the tags, the leading @ and the space after them included

_TAG_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = re.compile(r"[; \\\r\n]")
_UNESCAPE = re.compile(r"\\(.?)", re.DOTALL)
# mIRC colours (\x03 fg[,bg]), hex colours (\x04 RRGGBB[,RRGGBB]), then every other
# formatting code and control character (\t stays: securechat text may hold it).
_FORMATTING = re.compile(
    "\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?"
    "|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
    "|[\x00-\x08\x0a-\x1f\x7f-\x9f]"
)


class TooLong:
    """Stands for a line over the limits, read and thrown away (answered 417)."""

    def __repr__(self) -> str:
        return "<TooLong>"


TOO_LONG = TooLong()


class InvalidUtf8(ValueError):
    """A line that is not UTF-8; ``command`` is its command, as far as it can be read."""

    def __init__(self, command: str) -> None:
        super().__init__(f"{command or 'line'} is not UTF-8")
        self.command = command


@dataclass(slots=True)
class Message:
    """One parsed IRC line: tags, source (empty from a client), command, parameters.

    ``command`` is upper case; the last parameter may be the trailing one (it may hold
    spaces, or be empty).
    """

    command: str
    params: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    source: str = ""


def escape_tag(value: str) -> str:
    """A tag value as it is written on the wire (IRCv3 message-tags escaping)."""
    return _ESCAPE.sub(lambda m: _TAG_ESCAPES[m[0]], value)


def unescape_tag(value: str) -> str:
    """The value of an escaped tag; an unknown escape is the character itself."""
    return _UNESCAPE.sub(lambda m: _TAG_UNESCAPES.get(m[1], m[1]), value)


def parse(line: bytes) -> Message | None:
    """Parse one line (without its line ending); ``None`` for a line with no command.

    Raises :exc:`InvalidUtf8` for a line that is not UTF-8.
    """
    try:
        text = line.decode()
    except UnicodeDecodeError:
        words = line.decode("latin-1").split()
        while words and words[0][:1] in ("@", ":"):
            words.pop(0)
        raise InvalidUtf8(words[0].upper()[:32] if words else "") from None
    tags: dict[str, str] = {}
    source = ""
    rest = text.replace("\0", "").lstrip(" ")  # (NUL is never allowed: it is dropped)
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        for item in raw.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = unescape_tag(value)
        rest = rest.lstrip(" ")
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    head, colon, trailing = rest.partition(" :")
    if not colon and rest.startswith(":"):  # (no middle parameters, only a trailing one)
        head, colon, trailing = "", ":", rest[1:]
    words = head.split(" ")
    words = [word for word in words if word]
    if not words:
        return None
    params = words[1:]
    if colon:
        params.append(trailing)
    return Message(words[0].upper(), params, tags, source)


def format_line(
    command: str, *params: str, source: str = "", tags: dict[str, str] | None = None
) -> str:
    """One line, without CR LF: ``[@tags] [:source] COMMAND params``.

    The last parameter is written as a trailing one (``:...``) when it must be (it is
    empty, holds a space or starts with ``:``); earlier ones must not need it.
    """
    parts = []
    if tags:
        parts.append("@" + ";".join(f"{k}={escape_tag(v)}" if v else k for k, v in tags.items()))
    if source:
        parts.append(":" + source)
    parts.append(command)
    if params:
        parts.extend(params[:-1])
        last = params[-1]
        parts.append(":" + last if not last or " " in last or last[0] == ":" else last)
    return " ".join(parts)


class LineSplitter:
    """Split the bytes a client sends into lines, within IRC's limits.

    :meth:`feed` returns each complete line without its ending, or :data:`TOO_LONG` in
    the place of one over the limits: 512 bytes without its tags (CR LF included), the
    tags at most :data:`MAX_TAGS` more. A line that grows past both is dropped while it
    arrives (nothing of it is kept) and reported once it ends.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False

    @property
    def partial(self) -> bool:
        """Part of a line is held (or being thrown away)."""
        return bool(self._buffer) or self._discarding

    def feed(self, data: bytes) -> list[bytes | TooLong]:
        buffer = self._buffer
        if not buffer and not self._discarding and data.endswith(b"\n"):
            # The usual read: whole lines, nothing held. (Split on CR and LF alike: a
            # CR LF leaves an empty line between them, dropped as any empty line.)
            pieces = data.replace(b"\r", b"\n").split(b"\n")
            if len(data) + 2 <= MAX_LINE:  # (no line can be too long)
                return [line for line in pieces if line]
            return [TOO_LONG if _too_long(line) else line for line in pieces if line]
        lines: list[bytes | TooLong] = []
        start = len(buffer)
        buffer += data.replace(b"\r", b"\n")
        begin = 0
        while (end := buffer.find(b"\n", start)) != -1:
            if self._discarding:
                self._discarding = False
                lines.append(TOO_LONG)
            elif end > begin:
                line = bytes(buffer[begin:end])
                lines.append(TOO_LONG if _too_long(line) else line)
            begin = start = end + 1
        if begin:
            del buffer[:begin]
        if len(buffer) > MAX_LINE + MAX_TAGS:
            buffer.clear()
            self._discarding = True
        elif self._discarding:
            buffer.clear()
        return lines


def _too_long(line: bytes) -> bool:
    """Over the limits: the tags (with ``@`` and the space) and the rest (with CR LF)."""
    if len(line) + 2 <= MAX_LINE:
        return False
    if line.startswith(b"@"):
        space = line.find(b" ")
        if space == -1:
            return len(line) > MAX_TAGS
        return space + 1 > MAX_TAGS or len(line) - space - 1 + 2 > MAX_LINE
    return True


def strip_formatting(text: str) -> str:
    """``text`` without IRC formatting codes or control characters (``\\t`` stays)."""
    return _FORMATTING.sub("", text)


def split_text(text: str, budget: int) -> list[str]:
    """Cut one line of text into pieces of at most ``budget`` UTF-8 bytes each.

    Cuts fall between characters, never inside one; where the piece has a space in
    its last third, the cut comes after that space, so words stay whole when they can.
    """
    budget = max(budget, 4)  # (room for any one character)
    if len(text.encode()) <= budget:
        return [text]
    pieces: list[str] = []
    while text:
        size, cut = 0, 0
        for index, char in enumerate(text):
            size += len(char.encode())
            if size > budget:
                break
            cut = index + 1
        else:
            pieces.append(text)
            break
        space = text.rfind(" ", 0, cut)
        if space >= 0 and space + 1 > cut - cut // 3 and space + 1 < cut:
            cut = space + 1
        pieces.append(text[:cut])
        text = text[cut:]
    return pieces
