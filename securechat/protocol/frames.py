"""Frames: the pydantic models of every frame of the wire protocol.

Client frames form one discriminated union keyed on ``type``; they are strict
(``"5"`` is not an id, ``true`` is not a string) and forbid unknown fields, so
:func:`parse_client_frame` either returns a valid frame or raises a
:exc:`~securechat.exceptions.ProtocolError` with code ``bad_frame``. Server frames
are models too, so the protocol document (``securechat-schema``) is generated from
this one module and the client can validate what it receives.

This module does no I/O.
"""

import json
import math
import re
import time
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import to_json

from securechat.exceptions import ProtocolError
from securechat.protocol.names import NAME_PATTERN

MAX_TEXT_CHARS = 4000
# Unicode's control characters (category Cc: U+0000-U+001F, U+007F-U+009F) but \t, \n
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _check_text(value: str) -> str:
    if control := _CONTROL.search(value):
        raise ValueError(f"control character U+{ord(control[0]):04X} is not allowed in text")
    stripped = value.strip()
    if not stripped:
        raise ValueError("text is empty")
    if len(stripped) > MAX_TEXT_CHARS:
        raise ValueError(f"text is longer than {MAX_TEXT_CHARS} characters")
    return stripped


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Text = Annotated[
    str,
    AfterValidator(_check_text),
    Field(description="1-4000 characters after stripping; no control characters but \\n, \\t"),
]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_ID = 2**63 - 1  # what SQLite's INTEGER holds
MessageId = Annotated[int, Field(ge=1, le=MAX_ID)]


_this_second: tuple[int, str] = (-1, "")  # (second, its formatted part), reused


def timestamp(now: datetime | None = None) -> str:
    """Server time as RFC 3339 UTC with milliseconds, e.g. ``2026-11-26T02:20:28.123Z``.

    Called for every message: the date and time part is formatted once a second.
    """
    global _this_second
    if now is not None:
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    t = time.time()
    second = int(t)
    cached, prefix = _this_second
    if cached != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _this_second = (second, prefix)
    return f"{prefix}{int((t - second) * 1000):03d}Z"


# ---------------------------------------------------------------- client frames


class ClientFrame(BaseModel):
    """Base of the frames a client sends; ``ref`` is echoed in the answer."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    ref: Ref = None  # type: ignore[assignment]  # absent is fine; null is a wrong type


class Login(ClientFrame):
    """Log in; answered by `login_ok` or `error` `auth_failed`."""

    type: Literal["login"]
    user: Name
    password: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default=None,  # type: ignore[assignment]
        description="required unless the TLS client certificate names this user",
    )
    dm_after: Annotated[int, Field(ge=0, le=MAX_ID)] = Field(
        default=None,  # type: ignore[assignment]
        description="extension: the last DM id the client holds; every DM to or from the "
        "user after it follows `login_ok`, oldest first",
    )
    token: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        default=None,  # type: ignore[assignment]
        description="extension: a login token from an earlier `login_ok`, instead of the password",
    )

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if self.password is not None and self.token is not None:
            raise ValueError("password and token cannot be used together")
        return self


class Join(ClientFrame):
    """Join (and create) a room; answered by `joined`."""

    type: Literal["join"]
    room: Name


class Leave(ClientFrame):
    """Leave a room; answered by `left`."""

    type: Literal["leave"]
    room: Name


class Send(ClientFrame):
    """Post to a room; answered by the `message` broadcast carrying this `ref`."""

    type: Literal["send"]
    room: Name
    text: Text


class Edit(ClientFrame):
    """Change one's own message; answered by the `edited` broadcast."""

    type: Literal["edit"]
    room: Name
    id: MessageId
    text: Text


class Delete(ClientFrame):
    """Delete one's own message (admins: any); answered by the `deleted` broadcast."""

    type: Literal["delete"]
    room: Name
    id: MessageId


class Dm(ClientFrame):
    """A direct message; answered by the `dm` frame on the sending connection."""

    type: Literal["dm"]
    to: Name
    text: Text


