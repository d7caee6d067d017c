"""``securechat-client`` reconnects and resumes across real server restarts.

The server runs as a subprocess (:class:`ServerProcess`) on one data directory and, when
restarted, on the same port; alice's client runs as a subprocess in pipe mode with a
stdin that stays open; the other users are :class:`ChatClient` test clients.

To make "messages sent while alice was away" deterministic rather than a race with
alice's backoff, alice's client is stopped (SIGSTOP) once it has noticed the loss, the
server is restarted and written to, and only then is the client let go on (SIGCONT):
those messages can only reach alice through the catch-up (``history after=``). A
:class:`Proxy` between alice and the server loses a connection the hard way: what the
server wrote to it, then the connection itself.
"""

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from securechat.admin.certs import make_certs
from securechat.server.cli import make_server_context
from securechat.server.passwd import set_password
from tests.chatclient import ChatClient
from tests.client.test_client_cli import CLOCK, TIMEOUT, LiveClient, client_argv
from tests.client.test_client_tty import ROOT, Pane
from tests.conftest import USERS
from tests.serverprocess import ServerProcess

FAST = ("--frame-rate", "1000", "--frame-burst", "1000")  # the test clients send quickly
MESSAGE = re.compile(rf"^{CLOCK} #(\w+) \[(\d+)\] (\w+): (.*)$")


class PatientClient(LiveClient):
    """Waits up to ``TIMEOUT`` for each line: restarts are slow on a loaded machine."""

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> str:
        return super().wait_for(pattern, timeout)

    def next_line(self, pattern: str, timeout: float = TIMEOUT) -> str:
        return super().next_line(pattern, timeout)


class Proxy:
    """A TCP relay in front of the server that can lose a connection the hard way.

    :meth:`hold` drops what the server sends from then on (it counts as sent: the
    server wrote it); :meth:`cut` resets both ends of every connection it relays, so
    nothing held arrives. New connections go through as before.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.holding = threading.Event()
        self._lock = threading.Lock()
        self._relays: list[tuple[list[socket.socket], list[threading.Thread]]] = []
        self._cutting = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.target)
            pumps = [
                threading.Thread(target=self._pump, args=(client, server, False), daemon=True),
                threading.Thread(target=self._pump, args=(server, client, True), daemon=True),
            ]
            with self._lock:
                self._relays.append(([client, server], pumps))
            for pump in pumps:
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not (from_server and self.holding.is_set()):
                    sink.sendall(data)
            if not self._cutting:  # an orderly end: pass it on
                sink.shutdown(socket.SHUT_WR)

    def hold(self) -> None:
        self.holding.set()

    def cut(self) -> None:
        with self._lock:
            relays, self._relays = self._relays, []
            self._cutting = True
        for socks, pumps in relays:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RD)  # wakes the pumps; sends nothing
            for pump in pumps:
                pump.join(TIMEOUT)
            for sock in socks:
                sock.close()  # a reset, with linger 0
        with self._lock:
            self._cutting = False
        self.holding.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()


class Cluster:
    """One data directory, the server on it (restartable on the same port), the clients."""

    def __init__(self, certs, passwd: Path, tmp_path: Path) -> None:
        self.certs, self.passwd, self.tmp_path = certs, passwd, tmp_path
        self.data = tmp_path / "data"
        self.server = ServerProcess(certs.server, passwd, self.data, *FAST)
        self.port = self.server.address[1]
        self.clients: list[ChatClient] = []
        self.alice: PatientClient | None = None
        self.proxy: Proxy | None = None

    def restart(self, cert: Path | None = None, passwd: Path | None = None) -> None:
        """Start the server again on the same port and data (the old one must be gone)."""
        assert self.server.proc.poll() is not None
        self.server = ServerProcess(
            cert or self.certs.server, passwd or self.passwd, self.data,
            *FAST, "--port", str(self.port),
        )  # fmt: skip
        assert self.server.address[1] == self.port

    def login(self, user: str) -> ChatClient:
        client = ChatClient(self.server.address, self.certs.ca_cert)
        self.clients.append(client)
        assert client.login(user, USERS[user])["type"] == "login_ok"
        return client

    def start_alice(self, *args: str, proxied: bool = False) -> PatientClient:
        """Alice's client; ``proxied``: through :attr:`proxy`, which can cut her off."""
        address = self.server.address
        if proxied:
            self.proxy = Proxy(address)
            address = self.proxy.address
        argv = client_argv(address, self.certs.ca_cert, "alice", *args)
        self.alice = PatientClient(argv, self.tmp_path, USERS["alice"])
        return self.alice

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        if self.alice is not None:
            if self.alice.proc.poll() is None:
                os.kill(self.alice.proc.pid, signal.SIGCONT)  # a stopped process cannot die
            self.alice.kill()
        for client in self.clients:
            client.close()
        if self.server.proc.poll() is None:
            self.server.kill()


