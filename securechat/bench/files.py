"""The transfers of the bench's ``files`` scenario: one file up, then down, over HTTPS.

Why a process of its own: the scenario times a small room's chat on the bench's event
loop while a large file moves (issue 15 asks for 1 GiB each way at 100 MB/s or more, the
server's RSS growing by less than 20 MiB, the room's p99 under 50 ms meanwhile). Moving
hundreds of MB a second through TLS and SHA-256 in the bench's own process would take
the GIL from that loop and add its waits to the latencies measured; so
:func:`move_file` runs ``python -m securechat.bench.files`` (blocking ``http.client``,
which streams a body from a file and reads an answer into one buffer) and reads its
numbers, one JSON line.

The uploader logs in over the line protocol for its token (``login_ok.token``) and stays
in the room it shares to (the file API wants a connection of the user there); the
server's RSS is sampled from ``/proc`` every 50 ms while the file moves.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from securechat.bench.irc import PASSWORD, Target, sample_process

__all__ = ["FILE_ROOM", "move_file"]

ROOT = Path(__file__).resolve().parents[2]  # the checkout: the child imports this package
FILE_ROOM = "files"
CHUNK = 256 * 1024
SAMPLE_EVERY = 0.05


def _line(sock: ssl.SSLSocket, buffer: bytearray) -> dict[str, Any]:
    while b"\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the chat connection")
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def _chat_login(target: Target, user: str) -> tuple[ssl.SSLSocket, str]:
    """A line connection of ``user`` in :data:`FILE_ROOM`, and its login token."""
    raw = socket.create_connection((target.host, target.port), timeout=30)
    sock = target.context.wrap_socket(raw, server_hostname="localhost")  # (no ALPN: lines)
    buffer = bytearray()
    _line(sock, buffer)  # welcome
    sock.sendall(json.dumps({"type": "login", "user": user, "password": PASSWORD}).encode() + b"\n")
    while (frame := _line(sock, buffer)).get("type") != "login_ok":
        if frame.get("type") == "error":
            raise ConnectionError(f"login refused: {frame.get('message')}")
    token = frame.get("token")
    if not token:
        raise ConnectionError("login_ok without a token: the server cannot share files")
    sock.sendall(b'{"type":"join","room":"%s","ref":"j"}\n' % FILE_ROOM.encode())
    while _line(sock, buffer).get("ref") != "j":
        pass
    return sock, token


def _https(target: Target) -> http.client.HTTPSConnection:
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=_ca_of(target.context))
    context.set_alpn_protocols(["http/1.1"])
    return http.client.HTTPSConnection("localhost", target.port, context=context, timeout=120,
                                       blocksize=CHUNK)  # fmt: skip


def _ca_of(context: ssl.SSLContext) -> str:
    certs = context.get_ca_certs(binary_form=True)
    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in certs)


def _make_file(path: Path, size: int) -> str:
    """``size`` random bytes at ``path`` (random: nothing compresses or repeats); its hash."""
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as file:
        left, n = size, 0
        while left > 0:
            # Each MiB differs (its number in front) without paying urandom per MiB.
            chunk = (n.to_bytes(8, "big") + block[8:])[: min(left, len(block))]
            digest.update(chunk)
            file.write(chunk)
            left -= len(chunk)
            n += 1
    return digest.hexdigest()


class _RssPeak:
    """The server's RSS, sampled in a thread: at the start, and the most seen since."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        first = sample_process(pid) if pid else None
        self.start_kib = self.peak_kib = first.rss_kib if first else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            sample = sample_process(self.pid) if self.pid else None
            if sample is not None:
                self.peak_kib = max(self.peak_kib, sample.rss_kib)

    def stop(self) -> float:
        """The growth, in MiB."""
        self._stop.set()
        self._thread.join()
        return round((self.peak_kib - self.start_kib) / 1024, 1)


def move_file(target: Target, mib: int, user: str) -> dict[str, Any]:
    """Upload a file of ``mib`` MiB, then download it (in a child process); the rates,
    whether it came back intact, the server's RSS growth.

    Blocking (run it in a thread). ``user`` must be one of the bench's users.
    """
    with tempfile.TemporaryDirectory(prefix="securechat-bench-ca-") as folder:
        cafile = Path(folder) / "ca.pem"
        cafile.write_text(_ca_of(target.context))
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        done = subprocess.run(
            [sys.executable, "-m", "securechat.bench.files", target.host, str(target.port),
             str(cafile), str(target.pid or 0), str(mib), user],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path},
            timeout=3600, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the file transfers failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _move_file(target: Target, mib: int, user: str) -> dict[str, Any]:
    """What the child process does (see :func:`move_file`)."""
    size = mib << 20
    with tempfile.TemporaryDirectory(prefix="securechat-bench-files-") as folder:
        path = Path(folder) / "payload.bin"
        digest = _make_file(path, size)
        sock, token = _chat_login(target, user)
        rss = _RssPeak(target.pid)
        auth = {"Authorization": f"Bearer {token}"}
        try:
            connection = _https(target)
            started = time.monotonic()
            with path.open("rb") as file:
                connection.request("POST", f"/api/files?room={FILE_ROOM}&name=payload.bin",
                                   body=file, headers={**auth, "Content-Length": str(size),
                                                       "X-Content-SHA256": digest})  # fmt: skip
                response = connection.getresponse()
                answer = response.read()
            up = time.monotonic() - started
            if response.status != 201:
                raise RuntimeError(f"upload refused: {response.status} {answer[:200]!r}")
            file_id = json.loads(answer)["file"]["id"]
            started = time.monotonic()
            connection.request("GET", f"/api/files/{file_id}", headers=auth)
            response = connection.getresponse()
            received, check = 0, hashlib.sha256()
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            while count := response.readinto(buffer):
                check.update(view[:count])
                received += count
            down = time.monotonic() - started
            connection.close()
        finally:
            growth = rss.stop()
            sock.close()
    return {
        "file_mib": mib,
        "upload_s": round(up, 3),
        "upload_mb_s": round(size / up / 1e6, 1),
        "download_s": round(down, 3),
        "download_mb_s": round(size / down / 1e6, 1),
        "download_intact": received == size and check.hexdigest() == digest,
        "rss_growth_mib": growth,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m securechat.bench.files HOST PORT CAFILE PID MIB USER``: one JSON line."""
    host, port, cafile, pid, mib, user = argv if argv is not None else sys.argv[1:]
    context = ssl.create_default_context(cafile=cafile)
    target = Target("securechat", None, host, int(port), context,  # type: ignore[arg-type]
                    int(pid) or None)  # fmt: skip
    print(json.dumps(_move_file(target, int(mib), user)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
