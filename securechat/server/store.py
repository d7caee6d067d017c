"""Durable history: the storage interface, its SQLite implementation, group commit.

The hub never talks SQL. It hands *writes* (:class:`AddMessages`, :class:`EditMessage`,
:class:`DeleteMessage`, :class:`AddDm`, :class:`SetDmMarker`) to a *committer* with
a callback to run once the write is durable, and reads history through the
:class:`Store` methods. A server-grade database can replace :class:`SqliteStore`
without touching the hub.

:class:`GroupCommitter` takes every write waiting in its queue, commits them in one
transaction, then runs their callbacks in submission order: in its writer thread, or
(issue 18) in the I/O thread whose turn submitted them, at the end of that turn, so
that a quiet room's message is not handed to another thread and back. So an
acknowledgement (the ``message`` echo) is sent only after its commit, many rooms share
each commit, and callbacks of one room run in id order.
:class:`InlineCommitter` does the same synchronously, for tests and tools.

A commit can fail for reasons that are nobody's bug: the disk is full, the file
system went read-only, an I/O error, another process holds the database locked.
Then nothing of the batch is committed and every write in it gets its *failure*
callback instead (with a :exc:`~securechat.exceptions.StoreUnavailable` saying why),
in the same order, so each sender hears that its write was not stored.
:class:`StorageHealth` tells the log once when writes start failing and once when
they work again, not once per write.

SQLite runs in WAL mode; ``synchronous=NORMAL`` (the default) survives a crash of
the process, ``fsync=True`` (``synchronous=FULL``) also a loss of power. The WAL is
copied back into the database file by a thread of its own (:class:`Checkpointer`), not
by the commit that fills it.

Shared files (schema version 3): a message or direct message may carry a
:class:`StoredFile`, committed with it as a row of the ``files`` table; the bytes live
in the file store (``files.py``), which reads that table through :class:`FileIndex`.
Deleting the message marks its file deleted in the same transaction.
"""

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from securechat.exceptions import StoreError, StoreUnavailable
from securechat.server.metrics import ServerMetrics

log = logging.getLogger("securechat.store")

SCHEMA_VERSION = 3
MAX_BATCH = 1000
RETRY_AFTER = 5.0  # seconds a client is told to wait after a write was not stored
RETRY_AFTER_LOCKED = 1.0  # ... when another process held the database (after busy_timeout)
PROBE_INTERVAL = 5.0  # seconds between two tries of a write while writes fail (``probe``)
CHECKPOINT_COMMITS = 256  # commits between two checkpoints (about SQLite's 1,000 WAL pages)
CHECKPOINT_WAL = 4_000  # WAL pages (16 MiB) not started afresh: the writer checkpoints

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
# Version 2: login tokens (only their SHA-256 is stored) and read markers.
_TOKENS_AND_READ_MARKERS = """
CREATE TABLE tokens (
    hash BLOB PRIMARY KEY,
    user TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_by_expiry ON tokens (expires);
CREATE TABLE read_markers (
    user TEXT NOT NULL,
    target TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (user, target)
) WITHOUT ROWID;
"""
# Version 3: shared files. A row per file shared (its bytes live once per content in
# the data directory's file store, by SHA-256); the message or direct message that
# carries it names it. ``deleted``: its message was deleted, and with it the access.
_FILES = """
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    uploader TEXT NOT NULL,
    room TEXT,
    message_id INTEGER,
    dm_id INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX files_by_sha256 ON files (sha256);
CREATE INDEX files_by_uploader ON files (uploader);
ALTER TABLE messages ADD COLUMN file_id TEXT;
ALTER TABLE dms ADD COLUMN file_id TEXT;
"""
# Migrations from version N to N + 1, applied in order at start-up.
_MIGRATIONS: dict[int, str] = {0: _SCHEMA, 1: _TOKENS_AND_READ_MARKERS, 2: _FILES}


@dataclass(frozen=True)
class StoredFile:
    """A shared file as a message carries it (the ``file`` of protocol frames)."""

    id: str
    sha256: str
    size: int
    name: str
    mime: str


