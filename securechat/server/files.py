"""The file store: shared files' bytes on disk, once per content, and the rules of uploading.

Why this shape: a file shared in a room or a direct message is stored by its SHA-256 in
``<data-dir>/files/ab/cdef...`` (the first two hex digits name a folder, so no folder
grows past a few thousand names), so the same bytes shared twice, or by two users at
once, take the disk once. Each *share* is a row of the database's ``files`` table (an id
of its own, the name and type it was shared under, who shared it where), carried by its
message; the id is random, so knowing one id says nothing about another.

An upload is streamed: :meth:`FileStore.begin` checks the rules and opens a temporary
file in ``<data-dir>/uploads.tmp`` (the same file system, so that the rename into the
store is atomic, and outside ``files/`` so that a backup of the store never copies half
an upload); :meth:`Upload.write` appends each piece as it is read, hashing as it goes;
:meth:`Upload.finish` fsyncs it, checks the hash the client announced, and renames it
into place (or drops it when those bytes are stored already). Only then is the message
that carries it committed; until its commit (or failure) is known, the blob is *pinned*,
so that a deletion of the last message carrying the same bytes cannot remove it in
between. A blob that no message (not deleted) carries is removed when that last message
is deleted (:meth:`FileStore.released`), or at start-up (:meth:`FileStore.sweep`), which
also clears what a crash left in ``uploads.tmp``.

Nothing here comes from the user's input but bytes: names are sanitised metadata
(:func:`sanitize_name`), never part of a path; paths are made of hex digests and
random ids only.

Threads: :meth:`Upload.write` runs in the connection's I/O thread (a few writes of at
most 64 KiB each turn); everything that may wait on the disk or the database
(:meth:`FileStore.begin`, :meth:`Upload.finish`, :meth:`FileStore.lookup`,
:meth:`FileStore.open`) runs in a worker. The counters of uploads in progress and the
pins are under one lock.

Links (:class:`FileLinks`, the store's :attr:`FileStore.links`): an IRC client shows a
file as a line of text with a URL, and the browser that opens it has no login token, so
the URL itself carries the permission: ``/api/files/ID?link=EXPIRES.MAC``, an HMAC of
the id and the expiry under the key in ``<data-dir>/link.key`` (made once; deleting it
and restarting revokes every link given out). Whoever holds the link may fetch that one
file until it expires, or until its message is deleted.
"""

import contextlib
import errno
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from securechat.exceptions import FileRefused, StoreError
from securechat.server.limits import TokenBucket
from securechat.server.store import FileEntry, FileIndex, StoredFile

__all__ = [
    "BLOB_DIR",
    "DEFAULT_LINK_DAYS",
    "LINK_KEY",
    "SAFE_IMAGES",
    "TEMP_DIR",
    "FileLimits",
    "FileLinks",
    "FileStore",
    "Upload",
    "default_public_url",
    "disk_free",
    "new_file_id",
    "parse_public_url",
    "sanitize_name",
    "sniff",
]

log = logging.getLogger("securechat.files")

MiB = 1024 * 1024
BLOB_DIR = "files"
TEMP_DIR = "uploads.tmp"
MAX_NAME_BYTES = 255  # what most file systems take for one name, in UTF-8
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SAFE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
OCTET_STREAM = "application/octet-stream"
SNIFF_BYTES = 16
LINK_KEY = "link.key"  # beside the database (not in files/: a backup copies files/ whole)
LINK_KEY_BYTES = 32
DEFAULT_LINK_DAYS = 7.0
LINK_PATH = "/api/files/"  # the web edge's download path (securechat.server.web.files)
_LINK_VALUE = re.compile(r"(0|[1-9][0-9]{0,14})\.[0-9a-f]{32}")  # EXPIRES.MAC, nothing else
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 (compared, not bound)
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")  # (urlsplit: lower case)
# Characters a name loses: controls (Cc), invisible formatting such as the bidi
# overrides that make "gpj.exe" look like "exe.jpg" (Cf), line and paragraph separators
# (Zl, Zp), unassigned and private-use code points and lone surrogates.
_DROPPED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs"})
# Characters that are separators or wildcards somewhere (Windows, shells): replaced.
_REPLACED = re.compile(r'[/\\:*?"<>|]')


