"""The room hub: who is in which room, and which frames go to which connections.

Pure code: no sockets and no threads of its own. The transport calls it from each
connection's thread; a *member* is anything with a ``user``, the set of ``rooms``
it has joined, and a :class:`~securechat.mailbox.Mailbox` for its outgoing frames.
A room broadcasts by appending the encoded frame once to its
:class:`~securechat.mailbox.Feed`, which every member's mailbox follows; replies go
to the one mailbox with ``push``.

Durability: every message, edit, deletion and direct message is handed to the
*committer* (see :mod:`securechat.server.store`) with a callback; the frames go out from
that callback, after the commit, so an acknowledgement is never sent for something
a crash could lose. A room tracks two counters: ``next_id`` (assigned) and
``last_id`` (committed and delivered, what ``joined`` and ``history`` show).

A write whose commit failed (a full disk, a read-only file system...) gets its
failure callback instead: its sender is told ``unavailable`` (the write was not
stored, try again), nobody else hears of it, and nothing in memory changed for it;
the ids it had taken stay unused, a gap, never given to another message.

Shared files: :meth:`Hub.post_file` posts a message or direct message carrying a
file uploaded over HTTPS (the web edge's file API, whose uploader is no connection of
the chat); it is committed and delivered like any other, and its sender hears of it
through a callback with the frame. Deleting it tells the file store (:attr:`Hub.files`)
that its bytes may go.

Direct messages: each connection has a :class:`DmCursor`. After its login a
catch-up reads the DMs it is due from the store, a page at a time as the connection
takes them, and live delivery takes over once it has caught up, so each DM comes
once and in id order (protocol.md, "Exact DM catch-up").

Locking: the hub's lock guards the room table, the user table, the direct message
counter and the connections' DM cursors; each :class:`Room` has its own lock, which
covers assigning a message id, submitting the write, and (in the callback)
delivering the frame to every member (one append to its feed), so all members see a
room's events in one order. Both are re-entrant because an inline committer runs the callback in the
submitting thread. No socket write happens under either lock (mailboxes only
queue). Lock order is always room, then hub, then mailbox.
"""

import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from pydantic_core import to_json

from securechat.exceptions import ProtocolError, StoreUnavailable
from securechat.protocol.frames import (
    Deleted,
    DirectMessage,
    DmHistoryReply,
    Edited,
    FileInfo,
    HistoryReply,
    Joined,
    Left,
    MembersReply,
    Message,
    MessageRecord,
    Presence,
    ReadMarker,
    RoomInfo,
    RoomsReply,
    ServerFrame,
    error_frame,
    message_bytes,
    timestamp,
)
from securechat.protocol.framing import DEFAULT_FRAME_LIMIT
from securechat.server.files import FileStore
from securechat.server.mailbox import Feed, Mailbox
from securechat.server.metrics import ServerMetrics
from securechat.server.store import (
    AddDm,
    AddMessages,
    DeleteMessage,
    DmRecord,
    EditMessage,
    InlineCommitter,
    SetDmMarker,
    SetReadMarker,
    SqliteStore,
    Store,
    StoredFile,
    StoredMessage,
    Write,
)
from securechat.server.tokens import LoginTokens

T = TypeVar("T")
JOIN_HISTORY = 50
RECENT_CACHE = 200  # messages per room kept in memory for joins and edits
CATCH_UP_PAGE = 256  # DMs per catch-up step at most (and a quarter of the mailbox's bounds)
NOT_STORED = "not stored: the server could not write to its disk; try again"


class Member(Protocol):
    """One logged-in connection, as the hub sees it."""

    user: str
    rooms: set[str]
    mailbox: Mailbox


