"""The file API of the web edge: ``POST /api/files`` and ``GET /api/files/ID``.

Why here: a file is too large for a frame, so it travels over HTTPS on the chat's own
port, and the message that carries it is posted through the hub like any other (see
"Files" in ``docs/protocol.md``). :class:`~securechat.server.web.http.WebEdge` owns the
HTTP connection and calls into this module; this module says what a request asks
(:func:`parse_upload`), does the work that may block in a worker (:func:`authorize_upload`,
:func:`finish_upload`, :func:`authorize_download`: tokens and files are in the database,
bytes are fsynced) and builds the answers (:class:`Answer`, :func:`download_head`).

A worker hands its result back through a :class:`Handoff` and wakes the connection; the
connection's I/O thread takes it at its next turn. If the connection is gone by then,
the handoff says so and the worker lets go of what it made (a temporary file, an open
file), so nothing leaks whichever side finishes first.

Security: the bearer token is checked with :class:`~securechat.server.tokens.LoginTokens`
and never logged; a room's files are for the users with a connection in the room now
(as reading its history is for those who joined it), a direct message's for its two
parties; a deleted message's file is gone (404). A download may instead carry a signed
link (``?link=``, :class:`~securechat.server.files.FileLinks`: what an IRC user is
given, for a browser that has no token): the link is the permission, for that file
until it expires (410), and it is never logged either. Names are sanitised metadata, sent
back only in ``Content-Disposition``; a download is ``attachment`` with ``nosniff`` and
a type that is ``application/octet-stream`` unless the bytes are a safe raster image.
"""

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

import h11
from pydantic import TypeAdapter, ValidationError

from securechat.exceptions import FileRefused, ProtocolError, StoreUnavailable
from securechat.protocol.frames import Text
from securechat.protocol.names import is_valid_name
from securechat.server.files import FILE_ID, SAFE_IMAGES, SHA256_HEX, Upload, sanitize_name
from securechat.server.store import FileEntry
from securechat.server.tokens import MAX_TOKEN_LENGTH

if TYPE_CHECKING:
    from securechat.server.hub import Hub

__all__ = [
    "API_PATH",
    "LOG_IN_FIRST",
    "Answer",
    "Download",
    "Handoff",
    "UploadAsk",
    "authorize_download",
    "authorize_upload",
    "content_disposition",
    "download_head",
    "etag_matches",
    "finish_upload",
    "link_of",
    "parse_range",
    "parse_upload",
]

log = logging.getLogger("securechat.files")

API_PATH = b"/api/files"
READ_CHUNK = 256 * 1024  # bytes of a download read from its file at a time
LOG_IN_FIRST = "log in first: Authorization: Bearer <your login token>"
_TEXT = TypeAdapter(Text)
_TOKEN = re.compile(r"[\x21-\x7e]+")
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*')
DOWNLOAD_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; sandbox"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"private, no-cache"),
    (b"accept-ranges", b"bytes"),
]


@dataclass
class Answer:
    """A whole response decided off the I/O thread (an error, or an upload's 201)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    close: bool = False  # the request's body was not read: the connection must close

    @classmethod
    def refused(cls, error: FileRefused) -> "Answer":
        headers = []
        if error.retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(error.retry_after))).encode()))
        if error.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="securechat"'))
        return cls(error.status, error.message.encode() + b"\n", headers)

    def discard(self) -> None:
        """Nothing to let go of."""


class Handoff:
    """A worker's result for the connection's I/O thread, and the wake-up that says so.

    ``put`` (the worker) returns False when the connection has gone meanwhile: the
    worker then discards what it made. ``take`` and ``abandon`` are the I/O thread's.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._value: Any = None
        self._abandoned = False

    def put(self, value: Any) -> bool:
        with self._lock:
            if self._abandoned:
                return False
            self._value = value
        self._wake()
        return True

    def take(self) -> Any:
        with self._lock:
            value, self._value = self._value, None
        return value

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def abandon(self) -> Any:
        """The connection is gone: what was put already (for the caller to discard)."""
        with self._lock:
            self._abandoned = True
            value, self._value = self._value, None
        return value


# ------------------------------------------------------------------ requests


