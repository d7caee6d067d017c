"""Certificate renewal without a restart: SIGHUP reloads the certificate, key and client CA.

New handshakes get the new certificate, established connections carry on, and a bad new
file is one ERROR line while the old certificate stays in use.
"""

import logging
import os
import re
import shutil
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from securechat.admin.certs import CertPaths, make_certs
from securechat.exceptions import CertificateError
from securechat.server.cli import load_server_context, reload_certificate
from tests.chatclient import ChatClient
from tests.conftest import USERS
from tests.server.test_abuse import make_client_cert, run_server_with_context
from tests.serverprocess import ServerProcess

KEY_BEGIN = b"-----BEGIN PRIVATE KEY-----"
RELOADED = r" INFO securechat\.server: certificate reloaded: "
NOT_RELOADED = r" ERROR securechat\.server: certificate not reloaded, still using the old one: "


@dataclass(frozen=True)
class CertSet:
    """One deployment's files: the CA clients pin, the chain and the key apart (as from
    Let's Encrypt's fullchain.pem and privkey.pem), and the leaf's DER to compare with."""

    paths: CertPaths
    chain: bytes
    key: bytes
    leaf_der: bytes


def cert_set(directory: Path) -> CertSet:
    paths = make_certs(directory)
    pem = paths.server.read_bytes()
    at = pem.index(KEY_BEGIN)
    leaf = x509.load_pem_x509_certificates(pem)[0]
    return CertSet(paths, pem[:at], pem[at:], leaf.public_bytes(serialization.Encoding.DER))