@dataclass(frozen=True)
class FileEntry:
    """A shared file and where it was shared, for the access check of a download.

    ``room`` and ``message_id`` for a room message; ``sender`` and ``recipient`` (the
    two parties) for a direct message. ``deleted``: its message is gone, so is access.
    """

    file: StoredFile
    uploader: str
    room: str | None
    message_id: int | None
    sender: str | None
    recipient: str | None
    deleted: bool


@dataclass
class StoredMessage:
    """A room message as the hub and the store keep it."""

    id: int
    user: str
    text: str
    ts: str
    edited_ts: str | None = None
    deleted: bool = False
    file: StoredFile | None = None


@dataclass(frozen=True)
class DmRecord:
    id: int
    sender: str
    recipient: str
    text: str
    ts: str
    file: StoredFile | None = None


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
class TokenRecord:
    """A login token as stored: its hash, whose it is, and until when it is good.

    ``fingerprint`` is what the password file held for the user when the token was
    issued: a password change or the user's deletion makes every older token fail.
    """

    hash: bytes
    user: str
    fingerprint: str
    expires: float


@dataclass(frozen=True)
class AddToken:
    """A new login token; expired tokens are dropped in the same transaction."""

    token: TokenRecord
    now: float


@dataclass(frozen=True)
class DeleteToken:
    """A revoked login token (logout, or found stale)."""

    hash: bytes


@dataclass(frozen=True)
class SetReadMarker:
    """The last id ``user`` has read in ``target`` (``#room`` or ``@user``); never lowered."""

    user: str
    target: str
    last_id: int


@dataclass(frozen=True)
class SetDmMarker:
    """The newest direct message delivered to ``user`` (offline catch-up starts after it)."""

    user: str
    last_id: int


Write = (
    AddMessages
    | EditMessage
    | DeleteMessage
    | AddDm
    | SetDmMarker
    | AddToken
    | DeleteToken
    | SetReadMarker
)


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

    def dms_after(
        self, user: str, after: int, *, sent_after: int | None = None, limit: int | None = None
    ) -> list[DmRecord]:
        """Direct messages to ``user`` with id > ``after``, oldest first, at most ``limit``;
        with ``sent_after``, also those from ``user`` with an id above both bounds."""

    def dm_page(self, user: str, other: str, *, before: int | None, limit: int) -> list[DmRecord]:
        """The newest ``limit`` messages between two users before ``before``, oldest first."""

    def token(self, token_hash: bytes) -> TokenRecord | None:
        """The login token with this hash, if there is one (expired or not)."""

    def read_marker(self, user: str, target: str) -> int:
        """The last id ``user`` has read in ``target`` (``#room`` or ``@user``); 0 if none."""

    def close(self) -> None: ...


class FileIndex(Protocol):
    """What the file store (``files.py``) reads of the database: the ``files`` table."""

    def file(self, file_id: str) -> FileEntry | None:
        """The shared file with this id and where it was shared (deleted or not)."""

    def file_usage(self, user: str) -> int:
        """Bytes of the files ``user`` shared whose messages are not deleted."""

    def blob_used(self, sha256: str) -> bool:
        """Whether a message not deleted carries a file with these bytes."""

    def blobs_used(self) -> set[str]:
        """The SHA-256 of every file some message not deleted carries."""


# ----------------------------------------------------------------- failures

# SQLite's primary result codes that mean the storage failed, in an operator's words.
_SQLITE_REASONS = {
    5: "database locked",  # SQLITE_BUSY: another process held it past busy_timeout
    6: "database locked",  # SQLITE_LOCKED
    8: "read-only",  # SQLITE_READONLY
    10: "I/O error",  # SQLITE_IOERR (and its extended codes)
    11: "database corrupt",  # SQLITE_CORRUPT
    13: "disk full",  # SQLITE_FULL
    14: "cannot open the database file",  # SQLITE_CANTOPEN
    26: "not a database",  # SQLITE_NOTADB
}
# The same read from the message, for an error that carries no code.
_SQLITE_MESSAGES = (
    ("database or disk is full", "disk full"),
    ("readonly database", "read-only"),
    ("disk i/o error", "I/O error"),
    ("is locked", "database locked"),
    ("unable to open", "cannot open the database file"),
    ("malformed", "database corrupt"),
    ("not a database", "not a database"),
)
_ERRNO_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk full",
    errno.EROFS: "read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