def bearer(request: h11.Request) -> str | None:
    """The token of ``Authorization: Bearer TOKEN``, if the request has a plausible one."""
    for name, value in request.headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            if (scheme.lower() == "bearer" and len(token) <= MAX_TOKEN_LENGTH
                    and _TOKEN.fullmatch(token)):  # fmt: skip
                return token
            return None
    return None


def link_of(request: h11.Request) -> str | None:
    """The ``link`` query field of a download (``""`` when it cannot be one: given
    twice, or among too many fields), or None without one."""
    query = request.target.partition(b"?")[2]
    if not query:
        return None
    try:
        fields = parse_qs(query.decode("latin-1"), keep_blank_values=True, max_num_fields=16)
    except ValueError:
        return ""
    values = fields.get("link")
    if values is None:
        return None
    return values[0] if len(values) == 1 else ""


def header(request: h11.Request, wanted: bytes) -> bytes | None:
    for name, value in request.headers:
        if name == wanted:
            return value
    return None


@dataclass(frozen=True)
class UploadAsk:
    """What a ``POST /api/files`` asks: where, under which name, how much, which hash."""

    token: str
    room: str | None
    to: str | None
    name: str
    text: str
    declared: int | None  # Content-Length, if given
    expected: str | None  # X-Content-SHA256, lowercase hex


def parse_upload(request: h11.Request, max_size: int) -> UploadAsk:
    """Read an upload's request line and headers; :exc:`FileRefused` if it cannot be one.

    401 without a bearer token; 400 for a bad target, name, caption or hash; 413 when
    the declared length is over ``max_size`` (before a byte of the body is read).
    """
    token = bearer(request)
    if token is None:
        raise FileRefused(401, LOG_IN_FIRST)
    query = request.target.partition(b"?")[2].decode("latin-1")
    try:
        fields = parse_qs(query, keep_blank_values=True, errors="replace", max_num_fields=16)
    except ValueError:
        raise FileRefused(400, "too many query fields") from None
    if any(len(values) > 1 for values in fields.values()):
        raise FileRefused(400, "a query field is given twice")
    room, to = fields.get("room", [None])[0], fields.get("to", [None])[0]
    if (room is None) == (to is None):
        raise FileRefused(400, "say where the file goes: ?room=NAME or ?to=USER")
    target = room if room is not None else to
    assert target is not None
    if not is_valid_name(target):
        raise FileRefused(400, "names are 1-32 characters of a-z 0-9 _ -, first a letter or digit")
    raw_name = fields.get("name", [None])[0]
    if raw_name is None:
        disposition = header(request, b"content-disposition")
        raw_name = filename_of(disposition.decode("latin-1")) if disposition else None
    if raw_name is None:
        raise FileRefused(400, "name the file: ?name=NAME or a Content-Disposition header")
    try:
        name = sanitize_name(raw_name)
    except ValueError as exc:
        raise FileRefused(400, str(exc)) from None
    text = fields.get("text", [""])[0]
    if text.strip():
        try:
            text = _TEXT.validate_python(text)
        except ValidationError as exc:
            message = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            raise FileRefused(400, f"text: {message}") from None
    else:
        text = ""
    expected = header(request, b"x-content-sha256")
    digest = None
    if expected is not None:
        digest = expected.decode("latin-1").strip().lower()
        if not SHA256_HEX.fullmatch(digest):
            raise FileRefused(400, "X-Content-SHA256 must be 64 hex digits")
    length = header(request, b"content-length")
    declared = int(length) if length is not None else None  # (h11 checked it is a number)
    if declared is not None and declared > max_size:
        raise FileRefused(413, f"the file is larger than the limit of {max_size} bytes")
    return UploadAsk(token, room, to, name, text, declared, digest)


def filename_of(disposition: str) -> str | None:
    """The file name of a ``Content-Disposition`` header: ``filename*`` (RFC 6266, UTF-8
    percent-encoded), else ``filename``; None if it names none."""
    params: dict[str, str] = {}
    for part in disposition.split(";")[1:] if ";" in disposition else []:
        match = _PARAM.fullmatch(part)
        if match:
            value = match.group(2)
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params.setdefault(match.group(1).lower(), value)
    # (a quoted filename holding ';' was split above: read it again whole)
    quoted = re.search(r'(?i)\bfilename\s*=\s*"((?:[^"\\]|\\.)*)"', disposition)
    if quoted:
        params["filename"] = re.sub(r"\\(.)", r"\1", quoted.group(1))
    extended = params.get("filename*")
    if extended is not None:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        if charset.lower() == "utf-8" and encoded:
            return unquote(encoded, encoding="utf-8", errors="replace")
    return params.get("filename") or None


