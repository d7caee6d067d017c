"""Attacks over real TLS on 127.0.0.1: flooding, password guessing, connection
exhaustion, slowloris, login storms, client certificates and secrets in logs.

Each test says what the attacker sends, what the server answers and what the other
clients see. Source addresses other than 127.0.0.1 (the whole 127/8 is loopback on
Linux) stand for clients on other machines.
"""

import contextlib
import datetime
import itertools
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securechat.admin.certs import CertPaths
from securechat.server.cli import Limits, Server, durable_hub, make_server_context
from securechat.server.limits import LoginThrottle, address_key
from securechat.server.passwd import PasswordFile
from tests.chatclient import ChatClient, Frame
from tests.conftest import USERS, run_server, wait_until
from tests.serverprocess import ServerProcess


class ClientFrom(ChatClient):
    """A :class:`ChatClient` connecting from ``source``, optionally with a client certificate."""

    def __init__(
        self,
        address: tuple[str, int],
        cafile: Path,
        source: str = "127.0.0.1",
        *,
        cert: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(address, cafile, timeout=timeout, source=source, cert=cert)


def line(**frame: Any) -> bytes:
    return json.dumps(frame).encode() + b"\n"


def connections_from(server: Server, host: str) -> int:
    return sum(1 for conn in server.connections() if conn.address[0] == host)


def logged_in(server: Server, certs: CertPaths, user: str, source: str = "127.0.0.1") -> ClientFrom:
    client = ClientFrom(server.address, certs.ca_cert, source)
    reply = client.login(user, USERS[user])
    assert reply["type"] == "login_ok", reply
    return client


def messages_until(client: ChatClient, count: int) -> list[Frame]:
    """The next ``count`` room messages this client gets (other frames stay in the backlog)."""
    return [client.expect("message") for _ in range(count)]


# --- flooding -----------------------------------------------------------------------------


def test_flooder_is_refused_while_the_room_carries_on(certs, passwd_path):
    """alice sends 60 `send` frames at once; bob, in the same room, chats and pings."""
    with run_server(certs, passwd_path) as server:  # default limits: burst 20, 10 frames/s
        alice, bob = logged_in(server, certs, "alice"), logged_in(server, certs, "bob")
        alice.request(type="join", room="general")
        bob.request(type="join", room="general")
        flood = 60
        alice.send_raw(
            b"".join(
                line(type="send", room="general", text=f"flood {n}", ref=f"f{n}")
                for n in range(flood)
            )
        )
        pongs = [bob.request(type="ping", ref=f"p{n}") for n in range(5)]
        own = [bob.request(type="send", room="general", text=f"bob {n}") for n in range(3)]
        assert pongs == [{"type": "pong", "ref": f"p{n}"} for n in range(5)]
        assert [frame["type"] for frame in own] == ["message"] * 3

        answers = []  # one answer per flood frame, in order: its message or a refusal
        while len(answers) < flood:
            frame = alice.recv()
            if frame.get("ref", "").startswith("f"):
                answers.append(frame)
            else:  # bob's presence and messages
                assert frame["type"] in ("presence", "message") and frame["user"] == "bob"
        assert [frame["ref"] for frame in answers] == [f"f{n}" for n in range(flood)]
        allowed = [frame for frame in answers if frame["type"] == "message"]
        refused = [frame for frame in answers if frame["type"] == "error"]
        assert 18 <= len(allowed) < flood  # the burst (20) less login and join, plus refill
        assert len(refused) == flood - len(allowed)
        for error in refused:
            assert error["code"] == "rate_limited"
            assert 0 < error["retry_after"] <= 0.1  # a token comes every 1/rate seconds
        sent_numbers = [int(frame["text"].split()[1]) for frame in allowed]
        assert sent_numbers[:18] == list(range(18))
        assert sent_numbers == sorted(sent_numbers)

        # bob saw every accepted message exactly once, in id order, and none of the refused.
        total = len(allowed) + len(own)
        seen = sorted(messages_until(bob, len(allowed)) + own, key=lambda frame: frame["id"])
        assert [frame["id"] for frame in seen] == list(range(1, total + 1))
        from_alice = [frame["text"] for frame in seen if frame["user"] == "alice"]
        assert from_alice == [frame["text"] for frame in allowed]
        assert not [frame for frame in bob.backlog if frame["type"] == "error"]
        for client in (alice, bob):
            client.close()
    print(f"flood: {len(allowed)} of {flood} accepted, {len(refused)} rate_limited "
          f"(retry_after {refused[0]['retry_after']}..{refused[-1]['retry_after']})")  # fmt: skip


def test_flooder_past_100_refusals_is_disconnected(certs, passwd_path):
    """alice sends 300 frames at once; after 100 refusals she is dropped, bob goes on."""
    with run_server(certs, passwd_path) as server:
        alice, bob = logged_in(server, certs, "alice"), logged_in(server, certs, "bob")
        alice.request(type="join", room="general")
        bob.request(type="join", room="general")
        alice.send_raw(
            b"".join(line(type="send", room="general", text=f"flood {n}") for n in range(300))
        )
        frames = alice.wait_closed()
        errors = [frame for frame in frames if frame["type"] == "error"]
        assert {error["code"] for error in errors} == {"rate_limited"}
        assert all(error["retry_after"] > 0 for error in errors)
        assert 101 <= len(errors) <= 110  # refusals decay by one a second while processed
        assert frames[-1] == errors[-1]  # the fatal refusal is the last frame
        assert "disconnecting" in errors[-1]["message"]

        assert bob.expect("presence", user="alice", event="leave")
        reply = bob.request(type="send", room="general", text="still here")
        accepted = messages_until(bob, reply["id"] - 1)  # all of alice's come before it
        assert {frame["user"] for frame in accepted} == {"alice"}
        assert [frame["id"] for frame in accepted] == list(range(1, reply["id"]))
        assert 18 <= len(accepted) <= 300 - len(errors)
        assert bob.request(type="ping")["type"] == "pong"
        assert bob.request(type="members", room="general")["members"] == ["bob"]
        bob.close()
    print(f"flood past 100: {len(accepted)} accepted, {len(errors)} refusals, then closed")


# --- password guessing --------------------------------------------------------------------


def test_password_guesser_is_throttled_while_the_user_logs_in_from_elsewhere(certs, passwd_path):
    """A guesser on 127.0.0.1 tries passwords for alice; the real alice is on 127.0.0.2."""
    with run_server(certs, passwd_path) as server:
        # Waits of 30 s and more: the test never races the clock (the waits' lengths and
        # how a client obeys them are the tests after this one).
        server.throttle = LoginThrottle(base_delay=30.0)
        guesser = ClientFrom(server.address, certs.ca_cert, "127.0.0.1")
        guesser.expect("welcome")
        codes = [
            guesser.request(type="login", user="alice", password=f"guess-{n}")["code"]
            for n in range(5)
        ]
        assert codes == ["auth_failed"] * 5
        assert guesser.wait_closed() == []  # five failures close the connection

        guesser = ClientFrom(server.address, certs.ca_cert, "127.0.0.1")
        guesser.expect("welcome")
        tries = [
            ("alice", "guess-5"),
            ("alice", USERS["alice"]),  # even the right password is refused, unchecked
            ("bob", USERS["bob"]),  # and so is every user from this address
            ("alice", "guess-6"),
            ("alice", "guess-7"),
        ]
        replies = [guesser.request(type="login", user=u, password=p) for u, p in tries]
        assert [reply["code"] for reply in replies] == ["rate_limited"] * 5
        waits = [reply["retry_after"] for reply in replies]
        assert 29 < waits[0] <= 30.0  # counted from the fifth failure
        # Refused tries are not checked and do not lengthen the wait: the same promise.
        assert all(later <= earlier for earlier, later in itertools.pairwise(waits))
        assert waits[0] - waits[-1] < 5
        assert guesser.wait_closed() == []  # refused logins count as failures too

        alice = ClientFrom(server.address, certs.ca_cert, "127.0.0.2")
        assert alice.login("alice", USERS["alice"])["type"] == "login_ok"
        bob = ClientFrom(server.address, certs.ca_cert, "127.0.0.2")
        assert bob.login("bob", USERS["bob"])["type"] == "login_ok"
        alice.request(type="join", room="general")
        assert alice.request(type="send", room="general", text="made it")["id"] == 1

        guesser = ClientFrom(server.address, certs.ca_cert, "127.0.0.1")
        guesser.expect("welcome")  # alice's success does not unblock the guessing address
        reply = guesser.request(type="login", user="alice", password=USERS["alice"])
        assert reply["code"] == "rate_limited" and 0 < reply["retry_after"] <= waits[-1]
        for client in (guesser, alice, bob):
            client.close()
    print(f"guesser: waits {waits}, then {reply['retry_after']}")


def obey(client: ClientFrom, user: str, password: str) -> tuple[Frame, list[float]]:
    """Log in as a well-behaved client: on rate_limited, wait exactly retry_after, try again.

    The wait is the server's instruction, so this sleep is the behaviour under test.
    """
    waits: list[float] = []
    while (reply := client.request(type="login", user=user, password=password))[
        "type"
    ] == "error" and reply["code"] == "rate_limited":
        waits.append(reply["retry_after"])
        time.sleep(reply["retry_after"])
    return reply, waits


@pytest.mark.parametrize(
    ("key", "guesses"),
    [
        ("user+address", [("alice", "127.0.0.3")] * 5),
        ("address", [(user, "127.0.0.3") for user in ("bob", "carol", "dave", "erin", "bob")]),
        ("user", [("alice", f"127.0.1.{n}") for n in range(20)]),
    ],
)
def test_a_client_obeying_retry_after_gets_in(certs, passwd_path, key, guesses):
    """Each key in turn throttles alice on 127.0.0.3; obeying retry_after gets her in, once
    a wrong password after the wait doubled it; alice on a second address meanwhile is
    never kept waiting by the user+address and address keys."""
    with run_server(certs, passwd_path) as server:
        for user, source in guesses:
            guesser = ClientFrom(server.address, certs.ca_cert, source)
            guesser.expect("welcome")
            assert guesser.request(type="login", user=user, password="wrong")["code"] == (
                "auth_failed"
            )
            guesser.close()
        first = ClientFrom(server.address, certs.ca_cert, "127.0.0.3")
        first.expect("welcome")
        reply, waits = obey(first, "alice", "still wrong")  # checked once the wait is over
        assert reply["code"] == "auth_failed"
        assert len(waits) == 1 and 0 < waits[0] <= 1.0
        elsewhere = ClientFrom(server.address, certs.ca_cert, "127.0.0.4")
        elsewhere.expect("welcome")
        other = elsewhere.request(type="login", user="alice", password=USERS["alice"])
        if key == "user":  # the per-user count applies from every address, briefly
            assert other["code"] == "rate_limited" and 1.0 < other["retry_after"] <= 2.0
        else:
            assert other["type"] == "login_ok"
        reply, more = obey(first, "alice", USERS["alice"])
        assert reply["type"] == "login_ok"
        assert len(more) == 1 and 1.0 < more[0] <= 2.0  # doubled by the checked failure
        for client in (first, elsewhere):
            client.close()
    print(f"{key}: waits {waits} then auth_failed; {more} then login_ok")


# --- connection limits --------------------------------------------------------------------


def test_per_address_cap(certs, passwd_path):
    """Three connections from 127.0.0.1 are allowed; the fourth gets server_busy."""
    with run_server(certs, passwd_path, Limits(max_per_address=3)) as server:
        first = [ClientFrom(server.address, certs.ca_cert, "127.0.0.1") for _ in range(3)]
        for client in first:
            client.expect("welcome")
        busy = ClientFrom(server.address, certs.ca_cert, "127.0.0.1")
        frames = busy.wait_closed()
        assert [(frame["type"], frame["code"]) for frame in frames] == [("error", "server_busy")]
        elsewhere = logged_in(server, certs, "bob", "127.0.0.2")
        assert elsewhere.request(type="ping")["type"] == "pong"

        first[0].close()
        wait_until(lambda: connections_from(server, "127.0.0.1") == 2)
        again = logged_in(server, certs, "alice", "127.0.0.1")
        assert again.request(type="ping")["type"] == "pong"
        for client in [*first, elsewhere, again]:
            client.close()


def test_per_address_cap_over_ipv6_counts_the_64(certs, passwd_path):
    """On ::1 the cap counts the /64 (one IPv6 host can use any address in it)."""
    with run_server(certs, passwd_path, Limits(max_per_address=2), host="::1") as server:
        first = [ChatClient(server.address, certs.ca_cert) for _ in range(2)]
        for client in first:
            client.expect("welcome")
        assert {c.peer for c in server.connections()} == {"::/64"}
        busy = ChatClient(server.address, certs.ca_cert)
        assert [frame["code"] for frame in busy.wait_closed()] == ["server_busy"]
        reply = first[0].request(type="login", user="alice", password=USERS["alice"])
        assert reply["type"] == "login_ok"
        for client in [*first, busy]:
            client.close()


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("192.0.2.7", "192.0.2.7"),
        ("::1", "::/64"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_address_key_is_the_ipv4_address_or_the_ipv6_64(host, key):
    assert address_key(host) == key


def test_total_connection_cap(certs, passwd_path):
    """With max_connections=3, a fourth client from any address gets server_busy."""
    with run_server(certs, passwd_path, Limits(max_connections=3)) as server:
        clients = [ClientFrom(server.address, certs.ca_cert, f"127.0.0.{n}") for n in (1, 2, 3)]
        for client in clients:
            client.expect("welcome")
        busy = ClientFrom(server.address, certs.ca_cert, "127.0.0.4")
        assert [frame["code"] for frame in busy.wait_closed()] == ["server_busy"]
        assert clients[0].request(type="ping")["type"] == "pong"  # the others are served

        clients[1].close()
        wait_until(lambda: len(server.connections()) == 2)
        late = logged_in(server, certs, "carol", "127.0.0.4")
        assert late.request(type="ping")["type"] == "pong"
        for client in [*clients, late]:
            client.close()


# --- slowloris and deadlines --------------------------------------------------------------


def test_stalled_partial_frame_is_dropped_but_an_idle_client_is_not(certs, passwd_path):
    """bob sends half a frame and stalls; alice, silent but with no partial frame, stays."""
    with run_server(certs, passwd_path, Limits(partial_timeout=0.3)) as server:
        alice = logged_in(server, certs, "alice")
        alice.request(type="join", room="general")  # alice is silent from here on
        bob = logged_in(server, certs, "bob")
        bob.request(type="join", room="general")
        assert alice.expect("presence", user="bob", event="join")
        bob.send_raw(b'{"type":"send","room":"general","te')
        frames = bob.wait_closed()
        assert [(frame["type"], frame["code"]) for frame in frames] == [("error", "bad_frame")]
        assert alice.expect("presence", user="bob", event="leave")
        # alice has been silent for longer than the partial timeout and is still served.
        assert alice.request(type="ping")["type"] == "pong"
        assert not [frame for frame in alice.backlog if frame["type"] == "error"]
        alice.close()


def test_trickling_a_frame_byte_by_byte_does_not_reset_the_deadline(certs, passwd_path):
    """A client sends one byte of a frame every 50 ms and never a newline."""
    with run_server(certs, passwd_path, Limits(partial_timeout=0.3)) as server:
        trickler = ClientFrom(server.address, certs.ca_cert)
        trickler.expect("welcome")
        trickle = iter(b'{"type":"ping","ref":"' + b"x" * 200)
        sent = 0
        frames: list[Frame] = []
        while not frames:  # wait 50 ms for the server's verdict, else send another byte
            assert sent < 150, "the trickler was never dropped"
            with contextlib.suppress(TimeoutError):
                frames.append(trickler.recv(timeout=0.05))
                break
            trickler.send_raw(bytes([next(trickle)]))
            sent += 1
        assert sent >= 3  # it did trickle for a while
        frames += trickler.wait_closed()
        assert [(frame["type"], frame["code"]) for frame in frames] == [("error", "bad_frame")]


def test_handshake_deadline_closes_a_silent_tcp_connection(certs, passwd_path):
    """Raw TCP connections that send nothing, or half a ClientHello, are closed."""
    with run_server(certs, passwd_path, Limits(handshake_timeout=0.3)) as server:
        silent = socket.create_connection(server.address, timeout=10)
        partial = socket.create_connection(server.address, timeout=10)
        partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a hello's start
        alice = logged_in(server, certs, "alice")  # others are served meanwhile
        assert alice.request(type="ping")["type"] == "pong"
        for sock in (silent, partial):
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1024) == b""  # the server closed it
            sock.close()
        wait_until(lambda: len(server.connections()) == 1)
        alice.close()


# --- login storms and the bcrypt gate -----------------------------------------------------


class HeldAuthenticate:
    """Wraps ``authenticate``: every check waits for ``release`` before running."""

    def __init__(self, real: Callable[[str, str], bool]) -> None:
        self.real = real
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, user: str, password: str) -> bool:
        self.entered.set()
        assert self.release.wait(10)
        return self.real(user, password)