class History(ClientFrame):
    """Page a room's history: newest `limit` before `before`, or oldest after `after`."""

    type: Literal["history"]
    room: Name
    before: MessageId = None  # type: ignore[assignment]
    after: Annotated[int, Field(ge=0, le=MAX_ID)] = None  # type: ignore[assignment]
    limit: Annotated[int, Field(ge=1, le=200)] = 50

    @model_validator(mode="after")
    def _one_direction(self) -> Self:
        if self.before is not None and self.after is not None:
            raise ValueError("before and after cannot be used together")
        return self


class DmHistory(ClientFrame):
    """Extension: page a direct-message conversation; answered by `dm_history`."""

    type: Literal["dm_history"]
    with_: Name = Field(alias="with")
    before: MessageId = None  # type: ignore[assignment]
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class MarkRead(ClientFrame):
    """Extension: the last id this user has read in a room or a DM conversation.

    Exactly one of `room` (a room this connection joined) and `with` (the other user of a
    conversation); answered by `read`, which every connection of the user gets.
    """

    type: Literal["mark_read"]
    room: Name = None  # type: ignore[assignment]
    with_: Name = Field(default=None, alias="with")  # type: ignore[assignment]
    id: Annotated[int, Field(ge=0, le=MAX_ID)]

    @model_validator(mode="after")
    def _one_place(self) -> Self:
        if (self.room is None) == (self.with_ is None):
            raise ValueError("exactly one of room and with")
        return self


class Rooms(ClientFrame):
    """List rooms; answered by `rooms`."""

    type: Literal["rooms"]


class Members(ClientFrame):
    """List a joined room's members; answered by `members`."""

    type: Literal["members"]
    room: Name


class Ping(ClientFrame):
    """Answered by `pong` (also before login)."""

    type: Literal["ping"]


class Pong(ClientFrame):
    """The answer to a server `ping`; no reply."""

    type: Literal["pong"]


class Logout(ClientFrame):
    """End the session; answered by `bye`, then the server closes."""

    type: Literal["logout"]


AnyClientFrame = Annotated[
    Login
    | Join
    | Leave
    | Send
    | Edit
    | Delete
    | Dm
    | DmHistory
    | History
    | MarkRead
    | Rooms
    | Members
    | Ping
    | Pong
    | Logout,
    Field(discriminator="type"),
]
_client_adapter: TypeAdapter[AnyClientFrame] = TypeAdapter(AnyClientFrame)
_validate_client_json = _client_adapter.validator.validate_json  # (without the wrapper)


def _describe(error: ValidationError) -> str:
    """One sentence a client developer can act on, from pydantic's first error."""
    first = error.errors(include_url=False)[0]
    kind, loc, msg = first["type"], first["loc"], first["msg"]
    if kind == "json_invalid":
        return "frame is not valid JSON"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "frame must be a JSON object"
    if kind == "union_tag_not_found":
        return "frame has no 'type' field"
    if kind == "union_tag_invalid":
        return f"unknown frame type {first['input'].get('type')!r}"
    field = ".".join(str(part) for part in loc[1:])
    if kind == "extra_forbidden":
        return f"unknown field {field!r}"
    if kind == "missing":
        return f"missing field {field!r}"
    if kind == "string_pattern_mismatch":
        return f"{field}: names are 1-32 characters of a-z 0-9 _ -, starting with a letter or digit"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{field}: {msg}" if field else msg