@dataclass(frozen=True)
class FileLimits:
    """What uploads may take (the server's ``--max-file-size``, ``--file-quota``, ...)."""

    max_file_size: int = 25 * MiB
    quota: int = 1024 * MiB  # per user: the files they shared whose messages are not deleted
    min_free: int = 256 * MiB  # uploads are refused (507) below this much free disk
    uploads_at_once: int = 3  # per user
    upload_rate: float = 1.0  # uploads a second per user, after a burst of
    upload_burst: int = 10


def new_file_id() -> str:
    """A share's id: 128 random bits, URL-safe (it is a path segment of the download)."""
    return secrets.token_urlsafe(16)


def sanitize_name(raw: str) -> str:
    """A file name fit to show and to save as: one plain name, at most 255 bytes.

    Separators and wildcards (``/ \\ : * ? " < > |``) become ``_``; control and
    invisible formatting characters go; leading dots and spaces go (no ``..``, no
    hidden file); a long name keeps its extension. Raises :exc:`ValueError` when
    nothing is left. The result is only ever metadata: no path is made of it.
    """
    name = unicodedata.normalize("NFC", raw)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED)
    name = _REPLACED.sub("_", name)
    name = " ".join(name.split())  # runs of whitespace (tabs, no-break spaces...) -> one space
    name = name.lstrip(". ").rstrip(". ")
    if not name:
        raise ValueError("the file name is empty once sanitised")
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, extension = name.rpartition(".")
        if not dot or not stem or len(extension.encode()) > 16:
            stem, extension = name, ""
        suffix = f".{extension}" if extension else ""
        budget = MAX_NAME_BYTES - len(suffix.encode())
        stem = stem.encode()[:budget].decode("utf-8", errors="ignore").rstrip(". ")
        name = stem + suffix
    return name


def sniff(head: bytes) -> str:
    """The type of a file from its first bytes: one of :data:`SAFE_IMAGES`, else
    ``application/octet-stream``. What a client declared is not trusted."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return OCTET_STREAM


def disk_free(path: Path) -> int:
    """Bytes an unprivileged process may still write on ``path``'s file system."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


NO_SPACE = "the server has no space for this file now; chat goes on, try a file later"


