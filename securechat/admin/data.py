"""``securechat-admin``: back up, restore, export and count a server's data.

Why a tool rather than ``cp``: the server keeps its database open in WAL mode, so a
committed message may still live in ``securechat.db-wal`` rather than in the main file.
A copy of the main file alone can miss messages or be corrupt; a copy of both, taken
while the server writes, can be torn. This tool copies through SQLite instead.

* ``backup DEST``: an online, consistent copy while the server runs. DEST is a new
  directory (mode 0700) laid out like a data directory::

      DEST/securechat.db   the database: one self-contained file (no WAL), mode 0600
      DEST/files/          the file store, when the data directory has one

  It is built in a temporary directory beside DEST, fsynced, then renamed to DEST, so
  DEST is either absent or a whole backup, never half of one.
* ``restore SRC``: puts such a backup (or a bare database file, e.g. one made by
  ``sqlite3 ... .backup``) in place as the data directory's database, with the server
  stopped. The database it replaces is kept beside it, never deleted.
* ``export``: a room's history or a user's direct messages, oldest first, to stdout.
* ``stats``: how many users, rooms, messages and direct messages there are.

Every command but ``restore`` opens the live database read-only (``mode=ro``): in WAL
mode a reader never blocks the server's writer, and the writer never blocks a reader,
so these can run at any time without changing or slowing the server. (On a stopped
server's database, SQLite leaves an empty ``-wal`` and ``-shm`` beside it after reading;
the server takes them as its own when it starts.)
"""

import argparse
import contextlib
import datetime
import json
import os
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from securechat.admin.adduser import DEFAULT_FILE as DEFAULT_PASSWD
from securechat.exceptions import AdminError, PasswordFileError
from securechat.protocol.frames import timestamp
from securechat.server import passwd
from securechat.server.cli import DATABASE_NAME
from securechat.server.store import SCHEMA_VERSION

__all__ = [
    "BackupResult",
    "RestoreResult",
    "Stats",
    "backup",
    "dm_messages",
    "export",
    "main",
    "open_read_only",
    "restore",
    "room_messages",
    "stats",
]

PROG = "securechat-admin"
DEFAULT_DATA_DIR = "data"
FILES = "files"  # the file store inside a data directory, and inside a backup
BACKUP_PAGES = 1024  # database pages copied per backup step (4 MiB at SQLite's 4 KiB pages)
EXPORT_PAGE = 500  # rows per query when exporting
BUSY_TIMEOUT = 0.25  # seconds restore waits for the live database's lock before "in use"
_TABLES = ("rooms", "messages", "dms", "dm_markers")  # what makes a securechat database
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
Progress = Callable[[int, int], None]  # pages remaining, pages in all


# ----------------------------------------------------------------- opening


def _read_only_uri(path: Path) -> str:
    return "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"