# ------------------------------------------------------------------ the workers' jobs


def _who(hub: "Hub", token: str) -> str:
    user = hub.tokens.holder(token) if hub.tokens is not None else None
    if user is None:
        raise FileRefused(401, "the login token is not (or no longer) valid: log in again")
    return user


def authorize_upload(hub: "Hub", ask: UploadAsk) -> Upload:
    """(A worker.) Whose token, may they post there, may they upload now: the upload.

    Raises :exc:`FileRefused`: 401, 403 not in the room, 404 no such user, and what
    :meth:`~securechat.server.files.FileStore.begin` refuses.
    """
    assert hub.files is not None
    user = _who(hub, ask.token)
    if ask.room is not None and not hub.in_room(user, ask.room):
        raise FileRefused(403, f"you are not in room {ask.room!r}: join it to share files there")
    if ask.to is not None and not hub.user_exists(ask.to):
        raise FileRefused(404, f"there is no user {ask.to!r}")
    return hub.files.begin(user, ask.declared, ask.expected)


def finish_upload(hub: "Hub", upload: Upload, ask: UploadAsk, handoff: Handoff) -> None:
    """(A worker.) Store the received file, post its message, hand over the answer.

    The answer, 201 with the message's frame as JSON, comes once the message is
    committed and sent to the room; nothing is posted if the connection went away
    before the bytes were stored, if the hash is wrong or the disk full.
    """
    if handoff.abandoned:
        upload.abort()
        return
    try:
        stored = upload.finish()
    except FileRefused as error:
        handoff.put(Answer.refused(error))
        return
    except OSError as exc:
        log.error("cannot store an upload in %s: %s", upload.files.blobs, exc)
        handoff.put(Answer(500, b"the server could not store the file\n"))
        return
    file = dataclasses.replace(stored, name=ask.name)

    def posted(frame: bytes) -> None:
        upload.done(True)
        handoff.put(Answer(201, frame.rstrip(b"\n"), [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
        ]))  # fmt: skip

    def not_posted(error: Exception) -> None:
        upload.done(False)
        handoff.put(_not_posted(error))

    try:
        hub.post_file(upload.user, room=ask.room, to=ask.to, text=ask.text, file=file,
                      then=posted, failed=not_posted)  # fmt: skip
    except ProtocolError as error:  # left the room meanwhile, or the user is gone
        not_posted(error)


def _not_posted(error: Exception) -> Answer:
    """The answer to an upload whose message was not posted (stored bytes are dropped)."""
    if isinstance(error, ProtocolError):
        status = {"not_member": 403, "no_such_user": 404}.get(error.code, 500)
        return Answer(status, error.message.encode() + b"\n")
    if isinstance(error, StoreUnavailable):
        status = 507 if error.reason == "disk full" else 503
        retry = [(b"retry-after", str(max(1, round(error.retry_after))).encode())]
        return Answer(status, b"not stored: the server could not write to its disk; try "
                      b"again\n", retry)  # fmt: skip
    return Answer(500, b"internal server error; the file was not posted\n")


@dataclass
class Download:
    """A file about to be sent: what it is, and an open descriptor to read it from."""

    entry: FileEntry
    fd: int

    def discard(self) -> None:
        os.close(self.fd)