class FileStore:
    """The blobs of ``<data-dir>/files``, and the rules of uploading (see the module).

    ``free_space`` tells the free bytes of a path (tests fake a full disk with it);
    ``clock`` drives the per-user upload allowance. ``link_days`` and ``public_url``
    are those of its :attr:`links` (``--file-link-days``, ``--public-url``), whose key
    is read from (or made in) ``<data_dir>/link.key``: :exc:`StoreError` if damaged.
    """

    def __init__(
        self,
        data_dir: Path,
        index: FileIndex,
        limits: FileLimits | None = None,
        *,
        free_space: Callable[[Path], int] = disk_free,
        clock: Callable[[], float] = time.monotonic,
        link_days: float = DEFAULT_LINK_DAYS,
        public_url: str | None = None,
    ) -> None:
        self.blobs = Path(data_dir) / BLOB_DIR
        self.temp = Path(data_dir) / TEMP_DIR
        for folder in (self.blobs, self.temp):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.links = FileLinks.load(Path(data_dir) / LINK_KEY, days=link_days,
                                    public_url=public_url)  # fmt: skip
        self.index = index
        self.limits = limits or FileLimits()
        self.free_space = free_space
        self._clock = clock
        self._lock = threading.Lock()
        self._active: Counter[str] = Counter()  # uploads in progress, per user
        self._reserved: Counter[str] = Counter()  # bytes those may still take, per user
        self._pins: Counter[str] = Counter()  # blobs whose message's commit is not known yet
        self._buckets: dict[str, TokenBucket] = {}
        self._low_disk = False  # uploads are being refused for the free-disk floor

    def blob_path(self, sha256: str) -> Path:
        """Where the bytes with this SHA-256 live (``sha256`` must be 64 hex digits)."""
        if not SHA256_HEX.fullmatch(sha256):
            raise ValueError("not a SHA-256 in hex")
        return self.blobs / sha256[:2] / sha256[2:]

    # -- uploads

    def begin(self, user: str, declared: int | None, expected: str | None = None) -> "Upload":
        """Start an upload of ``declared`` bytes (``None``: not said) for ``user``.

        (A worker: reads the database and the file system.) Raises :exc:`FileRefused`:
        413 over the size limit, 429 over the rate or too many at once, 507 over the
        quota or below the free-disk floor.
        """
        limits = self.limits
        if declared is not None and declared > limits.max_file_size:
            raise FileRefused(413, f"the file is larger than {_size(limits.max_file_size)}")
        reserve = limits.max_file_size if declared is None else declared
        free = self.free_space(self.temp)
        with self._lock:  # (the usage read under it: a commit's reservation ends after it)
            used = self.index.file_usage(user)
            if self._active[user] >= limits.uploads_at_once:
                raise FileRefused(429, f"at most {limits.uploads_at_once} uploads at once",
                                  retry_after=1.0)  # fmt: skip
            bucket = self._buckets.get(user)
            if bucket is None:
                bucket = TokenBucket(limits.upload_rate, limits.upload_burst, self._clock)
                if len(self._buckets) > 10_000:  # (forget the idle; they start full again)
                    self._buckets.clear()
                self._buckets[user] = bucket
            if wait := bucket.take():
                raise FileRefused(429, "too many uploads; slow down", retry_after=wait)
            if used + self._reserved[user] + reserve > limits.quota:
                raise FileRefused(507, f"this would take you over your quota of "
                                  f"{_size(limits.quota)}; delete some of your files")  # fmt: skip
            if free - sum(self._reserved.values()) - reserve < limits.min_free:
                if not self._low_disk:  # (once until an upload is accepted again)
                    self._low_disk = True
                    log.warning("uploads refused: %s free on %s, the floor is %s",
                                _size(free), self.temp, _size(limits.min_free))  # fmt: skip
                raise FileRefused(507, NO_SPACE)
            self._low_disk = False
            self._active[user] += 1
            self._reserved[user] += reserve
        try:
            path = self.temp / f"{secrets.token_hex(16)}.part"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._end(user, reserve)
            if _no_space(exc):
                raise FileRefused(507, NO_SPACE) from None
            raise
        return Upload(self, user, reserve, expected, path, fd)

    def _end(self, user: str, reserve: int) -> None:
        """An upload of ``user`` ended (stored or not): it reserves nothing now."""
        with self._lock:
            self._active[user] -= 1
            if self._active[user] <= 0:
                del self._active[user]
            self._reserved[user] -= reserve
            if self._reserved[user] <= 0:
                del self._reserved[user]

    def _place(self, temp: Path, sha256: str) -> bool:
        """Move a finished upload into the store, pinned; False when the bytes were there."""
        final = self.blob_path(sha256)
        with self._lock:
            self._pins[sha256] += 1
            if final.exists():
                return False
            try:
                final.parent.mkdir(mode=0o700, exist_ok=True)
                os.rename(temp, final)
                _fsync_directory(final.parent)
            except BaseException:
                self._unpin(sha256)
                raise
            return True

    def _unpin(self, sha256: str) -> None:
        """(Under the lock.)"""
        self._pins[sha256] -= 1
        if self._pins[sha256] <= 0:
            del self._pins[sha256]

    # -- after a commit, a deletion, at start-up

    def released(self, sha256: str) -> bool:
        """A message carrying these bytes is gone (or was never stored): remove the blob
        if no other message carries it and no upload is about to. True if removed."""
        with self._lock:
            if self._pins[sha256] or self.index.blob_used(sha256):
                return False
            path = self.blob_path(sha256)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # (only when empty)
            return True

    def sweep(self) -> tuple[int, int]:
        """(Start-up.) Remove what a crash left in ``uploads.tmp`` and every blob no
        message carries; how many of each were removed."""
        temps = 0
        for entry in self.temp.iterdir():
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                temps += 1
        used = self.index.blobs_used()
        orphans = 0
        for folder in self.blobs.iterdir():
            if not (folder.is_dir() and len(folder.name) == 2):
                continue
            for blob in folder.iterdir():
                if folder.name + blob.name not in used:
                    with contextlib.suppress(OSError):
                        blob.unlink()
                        orphans += 1
            with contextlib.suppress(OSError):
                folder.rmdir()
        if temps or orphans:
            log.info("file store: removed %d unfinished uploads and %d files no message "
                     "carries", temps, orphans)  # fmt: skip
        return temps, orphans

    # -- downloads

    def lookup(self, file_id: str) -> FileEntry | None:
        """The share with this id (a worker: reads the database); None for a bad id."""
        if not FILE_ID.fullmatch(file_id):
            return None
        return self.index.file(file_id)

    def open(self, sha256: str) -> int:
        """A file descriptor to read the blob (a worker); :exc:`FileNotFoundError` if gone."""
        return os.open(self.blob_path(sha256), os.O_RDONLY | os.O_CLOEXEC)