@pytest.mark.parametrize("line_length", [0, 1])
def test_login_storm_is_capped_by_the_bcrypt_gate(certs, passwd_path, line_length):
    """One check at a time and ``line_length`` in line: the next login gets server_busy."""
    limits = Limits(bcrypt_concurrent=1, bcrypt_waiting=line_length)
    with run_server(certs, passwd_path, limits) as server:
        carol = logged_in(server, certs, "carol")
        carol.request(type="join", room="general")
        held = HeldAuthenticate(server.authenticate)
        server.authenticate = held
        waiting: list[ClientFrom] = []
        try:
            first = ClientFrom(server.address, certs.ca_cert, "127.0.0.2")
            first.expect("welcome")
            first.send(type="login", user="alice", password=USERS["alice"], ref="a")
            assert held.entered.wait(5)  # alice's check holds the only slot
            for n in range(line_length):
                client = ClientFrom(server.address, certs.ca_cert, "127.0.0.3")
                client.expect("welcome")
                client.send(type="login", user="bob", password=USERS["bob"], ref="b")
                waiting.append(client)
                wait_until(lambda n=n: server._gate._waiting == n + 1)  # bob waits in line
            late = ClientFrom(server.address, certs.ca_cert, "127.0.0.4")
            late.expect("welcome")
            busy = late.request(type="login", user="dave", password=USERS["dave"], ref="d")
            assert busy["code"] == "server_busy" and busy["ref"] == "d"
            assert busy["retry_after"] > 0
            # chat traffic is not starved while the logins wait
            assert carol.request(type="send", room="general", text="hello")["id"] == 1
            assert carol.request(type="ping")["type"] == "pong"
        finally:
            held.release.set()
        assert first.wait_for(lambda f: f.get("ref") == "a")["type"] == "login_ok"
        for client in waiting:
            assert client.wait_for(lambda f: f.get("ref") == "b")["type"] == "login_ok"
        # server_busy is not a failed login: dave just tries again
        again = late.request(type="login", user="dave", password=USERS["dave"])
        assert again["type"] == "login_ok"
        for client in (carol, first, *waiting, late):
            client.close()


