"""The room hub: who is in which room, and which frames go to which connections.

Pure code: no sockets and no threads of its own. The transport calls it from each
connection's thread; a *member* is anything with a ``user``, the set of ``rooms``
it has joined, and a non-blocking ``deliver(bytes)`` that puts an encoded frame on
that connection's outgoing queue.

Locking: the hub's lock guards the room table and the user table; each
:class:`Room` has its own lock, which covers assigning a message id and delivering
the frame to every member, so all members see a room's events in one order. No
socket write happens under either lock (``deliver`` only enqueues). Lock order is
always room, then hub: the hub's lock may be taken under a room lock, never the
other way round.
"""

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from .exceptions import ProtocolError
from .frames import (
    Deleted,
    DirectMessage,
    Edited,
    HistoryReply,
    Joined,
    Left,
    MembersReply,
    Message,
    MessageRecord,
    Presence,
    RoomInfo,
    RoomsReply,
    timestamp,
)

DEFAULT_HISTORY_LIMIT = 1000
JOIN_HISTORY = 50


class Member(Protocol):
    """One logged-in connection, as the hub sees it."""

    user: str
    rooms: set[str]

    def deliver(self, data: bytes) -> None:
        """Queue one encoded frame for sending; must not block."""


@dataclass
class StoredMessage:
    id: int
    user: str
    text: str
    ts: str
    edited_ts: str | None = None
    deleted: bool = False

    def record(self, room: str) -> MessageRecord:
        return MessageRecord(
            room=room, id=self.id, user=self.user, text=self.text, ts=self.ts,
            edited_ts=self.edited_ts,
        )  # fmt: skip


