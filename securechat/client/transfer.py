"""File transfers of ``securechat-client``: HTTPS to the chat's own port, in a thread.

Why HTTPS and a thread: a file is shared over the server's file API (``POST
/api/files``, ``GET /api/files/ID``; see "Files" in ``docs/protocol.md``), spoken on the
same TLS port as the chat by a client that offers ALPN ``http/1.1``, with the login
token of ``login_ok``. The standard library's ``http.client`` streams a body from a file
and reads a response in chunks, blocking; run in a thread (``asyncio.to_thread``) it
leaves the chat's event loop free, so messages keep coming while a file moves. The
certificate is verified against the same CA as the chat's, host name included.

Integrity: an upload announces its SHA-256 (``X-Content-SHA256``, read from the file
first), so the server stores nothing if the bytes it received differ; a download is
hashed as it is written to ``PATH.part`` and renamed into place only if the hash is the
one the server gave (its ``ETag``) and the one the chat's frame said. A ``.part`` left
by a download that was cut short is resumed with a byte range.
"""

import hashlib
import http.client
import json
import os
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

__all__ = ["Progress", "TransferError", "Transfers", "download", "upload"]

CHUNK = 256 * 1024
NO_FILES = "the server does not share files (no HTTP on its port: --no-web?)"
TIMEOUT = 30.0
Progress = Callable[[int, int | None], None]  # (bytes so far, of how many)


class TransferError(Exception):
    """A transfer failed; the message is one line for the user."""


@dataclass(frozen=True)
class Server:
    """Where the file API is: the chat's host, port and CA, and the login token."""

    host: str
    port: int
    cafile: str
    token: str


class Cancelled(TransferError):
    def __init__(self) -> None:
        super().__init__("cancelled")