# --- mutual TLS ---------------------------------------------------------------------------


def make_client_cert(
    certs: CertPaths,
    path: Path,
    common_name: str,
    *,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
    self_signed: bool = False,
) -> Path:
    """Write a client certificate (and its key) for ``common_name`` to ``path``."""
    ca_cert = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer, signer = (subject, key) if self_signed else (ca_cert.subject, ca_key)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key_pem)
    return path


@contextlib.contextmanager
def run_server_with_context(
    certs: CertPaths, passwd: Path, context: ssl.SSLContext
) -> Iterator[Server]:
    """Like conftest's ``run_server``, but with a given TLS context."""
    before = set(threading.enumerate())
    with tempfile.TemporaryDirectory() as tmp:
        passwords = PasswordFile(passwd)
        with durable_hub(Path(tmp) / "data", passwords) as hub:
            server = Server(context, hub, passwords.verify, "127.0.0.1", 0, Limits())
            server.start()
            try:
                yield server
            finally:
                server.shutdown()
    for thread in set(threading.enumerate()) - before:
        thread.join(5)
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]


def login_reply(client: ChatClient, **frame: Any) -> Frame:
    client.expect("welcome")
    reply = client.request(type="login", **frame)
    client.close()
    return reply


def test_client_certificate_logs_in_without_a_password(certs, passwd_path, tmp_path):
    alice_cert = make_client_cert(certs, tmp_path / "alice.pem", "alice")
    mallory_cert = make_client_cert(certs, tmp_path / "mallory.pem", "mallory")
    context = make_server_context(certs.server, client_ca=certs.ca_cert)
    with run_server_with_context(certs, passwd_path, context) as server:

        def client(cert: Path | None = None) -> ClientFrom:
            return ClientFrom(server.address, certs.ca_cert, cert=cert)

        alice = client(alice_cert)
        alice.expect("welcome")
        reply = alice.request(type="login", user="alice")
        assert reply.pop("token")  # a certificate login gets a login token too
        assert reply == {"type": "login_ok", "user": "alice", "ref": alice.last_ref}
        alice.request(type="join", room="general")
        assert alice.request(type="send", room="general", text="no password")["id"] == 1
        alice.close()

        assert login_reply(client(), user="alice")["code"] == "auth_failed"  # no certificate
        assert login_reply(client(alice_cert), user="bob")["code"] == "auth_failed"
        assert login_reply(client(mallory_cert), user="mallory")["code"] == "auth_failed"
        # a password login still works, with or without a certificate
        reply = login_reply(client(alice_cert), user="bob", password=USERS["bob"])
        assert reply["type"] == "login_ok" and reply["user"] == "bob"
        assert login_reply(client(), user="carol", password=USERS["carol"])["type"] == "login_ok"