def install(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, as a renewal hook should (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def peer_der(client: ChatClient) -> bytes | None:
    return client.sock.getpeercert(binary_form=True)


def login(proc: ServerProcess, ca: Path, user: str) -> ChatClient:
    client = ChatClient(proc.address, ca)
    assert client.login(user, USERS[user])["type"] == "login_ok"
    assert client.request(type="join", room="general")["type"] == "joined"
    return client


def say(sender: ChatClient, text: str, *receivers: ChatClient) -> None:
    assert sender.request(type="send", room="general", text=text)["type"] == "message"
    for receiver in receivers:
        receiver.expect("message", text=text)


def hangup(proc: ServerProcess, expect: str) -> str:
    """SIGHUP the server; return the log line it answers with, which must match ``expect``."""
    since = len(proc.log)
    proc.proc.send_signal(signal.SIGHUP)
    line = proc.wait_for_log(rf"{RELOADED}|{NOT_RELOADED}", since).strip()
    assert re.search(expect, line), line
    return line


def test_sighup_renews_the_certificate_without_dropping_anyone(passwd_path, tmp_path):
    old, new = cert_set(tmp_path / "a"), cert_set(tmp_path / "b")  # different CAs
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "fullchain.pem", live / "privkey.pem"
    install(cert, old.chain)
    install(key, old.key)
    with ServerProcess(cert, passwd_path, tmp_path / "data", "--key", str(key)) as proc:
        alice = login(proc, old.paths.ca_cert, "alice")
        assert peer_der(alice) == old.leaf_der

        install(cert, new.chain)
        install(key, new.key)
        line = hangup(proc, RELOADED)
        assert "certificate reloaded: CN=localhost, notAfter 20" in line, line
        bob = login(proc, new.paths.ca_cert, "bob")
        assert peer_der(bob) == new.leaf_der
        say(alice, "still here after the renewal", bob)
        say(bob, "and I came in on the new certificate", alice)

        # A key that does not belong to the certificate: refused, the new one stays.
        install(key, old.key)
        line = hangup(proc, NOT_RELOADED)
        assert f"the private key in {key} does not match the certificate in {cert}" in line
        # Garbage instead of a certificate: the same.
        install(cert, b"this is not a certificate\n")
        line = hangup(proc, NOT_RELOADED)
        assert line.endswith(f"{cert}: no PEM certificate"), line
        carol = login(proc, new.paths.ca_cert, "carol")
        assert peer_der(carol) == new.leaf_der
        with pytest.raises(ssl.SSLCertVerificationError):  # the old certificate is gone
            ChatClient(proc.address, old.paths.ca_cert)

        say(alice, "nobody was dropped", bob, carol)
        say(bob, "not even by a broken renewal", alice, carol)
        for client in (alice, bob, carol):
            assert not [f for f in client.backlog if f["type"] == "error"], client.backlog
        assert "Traceback" not in "".join(proc.log)
        assert proc.terminate() == 0


# --- the loader and the swap, in process ------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertSet, CertSet]:
    base = tmp_path_factory.mktemp("reload")
    return cert_set(base / "a"), cert_set(base / "b")


def encrypted(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("missing cert", "cannot read {cert}: No such file or directory"),
        ("garbage cert", "{cert}: no PEM certificate"),
        ("no key", "{key}: no PEM private key"),
        ("other key", "the private key in {key} does not match the certificate in {cert}"),
        ("encrypted key", "{key}: the private key is encrypted"),
        ("garbage client CA", "{ca}: no PEM certificate"),
    ],
)
def test_a_bad_file_is_one_line_saying_which_and_why(pair, tmp_path, case, problem):
    old, new = pair
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    files = {cert: new.chain, key: new.key, ca: new.paths.ca_cert.read_bytes()}
    if case == "missing cert":
        del files[cert]
    elif case == "garbage cert":
        files[cert] = b"\x00\xffnot PEM at all"
    elif case == "no key":
        files[key] = new.chain
    elif case == "other key":
        files[key] = old.key
    elif case == "encrypted key":
        files[key] = encrypted(new.key)
    else:
        files[ca] = b"-----BEGIN NONSENSE-----\n"
    for path, data in files.items():
        path.write_bytes(data)
    with pytest.raises(CertificateError) as caught:
        load_server_context(cert, key, ca)
    message = str(caught.value)
    assert problem.format(cert=cert, key=key, ca=ca) in message
    assert "\n" not in message


def test_a_failed_reload_keeps_the_old_context_and_logs_one_error(pair, tmp_path, caplog):
    _, new = pair
    cert = tmp_path / "server.pem"
    cert.write_bytes(new.chain + new.key)
    server = SimpleNamespace(context=None)
    with caplog.at_level(logging.INFO, logger="securechat.server"):
        assert reload_certificate(server, lambda: load_server_context(cert))  # type: ignore[arg-type]
        good = server.context
        assert isinstance(good, ssl.SSLContext)
        cert.write_bytes(new.chain)  # the key went missing
        assert not reload_certificate(server, lambda: load_server_context(cert))  # type: ignore[arg-type]
    assert server.context is good
    assert [(r.levelname, r.exc_info) for r in caplog.records] == [("INFO", None), ("ERROR", None)]
    assert caplog.records[1].getMessage() == (
        f"certificate not reloaded, still using the old one: {cert}: no PEM private key"
    )


def test_reload_picks_up_a_new_client_ca(pair, passwd_path, tmp_path):
    """--client-ca is read again too: after the swap, certificates of the new CA log in
    without a password and those of the old one no longer pass the handshake."""
    old, new = pair
    ca = tmp_path / "client-ca.pem"
    shutil.copyfile(old.paths.ca_cert, ca)
    from_old = make_client_cert(old.paths, tmp_path / "alice-old.pem", "alice")
    from_new = make_client_cert(new.paths, tmp_path / "alice-new.pem", "alice")

    def load() -> tuple[ssl.SSLContext, str]:
        return load_server_context(old.paths.server, client_ca=ca)

    def certificate_login(address: tuple[str, int], cert: Path) -> dict:
        client = ChatClient(address, old.paths.ca_cert, cert=cert)
        try:
            client.expect("welcome")
            return client.request(type="login", user="alice")
        finally:
            client.close()

    with run_server_with_context(old.paths, passwd_path, load()[0]) as server:
        assert certificate_login(server.address, from_old)["type"] == "login_ok"
        with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
            certificate_login(server.address, from_new)
        install(ca, new.paths.ca_cert.read_bytes())
        assert reload_certificate(server, load)
        assert certificate_login(server.address, from_new)["type"] == "login_ok"
        with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
            certificate_login(server.address, from_old)
