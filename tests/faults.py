"""Storage that fails on purpose: a fault-injecting store, and a small real file system.

:class:`FaultyStore` is a :class:`~securechat.server.store.SqliteStore` whose writes
fail, while a fault is set, with the errors SQLite itself raises (same class, message
and result code); the write's SQL runs first and the failure comes before the
``COMMIT``, so the store's rollback is exercised too; :func:`faulty_server` runs an
in-process server on one (``server.hub.store``). :func:`tmpfs` mounts a small
tmpfs (as root) for the tests that fill a real disk, and skips where that is not
allowed; :func:`fill` fills one.
"""

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.server import cli
from securechat.server.connection import Limits
from securechat.server.store import SqliteStore
from securechat.server.transport import Server
from tests.conftest import run_server

# reason (as the server logs it): what SQLite says, its result code and the code's name
FAULTS = {
    "disk full": ("database or disk is full", 13, "SQLITE_FULL"),
    "read-only": ("attempt to write a readonly database", 8, "SQLITE_READONLY"),
    "I/O error": ("disk I/O error", 10, "SQLITE_IOERR"),
    "database locked": ("database is locked", 5, "SQLITE_BUSY"),
}


def sqlite_error(reason: str, *, with_code: bool = True) -> sqlite3.OperationalError:
    """The ``sqlite3.OperationalError`` SQLite raises for ``reason`` (a key of FAULTS)."""
    message, code, name = FAULTS[reason]
    error = sqlite3.OperationalError(message)
    if with_code:  # what the sqlite3 module sets on the errors it raises (3.11+)
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
        error.sqlite_errorname = name  # type: ignore[attr-defined]
    return error


class FaultyStore(SqliteStore):
    """A SQLite store whose writes fail while :attr:`fault` names a reason; reads work."""

    fault: str | None = None  # (a class default: the migration in __init__ writes too)
    failed_writes = 0  # calls of ``write`` that raised

    def fail(self, reason: str) -> None:
        self.fault = reason

    def heal(self) -> None:
        self.fault = None

    def write(self, writes) -> None:
        try:
            super().write(writes)
        except sqlite3.Error:
            self.failed_writes += 1
            raise

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        with SqliteStore._transaction(conn):
            yield
            if self.fault is not None:  # after the SQL ran, before the COMMIT
                raise sqlite_error(self.fault)


@contextlib.contextmanager
def faulty_server(
    certs, passwd: Path, data_dir: Path, limits: Limits | None = None
) -> Iterator[Server]:
    """The ``run_server`` of conftest, with a :class:`FaultyStore` as its store."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "SqliteStore", FaultyStore)
        with run_server(certs, passwd, limits, data_dir=data_dir) as server:
            assert isinstance(server.hub.store, FaultyStore)
            yield server


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (made here), unmounted afterwards.

    Skips the test, saying why, where mounting is not permitted.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (run the suite as root to test a full disk)")
    path.mkdir()
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def remount_read_only(path: Path) -> None:
    """Make the tmpfs on ``path`` read-only (no file on it may be open for writing)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` with one file, to the last byte; its path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(65536))  # a short write at the end, then ENOSPC
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler
