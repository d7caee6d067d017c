"""Durable history: the storage interface, its SQLite implementation, group commit.

The hub never talks SQL. It hands *writes* (:class:`AddMessages`, :class:`EditMessage`,
:class:`DeleteMessage`, :class:`AddDm`, :class:`SetDmMarker`) to a *committer* with
a callback to run once the write is durable, and reads history through the
:class:`Store` methods. A server-grade database can replace :class:`SqliteStore`
without touching the hub.

:class:`GroupCommitter` is one writer thread: it takes every write waiting in its
queue, commits them in one transaction, then runs their callbacks in submission
order. So an acknowledgement (the ``message`` echo) is sent only after its commit,
many rooms share each commit, and callbacks of one room run in id order.
:class:`InlineCommitter` does the same synchronously, for tests and tools.

SQLite runs in WAL mode; ``synchronous=NORMAL`` (the default) survives a crash of
the process, ``fsync=True`` (``synchronous=FULL``) also a loss of power.
"""

import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from securechat.exceptions import StoreError

log = logging.getLogger("securechat.store")

SCHEMA_VERSION = 1
MAX_BATCH = 1000

_SCHEMA = """
CREATE TABLE rooms (
    name TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE messages (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    ts TEXT NOT NULL,
    edited_ts TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE TABLE dms (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text TEXT NOT NULL,
    ts TEXT NOT NULL
);
CREATE INDEX dms_by_recipient ON dms (recipient, id);
CREATE INDEX dms_by_sender ON dms (sender, id);
CREATE TABLE dm_markers (
    user TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
) WITHOUT ROWID;
"""
# Migrations from version N to N + 1, applied in order at start-up.
_MIGRATIONS: dict[int, str] = {0: _SCHEMA}


@dataclass
class StoredMessage:
    """A room message as the hub and the store keep it."""

    id: int
    user: str
    text: str
    ts: str
    edited_ts: str | None = None
    deleted: bool = False


@dataclass(frozen=True)
class DmRecord:
    id: int
    sender: str
    recipient: str
    text: str
    ts: str


# ------------------------------------------------------------------- writes


@dataclass(frozen=True)
class AddMessages:
    """New messages of one room, ids in order (a run one client sent in one go)."""

    room: str
    messages: Sequence[StoredMessage]


@dataclass(frozen=True)
class EditMessage:
    room: str
    id: int
    text: str
    edited_ts: str


@dataclass(frozen=True)
class DeleteMessage:
    room: str
    id: int


@dataclass(frozen=True)
class AddDm:
    dm: DmRecord


@dataclass(frozen=True)
class SetDmMarker:
    """The newest direct message delivered to ``user`` (offline catch-up starts after it)."""

    user: str
    last_id: int


Write = AddMessages | EditMessage | DeleteMessage | AddDm | SetDmMarker


class Store(Protocol):
    """What the hub needs from a history store."""

    def write(self, writes: list[Write]) -> None:
        """Apply ``writes`` in one durable transaction."""

    def room_counters(self) -> dict[str, int]:
        """Every room with history, and its last message id."""

    def dm_state(self) -> tuple[int, dict[str, int]]:
        """The last direct-message id, and each user's delivery marker."""

    def recent(self, room: str, limit: int) -> list[StoredMessage]:
        """The newest ``limit`` messages (deleted ones included), oldest first."""

    def message(self, room: str, message_id: int) -> StoredMessage | None:
        """One message, deleted or not."""

    def page(
        self, room: str, *, before: int | None, after: int | None, limit: int, upto: int
    ) -> list[StoredMessage]:
        """Live messages with id <= ``upto`` for a ``history`` request, oldest first."""

    def dms_after(self, user: str, after: int) -> list[DmRecord]:
        """Direct messages to ``user`` with id > ``after``, oldest first."""

    def dm_page(self, user: str, other: str, *, before: int | None, limit: int) -> list[DmRecord]:
        """The newest ``limit`` messages between two users before ``before``, oldest first."""

    def close(self) -> None: ...