class Room:
    """A named room: its lock, members, message counter and recent history."""

    def __init__(self, name: str, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.members: dict[str, set[Member]] = {}
        self.last_id = 0
        self.history: deque[StoredMessage] = deque(maxlen=history_limit)
        self.closed = False  # removed from the hub; a thread holding it must look again

    def connections(self) -> Iterator[Member]:
        for conns in self.members.values():
            yield from conns

    def broadcast(self, data: bytes, *, sender: Member | None = None, own: bytes = b"") -> None:
        """Deliver ``data`` to every member; ``sender`` gets ``own`` instead (its ``ref``)."""
        for member in self.connections():
            member.deliver(own if member is sender and own else data)

    def find(self, message_id: int) -> StoredMessage | None:
        """The live (not deleted) message with this id, if still held."""
        if not self.history:
            return None
        index = message_id - self.history[0].id
        if 0 <= index < len(self.history):
            message = self.history[index]
            if not message.deleted:
                return message
        return None

    def page(self, *, before: int | None, after: int | None, limit: int) -> list[MessageRecord]:
        """Up to ``limit`` live messages, oldest first, per the ``history`` request."""
        live: Iterable[StoredMessage] = (m for m in self.history if not m.deleted)
        if after is not None:
            chosen = [m for m in live if m.id > after][:limit]
        else:
            bound = before if before is not None else self.last_id + 1
            chosen = [m for m in live if m.id < bound][-limit:]
        return [m.record(self.name) for m in chosen]


class Hub:
    """All rooms and logged-in members of one server."""

    def __init__(
        self,
        *,
        user_exists: Callable[[str], bool],
        admins: Iterable[str] = (),
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        clock: Callable[[], str] = timestamp,
    ) -> None:
        self._user_exists = user_exists
        self.admins = frozenset(admins)
        self._history_limit = history_limit
        self._clock = clock
        self._lock = threading.Lock()
        self._rooms: dict[str, Room] = {}
        self._users: dict[str, set[Member]] = {}
        self._dm_counter = 0

    # -- connections

    def register(self, member: Member) -> None:
        """A connection has logged in."""
        with self._lock:
            self._users.setdefault(member.user, set()).add(member)

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

    def online_users(self) -> list[str]:
        with self._lock:
            return sorted(self._users)

    # -- rooms

    def _room(self, name: str, *, create: bool = False) -> Room | None:
        with self._lock:
            room = self._rooms.get(name)
            if room is None and create:
                room = self._rooms[name] = Room(name, self._history_limit)
            return room

    def _drop_if_unused(self, room: Room) -> None:
        """Forget a room with no members and no history (called under its lock)."""
        if not room.members and not room.history:
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

    def join(self, member: Member, name: str, ref: str | None) -> None:
        while True:
            room = self._room(name, create=True)
            assert room is not None
            with room.lock:
                if room.closed:
                    continue  # it was dropped between lookup and lock; make a new one
                conns = room.members.setdefault(member.user, set())
                first = not conns
                if first:
                    room.broadcast(
                        Presence(
                            room=name, user=member.user, event="join", ts=self._clock()
                        ).encode()
                    )
                conns.add(member)
                member.rooms.add(name)
                history = room.page(before=None, after=None, limit=JOIN_HISTORY)
                member.deliver(
                    Joined(
                        room=name, members=sorted(room.members), last_id=room.last_id,
                        history=history, ref=ref,
                    ).encode()
                )  # fmt: skip
                return

    def leave(self, member: Member, name: str, ref: str | None, *, reply: bool = True) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            member.rooms.discard(name)
            conns = room.members.get(member.user, set())
            conns.discard(member)
            if not conns:
                room.members.pop(member.user, None)
                presence = Presence(room=name, user=member.user, event="leave", ts=self._clock())
                room.broadcast(presence.encode())
            if reply:
                member.deliver(Left(room=name, ref=ref).encode())
            self._drop_if_unused(room)

    def send(self, member: Member, name: str, text: str, ref: str | None) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            room.last_id += 1
            stored = StoredMessage(id=room.last_id, user=member.user, text=text, ts=self._clock())
            room.history.append(stored)
            frame = Message(room=name, id=stored.id, user=stored.user, text=text, ts=stored.ts)
            own = frame.model_copy(update={"ref": ref}).encode() if ref else b""
            room.broadcast(frame.encode(), sender=member, own=own)

    def edit(self, member: Member, name: str, message_id: int, text: str, ref: str | None) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            stored = room.find(message_id)
            if stored is None:
                raise ProtocolError("not_found", f"no message {message_id} in room {name!r}")
            if stored.user != member.user:
                raise ProtocolError("forbidden", "only the author may edit a message")
            stored.text = text
            stored.edited_ts = self._clock()
            frame = Edited(
                room=name, id=message_id, user=member.user, text=text, ts=stored.edited_ts
            )
            own = frame.model_copy(update={"ref": ref}).encode() if ref else b""
            room.broadcast(frame.encode(), sender=member, own=own)

    def delete(self, member: Member, name: str, message_id: int, ref: str | None) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            stored = room.find(message_id)
            if stored is None:
                raise ProtocolError("not_found", f"no message {message_id} in room {name!r}")
            if stored.user != member.user and member.user not in self.admins:
                raise ProtocolError("forbidden", "only the author or an admin may delete a message")
            stored.deleted = True
            frame = Deleted(room=name, id=message_id, by=member.user, ts=self._clock())
            own = frame.model_copy(update={"ref": ref}).encode() if ref else b""
            room.broadcast(frame.encode(), sender=member, own=own)

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
            messages = room.page(before=before, after=after, limit=limit)
        member.deliver(HistoryReply(room=name, messages=messages, ref=ref).encode())

    def members(self, member: Member, name: str, ref: str | None) -> None:
        room = self._joined_room(member, name)
        with room.lock:
            users = sorted(room.members)
        member.deliver(MembersReply(room=name, members=users, ref=ref).encode())

    def rooms(self, member: Member, ref: str | None) -> None:
        with self._lock:
            rooms = sorted(self._rooms.items())
        infos = []
        for name, room in rooms:
            with room.lock:
                if not room.closed:
                    infos.append(RoomInfo(name=name, members=len(room.members)))
        member.deliver(RoomsReply(rooms=infos, ref=ref).encode())

    # -- direct messages

    def dm(self, member: Member, to: str, text: str, ref: str | None) -> None:
        if not self._user_exists(to):
            raise ProtocolError("no_such_user", f"there is no user {to!r}")
        with self._lock:
            self._dm_counter += 1
            frame = DirectMessage(id=self._dm_counter, from_=member.user, to=to, text=text,
                                  ts=self._clock())  # fmt: skip
            data = frame.encode()
            own = frame.model_copy(update={"ref": ref}).encode() if ref else data
            recipients = self._users.get(to, set()) | self._users.get(member.user, set())
            for conn in recipients:
                conn.deliver(own if conn is member else data)
