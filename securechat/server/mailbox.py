"""What a connection has to send: its own queue, and a cursor into each room's feed.

Why this shape: a broadcast to a room of 100 must not cost 100 Python calls. A room
appends each encoded frame once to its :class:`Feed`; the :class:`Mailbox` of every
member connection keeps a cursor (an absolute position) into the feed of each room
it follows, and its writer takes everything it is behind in one go
(:meth:`Mailbox.next_chunk`; an edge that re-encodes each frame, WebSocket or IRC, takes
the frames themselves, :meth:`Mailbox.next_frames`: the same objects for every member,
so that its cache of encodings finds each by identity). Frames for one connection only
(replies, errors, direct messages, the sender's own copy of a message with its ``ref``)
go to the mailbox's queue.

Order: a connection gets each room's frames in feed order, and a frame pushed to its
queue comes after everything its rooms had appended by then (:meth:`Mailbox.push`
first moves what the feeds hold for it into the queue). So a reply never overtakes a
broadcast that came before it, ``joined`` (pushed just after :meth:`Mailbox.follow`)
comes before the room's next frame, and everything before a ``leave`` is delivered
before ``left``.

Bounds (the slow-consumer rule): a mailbox whose queue holds more than ``max_frames``
frames or ``max_bytes`` bytes, or whose cursor is that far behind the end of a feed,
is marked ``overflow`` and takes nothing more; the transport then closes the
connection. A feed keeps its frames until every follower that has not overflowed has
taken them, and checks this every :data:`TRIM_EVERY` appends.

Threads: a feed changes under its room's lock (appends, follow, unfollow); a mailbox
has its own lock, taken after the room's, never before. The writer reads feeds with
no room lock: a feed's log is one tuple, replaced whole when trimmed, whose lists only
grow meanwhile (``frames`` before ``ends``), so a reader always sees a consistent
prefix. Pure code otherwise: no sockets, no threads of its own.
"""

import threading
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Protocol

TRIM_EVERY = 256  # appends between two looks at how far behind the followers are
DEFAULT_MAX_FRAMES = 1000
DEFAULT_MAX_BYTES = 1024 * 1024


class Listener(Protocol):
    """Told (e.g. an I/O thread) when a feed some of its mailboxes follow has grown."""

    def appended(self, feed: "Feed") -> None: ...


class Feed:
    """A room's broadcast log: each frame appended once, read by every follower."""

    __slots__ = ("_bytes", "_log", "_trim_at", "followers")

    def __init__(self) -> None:
        # (position of frames[0], frames, running byte total after each frame,
        #  byte total before frames[0])
        self._log: tuple[int, list[bytes], list[int], int] = (0, [], [], 0)
        self._bytes = 0
        self._trim_at = TRIM_EVERY
        # The mailboxes following this feed, by the listener to tell when it grows.
        self.followers: dict[Listener | None, set[Mailbox]] = {}

    def __repr__(self) -> str:
        base, frames, _, _ = self._log
        return f"<Feed {base}..{base + len(frames)}>"

    @property
    def end(self) -> int:
        """The position the next frame will get."""
        base, frames, _, _ = self._log
        return base + len(frames)

    def follower_count(self) -> int:
        """How many mailboxes follow (under the room's lock): a few set sizes to add,
        one per listener, however many members (what the hub counts deliveries with)."""
        return sum(map(len, self.followers.values()))

    def append(self, *data: bytes) -> None:
        """Add encoded frames, in order, for every follower (under the room's lock).

        The followers' listeners are told once, however many frames.
        """
        _, frames, ends, _ = self._log
        total = self._bytes
        sizes = []
        for frame in data:
            total += len(frame)
            sizes.append(total)
        frames += data  # (before ``ends``: see the module's docstring)
        ends += sizes
        self._bytes = total
        if len(frames) >= self._trim_at:
            self.trim()
        for listener in self.followers:
            if listener is not None:
                listener.appended(self)

    def read(self, cursor: int, budget: int) -> tuple[list[bytes], int, int] | None:
        """Frames from ``cursor`` on, about ``budget`` bytes (at least one frame).

        Returns the frames, the cursor after them and their size; ``None`` when the
        frames at ``cursor`` are gone (the reader fell too far behind).
        """
        base, frames, ends, base_bytes = self._log
        start = cursor - base
        if start < 0:
            return None
        ready = len(ends)  # (an append in another thread may have added only the frame)
        if start >= ready:
            return [], cursor, 0
        before = ends[start - 1] if start else base_bytes
        stop = min(max(bisect_right(ends, before + budget, start, ready), start + 1), ready)
        return frames[start:stop], base + stop, ends[stop - 1] - before

    def behind(self, cursor: int) -> tuple[int, int]:
        """How many frames and bytes a reader at ``cursor`` has yet to take."""
        base, frames, ends, base_bytes = self._log
        start = max(0, min(cursor - base, len(ends)))
        before = ends[start - 1] if start else base_bytes
        return base + len(frames) - cursor, self._bytes - before

    def trim(self) -> None:
        """Drop what every follower has taken; overflow those too far behind."""
        base, frames, ends, _ = self._log
        end = base + len(frames)
        low = end
        for mailboxes in self.followers.values():
            for mailbox in mailboxes:
                cursor = mailbox.cursors.get(self, end)  # an int; only grows meanwhile
                if mailbox.overflow or mailbox.sealed or mailbox.done:
                    continue  # takes nothing more from feeds: must not hold them back
                count, size = self.behind(cursor)
                if count > mailbox.max_frames or size > mailbox.max_bytes:
                    mailbox.overflowed()
                else:
                    low = min(low, cursor)
        drop = low - base
        if drop > 0:
            self._log = (low, frames[drop:], ends[drop:], ends[drop - 1])
        self._trim_at = len(frames) - max(0, drop) + TRIM_EVERY