def _schema_version(conn: sqlite3.Connection, path: Path, *, newer_ok: bool = False) -> int:
    """The schema version of a securechat database; :exc:`AdminError` if it is not one."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {name for (name,) in rows}
    except sqlite3.DatabaseError as exc:
        raise AdminError(f"{path} is not a securechat database ({exc})") from None
    missing = [name for name in _TABLES if name not in tables]
    if missing or version < 1:
        lacks = f"no table {missing[0]}" if missing else "no schema version"
        raise AdminError(f"{path} is not a securechat database ({lacks})")
    if version > SCHEMA_VERSION and not newer_ok:
        raise AdminError(
            f"{path} has schema version {version}, newer than this securechat's "
            f"{SCHEMA_VERSION}: use the securechat that wrote it, or upgrade this one"
        )
    return version


def open_read_only(path: Path, *, newer_ok: bool = False) -> sqlite3.Connection:
    """``path`` opened read-only and checked to be a securechat database.

    Each statement runs in its own read transaction (autocommit) unless the caller
    opens one; ``newer_ok`` allows a newer schema (a backup copies any version).
    """
    if not path.is_file():
        missing_dir = not path.parent.is_dir()
        hint = f" (no directory {path.parent}; see --data-dir)" if missing_dir else ""
        raise AdminError(f"no database {path}{hint}")
    try:
        conn = sqlite3.connect(_read_only_uri(path), uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise AdminError(f"cannot open {path}: {exc}") from None
    try:
        _schema_version(conn, path, newer_ok=newer_ok)
    except BaseException:
        conn.close()
        raise
    return conn


# ------------------------------------------------------------- durability


def _fsync(path: Path) -> None:
    """fsync a file or a directory (a directory: so the names in it survive power loss)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_tree(source: Path, target: Path) -> tuple[int, int]:
    """Copy a file store into the new directory ``target``, every file and directory
    fsynced; how many files and bytes were copied.

    The server may add and remove files meanwhile. A file lands in the store by a
    rename, so it is copied whole or not at all; one removed before it is copied (the
    last message carrying it was deleted) is skipped. Symbolic links are not followed
    (the store has none; a link must not copy what lies outside it). Directories are
    made 0700: the files are private.
    """
    files = size = 0
    for directory, _, names in os.walk(source):  # a directory removed meanwhile is skipped
        into = target / Path(directory).relative_to(source)
        into.mkdir(mode=0o700, exist_ok=into != target)
        for name in names:
            try:
                shutil.copy2(Path(directory) / name, into / name, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if (into / name).is_symlink():
                (into / name).unlink()
                continue
            _fsync(into / name)
            files += 1
            size += (into / name).stat().st_size
    for directory, _, _ in os.walk(target):  # each after the names made in it
        _fsync(Path(directory))
    return files, size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _remove_if_there(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _copy_database(
    source: sqlite3.Connection, path: Path, pages: int, progress: Progress | None = None
) -> None:
    """Copy ``source`` into the (empty) file ``path`` with SQLite's backup API, then fsync.

    The copy runs in steps of ``pages`` pages inside one read transaction of the source:
    in WAL mode a reader does not block the server's writer, which goes on committing
    meanwhile (its WAL grows until the copy ends), and one snapshot for every step is
    what makes the copy consistent; without it SQLite restarts the copy each time the
    server commits, which under steady traffic never finishes. The steps keep Ctrl-C
    working during a big copy; ``progress(remaining, total)`` (pages) is called after each.
    The copy is switched out of WAL mode so that it is one self-contained file (the
    server switches it back when it opens it).
    """
    target = sqlite3.connect(path, isolation_level=None)
    try:
        source.execute("BEGIN")
        try:
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot
            report = None if progress is None else lambda _, left, total: progress(left, total)
            source.backup(target, pages=pages, progress=report)
        finally:
            source.execute("COMMIT")
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
    _fsync(path)


# ------------------------------------------------------------------ backup


@dataclass(frozen=True)
class BackupResult:
    """What :func:`backup` wrote; the counts are those of the copy."""

    path: Path
    size: int  # bytes of the database copy
    rooms: int
    messages: int  # not deleted
    dms: int
    files: int  # of the file store (0 without one)
    files_size: int
    seconds: float


def _is_backup(path: Path) -> bool:
    """Whether ``path`` looks like what :func:`backup` makes (so --force may replace it)."""
    if path.is_symlink() or path.is_file():
        return True
    if not path.is_dir():
        return False
    names = set(os.listdir(path))
    return DATABASE_NAME in names and names <= {DATABASE_NAME, FILES}


def _check_destination(dest: Path, data_dir: Path, force: bool) -> None:
    if dest.name in ("", ".", ".."):
        raise AdminError(f"{dest} cannot be a backup: name a new directory")
    if not dest.parent.is_dir():
        raise AdminError(f"no directory {dest.parent} to make the backup {dest.name} in")
    inside = Path(os.path.abspath(data_dir))
    if dest == inside or inside in dest.parents:
        raise AdminError(f"{dest} is inside the data directory {data_dir}: back up elsewhere")
    if os.path.lexists(dest):
        if not force:
            raise AdminError(f"{dest} exists; --force replaces it")
        if not _is_backup(dest):
            raise AdminError(f"{dest} is not a file or a securechat backup: not replacing it")


def _counts(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Rooms, messages (not deleted) and direct messages."""
    (rooms,) = conn.execute("SELECT count(*) FROM rooms").fetchone()
    (messages,) = conn.execute("SELECT count(*) FROM messages WHERE deleted = 0").fetchone()
    (dms,) = conn.execute("SELECT count(*) FROM dms").fetchone()
    return rooms, messages, dms


def backup(
    data_dir: Path,
    dest: Path,
    *,
    force: bool = False,
    pages: int = BACKUP_PAGES,
    progress: Progress | None = None,
) -> BackupResult:
    """Copy the data directory's database (and file store) to the new directory ``dest``.

    Safe while the server runs: the database is read through a read-only connection
    (see :func:`_copy_database`). The file store, if any, is copied after the database,
    so every file the copied database refers to is there, unless it was deleted
    meanwhile. ``force`` replaces an existing ``dest`` if it is a file or a backup.
    """
    started = time.monotonic()
    dest = Path(os.path.abspath(dest))
    _check_destination(dest, data_dir, force)
    with contextlib.ExitStack() as undo:  # on failure: no temporary directory left behind
        source = undo.enter_context(
            contextlib.closing(open_read_only(data_dir / DATABASE_NAME, newer_ok=True))
        )
        building = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))  # 0700
        undo.callback(shutil.rmtree, building, ignore_errors=True)  # gone once renamed
        database = building / DATABASE_NAME
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        _copy_database(source, database, pages, progress)
        source.close()
        with contextlib.closing(open_read_only(database, newer_ok=True)) as copy:
            rooms, messages, dms = _counts(copy)
        files = files_size = 0
        if (data_dir / FILES).is_dir():
            files, files_size = _copy_tree(data_dir / FILES, building / FILES)
        _fsync(building)
        if os.path.lexists(dest):  # --force, checked above: the old one goes once the new is in
            old = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.old"
            os.rename(dest, old)
            os.rename(building, dest)
            _remove(old)
        else:
            os.rename(building, dest)
        _fsync(dest.parent)
    return BackupResult(dest, (dest / DATABASE_NAME).stat().st_size, rooms, messages, dms,
                        files, files_size, time.monotonic() - started)  # fmt: skip


# ----------------------------------------------------------------- restore


@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore` put in place and what it kept aside."""

    database: Path
    schema_version: int
    rooms: int
    messages: int
    dms: int
    files: int  # restored into the file store
    kept: tuple[Path, ...]  # the replaced database (and file store), moved aside


def _backup_parts(src: Path) -> tuple[Path, Path | None]:
    """The database and the file store (if any) of a backup directory or database file."""
    if src.is_dir():
        files = src / FILES
        return src / DATABASE_NAME, files if files.is_dir() else None
    if not src.exists():
        raise AdminError(f"no backup {src}")
    return src, None


def _take_lock(live: Path, *, fold: bool) -> None:
    """Refuse if another connection (a running server) has ``live`` open.

    In WAL mode every open connection holds a shared lock on the database file as long
    as it is open, even idle; SQLite's exclusive locking mode needs an exclusive lock on
    the file, so it is refused while a server has the database open, in this process or
    another. With ``fold``, the old database's WAL is also checkpointed into it and
    removed (journal mode DELETE), so the file kept aside holds every commit on its own.
    A file that is not a database cannot be in use by a server (it would not start).
    """
    if not live.exists():
        return
    try:
        conn = sqlite3.connect(live, timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise AdminError(f"cannot open {live}: {exc}") from None
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
        if fold:
            conn.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            raise AdminError(
                f"{live} is in use (is the server running?): stop the server, restore, "
                "then start it"
            ) from None
        raise AdminError(f"cannot take over {live}: {exc}") from None
    except sqlite3.DatabaseError:
        pass  # not a database: nothing can be using it; it is moved aside all the same
    finally:
        conn.close()


def _verify(path: Path, source: Path) -> tuple[int, int, int, int]:
    """Schema version and counts of ``source``'s copy at ``path``; :exc:`AdminError`
    unless it is a whole securechat database."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        version = _schema_version(conn, source)
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            first = " ".join(problems[0].split())  # SQLite's lines, made one
            raise AdminError(f"{source} is damaged (integrity check: {first})")
        return (version, *_counts(conn))


def restore(data_dir: Path, src: Path, *, force: bool = False) -> RestoreResult:
    """Make the backup ``src`` the database (and file store) of ``data_dir``.

    The server must be stopped: this refuses while anything has the database open. The
    backup is checked (a securechat database, not newer than this securechat, passing
    ``PRAGMA integrity_check``) on a copy made in the data directory; only then is the
    old database moved aside as ``securechat.db.before-restore-TIME`` (``force`` is
    needed when there is one) and the copy renamed into place. An older schema is
    migrated by the server when it starts.
    """
    source_db, source_files = _backup_parts(src)
    live = data_dir / DATABASE_NAME
    if live.exists() and source_db.exists() and os.path.samefile(live, source_db):
        raise AdminError(f"{src} is the database of {data_dir} itself")
    if os.path.lexists(live) and not force:
        raise AdminError(f"{live} exists; --force replaces it (the old one is kept beside it)")
    with contextlib.ExitStack() as undo:  # on failure: no temporary copy left behind
        # Refuse early what is not a securechat database, and a running server.
        source = undo.enter_context(contextlib.closing(open_read_only(source_db)))
        _take_lock(live, fold=False)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{DATABASE_NAME}.restore-", dir=data_dir)  # 0600
        os.close(fd)
        copy = Path(name)
        undo.callback(_remove_if_there, copy)  # gone once renamed
        _copy_database(source, copy, BACKUP_PAGES)
        source.close()
        version, rooms, messages, dms = _verify(copy, source_db)
        files = 0
        files_copy = data_dir / f".{FILES}.restore-{secrets.token_hex(4)}"
        if source_files is not None:
            undo.callback(shutil.rmtree, files_copy, ignore_errors=True)
            files, _ = _copy_tree(source_files, files_copy)
        _take_lock(live, fold=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        kept: list[Path] = []
        aside = live.with_name(f"{live.name}.before-restore-{stamp}")
        if os.path.lexists(live):
            os.rename(live, aside)
            kept.append(aside)
        # After the fold there is no WAL; one that is left (the old file was no database,
        # or is gone) must not meet the new database, which SQLite would replay it into.
        wal = Path(f"{live}-wal")
        if wal.exists():
            os.rename(wal, f"{aside}-wal")
        with contextlib.suppress(FileNotFoundError):
            Path(f"{live}-shm").unlink()  # an index of the old WAL, rebuilt by SQLite
        os.rename(copy, live)
        current_files = data_dir / FILES
        if os.path.lexists(current_files):  # the data directory is made to match the backup
            aside = data_dir / f"{FILES}.before-restore-{stamp}"
            os.rename(current_files, aside)
            kept.append(aside)
        if source_files is not None:
            os.rename(files_copy, current_files)
        _fsync(data_dir)
    return RestoreResult(live, version, rooms, messages, dms, files, tuple(kept))


# ------------------------------------------------------------------ export


def _since(text: str) -> str:
    """An ISO date or date and time (UTC unless it says otherwise) as a message ``ts``.

    Message timestamps are all of one form (``2026-11-26T02:20:28.123Z``), so comparing
    them as strings orders them in time.
    """
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or date and time: {text!r} (e.g. 2026-12-01 or 2026-12-01T08:30:00Z)"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC)
    return timestamp(when)


def _check_room(conn: sqlite3.Connection, room: str, path: Path) -> None:
    """:exc:`AdminError` naming a few rooms that exist, unless ``room`` has history."""
    if conn.execute("SELECT 1 FROM rooms WHERE name = ?", (room,)).fetchone():
        return
    names = [name for (name,) in conn.execute("SELECT name FROM rooms ORDER BY name LIMIT 11")]
    known = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    raise AdminError(f"no room {room} in {path} (rooms: {known or 'none'})")


def _has_files(conn: sqlite3.Connection) -> bool:
    """Whether messages may carry shared files (schema version 3 on)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    return "file_id" in columns


def _file_info(row: tuple) -> dict[str, object] | None:
    """The protocol's ``file`` object from the last five columns of an export row."""
    file_id, name, size, sha256, mime = row[-5:]
    if file_id is None:
        return None
    return {"id": file_id, "name": name, "size": size, "sha256": sha256, "mime": mime}


def _select(conn: sqlite3.Connection, columns: str, table: str) -> str:
    """``SELECT columns FROM table`` (aliased by its first letter) and the five columns of
    its messages' files (NULLs before schema version 3). Only constants go in."""
    alias = table[0]
    if not _has_files(conn):
        files, join = "NULL, NULL, NULL, NULL, NULL", ""
    else:
        files = "f.id, f.name, f.size, f.sha256, f.mime"
        join = f"LEFT JOIN files f ON f.id = {alias}.file_id "
    return f"SELECT {columns}, {files} FROM {table} {alias} {join}"  # noqa: S608


def room_messages(
    conn: sqlite3.Connection, room: str, since: str = "", *, page: int = EXPORT_PAGE
) -> Iterator[dict[str, object]]:
    """A room's messages, oldest first, as ``history`` records (protocol field names).

    Edited messages have their latest text and ``edited_ts``; deleted ones are left out,
    as from ``history`` (their text is gone; their ids are never reused); a shared file
    is described (``file``), not included. ``since``: only messages with ``ts`` at or
    after it. Read a page at a time, each page its own short read transaction: memory
    stays small, and a slow reader of the output never holds a snapshot that keeps the
    server's WAL from being checkpointed.
    """
    query = _select(conn, "m.id, m.user, m.text, m.ts, m.edited_ts", "messages") + (
        "WHERE m.room = ? AND m.id > ? AND m.deleted = 0 AND m.ts >= ? ORDER BY m.id LIMIT ?"
    )
    after = 0
    while True:
        rows = conn.execute(query, (room, after, since, page)).fetchall()
        for row in rows:
            message_id, user, text, ts, edited_ts = row[:5]
            record: dict[str, object] = {"room": room, "id": message_id, "user": user,
                                         "text": text, "ts": ts}  # fmt: skip
            if edited_ts is not None:
                record["edited_ts"] = edited_ts
            if file := _file_info(row):
                record["file"] = file
            yield record
        if len(rows) < page:
            return
        after = rows[-1][0]


def dm_messages(
    conn: sqlite3.Connection, user: str, since: str = "", *, page: int = EXPORT_PAGE
) -> Iterator[dict[str, object]]:
    """Direct messages to and from ``user``, oldest first, with the ``dm`` frame's fields."""
    columns = _select(conn, "d.id, d.sender, d.recipient, d.text, d.ts", "dms")
    query = (  # two ordered index scans, merged
        columns + "WHERE d.sender = ? AND d.id > ? AND d.ts >= ? UNION ALL "
        + columns + "WHERE d.recipient = ? AND d.sender != ? AND d.id > ? AND d.ts >= ? "
        "ORDER BY 1 LIMIT ?"
    )  # fmt: skip
    after = 0
    while True:
        rows = conn.execute(query, (user, after, since, user, user, after, since, page)).fetchall()
        for row in rows:
            dm_id, sender, recipient, text, ts = row[:5]
            record: dict[str, object] = {"id": dm_id, "from": sender, "to": recipient,
                                         "text": text, "ts": ts}  # fmt: skip
            if file := _file_info(row):
                record["file"] = file
            yield record
        if len(rows) < page:
            return
        after = rows[-1][0]


def _as_text(record: dict[str, object]) -> str:
    """One record for people: ``TS [ID] USER: TEXT``; more lines of text indented."""
    who = record["user"] if "user" in record else f"{record['from']} -> {record['to']}"
    lines = str(record["text"]).split("\n")
    head = f"{record['ts']} [{record['id']}] {who}:" + (f" {lines[0]}" if lines[0] else "")
    tail = "".join(f"\n    {line}" for line in lines[1:])
    edited = f" (edited {record['edited_ts']})" if "edited_ts" in record else ""
    file = record.get("file")
    shared = f" [file: {file['name']}, {_size(file['size'])}]" if isinstance(file, dict) else ""
    return head + tail + edited + shared + "\n"


def export(records: Iterator[dict[str, object]], fmt: str, out: BinaryIO) -> int:
    """Write ``records`` one a line (``jsonl``, or ``txt`` for people); how many."""
    count = 0
    for record in records:
        if fmt == "jsonl":
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        else:
            line = _as_text(record)
        out.write(line.encode("utf-8"))
        count += 1
    out.flush()
    return count


# ------------------------------------------------------------------- stats


@dataclass(frozen=True)
class Stats:
    """What :func:`stats` counted."""

    database: Path
    schema_version: int
    size: int  # bytes of the database file
    wal_size: int  # bytes of its WAL (committed, not yet checkpointed)
    users: int
    passwd_exists: bool
    rooms: int
    messages: int  # not deleted
    deleted: int
    dms: int
    oldest: str | None  # ts of the oldest message (not deleted)
    newest: str | None


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def stats(data_dir: Path, passwd_path: Path) -> Stats:
    """Counts of the data directory's database (one snapshot) and of the password file."""
    path = data_dir / DATABASE_NAME
    users = len(passwd.read_users(passwd_path))
    with contextlib.closing(open_read_only(path)) as conn:
        conn.execute("BEGIN")  # every number from one snapshot
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        rooms, messages, dms = _counts(conn)
        (deleted,) = conn.execute("SELECT count(*) FROM messages WHERE deleted = 1").fetchone()
        oldest, newest = conn.execute(
            "SELECT min(ts), max(ts) FROM messages WHERE deleted = 0"
        ).fetchone()
        conn.execute("COMMIT")
    return Stats(path, version, _file_size(path), _file_size(Path(f"{path}-wal")), users,
                 passwd_path.exists(), rooms, messages, deleted, dms, oldest, newest)  # fmt: skip


def _count(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


def _contents(messages: int, rooms: int, dms: int) -> str:
    return (f"{_count(messages, 'message')} in {_count(rooms, 'room')}, "
            f"{_count(dms, 'direct message')}")  # fmt: skip


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _print_stats(found: Stats, passwd_path: Path) -> None:
    users = f"{found.users} in {passwd_path}" if found.passwd_exists else (
        f"0 (no password file {passwd_path}; see --passwd)")  # fmt: skip
    wal = f" (and {_size(found.wal_size)} of WAL)" if found.wal_size else ""
    print(f"database: {found.database}, schema version {found.schema_version}")
    print(f"size: {_size(found.size)}{wal}")
    print(f"users: {users}")
    print(f"rooms: {found.rooms}")
    print(f"messages: {found.messages} (and {found.deleted} deleted)")
    print(f"direct messages: {found.dms}")
    print(f"oldest message: {found.oldest or 'none'}")
    print(f"newest message: {found.newest or 'none'}")


# -------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Back up, restore, export and count the data of a securechat server.",
    )
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR), metavar="DIR",
        help=f"the server's --data-dir (default: {DEFAULT_DATA_DIR})",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backup_cmd = commands.add_parser(
        "backup", parents=[data_dir], help="copy the data while the server runs",
        description="Copy the database (and file store) into the new directory DEST, "
        "consistently, while the server runs: DEST/securechat.db and DEST/files/.",
    )  # fmt: skip
    backup_cmd.add_argument("dest", type=Path, metavar="DEST", help="the backup directory to make")
    backup_cmd.add_argument("--force", action="store_true",
                            help="replace DEST if it exists (a file or a backup)")  # fmt: skip
    restore_cmd = commands.add_parser(
        "restore", parents=[data_dir], help="put a backup in place (server stopped)",
        description="Make a backup (a directory made by backup, or a database file) the "
        "data directory's database. Stop the server first; the old database is kept as "
        "securechat.db.before-restore-TIME.",
    )  # fmt: skip
    restore_cmd.add_argument("src", type=Path, metavar="SRC", help="the backup")
    restore_cmd.add_argument("--force", action="store_true",
                             help="replace an existing database (it is moved aside)")  # fmt: skip
    export_cmd = commands.add_parser(
        "export", parents=[data_dir], help="a room's history or a user's DMs, to stdout",
        description="Write a room's messages or a user's direct messages, oldest first, "
        "one a line, to stdout. Edited messages have their latest text; deleted ones are "
        "left out.",
    )  # fmt: skip
    what = export_cmd.add_mutually_exclusive_group(required=True)
    what.add_argument("--room", metavar="NAME", help="the room's history")
    what.add_argument("--dms", metavar="USER", help="direct messages to and from USER")
    export_cmd.add_argument("--since", type=_since, metavar="DATE",
                            help="only messages from then on: an ISO date or date and time, "
                            "UTC unless it has an offset")  # fmt: skip
    export_cmd.add_argument("--format", choices=("jsonl", "txt"), default="jsonl",
                            help="jsonl (default; protocol field names) or txt")  # fmt: skip
    stats_cmd = commands.add_parser(
        "stats", parents=[data_dir], help="users, rooms, messages, size",
        description="Count users, rooms, messages and direct messages.",
    )  # fmt: skip
    stats_cmd.add_argument("--passwd", type=Path, default=Path(DEFAULT_PASSWD), metavar="FILE",
                           help=f"password file (default: {DEFAULT_PASSWD})")  # fmt: skip
    return parser


def _run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    if args.command == "backup":
        made = backup(data_dir, args.dest, force=args.force)
        contents = _contents(made.messages, made.rooms, made.dms)
        if made.files:
            contents += f"; {_count(made.files, 'file')} ({_size(made.files_size)}) in {FILES}/"
        print(f"backed up {data_dir / DATABASE_NAME} to {made.path} in {made.seconds:.2f} s: "
              f"{_size(made.size)}, {contents}")  # fmt: skip
    elif args.command == "restore":
        put = restore(data_dir, args.src, force=args.force)
        contents = _contents(put.messages, put.rooms, put.dms)
        if put.files:
            contents += f", {_count(put.files, 'file')}"
        print(f"restored {args.src} to {put.database}: {contents}, schema version "
              f"{put.schema_version}")  # fmt: skip
        for path in put.kept:
            print(f"kept the old {'database' if path.is_file() else 'files'} as {path}")
        if put.schema_version < SCHEMA_VERSION:
            print(f"the server migrates it to schema version {SCHEMA_VERSION} when it starts")
    elif args.command == "export":
        path = data_dir / DATABASE_NAME
        with contextlib.closing(open_read_only(path)) as conn:
            if args.room is not None:
                _check_room(conn, args.room, path)
                records = room_messages(conn, args.room, args.since or "")
            else:
                records = dm_messages(conn, args.dms, args.since or "")
            export(records, args.format, sys.stdout.buffer)
    else:
        _print_stats(stats(data_dir, args.passwd), args.passwd)
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse exits 2 on usage errors)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader of the export went away (``| head``): not an error worth a line.
        # Point stdout at /dev/null so that flushing it at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (AdminError, PasswordFileError) as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:
        return _fail(f"database error: {exc}")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return _fail("cancelled")


if __name__ == "__main__":
    raise SystemExit(main())