def salvage_ref(line: bytes) -> str | None:
    """The ``ref`` of an invalid frame, if it has a usable one, for its error frame."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    ref = data.get("ref") if isinstance(data, dict) else None
    if not (isinstance(ref, str) and 1 <= len(ref) <= 64):
        return None
    try:  # json.loads accepts lone surrogates, which cannot be sent back
        ref.encode()
    except UnicodeEncodeError:
        return None
    return ref


def parse_client_frame(line: bytes) -> AnyClientFrame:
    """Validate one line (without its newline) into a client frame.

    Raises :exc:`ProtocolError` ``bad_frame`` carrying the frame's ``ref`` when one
    can be recovered from the invalid frame.
    """
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_frame", "frame is not valid UTF-8") from None
    try:
        return _validate_client_json(line)
    except ValidationError as exc:
        raise ProtocolError("bad_frame", _describe(exc), ref=salvage_ref(line)) from None


# ---------------------------------------------------------------- server frames


class ServerFrame(BaseModel):
    """Base of the frames the server sends."""

    model_config = ConfigDict(extra="forbid")

    def encode(self) -> bytes:
        """The frame as one line of JSON, newline included, ready to send."""
        return self.model_dump_json(exclude_none=True).encode() + b"\n"


class FileInfo(BaseModel):
    """Extension: a file shared with a message; its bytes come from `GET /api/files/{id}`
    over HTTPS with the login token (see "Files" under "Extensions")."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="what `GET /api/files/{id}` takes")
    name: str = Field(description="the file's name, sanitised: metadata only, never a path")
    size: int = Field(description="in bytes")
    sha256: str = Field(description="of the bytes, 64 lowercase hex digits")
    mime: str = Field(
        description="`image/png`, `image/jpeg`, `image/gif` or `image/webp` when the bytes "
        "are one, else `application/octet-stream`"
    )


FileField = Field(
    default=None,
    description="extension: a file shared with the message (`text` may then be empty)",
)


class MessageRecord(BaseModel):
    """A stored room message as it appears in ``joined`` and ``history``."""

    model_config = ConfigDict(extra="forbid")
    room: str
    id: int
    user: str
    text: str
    ts: str
    edited_ts: str | None = None
    file: FileInfo | None = FileField


class Welcome(ServerFrame):
    """First frame after the TLS handshake."""

    type: Literal["welcome"] = "welcome"
    server: Literal["securechat"] = "securechat"
    version: str
    protocol: int


class LoginOk(ServerFrame):
    """Login succeeded."""

    type: Literal["login_ok"] = "login_ok"
    user: str
    token: str | None = Field(
        default=None,
        description="extension: log in with it instead of the password until it expires "
        "or is revoked (by `logout`, a password change or the user's deletion)",
    )
    ref: str | None = None


class Joined(ServerFrame):
    """Reply to `join`: members (sorted), the room's last id and its last 50 messages."""

    type: Literal["joined"] = "joined"
    room: str
    members: list[str]
    last_id: int
    history: list[MessageRecord]
    read_id: int = Field(
        default=0, description="extension: the last id this user has read here (0: none)"
    )
    ref: str | None = None


class Left(ServerFrame):
    """Reply to `leave`."""

    type: Literal["left"] = "left"
    room: str
    ref: str | None = None


class Message(ServerFrame):
    """A room message, to every member connection (the sender's copy has `ref`)."""

    type: Literal["message"] = "message"
    room: str
    id: int
    user: str
    text: str
    ts: str
    file: FileInfo | None = FileField
    ref: str | None = None


def message_bytes(room: str, id: int, user: str, text: str, ts: str) -> bytes:
    """``Message(...).encode()`` without a ``ref``, for the hot path: the same bytes.

    Every message sent is encoded once; building and validating the model for that
    costs six times what this does (a test keeps the two identical). Only the text
    is escaped: room and user are names (``a-z 0-9 _ -``) and ``ts`` is ours.
    """
    return (
        f'{{"type":"message","room":"{room}","id":{id},"user":"{user}",'
        f'"text":{to_json(text).decode()},"ts":"{ts}"}}\n'
    ).encode()


class Edited(ServerFrame):
    """A message's new text, to every member connection."""

    type: Literal["edited"] = "edited"
    room: str
    id: int
    user: str
    text: str
    ts: str
    ref: str | None = None


class Deleted(ServerFrame):
    """A message was deleted, to every member connection."""

    type: Literal["deleted"] = "deleted"
    room: str
    id: int
    by: str
    ts: str
    ref: str | None = None