class Mailbox:
    """The outgoing frames of one connection (see the module's docstring).

    The transport subclasses it: :meth:`ready` wakes the connection's writer.
    Small when idle (issue 18: 10,000 idle connections): slots, and the queue a list
    (an empty ``deque`` holds a 64-slot block, 760 bytes; an empty list 56).
    """

    __slots__ = ("_taken", "cursors", "done", "listener", "lock", "max_bytes", "max_frames",
                 "overflow", "queue", "queued_bytes", "sealed")  # fmt: skip

    def __init__(
        self,
        *,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        listener: Listener | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.queue: list[bytes] = []
        self.queued_bytes = 0
        self.cursors: dict[Feed, int] = {}
        self.max_frames, self.max_bytes = max_frames, max_bytes
        self.listener = listener
        self.overflow = False  # a slow consumer: nothing more is kept
        self.sealed = False  # the last frame is queued: nothing more is kept
        self.done = False  # the connection is gone
        self._taken: Callable[[], None] | None = None  # see push_run

    def ready(self) -> None:
        """Something new can be taken (called under :attr:`lock`); the transport's hook."""

    # -- the hub's side (any thread)

    def push(self, data: bytes) -> None:
        """Queue one frame for this connection, after what its rooms have sent so far."""
        with self.lock:
            if self.done or self.overflow or self.sealed:
                return
            if self.cursors:
                self._drain()
            if not self.overflow:
                self._queue(data)
            self.ready()

    def push_run(self, frames: Sequence[bytes], taken: Callable[[], None] | None = None) -> None:
        """Queue ``frames`` as :meth:`push` does; ``taken`` runs once the writer has taken them.

        For a backlog sent a page at a time (the DM catch-up): the next page is read only
        when this one has left the queue, so a long one never trips the bounds. ``taken``
        runs in the writer's thread with no lock held, or never if the connection ends.
        """
        now = None
        with self.lock:
            if self.done or self.overflow or self.sealed:
                return
            if self.cursors:
                self._drain()
            for data in frames:
                if not self.overflow:
                    self._queue(data)
            if taken is not None and not self.overflow:
                if self.queue:
                    self._taken = taken
                else:
                    now = taken  # (nothing to wait for)
            self.ready()
        if now is not None:
            now()

    def push_last(self, data: bytes) -> None:
        """Queue ``data`` as the last frame: anything pushed or appended later is dropped."""
        with self.lock:
            if self.done or self.sealed:
                return
            if self.cursors:
                self._drain()
            self.queue.append(data)
            self.queued_bytes += len(data)
            self.sealed = True
            self.ready()

    def stand_in(self, feed: Feed, *data: bytes) -> None:
        """Send ``data`` instead of the frames ``feed`` appends next (under the room's lock).

        The sender of messages gets its copies with their ``ref`` in the place of the
        copies everyone else gets. Nothing happens if this mailbox does not follow ``feed``.
        """
        with self.lock:
            if feed not in self.cursors or self.done or self.overflow or self.sealed:
                return
            self._drain()
            for frame in data:
                if not self.overflow:
                    self._queue(frame)
            self.cursors[feed] = feed.end + len(data)
            self.ready()

    def follow(self, feed: Feed) -> None:
        """Receive what ``feed`` appends from now on (under the room's lock)."""
        with self.lock:
            if feed in self.cursors:
                return
            self.cursors[feed] = feed.end
        feed.followers.setdefault(self.listener, set()).add(self)

    def unfollow(self, feed: Feed) -> None:
        """Stop following ``feed``; what it appended so far is still sent (room's lock)."""
        with self.lock:
            if feed not in self.cursors:
                return
            if not (self.done or self.overflow or self.sealed):
                self._drain()
            del self.cursors[feed]
        followers = feed.followers.get(self.listener)
        if followers is not None:
            followers.discard(self)
            if not followers:
                del feed.followers[self.listener]
        if not feed.followers:
            feed.trim()  # nobody left to read it

    def overflowed(self) -> None:
        """Mark this connection a slow consumer (a feed found it too far behind)."""
        with self.lock:
            if not self.overflow:
                self.overflow = True
                self.ready()

    # -- the writer's side

    def next_chunk(self, budget: int) -> bytes:
        """Take about ``budget`` bytes of what is waiting, in order, as one block."""
        return b"".join(self.next_frames(budget))

    def next_frames(self, budget: int) -> list[bytes]:
        """Take about ``budget`` bytes of what is waiting, in order: its frames (each one
        encoded frame ending in a newline: the objects the feeds and the queue hold, so
        an edge that renders them may keep its renderings by them)."""
        then = None
        with self.lock:
            queue = self.queue
            # All of it in one go when it fits: the usual case (a sender's queue holds
            # its room's frames and its own copies every turn).
            if self.queued_bytes <= budget:
                parts, size = list(queue), self.queued_bytes
                queue.clear()
            else:
                count = size = 0
                for part in queue:
                    if size >= budget:
                        break
                    count += 1
                    size += len(part)
                parts = queue[:count]
                del queue[:count]
            self.queued_bytes -= size
            if size < budget and not (self.sealed or self.overflow or self.done):
                for feed, cursor in self.cursors.items():
                    got = feed.read(cursor, budget - size)
                    if got is None:  # (trim has marked us already; to be safe)
                        self.overflow = True
                        self.ready()
                        break
                    frames, self.cursors[feed], taken = got
                    parts += frames
                    size += taken
                    if size >= budget:
                        break
            if self._taken is not None and not queue:
                then, self._taken = self._taken, None
        if then is not None:
            then()
        return parts

    def backlog(self) -> tuple[int, int]:
        """Frames and bytes waiting to be taken: the queue's and the feeds' (for metrics)."""
        with self.lock:
            frames, size = len(self.queue), self.queued_bytes
            if not (self.sealed or self.overflow or self.done):
                for feed, cursor in self.cursors.items():
                    count, behind = feed.behind(cursor)
                    frames += count
                    size += behind
            return frames, size

    def idle(self) -> bool:
        """Nothing is waiting to be taken."""
        with self.lock:
            if self.queue:
                return False
            if self.sealed or self.overflow or self.done:
                return True
            return all(cursor >= feed.end for feed, cursor in self.cursors.items())

    def drop(self) -> None:
        """The connection is gone: drop what is queued and keep nothing more."""
        with self.lock:
            self.done = True
            self.queue.clear()
            self.queued_bytes = 0
            self._taken = None

    # -- under the lock

    def _queue(self, data: bytes) -> None:
        size = self.queued_bytes + len(data)
        if len(self.queue) >= self.max_frames or size > self.max_bytes:
            self.overflow = True
        else:
            self.queue.append(data)
            self.queued_bytes = size

    def _drain(self) -> None:
        """Move everything the followed feeds hold for us into the queue (in bulk)."""
        for feed, cursor in self.cursors.items():
            got = feed.read(cursor, 1 << 62)
            if got is not None:
                frames, self.cursors[feed], size = got
                if not frames:
                    continue
                if (len(self.queue) + len(frames) <= self.max_frames
                        and self.queued_bytes + size <= self.max_bytes):  # fmt: skip
                    self.queue.extend(frames)
                    self.queued_bytes += size
                    continue
            # gone from the feed (trim has marked us already), or over the bounds
            self.overflow = True
            self.ready()
            return