def test_untrusted_or_server_only_certificates_are_refused(certs, passwd_path, tmp_path):
    """CN=alice, but self-signed, or signed by the CA for server use only: TLS refuses it."""
    self_signed = make_client_cert(certs, tmp_path / "self.pem", "alice", self_signed=True)
    server_usage = make_client_cert(
        certs, tmp_path / "srv.pem", "alice", usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    context = make_server_context(certs.server, client_ca=certs.ca_cert)
    with run_server_with_context(certs, passwd_path, context) as server:
        for cert, alert in ((self_signed, "UNKNOWN_CA"), (server_usage, "UNSUPPORTED_CERT")):
            client = ClientFrom(server.address, certs.ca_cert, cert=cert)
            # TLS 1.3: the server's alert shows on the client's first read
            with pytest.raises(ssl.SSLError, match=alert):
                login_reply(client, user="alice")
            client.close()
        alice = ClientFrom(server.address, certs.ca_cert)  # the server carries on
        assert login_reply(alice, user="alice", password=USERS["alice"])["type"] == "login_ok"


def test_without_client_ca_a_certificate_is_not_a_login(certs, passwd_path, tmp_path):
    alice_cert = make_client_cert(certs, tmp_path / "alice.pem", "alice")
    with run_server(certs, passwd_path) as server:
        client = ClientFrom(server.address, certs.ca_cert, cert=alice_cert)
        assert login_reply(client, user="alice")["code"] == "auth_failed"


def test_cli_client_ca_option(certs, passwd_path, tmp_path):
    alice_cert = make_client_cert(certs, tmp_path / "alice.pem", "alice")
    args = ("--client-ca", str(certs.ca_cert))
    with ServerProcess(certs.server, passwd_path, tmp_path / "data", *args) as proc:
        client = ClientFrom(proc.address, certs.ca_cert, cert=alice_cert)
        assert login_reply(client, user="alice")["type"] == "login_ok"
        assert proc.terminate() == 0


# --- secrets ------------------------------------------------------------------------------


def test_passwords_never_reach_the_server_log(certs, passwd_path, tmp_path):
    """A whole session at DEBUG, with right and wrong passwords everywhere a client can put
    them; then SIGTERM. No password appears in the log, the argv or the data files."""
    wrong = ["Wrong-Guess-7f3a", "Wrong-Guess-9c21-\u00e9\u00e8"]
    secrets = [USERS["alice"], USERS["bob"], *wrong]
    data_dir = tmp_path / "data"
    with ServerProcess(certs.server, passwd_path, data_dir, "--log-level", "DEBUG") as proc:

        def client() -> ClientFrom:
            return ClientFrom(proc.address, certs.ca_cert)

        alice = client()
        assert alice.login("alice", wrong[0])["code"] == "auth_failed"
        assert alice.request(type="login", user="nosuchuser", password=wrong[1])["code"] == (
            "auth_failed"
        )
        assert alice.request(type="login", user="alice", password=USERS["alice"])["type"] == (
            "login_ok"
        )
        bob = client()
        assert bob.login("bob", USERS["bob"])["type"] == "login_ok"
        for user in (alice, bob):
            user.request(type="join", room="general")
        alice.request(type="send", room="general", text="hello")
        alice.request(type="dm", to="bob", text="psst")
        alice.request(type="history", room="general")
        bad = [
            line(type="login", user="alice", password=USERS["alice"], extra=USERS["alice"]),
            line(type="send", room="general", text="x", password=USERS["bob"]),
            line(type=USERS["alice"]),
            line(type="login", user=USERS["alice"], password=USERS["alice"]),
            (USERS["alice"] + " not json\n").encode(),
            line(type="login", user="alice", password=USERS["alice"] * 100),  # too long
        ]
        for raw in bad:
            alice.send_raw(raw)
            assert alice.expect("error")["code"] == "bad_frame"
        assert alice.request(type="logout")["type"] == "bye"
        alice.wait_closed()

        # connections that end badly: DEBUG logs why, and must not log what they sent
        big = client()
        big.expect("welcome")
        big.send_raw(USERS["bob"].encode() * 6000)  # 78 kB, no newline
        assert big.wait_closed()[-1]["code"] == "frame_too_large"
        reset = client()
        reset.expect("welcome")
        reset.send_raw(b'{"type":"login","user":"bob","password":"' + USERS["bob"].encode())
        reset.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        reset.sock.close()  # RST
        with socket.create_connection(proc.address, timeout=10) as plain:  # no TLS at all
            plain.sendall(line(type="login", user="alice", password=USERS["alice"]))
            with contextlib.suppress(OSError):
                plain.recv(1024)

        assert bob.expect("presence", user="alice", event="leave")
        assert proc.terminate() == 0
        assert bob.wait_closed()[-1]["code"] == "shutting_down"

    log = "".join(proc.log)
    assert " DEBUG securechat.server: " in log  # the DEBUG level took effect
    assert "stopped" in log
    for secret in secrets:
        assert secret not in log
        assert not any(secret in arg for arg in proc.proc.args)
    for path in data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(secret.encode() in content for secret in secrets), path