# Errors that mean our SQL or our use of the API is wrong, not the storage.
_BUGS = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
)


def storage_failure(exc: BaseException) -> StoreUnavailable | None:
    """``exc`` as a :exc:`StoreUnavailable` when the storage failed; ``None`` for a bug.

    A full disk, a read-only file system, an I/O error or a lock another process
    holds is the operator's to fix and may pass, so the client is told to try again;
    a violated constraint or a misused API is ours (the client hears ``internal``).
    """
    if isinstance(exc, StoreUnavailable):
        return exc
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, _BUGS):
        return None
    if isinstance(exc, sqlite3.DatabaseError):  # OperationalError above all
        code = getattr(exc, "sqlite_errorcode", None)  # extended code; absent if made by hand
        reason = _SQLITE_REASONS.get(code & 0xFF) if isinstance(code, int) else None
        if reason is None:
            lowered = detail.lower()
            matches = (name for text, name in _SQLITE_MESSAGES if text in lowered)
            reason = next(matches, "database error")
    elif isinstance(exc, OSError):
        reason = _ERRNO_REASONS.get(exc.errno or 0, "I/O error")
        detail = exc.strerror or detail
    else:
        return None
    retry_after = RETRY_AFTER_LOCKED if reason == "database locked" else RETRY_AFTER
    return StoreUnavailable(reason, detail, retry_after)


