"""Make a private CA and a server certificate for a securechat deployment.

Why: securechat only speaks TLS and clients verify the server certificate. A small
self-hosted server has no public certificate, and a self-signed leaf (or turning
verification off) teaches users to click through warnings. So this tool makes a local
CA, whose ``ca.pem`` clients pin with ``--cafile``, and a server certificate signed
by it for the names the server is reached by; clients then verify as usual.

Files: ``ca.pem`` (CA certificate, 0644), ``ca.key`` (CA key, unencrypted PKCS#8,
0600) and ``server.pem`` (server certificate, CA certificate, server key; 0600),
usable as ``ssl.SSLContext.load_cert_chain("server.pem")``. Key files have mode 0600
from creation, never chmodded later. Existing files are only replaced with ``force``,
each atomically (temp file in the same directory, then rename).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securechat.exceptions import CertificateError

__all__ = ["DEFAULT_NAMES", "CertPaths", "main", "make_certs"]

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_NAME_LENGTH = 253  # longest DNS name
MAX_CN_LENGTH = 64  # X.520 ub-common-name
MAX_DAYS = 36500
_PUBLIC_MODE = 0o644
_SECRET_MODE = 0o600


@dataclass(frozen=True)
class CertPaths:
    """Where :func:`make_certs` wrote its files."""

    ca_cert: Path
    ca_key: Path
    server: Path


def _check_name(name: str) -> None:
    """Refuse names that cannot go into a certificate; one-line messages only."""
    if not name:
        raise CertificateError("empty name")
    if len(name) > MAX_NAME_LENGTH:
        raise CertificateError(f"name longer than {MAX_NAME_LENGTH} characters: {name[:40]!r}...")
    if not name.isprintable() or any(ch.isspace() for ch in name):
        raise CertificateError(f"name contains whitespace or control characters: {name!r}")
    if not name.isascii():
        raise CertificateError(f"name is not ASCII (use the IDNA xn-- form): {name!r}")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    """A KeyUsage with only the ``enabled`` bits set."""
    bits = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
    bits += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**(dict.fromkeys(bits, False) | enabled))  # a typo is a TypeError


def _build(names: Sequence[str], days: int) -> tuple[bytes, bytes, bytes]:
    """Return the PEM bytes of ``ca.pem``, ``ca.key`` and ``server.pem``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = _new_key(), _new_key()
    # A random suffix keeps two local CAs from sharing a subject name.
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "securechat"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"securechat local CA {secrets.token_hex(4)}"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())

    def builder(subject: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
        )

    ca_cert = (
        builder(ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The CN is cosmetic (clients match the SAN) and X.520 caps it at 64 characters.
    common_name = names[0] if len(names[0]) <= MAX_CN_LENGTH else "securechat server"
    sans: list[x509.GeneralName] = []
    for name in names:  # an address is an IPAddress entry only, as RFC 5280 wants
        ip = _ip(name)
        sans.append(x509.DNSName(name) if ip is None else x509.IPAddress(ip))
    server_ski = x509.SubjectKeyIdentifier.from_public_key(server_key.public_key())
    server_cert = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), server_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(server_ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    server_pem = server_cert.public_bytes(serialization.Encoding.PEM) + ca_pem
    return ca_pem, _key_pem(ca_key), server_pem + _key_pem(server_key)


def _create(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file that has ``mode`` from creation (O_EXCL, no symlinks)."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write_all(files: list[tuple[Path, bytes, int]], *, force: bool) -> None:
    """Write every file or (as far as possible) none of them."""
    if not force:
        created: list[Path] = []
        try:
            for path, data, mode in files:
                _create(path, data, mode)
                created.append(path)
        except BaseException as exc:
            for path in created:
                path.unlink(missing_ok=True)
            if isinstance(exc, FileExistsError):  # appeared since the check in make_certs
                msg = f"{exc.filename} already exists; use --force to replace it"
                raise CertificateError(msg) from exc
            raise
        return
    # Stage every file first, then rename them into place one after another.
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in files:
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
            _create(tmp, data, mode)
            staged.append((tmp, path))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def make_certs(
    directory: Path, names: Sequence[str] = DEFAULT_NAMES, *, force: bool = False, days: int = 825
) -> CertPaths:
    """Create ``ca.pem``, ``ca.key`` and ``server.pem`` in ``directory``.

    ``names`` are the host names and IP addresses clients connect to; the first is
    also the server certificate's CN. Raises :exc:`CertificateError` for bad names,
    a bad ``days`` or existing files without ``force``; :exc:`OSError` on I/O errors.
    """
    if isinstance(names, str):  # would otherwise become one name per character
        raise TypeError("names must be a sequence of names, not a str")
    names = list(dict.fromkeys(names))  # drop duplicates, keep order
    if not names:
        raise CertificateError("at least one name is needed")
    for name in names:
        _check_name(name)
    if not 1 <= days <= MAX_DAYS:
        raise CertificateError(f"days must be between 1 and {MAX_DAYS}, got {days}")

    directory = Path(directory)
    paths = CertPaths(directory / "ca.pem", directory / "ca.key", directory / "server.pem")
    if not force:
        for path in (paths.ca_cert, paths.ca_key, paths.server):
            if os.path.lexists(path):
                raise CertificateError(f"{path} already exists; use --force to replace it")

    ca_pem, ca_key_pem, server_pem = _build(names, days)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    _write_all(
        [
            (paths.ca_cert, ca_pem, _PUBLIC_MODE),
            (paths.ca_key, ca_key_pem, _SECRET_MODE),
            (paths.server, server_pem, _SECRET_MODE),
        ],
        force=force,
    )
    return paths


def main(argv: list[str] | None = None) -> int:
    """The ``securechat-certs`` command; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="securechat-certs",
        description="Create a local CA and a server certificate signed by it.",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("certs"), help="output directory (default: certs)"
    )
    parser.add_argument(
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help="host name or IP address of the server; repeatable "
        f"(default: {' '.join(DEFAULT_NAMES)})",
    )
    parser.add_argument("--days", type=int, default=825, help="validity in days (default: 825)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)

    try:
        paths = make_certs(args.dir, args.names or DEFAULT_NAMES, force=args.force, days=args.days)
    except (CertificateError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"securechat-certs: {message}", file=sys.stderr)
        return 1
    for path in (paths.ca_cert, paths.ca_key, paths.server):
        print(f"wrote {path}")
    print(f"clients: use --cafile {paths.ca_cert}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