class SqliteStore:
    """The embedded default store: one SQLite database file in WAL mode."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = str(path)
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._migrate()
        self._read_lock = threading.Lock()
        self._reader = self._writer if self.path == ":memory:" else self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from None
        return conn

    def _migrate(self) -> None:
        version = self._writer.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} has schema version {version}, newer than this "
                f"server's {SCHEMA_VERSION}: upgrade securechat or use another --data-dir"
            )
        while version < SCHEMA_VERSION:
            with self._transaction(self._writer):
                self._writer.executescript(f"BEGIN;{_MIGRATIONS[version]}")
                version += 1
                self._writer.execute(f"PRAGMA user_version={version}")
            log.info("database %s migrated to schema version %d", self.path, version)

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            yield self._reader

    def write(self, writes: list[Write]) -> None:
        # New messages go in with one executemany per run of them, and each room's
        # counter is raised once per transaction: the commit thread's hot path.
        new_rows: list[tuple[str, int, str, str, str]] = []
        last_ids: dict[str, int] = {}

        def insert_new_rows() -> None:
            conn.executemany(
                "INSERT INTO messages (room, id, user, text, ts) VALUES (?,?,?,?,?)", new_rows
            )
            new_rows.clear()

        with self._write_lock, self._transaction(self._writer):
            conn = self._writer
            for w in writes:
                if isinstance(w, AddMessages):
                    room = w.room
                    new_rows += [(room, m.id, m.user, m.text, m.ts) for m in w.messages]
                    last_ids[room] = max(last_ids.get(room, 0), w.messages[-1].id)
                    continue
                if new_rows:  # keep the order of the writes
                    insert_new_rows()
                match w:
                    case EditMessage(room, message_id, text, edited_ts):
                        conn.execute(
                            "UPDATE messages SET text = ?, edited_ts = ? WHERE room = ? AND id = ?",
                            (text, edited_ts, room, message_id),
                        )
                    case DeleteMessage(room, message_id):
                        conn.execute(  # the text goes; the id stays used
                            "UPDATE messages SET deleted = 1, text = '' WHERE room = ? AND id = ?",
                            (room, message_id),
                        )
                    case AddDm(dm):
                        conn.execute(
                            "INSERT INTO dms (id, sender, recipient, text, ts) VALUES (?,?,?,?,?)",
                            (dm.id, dm.sender, dm.recipient, dm.text, dm.ts),
                        )
                    case SetDmMarker(user, last_id):
                        conn.execute(
                            "INSERT INTO dm_markers (user, last_id) VALUES (?, ?) ON CONFLICT(user)"
                            " DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                            (user, last_id),
                        )
            if new_rows:
                insert_new_rows()
            conn.executemany(
                "INSERT INTO rooms (name, last_id) VALUES (?, ?) ON CONFLICT(name) "
                "DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                last_ids.items(),
            )

    def room_counters(self) -> dict[str, int]:
        with self._read() as conn:
            return dict(conn.execute("SELECT name, last_id FROM rooms"))

    def dm_state(self) -> tuple[int, dict[str, int]]:
        with self._read() as conn:
            (last,) = conn.execute("SELECT coalesce(max(id), 0) FROM dms").fetchone()
            return last, dict(conn.execute("SELECT user, last_id FROM dm_markers"))

    _SELECT = "SELECT id, user, text, ts, edited_ts, deleted FROM messages WHERE room = ? "

    @staticmethod
    def _message(row: tuple) -> StoredMessage:
        return StoredMessage(row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    def recent(self, room: str, limit: int) -> list[StoredMessage]:
        with self._read() as conn:
            rows = conn.execute(
                self._SELECT + "ORDER BY id DESC LIMIT ?",
                (room, limit),
            ).fetchall()
        return [self._message(row) for row in reversed(rows)]

    def message(self, room: str, message_id: int) -> StoredMessage | None:
        with self._read() as conn:
            row = conn.execute(
                self._SELECT + "AND id = ?",
                (room, message_id),
            ).fetchone()
        return self._message(row) if row else None

    def page(
        self, room: str, *, before: int | None, after: int | None, limit: int, upto: int
    ) -> list[StoredMessage]:
        live = self._SELECT + "AND deleted = 0 AND id <= ? "
        with self._read() as conn:
            if after is not None:
                rows = conn.execute(
                    live + "AND id > ? ORDER BY id LIMIT ?", (room, upto, after, limit)
                ).fetchall()
            else:
                bound = upto + 1 if before is None else before
                rows = conn.execute(
                    live + "AND id < ? ORDER BY id DESC LIMIT ?", (room, upto, bound, limit)
                ).fetchall()
                rows.reverse()
        return [self._message(row) for row in rows]

    def dms_after(self, user: str, after: int) -> list[DmRecord]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, sender, recipient, text, ts FROM dms "
                "WHERE recipient = ? AND id > ? ORDER BY id",
                (user, after),
            ).fetchall()
        return [DmRecord(*row) for row in rows]

    def dm_page(self, user: str, other: str, *, before: int | None, limit: int) -> list[DmRecord]:
        bound = before if before is not None else 2**62
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, sender, recipient, text, ts FROM dms WHERE id < ? AND "
                "((sender = ? AND recipient = ?) OR (sender = ? AND recipient = ?)) "
                "ORDER BY id DESC LIMIT ?",
                (bound, user, other, other, user, limit),
            ).fetchall()
        return [DmRecord(*row) for row in reversed(rows)]

    def close(self) -> None:
        with self._read_lock:
            if self._reader is not self._writer:
                self._reader.close()
        with self._write_lock:
            self._writer.close()


Callback = Callable[[], None]


class InlineCommitter:
    """Commit each write at once in the caller's thread, then run its callback."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def submit(self, write: Write | None, then: Callback | None = None) -> None:
        if write is not None:
            self.store.write([write])
        if then is not None:
            then()

    def close(self) -> None:
        """Nothing is pending."""


class GroupCommitter:
    """One writer thread committing everything queued in one transaction.

    ``submit`` never blocks (the queue is unbounded; the rate limits bound it), so
    it may be called under a room lock; callbacks run in the writer thread, in the
    order of submission, after their write has committed. A write of ``None`` just
    runs its callback in that order (e.g. offline DM catch-up after the DMs before it).
    """

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Write | None, Callback | None] | None] = (
            queue.SimpleQueue()
        )
        self.commits = 0
        self.writes = 0
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Write | None, then: Callback | None = None) -> None:
        self._queue.put((write, then))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            jobs = [job for job in batch if job is not None]
            writes = [write for write, _ in jobs if write is not None]
            if writes:
                try:
                    self.store.write(writes)
                except Exception:  # nothing of this batch is acknowledged
                    log.exception("commit of %d writes failed; not acknowledged", len(writes))
                    jobs = [job for job in jobs if job[0] is None]  # barriers still pass
                else:
                    self.commits += 1
                    self.writes += len(writes)
            for _, then in jobs:
                if then is not None:
                    try:
                        then()
                    except Exception:
                        log.exception("delivery after commit failed")
            if stop:
                return

    def close(self) -> None:
        """Commit and deliver everything submitted so far, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