class DirectMessage(ServerFrame):
    """A direct message, to every connection of sender and recipient."""

    type: Literal["dm"] = "dm"
    id: int
    from_: str = Field(alias="from")
    to: str
    text: str
    ts: str
    file: FileInfo | None = FileField
    ref: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class HistoryReply(ServerFrame):
    """Reply to `history`, oldest first."""

    type: Literal["history"] = "history"
    room: str
    messages: list[MessageRecord]
    ref: str | None = None


class DmHistoryReply(ServerFrame):
    """Extension: reply to `dm_history`, oldest first."""

    type: Literal["dm_history"] = "dm_history"
    with_: str = Field(alias="with")
    messages: list[DirectMessage]
    ref: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class ReadMarker(ServerFrame):
    """Extension: the last id the user has read in a room (`room`) or conversation (`with`).

    To every connection of the user when it moves; the answer to `mark_read`.
    """

    type: Literal["read"] = "read"
    room: str | None = None
    with_: str | None = Field(default=None, alias="with")
    id: int
    ref: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class RoomInfo(BaseModel):
    name: str
    members: int


class RoomsReply(ServerFrame):
    """Reply to `rooms`: every room with its count of users, sorted by name."""

    type: Literal["rooms"] = "rooms"
    rooms: list[RoomInfo]
    ref: str | None = None


class MembersReply(ServerFrame):
    """Reply to `members`: users in the room, sorted."""

    type: Literal["members"] = "members"
    room: str
    members: list[str]
    ref: str | None = None


class Presence(ServerFrame):
    """A user's first connection joined, or last connection left, a room."""

    type: Literal["presence"] = "presence"
    room: str
    user: str
    event: Literal["join", "leave"]
    ts: str


class ServerPing(ServerFrame):
    """Sent to idle clients; answer with `pong`."""

    type: Literal["ping"] = "ping"


class ServerPong(ServerFrame):
    """Reply to a client `ping`."""

    type: Literal["pong"] = "pong"
    ref: str | None = None


class Bye(ServerFrame):
    """Reply to `logout`; the server then closes."""

    type: Literal["bye"] = "bye"
    ref: str | None = None


ErrorCode = Literal[
    "bad_frame",
    "frame_too_large",
    "auth_required",
    "auth_failed",
    "rate_limited",
    "not_member",
    "not_found",
    "forbidden",
    "no_such_user",
    "server_busy",
    "slow_consumer",
    "shutting_down",
    "internal",
    "unavailable",
]


class ErrorFrame(ServerFrame):
    """A refused request or a condition; `retry_after` (seconds) with `rate_limited` and
    `unavailable`."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    ref: str | None = None
    retry_after: float | None = None


AnyServerFrame = Annotated[
    Welcome
    | LoginOk
    | Joined
    | Left
    | Message
    | Edited
    | Deleted
    | DirectMessage
    | DmHistoryReply
    | HistoryReply
    | ReadMarker
    | RoomsReply
    | MembersReply
    | Presence
    | ServerPing
    | ServerPong
    | Bye
    | ErrorFrame,
    Field(discriminator="type"),
]
server_frame_adapter: TypeAdapter[AnyServerFrame] = TypeAdapter(AnyServerFrame)


def error_frame(
    code: str, message: str, ref: str | None = None, retry_after: float | None = None
) -> bytes:
    """Encode an ``error`` frame. ``retry_after`` is said in whole milliseconds, rounded
    up: a wait that is not over says so (never ``0.0``, which invites a retry now)."""
    if retry_after is not None:
        millis = math.ceil(round(retry_after * 1000, 6))  # (1.0 s: 1000, not 1001)
        retry_after = max(millis, 1 if retry_after > 0 else 0) / 1000
    return ErrorFrame(
        code=code,  # type: ignore[arg-type]
        message=message,
        ref=ref,
        retry_after=retry_after,
    ).encode()


def client_schema() -> dict[str, Any]:
    """JSON Schema of every client frame (for the protocol document)."""
    return _client_adapter.json_schema()


def server_schema() -> dict[str, Any]:
    """JSON Schema of every server frame (for the protocol document)."""
    return server_frame_adapter.json_schema(by_alias=True)