def _directory_problem(path: str) -> str | None:
    """Why no file can be written beside ``path``, when the file system says so plainly."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        stats = os.statvfs(directory)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return "the file system is read-only"
    if not os.access(directory, os.W_OK):
        return f"{directory} is not writable"
    if stats.f_bavail == 0:
        return "the file system is full"
    return None


_FILE_COLUMNS = "f.id, f.sha256, f.size, f.name, f.mime "
_DM_SELECT = (
    "SELECT d.id, d.sender, d.recipient, d.text, d.ts, " + _FILE_COLUMNS
    + "FROM dms d LEFT JOIN files f ON f.id = d.file_id "
)  # fmt: skip

_FILE_ENTRY_SELECT = (
    "SELECT f.id, f.sha256, f.size, f.name, f.mime, f.uploader, f.room, f.message_id, "
    "d.sender, d.recipient, f.deleted FROM files f LEFT JOIN dms d ON d.id = f.dm_id "
)


def _file(row: tuple, at: int) -> StoredFile | None:
    """The file in ``row`` from column ``at`` on (``_FILE_COLUMNS``), if the row has one."""
    if row[at] is None:
        return None
    return StoredFile(row[at], row[at + 1], row[at + 2], row[at + 3], row[at + 4])


def _dm(row: tuple) -> DmRecord:
    return DmRecord(row[0], row[1], row[2], row[3], row[4], _file(row, 5))


def _insert_file(
    conn: sqlite3.Connection,
    file: StoredFile,
    uploader: str,
    *,
    room: str | None = None,
    message_id: int | None = None,
    dm_id: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO files (id, sha256, size, name, mime, uploader, room, message_id, dm_id) "
        "VALUES (?,?,?,?,?,?,?,?,?)",
        (file.id, file.sha256, file.size, file.name, file.mime, uploader, room, message_id,
         dm_id),
    )  # fmt: skip


class SqliteStore:
    """The embedded default store: one SQLite database file in WAL mode."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = str(path)
        self.fsync = fsync  # (each commit waits for the disk: see GroupCommitter's ``local``)
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._migrate()
        self._read_lock = threading.Lock()
        self._reader = self._writer if self.path == ":memory:" else self._connect()
        self.checkpointer: Checkpointer | None = None
        if self.path != ":memory:":
            self._writer.execute("PRAGMA wal_autocheckpoint=0")  # (the checkpointer's work)
            self.checkpointer = Checkpointer(self._connect())

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {self._why(exc)}") from None
        return conn

    def _why(self, said: object) -> str:
        """What SQLite said, and what the file system says, which is often plainer."""
        problem = _directory_problem(self.path) if self.path != ":memory:" else None
        return f"{said}; {problem}" if problem else str(said)

    def check_writable(self) -> None:
        """Commit one write (the schema version, unchanged), or raise :exc:`StoreError`.

        Opening a database only reads it, so a server on a full or read-only disk would
        start, then refuse every message; this makes it refuse to start instead, with
        one line that says why.
        """
        with self._write_lock:
            try:
                with self._transaction(self._writer):
                    version = self._writer.execute("PRAGMA user_version").fetchone()[0]
                    self._writer.execute(f"PRAGMA user_version={int(version)}")
            except sqlite3.Error as exc:
                why = self._why(storage_failure(exc) or exc)
                raise StoreError(f"cannot write to the database {self.path}: {why}") from None

    def _migrate(self) -> None:
        version = self._writer.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} has schema version {version}, newer than this "
                f"server's {SCHEMA_VERSION}: upgrade securechat or use another --data-dir"
            )
        first = version
        while version < SCHEMA_VERSION:
            with self._transaction(self._writer):
                self._writer.executescript(f"BEGIN;{_MIGRATIONS[version]}")
                version += 1
                self._writer.execute(f"PRAGMA user_version={version}")
        if first == 0:
            log.info("database %s created (schema version %d)", self.path, version)
        elif first < version:
            log.info("database %s migrated from schema version %d to %d", self.path, first,
                     version)  # fmt: skip

    @staticmethod
    @contextlib.contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
        """One transaction, rolled back whole if anything fails, the ``COMMIT`` included.

        On some errors SQLite rolls back by itself (a full disk), on others it does not
        (a ``COMMIT`` that found the database busy); either way the connection leaves
        here outside any transaction, so the next write cannot commit what this one
        left behind, and a failed ``ROLLBACK`` does not hide the error that caused it.
        """
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            yield self._reader

    def write(self, writes: list[Write]) -> None:
        self._write(writes)
        if self.checkpointer is not None:
            self.checkpointer.committed(self._writer, self._write_lock)

    def _write(self, writes: list[Write]) -> None:
        # New messages go in with one executemany per run of them, and each room's
        # counter is raised once per transaction: the commit thread's hot path.
        new_rows: list[tuple[str, int, str, str, str, str | None]] = []
        last_ids: dict[str, int] = {}

        def insert_new_rows() -> None:
            conn.executemany(
                "INSERT INTO messages (room, id, user, text, ts, file_id) VALUES (?,?,?,?,?,?)",
                new_rows,
            )
            new_rows.clear()

        with self._write_lock, self._transaction(self._writer):
            conn = self._writer
            for w in writes:
                if isinstance(w, AddMessages):
                    room = w.room
                    for m in w.messages:
                        file = m.file
                        new_rows.append((room, m.id, m.user, m.text, m.ts, file and file.id))
                        if file is not None:
                            _insert_file(conn, file, m.user, room=room, message_id=m.id)
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
                        conn.execute(  # its file, if any, is no longer shared
                            "UPDATE files SET deleted = 1 WHERE id = (SELECT file_id FROM "
                            "messages WHERE room = ? AND id = ?)",
                            (room, message_id),
                        )
                        conn.execute(  # the text goes; the id stays used
                            "UPDATE messages SET deleted = 1, text = '', file_id = NULL "
                            "WHERE room = ? AND id = ?",
                            (room, message_id),
                        )
                    case AddDm(dm):
                        file = dm.file
                        conn.execute(
                            "INSERT INTO dms (id, sender, recipient, text, ts, file_id) "
                            "VALUES (?,?,?,?,?,?)",
                            (dm.id, dm.sender, dm.recipient, dm.text, dm.ts, file and file.id),
                        )
                        if file is not None:
                            _insert_file(conn, file, dm.sender, dm_id=dm.id)
                    case AddToken(token, now):
                        conn.execute("DELETE FROM tokens WHERE expires <= ?", (now,))
                        conn.execute(
                            "INSERT INTO tokens (hash, user, fingerprint, expires) "
                            "VALUES (?, ?, ?, ?)",
                            (token.hash, token.user, token.fingerprint, token.expires),
                        )
                    case DeleteToken(token_hash):
                        conn.execute("DELETE FROM tokens WHERE hash = ?", (token_hash,))
                    case SetReadMarker(user, target, last_id):
                        conn.execute(
                            "INSERT INTO read_markers (user, target, last_id) VALUES (?, ?, ?) "
                            "ON CONFLICT(user, target) "
                            "DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                            (user, target, last_id),
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

    def token(self, token_hash: bytes) -> TokenRecord | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT hash, user, fingerprint, expires FROM tokens WHERE hash = ?",
                (token_hash,),
            ).fetchone()
        return TokenRecord(*row) if row else None

    def read_marker(self, user: str, target: str) -> int:
        with self._read() as conn:
            row = conn.execute(
                "SELECT last_id FROM read_markers WHERE user = ? AND target = ?", (user, target)
            ).fetchone()
        return row[0] if row else 0

    # (A message's file comes with it: a join on the files table's primary key.)
    _SELECT = (
        "SELECT m.id, m.user, m.text, m.ts, m.edited_ts, m.deleted, " + _FILE_COLUMNS
        + "FROM messages m LEFT JOIN files f ON f.id = m.file_id WHERE m.room = ? "
    )  # fmt: skip

    @staticmethod
    def _message(row: tuple) -> StoredMessage:
        return StoredMessage(row[0], row[1], row[2], row[3], row[4], bool(row[5]),
                             _file(row, 6))  # fmt: skip

    def recent(self, room: str, limit: int) -> list[StoredMessage]:
        with self._read() as conn:
            rows = conn.execute(
                self._SELECT + "ORDER BY m.id DESC LIMIT ?",
                (room, limit),
            ).fetchall()
        return [self._message(row) for row in reversed(rows)]

    def message(self, room: str, message_id: int) -> StoredMessage | None:
        with self._read() as conn:
            row = conn.execute(
                self._SELECT + "AND m.id = ?",
                (room, message_id),
            ).fetchone()
        return self._message(row) if row else None

    def page(
        self, room: str, *, before: int | None, after: int | None, limit: int, upto: int
    ) -> list[StoredMessage]:
        live = self._SELECT + "AND m.deleted = 0 AND m.id <= ? "
        with self._read() as conn:
            if after is not None:
                rows = conn.execute(
                    live + "AND m.id > ? ORDER BY m.id LIMIT ?", (room, upto, after, limit)
                ).fetchall()
            else:
                bound = upto + 1 if before is None else before
                rows = conn.execute(
                    live + "AND m.id < ? ORDER BY m.id DESC LIMIT ?", (room, upto, bound, limit)
                ).fetchall()
                rows.reverse()
        return [self._message(row) for row in rows]

    def dms_after(
        self, user: str, after: int, *, sent_after: int | None = None, limit: int | None = None
    ) -> list[DmRecord]:
        columns = _DM_SELECT
        query, args = columns + "WHERE d.recipient = ? AND d.id > ? ", [user, after]
        if sent_after is not None:  # (two ordered index scans, merged: LIMIT stops both)
            query += (
                "UNION ALL " + columns + "WHERE d.sender = ? AND d.recipient != ? AND d.id > ? "
            )
            args += [user, user, max(after, sent_after)]
        with self._read() as conn:
            rows = conn.execute(query + "ORDER BY 1 LIMIT ?", (*args, limit or -1)).fetchall()
        return [_dm(row) for row in rows]

    def dm_page(self, user: str, other: str, *, before: int | None, limit: int) -> list[DmRecord]:
        bound = before if before is not None else 2**62
        with self._read() as conn:
            rows = conn.execute(
                _DM_SELECT + "WHERE d.id < ? AND "
                "((d.sender = ? AND d.recipient = ?) OR (d.sender = ? AND d.recipient = ?)) "
                "ORDER BY d.id DESC LIMIT ?",
                (bound, user, other, other, user, limit),
            ).fetchall()
        return [_dm(row) for row in reversed(rows)]

    # -- the files table (for the file store, in its worker threads)

    def file(self, file_id: str) -> FileEntry | None:
        with self._read() as conn:
            row = conn.execute(
                _FILE_ENTRY_SELECT + "WHERE f.id = ?",
                (file_id,),
            ).fetchone()
        if row is None:
            return None
        file = _file(row, 0)
        assert file is not None
        return FileEntry(file, row[5], row[6], row[7], row[8], row[9], bool(row[10]))

    def file_usage(self, user: str) -> int:
        with self._read() as conn:
            (used,) = conn.execute(
                "SELECT coalesce(sum(size), 0) FROM files WHERE uploader = ? AND deleted = 0",
                (user,),
            ).fetchone()
        return int(used)

    def blob_used(self, sha256: str) -> bool:
        with self._read() as conn:
            row = conn.execute(
                "SELECT 1 FROM files WHERE sha256 = ? AND deleted = 0 LIMIT 1", (sha256,)
            ).fetchone()
        return row is not None

    def blobs_used(self) -> set[str]:
        with self._read() as conn:
            return {sha for (sha,) in conn.execute(
                "SELECT DISTINCT sha256 FROM files WHERE deleted = 0")}  # fmt: skip

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        with self._read_lock:
            if self._reader is not self._writer:
                self._reader.close()
        with self._write_lock:
            self._writer.close()  # (the last connection: SQLite checkpoints, removes the WAL)


