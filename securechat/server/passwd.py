"""The password file: who may log in, one ``name:bcrypt-hash`` a line.

Why a flat file: a chat for a handful of people needs no database; an admin can read,
diff and back it up. It holds bcrypt hashes only, but those can be attacked offline, so
it should be mode 0600 (:func:`permission_warning`). ``#`` comments and blank lines are
allowed and survive edits. Writers serialise on an ``flock`` of ``<path>.lock``, re-read
the file under it and replace it atomically (temp file, fsync, ``os.replace``), so a
reader never sees a half-written file. :class:`PasswordFile` is the server's view: it
reloads when the file changes, and an unknown user costs as much as a wrong password.
"""

import collections
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shlex
import threading
from pathlib import Path

import bcrypt

from securechat.exceptions import PasswordFileError, PasswordTooLong
from securechat.protocol.names import is_valid_name

DEFAULT_ROUNDS = 12
MAX_PASSWORD_BYTES = 72

log = logging.getLogger("securechat.passwd")

# The 22nd salt character carries 2 bits (bcrypt refuses others); then 31 of hash.
_HASH_RE = re.compile(
    r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{31}"
)
_StatKey = tuple[int, int, int, int, int]
_dummy_hashes: dict[int, bytes] = {}  # cost -> hash of a random secret


def check_user_name(user: str) -> None:
    """Raise ValueError with a readable sentence unless ``user`` is a valid user name."""
    if not isinstance(user, str) or not is_valid_name(user):
        raise ValueError(
            f"invalid user name {user!r}: use 1-32 characters a-z, 0-9, _ or -, "
            "starting with a letter or digit"
        )


def check_password(password: str) -> bytes:
    """The UTF-8 bytes of ``password``; ValueError if empty, PasswordTooLong if over 72."""
    if not password:
        raise ValueError("empty password refused")
    data = password.encode("utf-8")  # lone surrogates: UnicodeEncodeError, a ValueError
    if len(data) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(
            f"password is {len(data)} bytes; bcrypt uses at most {MAX_PASSWORD_BYTES}"
            " — choose a shorter one"
        )
    return data


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    """A bcrypt hash of ``password`` with cost ``rounds`` (4-31); never truncates."""
    data = check_password(password)
    if not 4 <= rounds <= 31:
        raise ValueError(f"bcrypt rounds must be between 4 and 31, not {rounds}")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds)).decode("ascii")


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def _read(path: Path) -> tuple[str | None, _StatKey | None]:
    """The file's text (None if missing) and the stat key of what was read."""
    try:
        with open(path, "rb") as f:
            key = _stat_key(os.fstat(f.fileno()))  # before reading: a later change reloads
            data = f.read()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        raise PasswordFileError(f"cannot read {path}: {e.strerror}") from e
    try:
        return data.decode("utf-8"), key
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PasswordFileError(f"{path}:{line}: not UTF-8 text") from e


def _parse(text: str, path: Path) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """Lines (without newlines), name -> hash, and name -> index in lines."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    users: dict[str, str] = {}
    index: dict[str, int] = {}
    for i, line in enumerate(lines):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, hashed = entry.partition(":")
        where = f"{path}:{i + 1}"
        if not sep or not is_valid_name(name):
            raise PasswordFileError(f"{where}: malformed line, expected name:bcrypt-hash")
        if not _HASH_RE.fullmatch(hashed):
            raise PasswordFileError(f"{where}: the entry of {name} is not a bcrypt hash")
        if name in users:
            raise PasswordFileError(f"{where}: user {name} appears a second time")
        users[name] = hashed
        index[name] = i
    return lines, users, index


def read_users(path: Path) -> dict[str, str]:
    """Name -> bcrypt hash; a missing file has no users. Raises PasswordFileError."""
    text, _ = _read(Path(path))
    return {} if text is None else _parse(text, Path(path))[1]


def list_users(path: Path) -> list[str]:
    """The user names, sorted."""
    return sorted(read_users(path))


def _write_atomic(path: Path, content: str) -> None:
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise PasswordFileError(f"cannot write {path}: {e.strerror}") from e


def _edit(path: Path, user: str, new_hash: str | None) -> bool:
    """Set (or with None, delete) the entry of ``user`` under the lock; True if it existed."""
    lock_path = Path(f"{path}.lock")
    try:
        lock_fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise PasswordFileError(f"cannot open lock file {lock_path}: {e.strerror}") from e
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        text, _ = _read(path)
        lines, users, index = _parse(text or "", path)
        existed = user in users
        if new_hash is None:
            if not existed:
                return False
            del lines[index[user]]
        elif existed:
            lines[index[user]] = f"{user}:{new_hash}"
        else:
            lines.append(f"{user}:{new_hash}")
        _write_atomic(path, "".join(line + "\n" for line in lines))
        return existed
    finally:
        os.close(lock_fd)  # releases the flock


def set_password(path: Path, user: str, password: str, rounds: int = DEFAULT_ROUNDS) -> bool:
    """Add ``user`` or change their password; True if the user was added."""
    check_user_name(user)
    hashed = hash_password(password, rounds)  # the slow part, before taking the lock
    return not _edit(Path(path), user, hashed)


def delete_user(path: Path, user: str) -> bool:
    """Delete ``user``; False if there was no such user."""
    check_user_name(user)
    return _edit(Path(path), user, None)


def permission_warning(path: Path) -> str | None:
    """A sentence if the file is readable or writable by group or others, else None."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return None
    if mode & 0o066:
        return (
            f"{path} is readable or writable by group or others (mode {mode:04o}); "
            f"run: chmod 600 {shlex.quote(str(path))}"
        )
    return None