def _connect(server: Server) -> http.client.HTTPSConnection:
    try:
        context = ssl.create_default_context(cafile=server.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise TransferError(f"cannot load the CA file {server.cafile}: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    connection = http.client.HTTPSConnection(server.host, server.port, context=context,
                                             timeout=TIMEOUT, blocksize=CHUNK)  # fmt: skip
    try:
        connection.connect()
    except ssl.SSLCertVerificationError as exc:
        raise TransferError(
            f"cannot verify the server's certificate: {exc.verify_message}"
        ) from None
    except OSError as exc:
        raise TransferError(f"cannot connect to {server.host}:{server.port}: {exc}") from None
    sock = connection.sock
    if not isinstance(sock, ssl.SSLSocket) or sock.selected_alpn_protocol() != "http/1.1":
        connection.close()
        raise TransferError(NO_FILES)
    return connection


def _not_understood(exc: Exception) -> TransferError:
    if isinstance(exc, http.client.BadStatusLine) and "welcome" in str(exc):
        return TransferError(NO_FILES)  # (it answered with the chat's line protocol)
    return TransferError(f"the server's answer was not understood: {exc}")


def _failure(response: http.client.HTTPResponse) -> TransferError:
    """What the server said when it refused, in one line."""
    said = response.read(2000).decode("utf-8", errors="replace").strip().splitlines()
    reason = said[0] if said else response.reason
    return TransferError(f"{response.status} {reason}")


class _Reader:
    """The file as ``http.client`` reads a body: counting, and stopping when cancelled."""

    def __init__(self, file: Any, total: int, progress: Progress, stop: threading.Event) -> None:
        self.file, self.total, self.progress, self.stop = file, total, progress, stop
        self.done = 0

    def read(self, size: int = -1) -> bytes:
        if self.stop.is_set():
            raise Cancelled
        data = self.file.read(size)
        self.done += len(data)
        self.progress(self.done, self.total)
        return data


def _sha256_of(path: Path, stop: threading.Event) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            if stop.is_set():
                raise Cancelled
            digest.update(chunk)
    return digest.hexdigest()


def upload(
    server: Server,
    path: str,
    *,
    room: str | None = None,
    to: str | None = None,
    text: str = "",
    progress: Progress = lambda done, total: None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Share the file at ``path`` in ``room`` or with ``to``: the posted frame (a dict).

    Blocking: run it in a thread. Raises :exc:`TransferError`.
    """
    stop = stop or threading.Event()
    file_path = Path(path).expanduser()
    try:
        if not file_path.is_file():
            raise TransferError(f"{path}: not a file")
        size = file_path.stat().st_size
        digest = _sha256_of(file_path, stop)
        query = f"room={room}" if room is not None else f"to={to}"
        query += "&name=" + quote(file_path.name, safe="")
        if text:
            query += "&text=" + quote(text, safe="")
        connection = _connect(server)
        try:
            with file_path.open("rb") as file:
                connection.request(
                    "POST", f"/api/files?{query}", body=_Reader(file, size, progress, stop),
                    headers={"Authorization": f"Bearer {server.token}",
                             "Content-Length": str(size), "X-Content-SHA256": digest},
                )  # fmt: skip
            response = connection.getresponse()
            if response.status != 201:
                raise _failure(response)
            frame = json.loads(response.read())
        finally:
            connection.close()
    except OSError as exc:
        raise TransferError(f"{path}: {exc.strerror or exc}") from None
    except (http.client.HTTPException, ValueError) as exc:
        raise _not_understood(exc) from None
    if not isinstance(frame, dict) or frame.get("file", {}).get("sha256") != digest:
        raise TransferError("the server stored other bytes than were sent")
    return frame


_FILENAME_STAR = re.compile(r"filename\*=UTF-8''([^;\s]+)", re.IGNORECASE)


def download(
    server: Server,
    file_id: str,
    target: Callable[[str], str],
    *,
    sha256: str | None = None,
    progress: Progress = lambda done, total: None,
    stop: threading.Event | None = None,
) -> tuple[str, int, str]:
    """Fetch shared file ``file_id``; ``target(name)`` says where to save it given its name.

    ``sha256``: the hash the chat's frame gave, if known (it must match too). Resumes a
    ``.part`` of an earlier try when the hash is known. Returns the path, the size and
    the hash. Blocking: run it in a thread. Raises :exc:`TransferError` (and leaves no
    file when the hash is wrong).
    """
    stop = stop or threading.Event()
    connection = _connect(server)
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        connection.request("HEAD", f"/api/files/{quote(file_id, safe='')}", headers=headers)
        head = connection.getresponse()
        head.read()
        if head.status != 200:
            raise _failure(head)
        etag = (head.getheader("etag") or "").strip('"')
        if sha256 is not None and etag != sha256:
            raise TransferError("the server's file is not the one the message announced")
        match = _FILENAME_STAR.search(head.getheader("content-disposition") or "")
        name = unquote(match.group(1)) if match else file_id
        size = int(head.getheader("content-length") or 0)
        path = Path(target(name))
        part = path.with_name(path.name + ".part")
        resumable = bool(etag) and part.exists() and 0 < part.stat().st_size < size
        for resume in (resumable, False):
            done, digest = _fetch(connection, file_id, headers, part, etag if resume else None,
                                  size, progress, stop)  # fmt: skip
            if done == size and digest == etag:
                os.replace(part, path)
                return str(path), size, etag
            part.unlink(missing_ok=True)
            if not resume:  # (a part of other bytes spoils a resumed one: once more, whole)
                break
        raise TransferError("the file received is not the one the server announced "
                            "(its hash or size differs); nothing kept")  # fmt: skip
    except OSError as exc:
        raise TransferError(f"{exc.filename or 'download'}: {exc.strerror or exc}") from None
    except (http.client.HTTPException, ValueError) as exc:
        raise _not_understood(exc) from None
    finally:
        connection.close()


def _fetch(
    connection: http.client.HTTPSConnection,
    file_id: str,
    headers: dict[str, str],
    part: Path,
    etag: str | None,
    size: int,
    progress: Progress,
    stop: threading.Event,
) -> tuple[int, str]:
    """GET the file into ``part``: after what ``part`` holds when ``etag`` is given (a
    resume), else from the start. Its size and SHA-256 then."""
    digest = hashlib.sha256()
    have = 0
    if etag is not None:  # resume: hash what is there, ask for the rest
        with part.open("rb") as file:
            while chunk := file.read(1024 * 1024):
                digest.update(chunk)
                have += len(chunk)
        headers = {**headers, "Range": f"bytes={have}-", "If-Range": f'"{etag}"'}
    connection.request("GET", f"/api/files/{quote(file_id, safe='')}", headers=headers)
    response = connection.getresponse()
    if response.status == 200:
        have, digest = 0, hashlib.sha256()
    elif response.status != 206 or not have:
        raise _failure(response)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with part.open("r+b" if have else "wb") as file:
        file.seek(have)
        file.truncate()
        done = have
        while count := response.readinto(buffer):
            if stop.is_set():
                raise Cancelled
            digest.update(view[:count])
            file.write(view[:count])
            done += count
            progress(done, size)
        file.flush()
        os.fsync(file.fileno())
    return done, digest.hexdigest()


class Transfers:
    """The transfers under way, for a progress line: label -> (done, total, started)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.stop = threading.Event()  # set when the client quits: transfers end
        self._moving: dict[int, tuple[str, int, int | None, float]] = {}
        self._ids = 0

    def start(self, label: str) -> int:
        with self._lock:
            self._ids += 1
            self._moving[self._ids] = (label, 0, None, self._clock())
            return self._ids

    def update(self, key: int, done: int, total: int | None) -> None:
        with self._lock:
            label, _, _, started = self._moving[key]
            self._moving[key] = (label, done, total, started)

    def end(self, key: int) -> None:
        with self._lock:
            self._moving.pop(key, None)

    def snapshot(self) -> list[tuple[str, int, int | None, float]]:
        """(label, done, total, seconds since it started) of each, oldest first."""
        now = self._clock()
        with self._lock:
            return [(label, done, total, now - started)
                    for label, done, total, started in self._moving.values()]  # fmt: skip

    def __len__(self) -> int:
        with self._lock:
            return len(self._moving)