def authorize_download(
    hub: "Hub", token: str | None, file_id: str, link: str | None = None
) -> Download:
    """(A worker.) May this request read this file: the file, opened.

    With ``link`` (the ``?link=`` of a signed link), the link alone decides: whoever
    holds a good one may (no token, no membership). Else the ``token`` does: whose it
    is, and whether they are in the file's room now or a party of its direct message.

    Raises :exc:`FileRefused`: 403 a link that is not one for this file, 410 one that
    has expired; 401 a token that is not valid; 404 no such file (or its message was
    deleted); 403 not in its room now, or not a party of its direct message.
    """
    files = hub.files
    assert files is not None
    user = None
    if link is not None:
        verdict = files.links.verdict(file_id, link)
        if verdict != "valid":
            again = f"/download {file_id}" if FILE_ID.fullmatch(file_id) else "/download ID"
            if verdict == "expired":
                raise FileRefused(410, "this link has expired: ask for the file again, or "
                                  f"fetch it with securechat-client {again}")  # fmt: skip
            raise FileRefused(403, "this link is not valid (mistyped, or made before the "
                              "server's link key changed): ask for the file again, or "
                              f"fetch it with securechat-client {again}")  # fmt: skip
    elif token is None:
        raise FileRefused(401, LOG_IN_FIRST)
    else:
        user = _who(hub, token)
    entry = files.lookup(file_id)
    if entry is None or entry.deleted:
        raise FileRefused(404, "no such file (or its message was deleted)")
    if user is not None:  # (else the link is the permission)
        if entry.room is not None:
            if not hub.in_room(user, entry.room):
                raise FileRefused(403, f"this file is for the members of room "
                                  f"{entry.room!r}: join it first")  # fmt: skip
        elif user not in (entry.sender, entry.recipient):
            raise FileRefused(403, "this file was sent to someone else")
    try:
        fd = files.open(entry.file.sha256)
    except FileNotFoundError:
        log.error("shared file %s is missing from %s", entry.file.sha256, files.blobs)
        raise FileRefused(404, "no such file") from None
    return Download(entry, fd)


# ------------------------------------------------------------------ answers


def content_disposition(name: str) -> bytes:
    """``attachment`` with ``name`` for every browser: an ASCII ``filename`` and the
    exact one as ``filename*`` (RFC 6266, UTF-8 percent-encoded)."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in name)
    encoded = quote(name, safe="!#$&+-.^_`|~")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}".encode()


def parse_range(value: bytes | None, size: int) -> tuple[int, int] | bool | None:
    """A ``Range`` header as the (first, last) byte to send; None to send it all (no
    header, one we do not do such as several ranges, or a malformed one, which RFC 9110
    says to ignore); False when unsatisfiable (416)."""
    if value is None:
        return None
    unit, _, spec = value.decode("latin-1").strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":  # the last N bytes
        if last == "":
            return None
        count = int(last)
        if count == 0 or size == 0:
            return False
        return max(0, size - count), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # (malformed: ignored)
    if start >= size:
        return False
    return start, end


def etag_matches(value: bytes, etag: bytes) -> bool:
    """``If-None-Match`` names ``etag`` (or is ``*``); weak or strong, as RFC 9110 says."""
    for candidate in value.split(b","):
        candidate = candidate.strip()
        if candidate == b"*" or candidate.removeprefix(b"W/") == etag:
            return True
    return False


def download_head(
    request: h11.Request, entry: FileEntry
) -> tuple[int, list[tuple[bytes, bytes]], int, int]:
    """The status and headers of a download, and which bytes to send (offset, count)."""
    file = entry.file
    etag = f'"{file.sha256}"'.encode()
    mime = file.mime if file.mime in SAFE_IMAGES else "application/octet-stream"
    headers = [
        (b"content-type", mime.encode()),
        (b"content-disposition", content_disposition(file.name)),
        (b"etag", etag),
        *DOWNLOAD_HEADERS,
    ]
    if (match := header(request, b"if-none-match")) is not None and etag_matches(match, etag):
        return 304, headers, 0, 0
    wanted = header(request, b"range")
    if_range = header(request, b"if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # (the client's part is of other bytes: send them all)
    span = parse_range(wanted, file.size)
    if span is False:
        headers.append((b"content-range", f"bytes */{file.size}".encode()))
        headers.append((b"content-length", b"0"))
        return 416, headers, 0, 0
    if span is None or span is True:
        headers.append((b"content-length", str(file.size).encode()))
        return 200, headers, 0, file.size
    first, last = span
    headers.append((b"content-range", f"bytes {first}-{last}/{file.size}".encode()))
    headers.append((b"content-length", str(last - first + 1).encode()))
    return 206, headers, first, last - first + 1
