"""Tests for securechat.admin.certs: files, modes, refusal to overwrite, and real TLS."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securechat.admin.certs import CertPaths, main, make_certs
from securechat.exceptions import CertificateError

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _umask_022() -> Iterator[None]:
    """Fix the umask so the expected modes do not depend on the environment."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_certs(tmp_path_factory.mktemp("certs") / "certs")


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_certs(tmp_path_factory.mktemp("other"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def server_cert(paths: CertPaths) -> x509.Certificate:
    return x509.load_pem_x509_certificates(paths.server.read_bytes())[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# --- files and modes -------------------------------------------------------------


def test_files_and_modes(tmp_path: Path) -> None:
    target = tmp_path / "new" / "certs"
    paths = make_certs(target)
    assert paths == CertPaths(target / "ca.pem", target / "ca.key", target / "server.pem")
    assert sorted(p.name for p in target.iterdir()) == ["ca.key", "ca.pem", "server.pem"]
    assert mode(paths.ca_cert) == 0o644
    assert mode(paths.ca_key) == 0o600
    assert mode(paths.server) == 0o600
    assert paths.ca_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # server.pem: server cert, CA cert, then the key.
    pem = paths.server.read_text()
    assert pem.count("BEGIN CERTIFICATE") == 2
    assert pem.index("END CERTIFICATE") < pem.index("BEGIN PRIVATE KEY")
    chain = x509.load_pem_x509_certificates(paths.server.read_bytes())
    assert chain[1] == x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())


def test_certificate_contents(certs: CertPaths) -> None:
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    leaf = server_cert(certs)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).critical
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["localhost"]


# --- overwriting -----------------------------------------------------------------


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    make_certs(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(CertificateError, match="already exists; use --force"):
        make_certs(tmp_path)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("existing", ["ca.pem", "ca.key", "server.pem"])
def test_any_existing_file_blocks_and_nothing_is_written(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("keep me")
    with pytest.raises(CertificateError) as info:
        make_certs(tmp_path)
    assert str(info.value) == f"{tmp_path / existing} already exists; use --force to replace it"
    assert snapshot(tmp_path) == {existing: b"keep me"}


def test_force_replaces(tmp_path: Path) -> None:
    first = make_certs(tmp_path)
    old = snapshot(tmp_path)
    second = make_certs(tmp_path, force=True)
    assert second == first
    new = snapshot(tmp_path)
    assert sorted(new) == ["ca.key", "ca.pem", "server.pem"]  # no temp files left behind
    assert all(new[name] != old[name] for name in new)
    assert mode(second.ca_cert) == 0o644
    assert mode(second.ca_key) == 0o600
    assert mode(second.server) == 0o600


def test_force_keeps_key_files_private_even_if_old_file_was_not(tmp_path: Path) -> None:
    (tmp_path / "ca.key").write_text("old")
    os.chmod(tmp_path / "ca.key", 0o644)
    paths = make_certs(tmp_path, force=True)
    assert mode(paths.ca_key) == 0o600


def test_main_refuses_existing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["--dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"securechat-certs: {tmp_path / 'ca.pem'} already exists; use --force to replace it\n"
    )
    assert main(["--dir", str(tmp_path), "--force"]) == 0


def test_main_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path / "c")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[:3] == [f"wrote {tmp_path / 'c' / n}" for n in ("ca.pem", "ca.key", "server.pem")]
    assert lines[3] == f"clients: use --cafile {tmp_path / 'c' / 'ca.pem'}"


# --- names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "has space", "tab\there", "new\nline", "nul\x00", "a" * 254, "bücher.de"]
)
def test_bad_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CertificateError) as info:
        make_certs(tmp_path / "c", ["localhost", name])
    assert "\n" not in str(info.value)
    assert not (tmp_path / "c").exists()


def test_main_bad_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path), "--name", "bad\nname"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("securechat-certs: ")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_main_usage_error_exits_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--dir", str(tmp_path), "--days", "many"])
    assert info.value.code == 2


def test_long_first_name_still_works(tmp_path: Path) -> None:
    name = ("a" * 60 + ".") * 4 + "example"  # 251 chars, longer than a CN may be
    leaf = server_cert(make_certs(tmp_path, [name]))
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]


def test_main_name_option(tmp_path: Path) -> None:
    assert main(["--dir", str(tmp_path), "--name", "myhost", "--name", "10.1.2.3"]) == 0
    leaf = server_cert(CertPaths(tmp_path / "ca.pem", tmp_path / "ca.key", tmp_path / "server.pem"))
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["myhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["myhost"]


# --- real TLS over loopback ------------------------------------------------------


@contextmanager
def tls_server(server_pem: Path, connections: int) -> Iterator[tuple[int, list[BaseException]]]:
    """Serve ``connections`` TLS connections on 127.0.0.1, echoing one message each."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_pem)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    errors: list[BaseException] = []
    done = threading.Event()

    def serve() -> None:
        try:
            for _ in range(connections):
                conn, _ = listener.accept()
                conn.settimeout(TIMEOUT)
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(b"echo:" + tls.recv(1024))
                except (ssl.SSLError, OSError) as exc:
                    errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], errors
        assert done.wait(TIMEOUT), "server thread did not finish"
    finally:
        listener.close()
        thread.join(TIMEOUT)
    assert not thread.is_alive()


def client_context(ca_pem: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    # Python 3.13 turns this on by default; the certificates must pass it already.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def exchange(ctx: ssl.SSLContext, port: int, server_hostname: str) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(b"hello")
        received = b""
        while len(received) < len(b"echo:hello"):
            chunk = tls.recv(1024)
            if not chunk:
                break
            received += chunk
        return received


def test_tls_handshake_by_name_and_by_ip(certs: CertPaths) -> None:
    ctx = client_context(certs.ca_cert)
    with tls_server(certs.server, connections=2) as (port, errors):
        assert exchange(ctx, port, "localhost") == b"echo:hello"
        assert exchange(ctx, port, "127.0.0.1") == b"echo:hello"
    assert errors == []


def test_tls_wrong_ca_is_rejected(certs: CertPaths, other_certs: CertPaths) -> None:
    ctx = client_context(other_certs.ca_cert)
    with (
        tls_server(certs.server, connections=1) as (port, errors),
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        exchange(ctx, port, "localhost")
    assert len(errors) == 1  # the server saw the client abort the handshake


def test_tls_wrong_hostname_is_rejected(certs: CertPaths) -> None:
    ctx = client_context(certs.ca_cert)
    with (
        tls_server(certs.server, connections=1) as (port, _errors),
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        exchange(ctx, port, "example.com")