@pytest.fixture
def cluster(certs, passwd_path, tmp_path) -> Iterator[Cluster]:
    cluster = Cluster(certs, passwd_path, tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def seen_or_wait(client: LiveClient, pattern: str) -> str:
    """A line matching ``pattern`` that was read already, or the next one that comes."""
    for line in client.seen:
        if re.search(pattern, line):
            return line
    return client.wait_for(pattern)


def messages(lines: list[str], room: str = "general") -> list[tuple[int, str, str]]:
    """The (id, user, text) of the messages of ``room`` shown, in the order shown."""
    found = [MESSAGE.match(line) for line in lines]
    return [(int(m[2]), m[3], m[4]) for m in found if m and m[1] == room]


def stopped(client: LiveClient) -> "StoppedProcess":
    return StoppedProcess(client.proc.pid)


class StoppedProcess:
    """SIGSTOP for the ``with`` block, SIGCONT after it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def test_resume_after_sigterm_shows_each_message_once(cluster: Cluster) -> None:
    alice = cluster.start_alice("/join", "general")
    alice.wait_for(r"^\* joined #general \(1 member: alice\)$")
    bob = cluster.login("bob")
    bob.request(type="join", room="general")
    alice.wait_for(r"^\* bob joined #general$")
    for n in (1, 2, 3):
        assert bob.request(type="send", room="general", text=f"m{n}")["id"] == n
    alice.wait_for(rf"^{CLOCK} #general \[3\] bob: m3$")

    assert cluster.server.terminate() == 0
    alice.wait_for(r"^! shutting_down: ")
    alice.wait_for(
        r"^\* connection lost \(the server closed the connection \(shutting_down\)\); "
        r"reconnecting in (0\.[5-9]|1\.0) s$"
    )
    # While the server is down nothing can be sent: what alice types waits.
    alice.send("typed while offline")
    seen_or_wait(alice, r"^\* offline: what you type is sent once reconnected$")
    seen_or_wait(alice, r"^\* cannot reconnect: cannot connect to .*; retrying in [\d.]+ s$")

    with stopped(alice):
        cluster.restart()
        bob = cluster.login("bob")
        assert bob.request(type="join", room="general")["last_id"] == 3
        for n in (4, 5):  # before alice is back: she can only get them by catching up
            assert bob.request(type="send", room="general", text=f"m{n}")["id"] == n
    alice.wait_for(r"^\* reconnected$")
    alice.next_line(r"^\* rejoined #general \(2 members: alice, bob\)$")
    alice.next_line(rf"^{CLOCK} #general \[4\] bob: m4$")
    alice.next_line(rf"^{CLOCK} #general \[5\] bob: m5$")
    alice.next_line(rf"^{CLOCK} #general \[6\] alice: typed while offline$")
    assert bob.expect("message", id=6)["text"] == "typed while offline"
    assert bob.request(type="send", room="general", text="m6")["id"] == 7  # live
    alice.next_line(rf"^{CLOCK} #general \[7\] bob: m6$")

    assert alice.finish() == (0, "")
    shown = messages(alice.seen)
    assert [text for _, user, text in shown if user == "bob"] == [f"m{n}" for n in range(1, 7)]
    assert [message_id for message_id, _, _ in shown] == list(range(1, 8))
    assert sum("typed while offline" in line for line in alice.seen) == 1


def test_resume_after_sigkill_keeps_rooms_order_and_current_room(cluster: Cluster) -> None:
    bob = cluster.login("bob")
    for room in ("general", "random"):
        bob.request(type="join", room=room)
    # random joined first, then general; then random made current again.
    alice = cluster.start_alice("/join", "random", "/join", "general", "/switch", "random")
    alice.wait_for(r"^\* joined #random \(2 members: alice, bob\)$")
    alice.wait_for(r"^\* joined #general \(2 members: alice, bob\)$")
    for n in (1, 2, 3):
        bob.request(type="send", room="general", text=f"m{n}")
    bob.request(type="send", room="random", text="r1")
    alice.wait_for(rf"^{CLOCK} #random \[1\] bob: r1$")

    cluster.server.kill()
    alice.wait_for(r"^\* connection lost \(.*\); reconnecting in [\d.]+ s$")
    with stopped(alice):
        cluster.restart()
        bob = cluster.login("bob")
        for room in ("general", "random"):
            bob.request(type="join", room=room)
        for n in (4, 5):
            bob.request(type="send", room="general", text=f"m{n}")
    alice.wait_for(r"^\* reconnected$")
    alice.next_line(r"^\* rejoined #random \(2 members: alice, bob\)$")
    alice.next_line(r"^\* rejoined #general \(2 members: alice, bob\)$")
    alice.next_line(rf"^{CLOCK} #general \[4\] bob: m4$")
    alice.next_line(rf"^{CLOCK} #general \[5\] bob: m5$")
    # The current room is still random.
    alice.send("back in random")
    alice.next_line(rf"^{CLOCK} #random \[2\] alice: back in random$")
    bob.request(type="send", room="general", text="m6")
    alice.next_line(rf"^{CLOCK} #general \[6\] bob: m6$")

    assert alice.finish() == (0, "")
    assert [text for _, _, text in messages(alice.seen)] == [f"m{n}" for n in range(1, 7)]
    assert [text for _, _, text in messages(alice.seen, "random")] == ["r1", "back in random"]


def test_messages_sent_during_the_reconnect_show_once(cluster: Cluster) -> None:
    """No stopping: bob writes while alice's client may be anywhere in its reconnect."""
    alice = cluster.start_alice("/join", "general")
    alice.wait_for(r"^\* joined #general \(1 member: alice\)$")
    bob = cluster.login("bob")
    bob.request(type="join", room="general")
    for n in (1, 2, 3):
        bob.request(type="send", room="general", text=f"m{n}")
    alice.wait_for(rf"^{CLOCK} #general \[3\] bob: m3$")

    cluster.server.kill()
    alice.wait_for(r"^\* connection lost ")
    cluster.restart()
    bob = cluster.login("bob")
    bob.request(type="join", room="general")
    for n in (4, 5):
        bob.request(type="send", room="general", text=f"m{n}")
    seen_or_wait(alice, r"^\* rejoined #general ")
    for n in range(6, 30):  # while alice may still be catching up
        bob.request(type="send", room="general", text=f"m{n}")
    alice.wait_for(rf"^{CLOCK} #general \[29\] bob: m29$")

    assert alice.finish() == (0, "")
    shown = messages(alice.seen)
    assert [text for _, _, text in shown] == [f"m{n}" for n in range(1, 30)]
    assert [message_id for message_id, _, _ in shown] == list(range(1, 30))


def test_dms_lost_with_a_dying_connection_show_after_the_reconnect_once(cluster: Cluster) -> None:
    alice = cluster.start_alice("/join", "general", proxied=True)
    assert cluster.proxy is not None
    alice.wait_for(r"^\* joined #general")
    bob = cluster.login("bob")
    first = bob.request(type="dm", to="alice", text="before")["id"]
    alice.wait_for(rf"^{CLOCK} \[dm {first}\] bob -> alice: before$")
    # The server writes these to alice's connection (and counts them as delivered),
    # but the network loses them, then the connection.
    cluster.proxy.hold()
    lost = [bob.request(type="dm", to="alice", text=f"lost {n}")["id"] for n in (1, 2, 3)]
    with stopped(alice):
        cluster.proxy.cut()
        away = [bob.request(type="dm", to="alice", text=f"away {n}")["id"] for n in (1, 2)]
    alice.wait_for(r"^\* connection lost ")
    texts = [f"lost {n}" for n in (1, 2, 3)] + [f"away {n}" for n in (1, 2)]
    for dm_id, text in zip(lost + away, texts, strict=True):  # (right after the login)
        alice.wait_for(rf"^{CLOCK} \[dm {dm_id}\] bob -> alice: {text}$")
    seen_or_wait(alice, r"^\* rejoined #general ")
    live = bob.request(type="dm", to="alice", text="live")["id"]
    alice.wait_for(rf"^{CLOCK} \[dm {live}\] bob -> alice: live$")

    assert alice.finish() == (0, "")
    shown = [line for line in alice.seen if re.match(rf"^{CLOCK} \[dm \d+\] ", line)]
    ids = [int(re.findall(r"\[dm (\d+)\]", line)[0]) for line in shown]
    assert ids == [first, *lost, *away, live] == list(range(first, live + 1))


def test_refused_login_after_restart_exits_3(cluster: Cluster, tmp_path: Path) -> None:
    alice = cluster.start_alice("/join", "general")
    alice.wait_for(r"^\* joined #general")
    changed = tmp_path / "changed.passwd"
    changed.write_bytes(cluster.passwd.read_bytes())
    set_password(changed, "alice", "a-new-password", rounds=4)
    assert cluster.server.terminate() == 0
    alice.wait_for(r"^\* connection lost ")
    cluster.restart(passwd=changed)
    assert alice.proc.wait(TIMEOUT) == 3
    assert alice.proc.stderr is not None
    stderr = alice.proc.stderr.read()
    assert re.fullmatch(r"securechat-client: login failed: auth_failed: .*\n", stderr), stderr


def test_untrusted_server_after_restart_exits_1(cluster: Cluster, tmp_path: Path) -> None:
    alice = cluster.start_alice("/join", "general")
    alice.wait_for(r"^\* joined #general")
    impostor = make_certs(tmp_path / "impostor")
    assert cluster.server.terminate() == 0
    alice.wait_for(r"^\* connection lost ")
    cluster.restart(cert=impostor.server)
    assert alice.proc.wait(TIMEOUT) == 1
    assert alice.proc.stderr is not None
    stderr = alice.proc.stderr.read()
    assert stderr.startswith("securechat-client: cannot verify the server's certificate")
    assert stderr.count("\n") == 1, stderr


def test_stdin_end_while_offline_with_nothing_to_send_exits_0(cluster: Cluster) -> None:
    alice = cluster.start_alice("/join", "general")
    alice.wait_for(r"^\* joined #general")
    cluster.server.kill()
    alice.wait_for(r"^\* connection lost ")
    assert alice.finish() == (0, "")


def test_lines_typed_while_offline_are_sent_before_exiting(cluster: Cluster) -> None:
    """Piped input that ends while offline still gets sent once the server is back."""
    alice = cluster.start_alice("/join", "general")
    alice.wait_for(r"^\* joined #general")
    cluster.server.kill()
    alice.wait_for(r"^\* connection lost ")
    alice.send("one")
    alice.send("/msg bob two")
    assert alice.proc.stdin is not None
    alice.proc.stdin.close()  # the end of the input, with two lines waiting
    cluster.restart()
    assert alice.proc.wait(TIMEOUT) == 0
    alice.wait_for(rf"^{CLOCK} #general \[1\] alice: one$")
    alice.wait_for(rf"^{CLOCK} \[dm \d+\] alice -> bob: two$")
    bob = cluster.login("bob")
    assert bob.request(type="dm_history", **{"with": "alice"})["messages"][0]["text"] == "two"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_terminal_mode_shows_offline_and_reconnects(cluster: Cluster, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TMUX")}
    env.update(PYTHONPATH=str(ROOT), SECURECHAT_PASSWORD=USERS["alice"], TERM="xterm")
    client = shlex.join(client_argv(cluster.server.address, cluster.certs.ca_cert, "alice",
                                    "/join", "general"))  # fmt: skip
    command = f'cd {shlex.quote(str(tmp_path))} && {client}; echo "[exit $?]"'
    pane = Pane(tmp_path, command, env)
    try:
        pane.wait_for(lambda s: s[-1] == "#general>" and "* joined #general (1 member: alice)" in s)
        cluster.server.kill()
        pane.wait_for(lambda s: s[-1] == "(offline) #general>" and any(
            line.startswith("* connection lost (") for line in s))  # fmt: skip
        # Retry lines may print while typing (and a key pressed at that moment may be
        # echoed on the screen), so only what the client did with the line is checked.
        pane.keys("typed offline", literal=True)
        pane.keys("Enter")
        pane.wait_for(lambda s: "* offline: what you type is sent once reconnected" in s)
        cluster.restart()
        screen = pane.wait_for(
            lambda s: s[-1] == "#general>" and "alice: typed offline" in s[-2], timeout=TIMEOUT
        )
        assert "* reconnected" in screen
        assert "* rejoined #general (1 member: alice)" in screen
        assert re.fullmatch(rf"{CLOCK} #general \[1\] alice: typed offline", screen[-2])
        pane.keys("C-d")
        pane.wait_for(lambda s: "[exit 0]" in s)
    finally:
        pane.close()


# ---------------------------------------------------------------- a scripted server


class ScriptedServer:
    """A TLS server that plays one script per connection, in turn, in a thread.

    For what a real server does only by chance: answers lost with the connection, a
    live message arriving before the catch-up page, pages shorter than asked.
    """

    def __init__(self, certs, *scripts) -> None:
        self.context = make_server_context(certs.server)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.address = self.listener.getsockname()[:2]
        self.scripts = scripts
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            for script in self.scripts:
                conn, _ = self.listener.accept()
                conn.settimeout(TIMEOUT)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    io = tls.makefile("rwb")
                    send, read = partial(_send, io), partial(_read, io)
                    send(type="welcome", server="securechat", version="x", protocol=1)
                    login = read()
                    assert login["type"] == "login"
                    send(type="login_ok", user="alice", ref=login["ref"])
                    script(send, read)
                    io.close()
        except BaseException as exc:  # reported by close()
            self.error = exc

    def close(self) -> None:
        self.thread.join(TIMEOUT)
        self.listener.close()
        assert not self.thread.is_alive(), "the scripts did not finish"
        if self.error is not None:
            raise self.error


def _send(io: BinaryIO, **frame: Any) -> None:
    io.write(json.dumps(frame).encode() + b"\n")
    io.flush()


def _read(io: BinaryIO) -> dict | None:
    """The next frame; None when the client has closed the connection."""
    line = io.readline()
    return json.loads(line) if line else None


TS = "2026-11-26T12:00:00.000Z"


def record(room: str, message_id: int, user: str, text: str) -> dict:
    return {"room": room, "id": message_id, "user": user, "text": text, "ts": TS}


def test_scripted_resume_resends_lost_sends_and_holds_live_messages(certs, tmp_path) -> None:
    def first(send, read) -> None:
        join = read()
        assert join["room"] == "general"
        history = [record("general", 1, "bob", "g1"), record("general", 2, "bob", "g2")]
        send(type="joined", room="general", members=["alice", "bob"], last_id=2,
             history=history, ref=join["ref"])  # fmt: skip
        join = read()
        assert join["room"] == "random"
        send(type="joined", room="random", members=["alice"], last_id=5,
             history=[record("random", 5, "bob", "old r5")], ref=join["ref"])  # fmt: skip
        # Two sends come; neither is answered before the connection drops. The server
        # stored the first ("a" becomes id 4), not the second.
        assert (read()["text"], read()["text"]) == ("a", "b")

    def second(send, read) -> None:
        joins = [read(), read()]  # rejoined in the order first joined
        assert [frame["room"] for frame in joins] == ["general", "random"]
        send(type="joined", room="general", members=["alice", "bob"], last_id=6, history=[],
             ref=joins[0]["ref"])  # fmt: skip
        # Live, before the catch-up: shown only after the missed messages, and once.
        send(type="message", **record("general", 7, "bob", "g7 live"))
        # random's history is not the one alice saw (last id 1 < 5): shown afresh.
        send(type="joined", room="random", members=["alice"], last_id=1,
             history=[record("random", 1, "carol", "new r1")], ref=joins[1]["ref"])  # fmt: skip
        page = read()
        assert page == {"type": "history", "room": "general", "after": 2, "limit": 200,
                        "ref": page["ref"]}  # fmt: skip
        # Short (a page too big for one frame is cut): not the end, as 6 is not reached.
        send(
            type="history",
            room="general",
            ref=page["ref"],
            messages=[record("general", 3, "bob", "g3"), record("general", 4, "alice", "a")],
        )
        page = read()
        assert (page["after"], page["limit"]) == (4, 200)
        send(type="history", room="general", ref=page["ref"], messages=[
            record("general", 6, "bob", "g6"), record("general", 7, "bob", "g7 live")])  # fmt: skip
        resent = read()  # "a" was shown by the catch-up; "b" was not: sent again
        assert (resent["type"], resent["room"], resent["text"]) == ("send", "general", "b")
        send(type="message", ref=resent["ref"], **record("general", 8, "alice", "b"))
        logout = read()
        assert logout["type"] == "logout"
        send(type="bye", ref=logout["ref"])

    server = ScriptedServer(certs, first, second)
    argv = client_argv(server.address, certs.ca_cert, "alice",
                       "/join", "general", "/join", "random", "/switch", "general")  # fmt: skip
    alice = PatientClient(argv, tmp_path, USERS["alice"])
    try:
        alice.send("a")
        alice.send("b")
        alice.wait_for(r"^\* reconnected$")
        status, stderr = alice.finish()
        alice.rest()
    finally:
        alice.kill()
        server.close()
    assert (status, stderr) == (0, "")
    out = alice.seen
    start = out.index("* reconnected")
    assert [re.sub(rf"^{CLOCK} ", "", line) for line in out[start:]] == [
        "* reconnected",
        "* rejoined #general (2 members: alice, bob)",
        "#general [3] bob: g3",
        "#general [4] alice: a",
        "#general [6] bob: g6",
        "#general [7] bob: g7 live",
        "* #random has a new history on the server; showing it afresh",
        "* joined #random (1 member: alice)",
        "#random [1] carol: new r1",
        "#general [8] alice: b",
    ]
    assert re.fullmatch(r"\* connection lost \(.*\); reconnecting in [\d.]+ s", out[start - 1])


def test_scripted_throttled_rejoin_is_retried_and_keeps_the_room(certs, tmp_path) -> None:
    def first(send, read) -> None:
        join = read()
        send(type="joined", room="general", members=["alice"], last_id=0, history=[],
             ref=join["ref"])  # fmt: skip

    def throttled(send, read) -> None:
        join = read()
        assert join["room"] == "general"
        send(type="error", code="rate_limited", message="slow down", retry_after=0.1,
             ref=join["ref"])  # fmt: skip
        assert read() is None  # the client hangs up and tries again later

    def third(send, read) -> None:
        join = read()
        send(type="joined", room="general", members=["alice"], last_id=0, history=[],
             ref=join["ref"])  # fmt: skip
        frame = read()
        assert (frame["type"], frame["room"], frame["text"]) == ("send", "general", "after")
        send(type="message", ref=frame["ref"], **record("general", 1, "alice", "after"))
        logout = read()
        send(type="bye", ref=logout["ref"])

    server = ScriptedServer(certs, first, throttled, third)
    argv = client_argv(server.address, certs.ca_cert, "alice", "/join", "general")
    alice = PatientClient(argv, tmp_path, USERS["alice"])
    try:
        alice.wait_for(r"^\* connection lost ")
        alice.wait_for(r"^\* cannot reconnect: rate_limited: slow down \(retry after 0\.1 s\); ")
        alice.wait_for(r"^\* reconnected$")
        alice.send("after")
        alice.wait_for(rf"^{CLOCK} #general \[1\] alice: after$")
        assert alice.finish() == (0, "")
    finally:
        alice.kill()
        server.close()
    assert not any(line.startswith("!") for line in alice.seen), alice.seen