class Checkpointer:
    """Copies the WAL back into the database file, in a thread of its own.

    Why: SQLite's automatic checkpoint runs inside the commit that takes the WAL past
    1,000 pages, in the committing thread, which is an I/O thread (issue 18). It copies
    those pages and syncs twice: milliseconds in which no connection of that thread was
    served. In the rooms benchmark that was the p99 (5 ms; 2 ms without it).

    Here a thread with a connection of its own does it, woken every
    :data:`CHECKPOINT_COMMITS` commits: WAL mode lets a checkpoint run beside the
    writer, and the sqlite3 module lets go of the GIL meanwhile. A ``PASSIVE``
    checkpoint never waits for the writer, so under a steady stream of commits it misses
    the frames committed while it ran, and SQLite starts the WAL afresh (writes it from
    its start again) only when a write begins with every frame copied. So once the WAL
    is :data:`CHECKPOINT_WAL` pages long, the writer copies the few frames committed
    since the thread's pass, after its next commit, and its next write starts the WAL
    afresh: a short pause every 16 MiB of WAL, rather than a WAL that grows without end.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.unfinished = False  # the WAL is long: the writer finishes a checkpoint
        self.passes = 0  # checkpoints done (tests wait on :attr:`done` for it to grow)
        self.done = threading.Condition()
        self._conn = conn
        self._commits = 0
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)
        self._thread.start()

    def committed(self, writer: sqlite3.Connection, lock: threading.Lock) -> None:
        """(The writer, after each commit; ``lock`` is its own.) Wake the thread now and
        then; finish its checkpoint here if the thread cannot."""
        if self.unfinished:
            self.unfinished = False
            with lock:
                self._checkpoint(writer)
        self._commits += 1
        if self._commits >= CHECKPOINT_COMMITS:
            self._commits = 0
            self._wanted.set()

    def checkpoint(self) -> None:
        """One checkpoint (the thread's work)."""
        pages = self._checkpoint(self._conn)
        if pages is not None:
            self.unfinished = pages >= CHECKPOINT_WAL
        with self.done:
            self.passes += 1
            self.done.notify_all()

    def close(self) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            self.checkpoint()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> int | None:
        """A PASSIVE checkpoint on ``conn``: the WAL's length in pages (since it was last
        started afresh); None if it failed. (How many it copied says little: all those
        there when it began, while the writer may have added more.)"""
        try:
            return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        except sqlite3.Error as exc:  # (a full or failing disk: commits say so too)
            log.warning("checkpoint failed (the next one tries again): %s", exc)
            return None


Callback = Callable[[], None]
Failed = Callable[[Exception], None]  # a write was not committed: why (StoreUnavailable or a bug)
Job = tuple[Write | None, Callback | None, Failed | None]


class StorageHealth:
    """Whether writes work, told to the log when that changes, not once per write.

    When a disk fills, every commit fails until someone frees space; a line (with a
    traceback) per failed write would fill what is left of the disk with the log. So
    the first failure of an *episode* is one ERROR line saying what failed and why,
    a different reason later in it is another, and the first commit that works again
    ends it with one WARNING line. A failure that is a bug (not the storage) is logged
    with its traceback each time: those are rare and each one matters.
    """

    def __init__(
        self, where: str = "the database", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.where = where
        self._clock = clock
        self.reason: str | None = None  # the storage failure of the current episode
        self._since = 0.0
        self._failed_commits = 0
        self._lost_writes = 0

    def failed(self, exc: Exception, writes: int) -> Exception:
        """A commit of ``writes`` writes failed with ``exc``: what to tell their senders."""
        failure = storage_failure(exc)
        if failure is None:
            log.error("commit of %d writes failed (a bug): answered 'internal'", writes,
                      exc_info=exc)  # fmt: skip
            return exc
        if self.reason is None:
            self._since = self._clock()
            self._failed_commits = self._lost_writes = 0
        if failure.reason != self.reason:
            self.reason = failure.reason
            log.error("cannot store writes in %s: %s; writes are answered 'unavailable' "
                      "until it works again", self.where, failure)  # fmt: skip
        self._failed_commits += 1
        self._lost_writes += writes
        return failure

    def succeeded(self) -> None:
        """A commit worked: the end of an episode, if one was going on."""
        if self.reason is not None:
            log.warning("writes are stored again in %s, after %.1f s of %s (%d failed "
                        "commits, %d writes not stored)", self.where,
                        self._clock() - self._since, self.reason, self._failed_commits,
                        self._lost_writes)  # fmt: skip
            self.reason = None


def _where(store: Store) -> str:
    path = getattr(store, "path", None)
    return str(path) if path else type(store).__name__


def _run_callback(callback: Callable[..., None], *args: object) -> None:
    """Run a delivery callback; a bug in one must not stop the others of the batch."""
    try:
        callback(*args)
    except Exception:
        log.exception("delivery after commit failed")


class InlineCommitter:
    """Commit each write at once in the caller's thread, then run its callback."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.health = StorageHealth(_where(store))

    def submit(
        self, write: Write | None, then: Callback | None = None, failed: Failed | None = None
    ) -> None:
        if write is not None:
            try:
                self.store.write([write])
            except Exception as exc:
                error = self.health.failed(exc, 1)
                if failed is not None:
                    failed(error)
                return
            self.health.succeeded()
        if then is not None:
            then()

    def close(self) -> None:
        """Nothing is pending."""


class GroupCommitter:
    """One writer thread committing everything queued in one transaction.

    ``submit`` never blocks (the queue is unbounded; the rate limits bound it), so
    it may be called under a room lock; callbacks run in the thread that commits, in
    the order of submission, after their write has committed. A write of ``None`` just
    runs its callback in that order (e.g. offline DM catch-up after the DMs before it).
    When a commit fails, each write of the batch gets ``failed`` (with the error)
    instead of ``then``, still in order, and the writes of ``None`` still run: a
    session waiting for its writes to be answered is released either way.

    Committing where the writes come from (issue 18): a thread that calls
    :meth:`commit_here` (an I/O thread) submits without waking the writer thread and
    commits what is queued itself, with its callbacks, when it calls the function
    that returns (at the end of each loop turn: everything its turn read shares one
    transaction). A quiet room's message then costs no hand-off to another thread and
    back, no futex and no GIL transfer. One batch at a time, whoever commits (a lock
    covers the commit and its callbacks), taken from one queue in submission order:
    so callbacks keep the order of submission whichever thread runs them. When the
    batch lock is busy, or while writes fail, the writer thread is woken to commit what
    is left. Off with ``local=False`` (``--fsync``: a commit that waits for the disk
    must not stall the connections of an I/O thread; the default for a store with
    ``fsync``).

    With ``metrics``, each commit's time goes to its histogram and each failed commit
    to its counter, and it is the metrics' :class:`~securechat.server.metrics.StorageState`
    (``/readyz`` asks it whether writes work).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = MAX_BATCH,
        metrics: ServerMetrics | None = None,
        local: bool | None = None,
    ) -> None:
        """``local``: whether :meth:`commit_here` is allowed (default: unless the store
        waits for the disk on each commit, its ``fsync``)."""
        self.store = store
        self.max_batch = max_batch
        self.local = not getattr(store, "fsync", False) if local is None else local
        self.health = StorageHealth(_where(store))
        self._jobs: deque[Job] = deque()
        self._ready = threading.Condition(threading.Lock())  # guards _jobs, _stopping
        self._batch_lock = threading.Lock()  # one batch (write and callbacks) at a time
        # ``.here`` is set in the threads that commit what they submit (a thread-local:
        # it ends with its thread, whose ident a later thread may get)
        self._here = threading.local()
        self._stopping = False
        self.commits = 0
        self.writes = 0
        self.metrics = metrics
        self._probe_at = 0.0
        if metrics is not None:
            metrics.storage = self
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(
        self, write: Write | None, then: Callback | None = None, failed: Failed | None = None
    ) -> None:
        with self._ready:
            self._jobs.append((write, then, failed))
            if not getattr(self._here, "here", False):
                self._ready.notify()

    def commit_here(self) -> Callable[[], None] | None:
        """From now on this thread commits what it submits: call the function returned
        after submitting (it commits everything queued, then runs the callbacks).
        ``None`` (and nothing changes) when commits stay on the writer thread."""
        if not self.local:
            return None
        self._here.here = True
        return self.commit_pending

    def commit_pending(self) -> None:
        """Commit what is queued, with its callbacks, in this thread (never waits: if
        another thread is committing, the writer thread is woken to do it after).

        While writes fail (an episode of :attr:`health`) the writer thread commits
        them instead: a database another process holds locked makes each try wait for
        SQLite's busy timeout, which an I/O thread's other connections must not.
        """
        if not self._jobs:
            return
        if self.health.reason is not None or not self._batch_lock.acquire(blocking=False):
            with self._ready:
                self._ready.notify()
            return
        try:
            self._commit_queued()
        finally:
            self._batch_lock.release()

    @property
    def problem(self) -> str | None:
        """Why writes fail now (the current episode's reason), or ``None``."""
        return self.health.reason

    def probe(self) -> None:
        """While writes fail, try one in the writer thread (at most every PROBE_INTERVAL s).

        An episode ends with the first commit that works; on a server nobody writes to,
        that would be never, and ``/readyz`` would stay 503 after the disk was freed.
        Any thread; never blocks.
        """
        now = time.monotonic()
        if self.health.reason is not None and now >= self._probe_at:
            self._probe_at = now + PROBE_INTERVAL
            self.submit(None, self._try_a_write)

    def _try_a_write(self) -> None:
        """(The committing thread.) Commit a write that changes nothing; end the episode
        if it works (the store's ``check_writable``, where it has one)."""
        check = getattr(self.store, "check_writable", None)
        if check is None or self.health.reason is None:
            return
        try:
            check()
        except StoreError:
            return  # (still failing: the episode goes on, already logged)
        self.health.succeeded()

    def _run(self) -> None:
        ready = self._ready
        while True:
            with ready:
                while not self._jobs and not self._stopping:
                    ready.wait()
                if not self._jobs:
                    return  # stopping, and everything is committed
            with self._batch_lock:
                self._commit_queued()

    def _commit_queued(self) -> None:
        """(Under the batch lock.) Commit batches until the queue is empty, callbacks too
        (they may submit more: a DM catch-up's next page)."""
        jobs = self._jobs
        while jobs:
            with self._ready:
                if len(jobs) <= self.max_batch:
                    batch = list(jobs)
                    jobs.clear()
                else:
                    batch = [jobs.popleft() for _ in range(self.max_batch)]
            self._commit(batch)

    def _commit(self, jobs: list[Job]) -> None:
        metrics = self.metrics
        writes = [write for write, _, _ in jobs if write is not None]
        error: Exception | None = None
        if writes:
            start = time.perf_counter()
            try:
                self.store.write(writes)
            except Exception as exc:  # nothing of this batch is acknowledged
                error = self.health.failed(exc, len(writes))
                if metrics is not None:
                    metrics.commits_failed.inc()
            else:
                if metrics is not None:
                    metrics.commit_seconds.observe(time.perf_counter() - start)
                self.health.succeeded()
                self.commits += 1
                self.writes += len(writes)
        for write, then, failed in jobs:
            if error is not None and write is not None:
                if failed is not None:
                    _run_callback(failed, error)
            elif then is not None:
                _run_callback(then)

    def close(self) -> None:
        """Commit and deliver everything submitted so far, then stop the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join()