class Upload:
    """One upload being received: a temporary file, its hash and size so far.

    Made by :meth:`FileStore.begin`. :meth:`write` (the I/O thread) then
    :meth:`finish` (a worker) then :meth:`done` once the message carrying it is
    committed or refused; :meth:`abort` at any point before :meth:`finish` returned
    drops everything (it is idempotent, and safe after the rest too).
    """

    def __init__(
        self, files: FileStore, user: str, reserve: int, expected: str | None, path: Path, fd: int
    ) -> None:
        self.files, self.user, self.reserve = files, user, reserve
        self.expected = expected
        self.path = path
        self._fd: int | None = fd
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = b""  # the first bytes, to tell an image
        self.sha256: str | None = None  # once finished: the blob it is pinned to
        self._ended = False

    @property
    def limit(self) -> int:
        return self.files.limits.max_file_size

    def write(self, data: bytes) -> None:
        """Append ``data``. Raises :exc:`FileRefused` (413 past the size limit, 507 when
        the disk is full), having dropped the upload."""
        if self._fd is None:
            raise FileRefused(400, "the upload was abandoned")
        if self.size + len(data) > self.limit:
            self.abort()
            raise FileRefused(413, f"the file is larger than {_size(self.limit)}")
        if len(self.head) < SNIFF_BYTES:
            self.head += data[: SNIFF_BYTES - len(self.head)]
        self._hash.update(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.abort()
            if _no_space(exc):
                raise FileRefused(507, NO_SPACE) from None
            raise
        self.size += len(data)

    def finish(self) -> StoredFile:
        """(A worker.) Make the bytes durable and place them in the store (pinned): the
        file as a message will carry it, with a new id, a name to be set and its type.

        Raises :exc:`FileRefused` 400 (nothing kept) when the hash is not the one
        announced, 507 when the disk is full.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            raise FileRefused(400, "the upload was abandoned")
        try:
            os.fsync(fd)
        except OSError as exc:
            self.abort()
            if _no_space(exc):
                raise FileRefused(507, NO_SPACE) from None
            raise
        finally:
            os.close(fd)
        sha256 = self._hash.hexdigest()
        if self.expected is not None and sha256 != self.expected:
            self.abort()
            raise FileRefused(400, "the file's SHA-256 is not the one announced; nothing stored")
        try:
            self.files._place(self.path, sha256)
        except OSError as exc:
            self.abort()
            if _no_space(exc):
                raise FileRefused(507, NO_SPACE) from None
            raise
        self.sha256 = sha256
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # (when the bytes were stored already)
        return StoredFile(new_file_id(), sha256, self.size, "", sniff(self.head))

    def done(self, committed: bool) -> None:
        """The message carrying the file was committed, or not (then the blob goes if
        nothing else carries it). Ends the upload."""
        sha256, self.sha256 = self.sha256, None
        if sha256 is not None:
            with self.files._lock:
                self.files._unpin(sha256)
            if not committed:
                self.files.released(sha256)
        self._close()

    def abort(self) -> None:
        """Drop the upload: the temporary file goes, nothing is posted (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.sha256 is None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._close()

    def _close(self) -> None:
        if not self._ended:
            self._ended = True
            self.files._end(self.user, self.reserve)


# ------------------------------------------------------------------ links


LinkVerdict = Literal["valid", "invalid", "expired"]


def parse_public_url(text: str) -> str:
    """``--public-url``: ``https://host[:port]`` (a trailing ``/`` is dropped).

    Raises :exc:`ValueError` with a sentence for anything else (another scheme, no
    host, a user part, a path, a query or a fragment, a bad port), so that a mistyped
    URL is refused at start rather than put into every link.
    """
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in text.strip()):
        raise ValueError(f"{text!r} has a space or control character")  # (urlsplit drops tabs)
    try:
        parts = urlsplit(text.strip())
    except ValueError:  # (e.g. brackets around what is not an IPv6 address)
        raise ValueError(f"{text!r} is not a URL") from None
    if parts.scheme.lower() != "https":
        raise ValueError(f"{text!r} is not an https:// URL")
    if "@" in parts.netloc:
        raise ValueError(f"{text!r} may not have a user part")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{text!r} may not have a path, query or fragment")
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{text!r} has a bad port (1-65535)")
    if ":" in host:  # (urlsplit took the brackets off)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r} has a bad IPv6 address") from None
        host = f"[{host}]"
    elif not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{text!r} has no host name (https://host[:port]; a name in "
                         "letters, digits, dots and dashes)")  # fmt: skip
    return f"https://{host}" if port is None else f"https://{host}:{port}"


def default_public_url(host: str, port: int) -> str:
    """Where the server is reached when ``--public-url`` is not given: ``--host`` as it
    was given (a wildcard address: this machine's fully qualified name, which may ask
    DNS) and the port it listens on."""
    if host in _WILDCARDS:
        host = socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"https://{host}" if port == 443 else f"https://{host}:{port}"


def _epoch(ts: str) -> float | None:
    """Seconds since the epoch of a frame's ``ts`` (RFC 3339 UTC); None if it is none."""
    try:
        when = datetime.fromisoformat(ts)
    except (TypeError, ValueError):
        return None
    return when.timestamp() if when.tzinfo is not None else None


class FileLinks:
    """Signed, expiring links to shared files (see the module's docstring).

    A link's value is ``EXPIRES.MAC``: ``EXPIRES`` the second (Unix time) it stops
    working, ``MAC`` the first 128 bits of HMAC-SHA256 of ``"ID.EXPIRES"`` under the
    key, in hex. It names one file and cannot be stretched or moved to another without
    the key. ``days`` is how long a link lasts; ``public_url`` is the server's address
    as users reach it (``--public-url``), else found by the function given to
    :meth:`locate` (the transport's: its host and bound port) when first needed.
    """

    def __init__(
        self, key: bytes, *, days: float = DEFAULT_LINK_DAYS, public_url: str | None = None
    ) -> None:
        if len(key) != LINK_KEY_BYTES:
            raise ValueError(f"a link key is {LINK_KEY_BYTES} bytes")
        self._key = key
        self.days = days
        self.public_url = public_url
        self._find: Callable[[], str] | None = None

    @classmethod
    def load(
        cls, path: Path, *, days: float = DEFAULT_LINK_DAYS, public_url: str | None = None
    ) -> "FileLinks":
        """The links whose key is in ``path``, made there (32 random bytes, 0600) the
        first time. :exc:`StoreError` if the file is not a key (delete it: a new one is
        made, and every link given out stops working)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        else:
            try:
                os.write(fd, secrets.token_bytes(LINK_KEY_BYTES))  # (a regular file: whole)
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_directory(path.parent)
            log.info("made a new key for file links in %s", path)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            key = os.read(fd, LINK_KEY_BYTES + 1)
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
        if len(key) != LINK_KEY_BYTES:
            raise StoreError(f"{path} is not a key for file links ({len(key)} bytes, not "
                             f"{LINK_KEY_BYTES}): delete it and start again (the links "
                             "given out so far stop working)")  # fmt: skip
        if mode & 0o077:
            log.warning("%s is readable by other users, who could forge file links; "
                        "chmod 600 it", path)  # fmt: skip
        return cls(key, days=days, public_url=public_url)

    # -- signing and checking

    def sign(self, file_id: str, expires: int) -> str:
        """The link value (``EXPIRES.MAC``) giving ``file_id`` until ``expires``."""
        message = f"{file_id}.{expires}".encode()
        mac = hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]
        return f"{expires}.{mac}"

    def verdict(self, file_id: str, value: str, now: float | None = None) -> LinkVerdict:
        """Whether ``value`` is a link to ``file_id`` (``invalid`` for anything made
        without the key, or for another file), and still good at ``now`` (Unix time).

        Never raises, whatever it is given: the value comes from a URL.
        """
        if not (isinstance(file_id, str) and isinstance(value, str)):
            return "invalid"
        if not (FILE_ID.fullmatch(file_id) and _LINK_VALUE.fullmatch(value)):
            return "invalid"
        expires = int(value.partition(".")[0])
        if not hmac.compare_digest(self.sign(file_id, expires), value):
            return "invalid"
        return "valid" if (time.time() if now is None else now) < expires else "expired"

    def check(self, file_id: str, value: str, now: float | None = None) -> bool:
        """``value`` is a good link to ``file_id`` at ``now``."""
        return self.verdict(file_id, value, now) == "valid"

    # -- making links

    def expires(self, ts: str | None = None, now: float | None = None) -> int:
        """When a link made now ends: ``days`` after ``now`` if given, else after the
        message's time ``ts`` (so a live message's link is a function of its frame,
        and a rendering of it can be kept and shared), else after the present."""
        start = now if now is not None else (_epoch(ts) if ts else None)
        if start is None:
            start = time.time()
        return int(start + self.days * 86400)

    def locate(self, host: str, port: Callable[[], int]) -> None:
        """Where the server listens (``--host``, and its bound port once it listens):
        the URL of links when ``public_url`` was not given (:func:`default_public_url`,
        found when a link is first made)."""
        self._find = lambda: default_public_url(host, port())

    @property
    def base(self) -> str | None:
        """The server's URL (``https://host[:port]``), or None when nobody said it."""
        if self.public_url is None and self._find is not None:
            self.public_url = self._find()  # (two threads at once: the same answer)
        return self.public_url

    def url(self, file_id: str, ts: str | None = None, now: float | None = None) -> str | None:
        """The link to ``file_id`` (see :meth:`expires`), or None with no known URL."""
        base = self.base
        if base is None:
            return None
        file_id = str(file_id)
        value = self.sign(file_id, self.expires(ts, now))
        return f"{base}{LINK_PATH}{quote(file_id, safe='')}?link={value}"


def _size(count: int) -> str:
    """``25 MiB``, ``1 GiB``, ``512 bytes``: limits as a person reads them."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            value = count / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{count} bytes"