def _dummy_hash(cost: int) -> bytes:
    hashed = _dummy_hashes.get(cost)
    if hashed is None:  # a race only computes it twice
        hashed = bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(cost))
        _dummy_hashes[cost] = hashed
    return hashed


class PasswordFile:
    """The server's view of the password file, shared by all connection threads.

    Each :meth:`verify` stats the file and reloads it if it changed. The constructor
    raises PasswordFileError for an unreadable or malformed file; later reload failures
    keep the last good user list and log a warning.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # guards the snapshot below
        self._key: _StatKey | None = None
        self._users: dict[str, bytes] = {}
        self._cost = DEFAULT_ROUNDS
        self._last_warning: str | None = None
        self._load()

    def _load(self) -> tuple[dict[str, bytes], int]:
        text, key = _read(self.path)
        users = {n: h.encode("ascii") for n, h in _parse(text or "", self.path)[1].items()}
        costs = collections.Counter(int(h[4:6]) for h in users.values())
        cost = costs.most_common(1)[0][0] if costs else DEFAULT_ROUNDS
        _dummy_hash(cost)  # warm the cache now rather than on the first unknown user
        with self._lock:
            self._users, self._cost, self._key = users, cost, key
            self._last_warning = None
        return users, cost

    def _current(self) -> tuple[dict[str, bytes], int]:
        try:
            try:
                key: _StatKey | None = _stat_key(os.stat(self.path))
            except FileNotFoundError:
                key = None
            with self._lock:
                if key == self._key:
                    return self._users, self._cost
            return self._load()
        except (OSError, PasswordFileError) as e:
            with self._lock:
                fresh, self._last_warning = str(e) != self._last_warning, str(e)
                snapshot = self._users, self._cost
            if fresh:
                log.warning("%s; keeping the previous user list", e)
            return snapshot

    def users(self) -> list[str]:
        """The user names, sorted."""
        return sorted(self._current()[0])

    def exists(self, user: str) -> bool:
        """Whether ``user`` is in the file (as it is now: one ``stat``, no copy)."""
        return user in self._current()[0]

    def fingerprint(self, user: str) -> str | None:
        """A digest of ``user``'s password hash as the file holds it now; ``None`` if unknown.

        Login tokens are stored with it: a password change or deletion, made in the file
        by ``securechat-adduser``, changes it, and every older token stops working.
        """
        stored = self._current()[0].get(user)
        return hashlib.sha256(stored).hexdigest() if stored is not None else None

    def verify(self, user: str, password: str) -> bool:
        """True if ``password`` is right for ``user``; never raises for bad input."""
        users, cost = self._current()
        stored = users.get(user) if isinstance(user, str) else None
        try:
            secret = password.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            secret = b""
        if stored is not None:
            cost = int(stored[4:6])
        if stored is None or not 0 < len(secret) <= MAX_PASSWORD_BYTES:
            bcrypt.checkpw(b"not the password", _dummy_hash(cost))  # as slow as a wrong one
            return False
        try:
            return bcrypt.checkpw(secret, stored)
        except ValueError:  # cannot happen for parsed hashes; never raise at login
            return False
