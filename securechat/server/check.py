"""``securechat-server --check``: everything the server would use, checked without starting it.

For an admin before a (re)start, for a deploy script, for ``ExecStartPre=``: the
certificate and key (they load, they match, they are not expired; a warning under 14
days left), the password file (readable, parseable, not readable by others), the data
directory (creatable or writable, free space, a database this version can use) and the
listening ports (free). One line per finding; the exit status says whether the server
would start.
"""

import datetime
import os
import socket
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from securechat.exceptions import CertificateError, PasswordFileError
from securechat.server.passwd import PasswordFile, permission_warning
from securechat.server.store import SCHEMA_VERSION

EXPIRY_WARNING = datetime.timedelta(days=14)
LOW_SPACE = 100 * 1024 * 1024  # bytes free under which the data directory gets a warning


@dataclass(frozen=True)
class Finding:
    """One line of the report: a ``problem`` keeps the server from starting."""

    problem: bool
    text: str

    def __str__(self) -> str:
        return f"{'problem' if self.problem else 'warning'}: {self.text}"


def _certificate(
    cert: Path, key: Path | None, client_ca: Path | None, load: Callable[[], object]
) -> Iterator[Finding]:
    try:
        load()
    except CertificateError as exc:
        yield Finding(True, f"certificate: {exc}")
        return
    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    left = leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    expires = f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if left <= datetime.timedelta(0):
        yield Finding(True, f"certificate {cert} expired on {expires}")
    elif left < EXPIRY_WARNING:
        yield Finding(False, f"certificate {cert} expires in {left.days} days ({expires})")
    if leaf.not_valid_before_utc > datetime.datetime.now(datetime.UTC):
        yield Finding(True, f"certificate {cert} is not valid before {leaf.not_valid_before_utc}")


def _password_file(path: Path) -> Iterator[Finding]:
    if not path.exists():
        yield Finding(False, f"password file {path} does not exist: nobody can log in until "
                      "you add a user with securechat-adduser")  # fmt: skip
        return
    try:
        users = PasswordFile(path).users()
    except PasswordFileError as exc:
        yield Finding(True, str(exc))
        return
    if not users:
        yield Finding(False, f"password file {path} has no users yet")
    if warning := permission_warning(path):
        yield Finding(False, warning)


def _data_dir(path: Path, database: str) -> Iterator[Finding]:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        yield Finding(True, f"data directory {path}: {existing} is not a directory")
        return
    if not os.access(existing, os.W_OK | os.X_OK):
        yield Finding(True, f"data directory {path}: {existing} is not writable")
        return
    try:  # os.access says nothing of a read-only mount or a full disk: write something
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        yield Finding(True, f"data directory {path}: cannot write to {existing}: {exc.strerror}")
        return
    stats = os.statvfs(existing)
    free = stats.f_bavail * stats.f_frsize
    if free < LOW_SPACE:
        yield Finding(free == 0, f"data directory {path}: only {free // 1024**2} MiB free")
    db = path / database
    if db.exists():
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            yield Finding(True, f"database {db}: {exc}")
            return
        if version > SCHEMA_VERSION:
            yield Finding(True, f"database {db} has schema version {version}, newer than this "
                          f"server's {SCHEMA_VERSION}: upgrade securechat")  # fmt: skip


def _port(host: str, port: int, what: str) -> Iterator[Finding]:
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        yield Finding(True, f"{what}: cannot resolve {host}: {exc.strerror}")
        return
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind(address)
        except OSError as exc:
            yield Finding(True, f"{what}: cannot listen on {host}:{port}: {exc.strerror}")


def run(
    *,
    cert: Path,
    key: Path | None,
    client_ca: Path | None,
    load: Callable[[], object],
    passwd: Path,
    data_dir: Path,
    database: str,
    host: str,
    ports: dict[str, int],
) -> list[Finding]:
    """Every finding, problems and warnings, in the order an admin would fix them."""
    findings = [*_certificate(cert, key, client_ca, load), *_password_file(passwd)]
    findings += _data_dir(data_dir, database)
    for what, port in ports.items():
        findings += _port(host, port, what)
    return findings


__all__ = ["Finding", "run"]