class Committer(Protocol):
    """Makes writes durable, then runs their callbacks in submission order."""

    def submit(
        self,
        write: Write | None,
        then: Callable[[], None] | None = None,
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """``then`` after ``write`` is committed, or ``failed`` (with why) if it was not."""


def file_info(file: StoredFile | None) -> FileInfo | None:
    """A stored file as frames carry it."""
    if file is None:
        return None
    return FileInfo(id=file.id, name=file.name, size=file.size, sha256=file.sha256,
                    mime=file.mime)  # fmt: skip


def record(room: str, message: StoredMessage) -> MessageRecord:
    return MessageRecord(
        room=room, id=message.id, user=message.user, text=message.text, ts=message.ts,
        edited_ts=message.edited_ts, file=file_info(message.file),
    )  # fmt: skip


def message_frame(room: str, message: StoredMessage) -> bytes:
    """A new message as every member gets it (encoded by hand when it has no file)."""
    if message.file is None:
        return message_bytes(room, message.id, message.user, message.text, message.ts)
    return Message(room=room, id=message.id, user=message.user, text=message.text,
                   ts=message.ts, file=file_info(message.file)).encode()  # fmt: skip


def encoded(frame: ServerFrame, ref: str | None) -> tuple[bytes, bytes]:
    """The frame for everyone (encoded once), and the requester's copy with its ``ref``."""
    data = frame.encode()
    return data, with_ref(data, ref)


def with_ref(data: bytes, ref: str | None) -> bytes:
    """An encoded frame without ``ref``, with ``"ref"`` added as its last member."""
    return b'%s,"ref":%s}\n' % (data[:-2], to_json(ref)) if ref else data


def not_stored(error: Exception) -> ProtocolError:
    """The answer to a write whose commit failed with ``error``.

    ``unavailable`` when the storage failed (the client may try again after
    ``retry_after``); ``internal`` when the failure was a bug of ours.
    """
    if isinstance(error, StoreUnavailable):
        return ProtocolError("unavailable", NOT_STORED, retry_after=error.retry_after)
    return ProtocolError("internal", "internal server error; the request was not carried out")


def dm_frame(dm: DmRecord, ref: str | None = None) -> DirectMessage:
    return DirectMessage(
        id=dm.id, from_=dm.sender, to=dm.recipient, text=dm.text, ts=dm.ts,
        file=file_info(dm.file), ref=ref,
    )  # fmt: skip


@dataclass(eq=False)
class DmCursor:
    """Where one connection stands in its user's direct messages (under the hub's lock).

    The connection is due every DM to its user with an id above ``upto``, and every DM
    from its user with an id above both ``upto`` and ``sent_after``; ``upto`` is the
    newest id queued for it (or passed over). While ``catching_up``, live delivery
    leaves it out: a DM is committed before its delivery runs, so the catch-up reads it
    from the store, in id order, once (and ends before one whose delivery is still to
    run). Its own DMs' replies wait for it in ``own`` (id -> ref), and the write
    barriers behind them in ``waiting``.
    """

    upto: int
    sent_after: int
    catching_up: bool = True
    own: dict[int, str | None] = field(default_factory=dict)
    waiting: list[Callable[[], None]] = field(default_factory=list)

    def due(self, user: str, dm: DmRecord) -> bool:
        return dm.id > self.upto and (dm.recipient == user or dm.id > self.sent_after)


class Room:
    """A named room: its lock, members, feed, message counters and recent messages."""

    def __init__(self, name: str, last_id: int = 0) -> None:
        self.name = name
        self.lock = threading.RLock()
        self.members: dict[str, set[Member]] = {}
        self.feed = Feed()  # what every member gets, appended once
        self.next_id = last_id  # last id assigned
        self.last_id = last_id  # last id committed and delivered
        self.recent: deque[StoredMessage] = deque(maxlen=RECENT_CACHE)
        self.loaded = last_id == 0  # ``recent`` holds the newest messages
        self.deleting: set[int] = set()  # deletions submitted, not yet delivered
        self.closed = False  # removed from the hub; a thread holding it must look again

    def broadcast(
        self, *data: bytes, sender: Member | None = None, own: Sequence[bytes] = ()
    ) -> None:
        """Deliver ``data`` to every member; ``sender`` gets ``own`` instead (with its refs).

        The hot path of a busy room: one append, whatever the number of members and frames.
        """
        if own and sender is not None:
            sender.mailbox.stand_in(self.feed, *own)
        self.feed.append(*data)

    def cached(self, message_id: int) -> StoredMessage | None:
        """The message with this id if it is in the recent cache.

        Ids in the cache are consecutive unless a failed commit left a gap, so the
        message is looked up by its offset first, and searched for only if that misses.
        """
        recent = self.recent
        if recent:
            index = message_id - recent[0].id
            if 0 <= index < len(recent) and recent[index].id == message_id:
                return recent[index]
            index = bisect_left(recent, message_id, key=lambda m: m.id)
            if index < len(recent) and recent[index].id == message_id:
                return recent[index]
        return None


class Hub:
    """All rooms and logged-in members of one server."""

    def __init__(
        self,
        *,
        user_exists: Callable[[str], bool],
        admins: Iterable[str] = (),
        store: Store | None = None,
        committer: Committer | None = None,
        clock: Callable[[], str] = timestamp,
        max_frame_bytes: int = DEFAULT_FRAME_LIMIT,
        metrics: ServerMetrics | None = None,
    ) -> None:
        """``metrics``: where the server's parts count (``GET /metrics``); a hub of its
        own otherwise, so that tests and tools need not make one."""
        self.user_exists = user_exists
        self.max_frame_bytes = max_frame_bytes
        self.admins = frozenset(admins)
        self.store: Store = store if store is not None else SqliteStore(":memory:")
        self._committer = committer if committer is not None else InlineCommitter(self.store)
        self._clock = clock
        self._lock = threading.RLock()
        self._rooms = {
            name: Room(name, last_id) for name, last_id in self.store.room_counters().items()
        }
        self._users: dict[str, set[Member]] = {}
        self._dm_cursors: dict[Member, DmCursor] = {}
        self._dm_counter, self._dm_markers = self.store.dm_state()
        self._dm_delivered = self._dm_counter  # the newest DM whose delivery has run
        self._read_markers: dict[tuple[str, str], int] = {}  # (user, #room or @user): id
        self.tokens: LoginTokens | None = None  # login tokens, where the store keeps them
        self.files: FileStore | None = None  # shared files' bytes, where there is a web edge
        self.metrics = metrics if metrics is not None else ServerMetrics()

    # -- connections

    def register(self, member: Member, dm_after: int | None = None) -> None:
        """A connection has logged in: the direct messages it is due come first, in order.

        With ``dm_after`` (the last DM id the client holds), every DM to or from the user
        after it. Without, the DMs to the user that no connection of it was sent yet (the
        user's delivery marker), and those from the user sent from now on.
        """
        with self._lock:
            self._users.setdefault(member.user, set()).add(member)
            if dm_after is None:
                cursor = DmCursor(self._dm_markers.get(member.user, 0), self._dm_counter)
            else:  # (no client holds a DM that does not exist yet: e.g. another database's)
                held = min(dm_after, self._dm_counter)
                cursor = DmCursor(held, held)
            self._dm_cursors[member] = cursor
        self._committer.submit(None, partial(self._catch_up, member))

    def _catch_up(self, member: Member) -> None:
        """(After every earlier commit.) Queue the next page of the DMs ``member`` is due.

        A page is at most a quarter of the mailbox's bounds, and the next one is read once
        the writer has taken it, so a user away for long is no slow consumer. A page that
        is not full ends the catch-up: what comes later, live delivery sends.
        """
        mailbox, user = member.mailbox, member.user
        with self._lock:
            cursor = self._dm_cursors.get(member)
            if cursor is None or not cursor.catching_up:
                return
            limit = max(1, min(CATCH_UP_PAGE, mailbox.max_frames // 4))
            budget = mailbox.max_bytes // 4
            dms = self.store.dms_after(user, cursor.upto, sent_after=cursor.sent_after,
                                       limit=limit)  # fmt: skip
            more = len(dms) == limit
            if dms and dms[-1].id > self._dm_delivered:
                # Committed in the batch this runs in, their delivery still to run: it
                # sends them (with the sender's ref), as the catch-up ends here.
                dms = [dm for dm in dms if dm.id <= self._dm_delivered]
                more = False
            frames: list[bytes] = []
            size = marker = 0
            for dm in dms:
                data = dm_frame(dm, cursor.own.get(dm.id)).encode()
                if frames and size + len(data) > budget:
                    break
                frames.append(data)
                size += len(data)
                cursor.upto = dm.id
                cursor.own.pop(dm.id, None)
                if dm.recipient == user:
                    marker = dm.id
            if marker:
                self._mark_delivered(user, marker)
            more = more or len(frames) < len(dms)
            cursor.catching_up = more
            waiting: list[Callable[[], None]] = []
            if not cursor.own:
                waiting, cursor.waiting = cursor.waiting, []
            next_page = partial(self._committer.submit, None, partial(self._catch_up, member))
            mailbox.push_run(frames, next_page if more else None)
        for callback in waiting:
            callback()

    def _mark_delivered(self, user: str, dm_id: int) -> None:
        """Move the user's delivery marker up to ``dm_id`` (never down)."""
        if dm_id > self._dm_markers.get(user, 0):
            self._dm_markers[user] = dm_id
            self._committer.submit(SetDmMarker(user, dm_id))

    def disconnect(self, member: Member) -> None:
        """A connection is gone: leave its rooms and forget it. Safe to call twice."""
        for name in sorted(member.rooms):
            self.leave(member, name, ref=None, reply=False)
        with self._lock:
            conns = self._users.get(member.user)
            if conns is not None:
                conns.discard(member)
                if not conns:
                    del self._users[member.user]
            cursor = self._dm_cursors.pop(member, None)
        for callback in cursor.waiting if cursor is not None else ():
            callback()

    def after_commits(self, callback: Callable[[], None], member: Member | None = None) -> None:
        """Run ``callback`` once everything submitted so far is committed and delivered.

        For ``member``, delivered includes the replies to its own DMs that wait for its
        catch-up to reach them, so that replies keep the order of requests.
        """
        if member is not None:
            callback = partial(self._after_own_replies, member, callback)
        self._committer.submit(None, callback)

    def commit_here(self) -> Callable[[], None] | None:
        """(An I/O thread, once.) The function that commits what this thread submitted,
        to call at the end of each loop turn; ``None`` when the committer's own thread
        commits (see :meth:`GroupCommitter.commit_here`)."""
        here = getattr(self._committer, "commit_here", None)
        return here() if here is not None else None

    def _after_own_replies(self, member: Member, callback: Callable[[], None]) -> None:
        cursor = self._dm_cursors.get(member)
        if cursor is not None and cursor.own:  # (rare: look again under the lock)
            with self._lock:
                if cursor.own:
                    cursor.waiting.append(callback)
                    return
        callback()

    def room_count(self) -> int:
        """Rooms known now: with history, or with members (for metrics)."""
        return len(self._rooms)

    def online_users(self) -> list[str]:
        with self._lock:
            return sorted(self._users)

    def is_online(self, user: str) -> bool:
        """A connection of ``user`` is logged in (one lookup, no lock: an IRC QUIT or PART)."""
        return user in self._users

    # -- rooms

    def _room(self, name: str, *, create: bool = False) -> Room | None:
        room = self._rooms.get(name)  # (one dict lookup is atomic: no lock to look)
        if room is None and create:
            with self._lock:
                room = self._rooms.get(name)
                if room is None:
                    room = self._rooms[name] = Room(name)
        return room

    def _drop_if_unused(self, room: Room) -> None:
        """Forget a room with no members and no history (called under its lock)."""
        if not room.members and room.next_id == 0:
            room.closed = True
            with self._lock:
                if self._rooms.get(room.name) is room:
                    del self._rooms[room.name]

    def _joined_room(self, member: Member, name: str) -> Room:
        """The room ``name`` if this connection is in it, else ``not_member``."""
        room = self._room(name) if name in member.rooms else None
        if room is None:
            raise ProtocolError("not_member", f"you are not in room {name!r}; join it first")
        return room

    def in_room(self, user: str, name: str) -> bool:
        """Whether any connection of ``user`` is in room ``name`` now (file access)."""
        room = self._rooms.get(name)  # (lookups of dicts are atomic: no lock needed)
        return room is not None and user in room.members

    def _load(self, room: Room) -> None:
        """Fill the recent-message cache from the store (under the room lock)."""
        if not room.loaded:
            room.recent.extend(self.store.recent(room.name, RECENT_CACHE))
            room.loaded = True

    def _latest(self, room: Room, limit: int) -> list[MessageRecord]:
        """The newest ``limit`` live messages, oldest first (under the room lock)."""
        self._load(room)
        live = [m for m in room.recent if not m.deleted]
        complete = not room.recent or room.recent[0].id == 1
        if len(live) < limit and not complete:
            live = self.store.page(room.name, before=None, after=None, limit=limit,
                                   upto=room.last_id)  # fmt: skip
        return [record(room.name, m) for m in live[-limit:]]

    def _live(self, room: Room, message_id: int) -> StoredMessage:
        """The live message with this id, else ``not_found`` (under the room lock)."""
        message = None
        if 1 <= message_id <= room.last_id and message_id not in room.deleting:
            self._load(room)
            message = room.cached(message_id) or self.store.message(room.name, message_id)
        if message is None or message.deleted:
            raise ProtocolError("not_found", f"no message {message_id} in room {room.name!r}")
        return message

    def join(self, member: Member, name: str, ref: str | None) -> None:
        while True:
            room = self._room(name, create=True)
            assert room is not None
            with room.lock:
                if room.closed:
                    continue  # it was dropped between lookup and lock; make a new one
                conns = room.members.setdefault(member.user, set())
                if not conns:
                    presence = Presence(room=name, user=member.user, event="join",
                                        ts=self._clock())  # fmt: skip
                    room.broadcast(presence.encode())
                conns.add(member)
                member.rooms.add(name)
                member.mailbox.follow(room.feed)
                joined = partial(Joined, room=name, members=sorted(room.members),
                                 last_id=room.last_id, ref=ref,
                                 read_id=self._read_marker(member.user, f"#{name}"))  # fmt: skip
                member.mailbox.push(self._fitted(
                    lambda items, joined=joined: joined(history=items),
                    self._latest(room, JOIN_HISTORY), keep_newest=True,
                ))  # fmt: skip
                return

    def leave(self, member: Member, name: str, ref: str | None, *, reply: bool = True) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            member.rooms.discard(name)
            member.mailbox.unfollow(room.feed)
            conns = room.members.get(member.user, set())
            conns.discard(member)
            if not conns:
                room.members.pop(member.user, None)
                presence = Presence(room=name, user=member.user, event="leave", ts=self._clock())
                room.broadcast(presence.encode())
            if reply:
                member.mailbox.push(Left(room=name, ref=ref).encode())
            self._drop_if_unused(room)

    def send(self, member: Member, name: str, text: str, ref: str | None) -> None:
        self.send_run(member, name, [(text, ref)])

    def send_run(self, member: Member, name: str, run: Sequence[tuple[str, str | None]]) -> None:
        """Post messages (text, ref) to a room in one go: one commit job, one append.

        For a run of ``send`` frames a client pipelined (they came in one read).
        """
        room = self._joined_room(member, name)
        user = member.user
        with room.lock:
            ts, first = self._clock(), room.next_id + 1
            room.next_id += len(run)
            messages = [StoredMessage(first + n, user, text, ts) for n, (text, _) in enumerate(run)]
            refs = [ref for _, ref in run]
            then = partial(self._sent, room, messages, member, refs)
            # Not stored: the ids taken stay a gap (``next_id`` is not wound back).
            failed = partial(self._not_stored, member, refs)
            self._committer.submit(AddMessages(name, messages), then, failed)

    def _sent(
        self, room: Room, messages: list[StoredMessage], sender: Member, refs: list[str | None]
    ) -> None:
        with room.lock:
            room.last_id = messages[-1].id
            if room.loaded:
                room.recent.extend(messages)
            name = room.name
            data = [message_frame(name, m) for m in messages]
            own = [with_ref(frame, ref) for frame, ref in zip(data, refs, strict=True)]
            # Counted before they go (a member that has them sees them counted); per
            # batch, not per member: the followers are a set per I/O thread.
            self.metrics.room_messages.inc(len(data))
            self.metrics.deliveries.inc(len(data) * room.feed.follower_count())
            room.broadcast(*data, sender=sender, own=own)

    def edit(self, member: Member, name: str, message_id: int, text: str, ref: str | None) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            message = self._live(room, message_id)
            if message.user != member.user:
                raise ProtocolError("forbidden", "only the author may edit a message")
            frame = Edited(room=name, id=message_id, user=member.user, text=text,
                           ts=self._clock())  # fmt: skip
            then = partial(self._edited, room, frame, member, ref)
            failed = partial(self._not_stored, member, [ref])
            self._committer.submit(EditMessage(name, message_id, text, frame.ts), then, failed)

    def _edited(self, room: Room, frame: Edited, sender: Member, ref: str | None) -> None:
        with room.lock:
            if cached := room.cached(frame.id):
                cached.text, cached.edited_ts = frame.text, frame.ts
            data, own = encoded(frame, ref)
            room.broadcast(data, sender=sender, own=(own,))

    def delete(self, member: Member, name: str, message_id: int, ref: str | None) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            message = self._live(room, message_id)
            if message.user != member.user and member.user not in self.admins:
                raise ProtocolError("forbidden", "only the author or an admin may delete a message")
            room.deleting.add(message_id)
            frame = Deleted(room=name, id=message_id, by=member.user, ts=self._clock())
            then = partial(self._deleted, room, frame, member, ref, message.file)
            failed = partial(self._not_deleted, room, message_id, member, ref)
            self._committer.submit(DeleteMessage(name, message_id), then, failed)

    def _deleted(
        self,
        room: Room,
        frame: Deleted,
        sender: Member,
        ref: str | None,
        file: StoredFile | None = None,
    ) -> None:
        with room.lock:
            if cached := room.cached(frame.id):
                cached.deleted, cached.text, cached.file = True, "", None
            room.deleting.discard(frame.id)
            data, own = encoded(frame, ref)
            room.broadcast(data, sender=sender, own=(own,))
        if file is not None and self.files is not None:
            self.files.released(file.sha256)  # (its share is gone: the bytes too, if unused)

    def _not_deleted(
        self, room: Room, message_id: int, sender: Member, ref: str | None, error: Exception
    ) -> None:
        with room.lock:
            room.deleting.discard(message_id)  # it is still there: it may be edited or deleted
        self._not_stored(sender, [ref], error)

    def _not_stored(self, sender: Member, refs: Sequence[str | None], error: Exception) -> None:
        """(After a failed commit.) Tell the sender, once for each request of the write."""
        problem = not_stored(error)
        for ref in refs:
            sender.mailbox.push(error_frame(problem.code, problem.message, ref,
                                            problem.retry_after))  # fmt: skip

    # -- shared files

    def post_file(
        self,
        user: str,
        *,
        room: str | None = None,
        to: str | None = None,
        text: str = "",
        file: StoredFile,
        then: Callable[[bytes], None],
        failed: Callable[[Exception], None],
    ) -> None:
        """Post a message (to ``room``) or a direct message (to ``to``) carrying ``file``.

        For an upload over HTTPS, whose sender is no connection of the chat: it is
        committed and broadcast as any message is (ids, order, delivery after the
        commit), then ``then`` gets the frame as everyone got it (the upload's answer),
        or ``failed`` why it was not stored. Raises ``not_member`` when no connection of
        ``user`` is in ``room``, ``no_such_user`` for an unknown ``to``.
        """
        if room is not None:
            self._post_to_room(user, room, text, file, then, failed)
            return
        assert to is not None
        if not self.user_exists(to):
            raise ProtocolError("no_such_user", f"there is no user {to!r}")
        with self._lock:
            self._dm_counter += 1
            dm = DmRecord(self._dm_counter, user, to, text, self._clock(), file)
            self._committer.submit(AddDm(dm), partial(self._dm_posted, dm, then), failed)

    def _post_to_room(
        self,
        user: str,
        name: str,
        text: str,
        file: StoredFile,
        then: Callable[[bytes], None],
        failed: Callable[[Exception], None],
    ) -> None:
        room = self._room(name)
        if room is None or user not in room.members:
            raise ProtocolError("not_member", f"you are not in room {name!r}")
        with room.lock:
            if user not in room.members:
                raise ProtocolError("not_member", f"you are not in room {name!r}")
            room.next_id += 1
            message = StoredMessage(room.next_id, user, text, self._clock(), file=file)
            done = partial(self._file_posted, room, message, then)
            self._committer.submit(AddMessages(name, [message]), done, failed)

    def _file_posted(
        self, room: Room, message: StoredMessage, then: Callable[[bytes], None]
    ) -> None:
        with room.lock:
            room.last_id = message.id
            if room.loaded:
                room.recent.append(message)
            data = message_frame(room.name, message)
            self.metrics.room_messages.inc()
            self.metrics.deliveries.inc(room.feed.follower_count())
            room.broadcast(data)
        then(data)

    def _dm_posted(self, dm: DmRecord, then: Callable[[bytes], None]) -> None:
        self._dm_sent(dm, None, None)
        then(dm_frame(dm).encode())

    # -- read markers

    def _read_marker(self, user: str, target: str) -> int:
        """The last id ``user`` has read in ``target`` (committed), from memory or the store."""
        with self._lock:
            key = (user, target)
            marker = self._read_markers.get(key)
            if marker is None:
                marker = self._read_markers[key] = self.store.read_marker(user, target)
            return marker

    def mark_read(
        self, member: Member, room: str | None, other: str | None, upto: int, ref: str | None
    ) -> None:
        """``member``'s user has read up to ``upto`` in ``room`` or the DMs with ``other``.

        A marker never moves back, nor past the newest id there is. Answered after the
        commit (like every write, so replies keep the order of requests): every connection
        of the user gets ``read`` when it moved, the asking one alone when it did not.
        """
        if room is not None:
            upto = min(upto, self._joined_room(member, room).last_id)
            target = f"#{room}"
        else:
            assert other is not None
            if not self.user_exists(other):
                raise ProtocolError("no_such_user", f"no user named {other!r}")
            with self._lock:
                upto = min(upto, self._dm_counter)
            target = f"@{other}"
        moved = upto > self._read_marker(member.user, target)
        write = SetReadMarker(member.user, target, upto) if moved else None
        then = partial(self._read_moved, member, room, other, target, upto, moved, ref)
        self._committer.submit(write, then, partial(self._not_stored, member, [ref]))

    def _read_moved(
        self,
        member: Member,
        room: str | None,
        other: str | None,
        target: str,
        upto: int,
        moved: bool,
        ref: str | None,
    ) -> None:
        user = member.user
        with self._lock:
            marker = max(upto, self._read_markers.get((user, target), 0))
            self._read_markers[user, target] = marker
            data, own = encoded(ReadMarker(room=room, with_=other, id=marker), ref)
            for conn in self._users.get(user, ()) if moved else (member,):
                conn.mailbox.push(own if conn is member else data)

    def history(
        self,
        member: Member,
        name: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        ref: str | None,
    ) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            upto = room.last_id
        page = self.store.page(name, before=before, after=after, limit=limit, upto=upto)
        messages = [record(name, m) for m in page]
        member.mailbox.push(self._fitted(
            lambda items: HistoryReply(room=name, messages=items, ref=ref),
            messages, keep_newest=after is None,
        ))  # fmt: skip

    def members(self, member: Member, name: str, ref: str | None) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            users = sorted(room.members)
        member.mailbox.push(MembersReply(room=name, members=users, ref=ref).encode())

    def rooms(self, member: Member, ref: str | None) -> None:
        with self._lock:
            rooms = sorted(self._rooms.items())
        infos = []
        for name, room in rooms:
            with room.lock:
                if not room.closed:
                    infos.append(RoomInfo(name=name, members=len(room.members)))
        member.mailbox.push(RoomsReply(rooms=infos, ref=ref).encode())

    # -- direct messages

    def dm(self, member: Member, to: str, text: str, ref: str | None) -> None:
        if not self.user_exists(to):
            raise ProtocolError("no_such_user", f"there is no user {to!r}")
        with self._lock:
            self._dm_counter += 1
            dm = DmRecord(self._dm_counter, member.user, to, text, self._clock())
            then = partial(self._dm_sent, dm, member, ref)
            self._committer.submit(AddDm(dm), then, partial(self._not_stored, member, [ref]))

    def _dm_sent(self, dm: DmRecord, sender: Member | None, ref: str | None) -> None:
        with self._lock:
            self._dm_delivered = max(self._dm_delivered, dm.id)
            data, own = encoded(dm_frame(dm), ref)
            self.metrics.direct_messages.inc()
            delivered, copies = False, 0
            for conn in self._users.get(dm.recipient, set()) | self._users.get(dm.sender, set()):
                cursor = self._dm_cursors[conn]
                if not cursor.due(conn.user, dm):
                    continue  # sent by its catch-up already, or from before it logged in
                if cursor.catching_up:  # its catch-up reads this one from the store
                    if conn is sender:
                        cursor.own[dm.id] = ref
                    continue
                cursor.upto = dm.id
                conn.mailbox.push(own if conn is sender else data)
                copies += 1
                delivered = delivered or conn.user == dm.recipient
            if delivered:
                self._mark_delivered(dm.recipient, dm.id)
            self.metrics.deliveries.inc(copies)

    def dm_history(
        self, member: Member, other: str, *, before: int | None, limit: int, ref: str | None
    ) -> None:
        page = self.store.dm_page(member.user, other, before=before, limit=limit)
        messages = [dm_frame(dm) for dm in page]
        member.mailbox.push(self._fitted(
            lambda items: DmHistoryReply(with_=other, messages=items, ref=ref),
            messages, keep_newest=True,
        ))  # fmt: skip

    def _fitted(
        self, build: Callable[[list[T]], ServerFrame], items: list[T], *, keep_newest: bool
    ) -> bytes:
        """Encode ``build(items)`` with as many items as fit in one frame.

        No frame the server sends is longer than the frame limit, so a client that
        reads with the protocol's limit never chokes; the client pages for the rest.
        Items are oldest first; ``keep_newest`` says which end to keep.
        """
        data = build(items).encode()
        while len(data) > self.max_frame_bytes and items:
            keep = min(len(items) - 1, len(items) * self.max_frame_bytes // len(data))
            items = items[len(items) - keep :] if keep_newest else items[:keep]
            data = build(items).encode()
        return data
