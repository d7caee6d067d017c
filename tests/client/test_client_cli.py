"""End-to-end tests of ``securechat-client`` as a subprocess, over real TLS.

The client runs with stdin a pipe (pipe mode) against the in-process server of the
``server`` fixture; other users are :class:`ChatClient` test clients.
"""

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from securechat.admin.certs import make_certs
from securechat.server.cli import make_server_context
from tests.chatclient import ChatClient
from tests.conftest import USERS, run_server
from tests.faults import faulty_server

ROOT = Path(__file__).parents[2]
CLOCK = r"\d\d:\d\d:\d\d"
TIMEOUT = 30


def client_env(password: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "SECURECHAT_PASSWORD"}
    env["PYTHONPATH"] = str(ROOT)
    if password is not None:
        env["SECURECHAT_PASSWORD"] = password
    return env


def client_argv(address: tuple[str, int], cafile: Path, user: str, *args: str) -> list[str]:
    host, port = address
    return [
        sys.executable,
        "-m",
        "securechat.client",
        "--user",
        user,
        "--host",
        host,
        "--port",
        str(port),
        "--cafile",
        str(cafile),
        *args,
    ]


def run_client(
    server,
    certs,
    cwd: Path,
    user: str,
    *args: str,
    input: str = "",
    password: str | None = "default",
    cafile: Path | None = None,
    address: tuple[str, int] | None = None,
) -> subprocess.CompletedProcess[str]:
    if password == "default":
        password = USERS[user]
    return subprocess.run(
        client_argv(address or server.address, cafile or certs.ca_cert, user, *args),
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=client_env(password),
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("securechat-client: "), result.stderr
    return lines[0]


class LiveClient:
    """The client as a running subprocess: write stdin lines, wait for stdout lines."""

    def __init__(self, argv: list[str], cwd: Path, password: str) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=client_env(password),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 10) -> str:
        """The next stdout line matching ``pattern`` (a regular expression)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.seen}") from None
            if line is None:
                raise AssertionError(f"client exited before {pattern!r}; saw {self.seen}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def next_line(self, pattern: str, timeout: float = 10) -> str:
        """The next stdout line, which must match ``pattern``."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s; saw {self.seen}") from None
        assert line is not None, f"client exited; saw {self.seen}"
        self.seen.append(line)
        assert re.search(pattern, line), (pattern, line)
        return line

    def rest(self, timeout: float = 10) -> list[str]:
        """The stdout lines not read yet, up to the end of the output."""
        lines = []
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
            lines.append(line)
        return lines

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> tuple[int, str]:
        """Close stdin, wait for the exit; the exit status and stderr."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        status = self.proc.wait(TIMEOUT)
        return status, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def live(server, certs, tmp_path):
    started: list[LiveClient] = []

    def start(user: str, *args: str, address: tuple[str, int] | None = None) -> LiveClient:
        argv = client_argv(address or server.address, certs.ca_cert, user, *args)
        client = LiveClient(argv, tmp_path, USERS[user])
        started.append(client)
        return client

    yield start
    for client in started:
        client.kill()


# ---------------------------------------------------------------- chatting


def test_piped_text_goes_to_the_room(server, certs, connect, tmp_path) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    result = run_client(
        server, certs, tmp_path, "alice", "/join", "general", input="hello\n  second line  \r\n\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout.splitlines()
    assert out[0] == "* joined #general (2 members: alice, bob)"
    assert re.fullmatch(rf"{CLOCK} #general \[1\] alice: hello", out[1])
    assert re.fullmatch(rf"{CLOCK} #general \[2\] alice: second line", out[2])
    assert len(out) == 3
    assert bob.expect("presence", user="alice", event="join")
    assert bob.expect("message", id=1, user="alice")["text"] == "hello"
    assert bob.expect("message", id=2, user="alice")["text"] == "second line"
    assert bob.expect("presence", user="alice", event="leave")


def test_argv_commands_run_in_order(server, certs, connect, tmp_path) -> None:
    bob = connect("bob")
    bob.request(type="join", room="random")
    result = run_client(
        server,
        certs,
        tmp_path,
        "alice",
        "/join",
        "general",
        "/join",
        "random",
        "/msg",
        "Bob",
        "hi",
        "there",
        input="//slash in random\n",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[:2] == [
        "* joined #general (1 member: alice)",
        "* joined #random (2 members: alice, bob)",
    ]
    assert re.fullmatch(rf"{CLOCK} \[dm 1\] alice -> bob: hi there", out[2])
    assert re.fullmatch(rf"{CLOCK} #random \[1\] alice: /slash in random", out[3])
    assert bob.expect("dm")["text"] == "hi there"
    assert bob.expect("message", room="random")["text"] == "/slash in random"


def test_live_session_shows_what_others_do(live, connect) -> None:
    alice = live("alice", "/join", "general")
    alice.wait_for(r"^\* joined #general \(1 member: alice\)$")
    bob = connect("bob")
    bob.request(type="join", room="general")
    alice.wait_for(r"^\* bob joined #general$")
    bob.request(type="send", room="general", text="hi alice")
    alice.wait_for(rf"^{CLOCK} #general \[1\] bob: hi alice$")
    bob.request(type="dm", to="alice", text="psst\n\tindented")
    alice.wait_for(rf"^{CLOCK} \[dm 1\] bob -> alice: psst$")
    alice.wait_for(r"^    \tindented$")
    # Not a control character, so the server relays it; the client shows it escaped.
    bob.request(type="send", room="general", text="abc\u202edef")
    alice.wait_for(rf"^{CLOCK} #general \[2\] bob: abc\\u202edef$")
    alice.send("thanks bob")
    alice.wait_for(rf"^{CLOCK} #general \[3\] alice: thanks bob$")
    assert bob.expect("message", id=3)["text"] == "thanks bob"
    alice.send("/who")
    alice.wait_for(r"^\* members of #general: alice, bob$")
    bob.request(type="leave", room="general")
    alice.wait_for(r"^\* bob left #general$")
    status, stderr = alice.finish()
    assert (status, stderr) == (0, "")


def test_edit_delete_and_history(live, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    bob.request(type="send", room="general", text="bob was here")
    alice = live("alice", "/join", "general")
    alice.next_line(r"^\* joined #general \(2 members: alice, bob\)$")
    alice.next_line(rf"^{CLOCK} #general \[1\] bob: bob was here$")
    # One line at a time: an id is known once its message has been shown.
    for line, pattern in [
        ("hello", rf"^{CLOCK} #general \[2\] alice: hello$"),
        ("/edit 2 hello again", rf"^{CLOCK} #general \[2\] alice \(edited\): hello again$"),
        ("/edit 1 not mine", r"^! forbidden: only the author may edit a message$"),
        ("/delete 2", rf"^{CLOCK} #general \[2\] deleted by alice$"),
        ("/delete 99", r"^! not_found: no message 99 in room 'general'$"),
        ("/history 5", r"^\* history of #general: 1 message$"),
    ]:
        alice.send(line)
        alice.next_line(pattern)
    alice.next_line(rf"^{CLOCK} #general \[1\] bob: bob was here$")
    alice.send("/rooms")
    alice.next_line(r"^\* rooms: #general \(2 members\)$")
    assert alice.finish() == (0, "")
    assert bob.expect("edited", id=2)["text"] == "hello again"
    assert bob.expect("deleted", id=2)["by"] == "alice"


def test_local_errors_send_nothing(server, certs, connect, tmp_path) -> None:
    lines = [
        "text before any room",
        "/bogus",
        "/join Not!Valid",
        "/switch general",
        "/join general",
        "/msg",
        "ok",
    ]
    result = run_client(server, certs, tmp_path, "alice", input="\n".join(lines))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert "! no current room: /join one first" in out
    assert "! unknown command /bogus (try /help)" in out
    assert any(line.startswith("! not a valid room name: 'Not!Valid'") for line in out)
    assert "! not in #general: /join general first" in out
    assert "! usage: /msg USER TEXT" in out
    assert re.fullmatch(rf"{CLOCK} #general \[1\] alice: ok", out[-1])
    assert not any(line.startswith("! bad_frame") for line in out)


def test_json_mode_prints_raw_frames(server, certs, tmp_path) -> None:
    result = run_client(
        server, certs, tmp_path, "alice", "--json", "/join", "general", input="hi\n/bogus\n"
    )
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert [frame["type"] for frame in frames] == [
        "welcome",
        "login_ok",
        "joined",
        "message",
        "bye",
    ]
    assert frames[3]["text"] == "hi" and frames[3]["user"] == "alice"
    refs = [frame["ref"] for frame in frames[1:]]
    assert len(set(refs)) == len(refs)
    assert result.stderr == "! unknown command /bogus (try /help)\n"


def test_password_file(server, certs, tmp_path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(USERS["alice"] + "\n")
    result = run_client(
        server, certs, tmp_path, "ALICE", "--password-file", str(secret), "/rooms", password=None
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "* rooms: none\n", "")


# ---------------------------------------------------------------- failures


def test_wrong_password_exits_3(server, certs, tmp_path) -> None:
    result = run_client(server, certs, tmp_path, "alice", password="wrong")
    line = assert_one_line_error(result, 3)
    assert "login failed" in line
    assert result.stdout == ""


def test_untrusted_server_exits_1(server, certs, tmp_path) -> None:
    other = make_certs(tmp_path / "other")
    result = run_client(server, certs, tmp_path, "alice", cafile=other.ca_cert)
    line = assert_one_line_error(result, 1)
    assert f"cannot verify the server's certificate against {other.ca_cert}" in line


def test_missing_ca_file_exits_1(server, certs, tmp_path) -> None:
    result = run_client(server, certs, tmp_path, "alice", cafile=tmp_path / "missing.pem")
    line = assert_one_line_error(result, 1)
    assert str(tmp_path / "missing.pem") in line


def test_default_ca_file_is_certs_ca_pem(server, certs, tmp_path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(certs.ca_cert.read_bytes())
    host, port = server.address
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "securechat.client",
            "--user",
            "alice",
            "--host",
            host,
            "--port",
            str(port),
            "/rooms",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        env=client_env(USERS["alice"]),
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "* rooms: none\n", "")


def test_connection_refused_exits_1(server, certs, tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    result = run_client(server, certs, tmp_path, "alice", address=address)
    assert "cannot connect to 127.0.0.1" in assert_one_line_error(result, 1)


def test_missing_password_with_piped_stdin_exits_2(server, certs, tmp_path) -> None:
    result = run_client(server, certs, tmp_path, "alice", password=None)
    assert "no password" in assert_one_line_error(result, 2)


@pytest.mark.parametrize("name", ["al ice", "-alice", "x" * 33, "al\x1bice"])
def test_invalid_user_name_is_a_usage_error(server, certs, tmp_path, name: str) -> None:
    result = run_client(server, certs, tmp_path, "alice", f"--user={name}")
    assert result.returncode == 2 and "invalid user name" in result.stderr
    assert "Traceback" not in result.stderr


def shut_down_under(certs, passwd_path, tmp_path, *args: str) -> tuple[LiveClient, int, str]:
    """Start alice's client in #general, shut the server down; its exit status and stderr."""
    alice: LiveClient | None = None
    try:
        with run_server(certs, passwd_path) as server:
            argv = client_argv(server.address, certs.ca_cert, "alice", *args, "/join", "general")
            alice = LiveClient(argv, tmp_path, USERS["alice"])
            alice.wait_for(r"^\* joined #general")
        # The server has shut down, with the client still connected.
        alice.wait_for(r"^! shutting_down: ")
        status = alice.proc.wait(TIMEOUT)
        assert alice.proc.stderr is not None
        return alice, status, alice.proc.stderr.read()
    finally:
        if alice is not None:
            alice.kill()


def test_server_shutdown_without_reconnect_exits_1(certs, passwd_path, tmp_path) -> None:
    alice, status, stderr = shut_down_under(certs, passwd_path, tmp_path, "--no-reconnect")
    assert status == 1
    assert stderr.startswith("securechat-client: ") and stderr.count("\n") == 1, stderr
    assert "shutting_down" in stderr
    assert not any("reconnect" in line for line in alice.seen)


def test_reconnecting_gives_up_after_reconnect_for(certs, passwd_path, tmp_path) -> None:
    alice, status, stderr = shut_down_under(certs, passwd_path, tmp_path, "--reconnect-for", "1.5")
    assert status == 1
    assert re.fullmatch(
        r"securechat-client: gave up reconnecting after 1\.5 s: cannot connect to .*\n", stderr
    ), stderr
    rest = alice.rest()
    assert re.fullmatch(
        r"\* connection lost \(the server closed the connection \(shutting_down\)\); "
        r"reconnecting in (0\.[5-9]|1\.0) s",
        rest[0],
    ), rest
    assert all(line.startswith("* cannot reconnect: cannot connect to ") for line in rest[1:])


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_reconnect_for_must_be_positive(server, certs, tmp_path, value: str) -> None:
    result = run_client(server, certs, tmp_path, "alice", "--reconnect-for", value)
    assert result.returncode == 2 and "not a positive number of seconds" in result.stderr


def test_dm_history(server, certs, connect, tmp_path) -> None:
    bob = connect("bob")
    for text in ("one", "two", "three"):
        assert bob.request(type="dm", to="alice", text=text)["type"] == "dm"
    result = run_client(server, certs, tmp_path, "alice", "/dmhistory", "Bob", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    start = out.index("* direct messages with bob: 2 direct messages")
    page = out[start + 1 : start + 3]
    assert re.fullmatch(rf"{CLOCK} \[dm 2\] bob -> alice: two", page[0])
    assert re.fullmatch(rf"{CLOCK} \[dm 3\] bob -> alice: three", page[1])
    # The DMs waiting since alice was offline come once each, in order, but the server
    # sends them some time after login_ok: after the reply to the first request, or
    # (under load) not before this short session ends, when they wait for the next.
    waiting = [line.split(": ", 1)[1] for line in out[:start] + out[start + 3 :]]
    assert waiting == ["one", "two", "three"][: len(waiting)]


# ---------------------------------------------------------------- writes not stored

NOT_SENT = "! not sent (server could not store it): "


def test_a_line_not_stored_is_shown_and_retry_sends_it_again(certs, passwd_path, tmp_path):
    with faulty_server(certs, passwd_path, tmp_path / "data") as server:
        store = server.hub.store
        bob = ChatClient(server.address, certs.ca_cert)
        try:
            bob.login("bob", USERS["bob"])
            bob.request(type="join", room="general")
            argv = client_argv(server.address, certs.ca_cert, "alice", "/join", "general")
            alice = LiveClient(argv, tmp_path, USERS["alice"])
            try:
                alice.next_line(r"^\* joined #general \(2 members: alice, bob\)$")
                store.fail("disk full")
                alice.send("hello")
                alice.send("/msg bob psst")
                alice.next_line(
                    rf"^{re.escape(NOT_SENT)}#general: hello \u2014 /retry to send again$"
                )
                alice.next_line(rf"^{re.escape(NOT_SENT)}direct message to bob: psst \u2014 /retry")
                alice.send("/retry")  # fails again: kept again
                alice.next_line(rf"^{re.escape(NOT_SENT)}#general: hello ")
                alice.next_line(rf"^{re.escape(NOT_SENT)}direct message to bob: psst ")
                store.heal()
                alice.send("/retry")
                alice.next_line(rf"^{CLOCK} #general \[3\] alice: hello$")  # 1, 2: not stored
                alice.next_line(rf"^{CLOCK} \[dm 3\] alice -> bob: psst$")
                alice.send("/retry")
                alice.next_line(r"^\* nothing to send again$")
                assert alice.finish() == (0, "")
            finally:
                alice.kill()
            assert (bob.expect("message")["id"], bob.expect("dm")["text"]) == (3, "psst")
            assert not [f for f in bob.backlog if f["type"] in ("message", "dm")]
        finally:
            bob.close()


def test_piped_input_exits_4_when_a_line_was_not_stored(certs, passwd_path, tmp_path):
    with faulty_server(certs, passwd_path, tmp_path / "data") as server:
        server.hub.store.fail("read-only")
        result = run_client(
            server, certs, tmp_path, "alice", "/join", "general", input="hello\nagain\n"
        )
    line = assert_one_line_error(result, 4)
    assert line == (
        "securechat-client: 2 writes not stored by the server (it could not write to its "
        "disk) and not sent again"
    )
    out = result.stdout.splitlines()
    assert out[0] == "* joined #general (1 member: alice)"
    assert [line.split(" \u2014 ")[0] for line in out[1:]] == [
        f"{NOT_SENT}#general: hello",
        f"{NOT_SENT}#general: again",
    ]


# ---------------------------------------------------------------- scripted servers


class FakeServer:
    """A one-connection TLS server that plays ``script(send, readline)`` in a thread."""

    def __init__(self, certs, script) -> None:
        self.context = make_server_context(certs.server)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.address = self.listener.getsockname()[:2]
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(TIMEOUT)
        with self.context.wrap_socket(conn, server_side=True) as tls, tls.makefile("rwb") as io:

            def send(**frame) -> None:
                io.write(json.dumps(frame).encode() + b"\n")
                io.flush()

            def readline() -> dict | None:
                line = io.readline()
                return json.loads(line) if line else None

            self.script(send, readline)

    def close(self) -> None:
        self.thread.join(TIMEOUT)
        self.listener.close()


def test_control_characters_from_the_server_are_escaped(certs, tmp_path) -> None:
    """A server that relays control characters cannot repaint the user's terminal."""
    received: list[dict] = []

    def script(send, readline) -> None:
        send(type="welcome", server="securechat", version="x", protocol=1)
        login = readline()
        received.append(login)
        send(type="login_ok", user="alice", ref=login["ref"])
        send(type="ping")
        send(type="typing", room="general", user="mallory")  # a frame type from the future
        send(
            type="message",
            room="general",
            id=1,
            user="mall\x1bory",
            mood="evil",
            text="\x1b[2J\x1b]0;owned\x07 \u009b31m red",
            ts="2026-11-26T12:01:02Z",
        )
        while frame := readline():
            received.append(frame)
            if frame["type"] == "logout":
                send(type="bye", ref=frame["ref"])

    fake = FakeServer(certs, script)
    try:
        result = run_client(None, certs, tmp_path, "alice", address=fake.address)
    finally:
        fake.close()
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"{CLOCK} #general \[1\] mall\\x1bory: \\x1b\[2J\\x1b\]0;owned\\x07 \\x9b31m red\n",
        result.stdout,
    ), result.stdout
    assert result.stderr == ""
    assert received[0] == {
        "type": "login",
        "user": "alice",
        "password": USERS["alice"],
        "ref": received[0]["ref"],
    }
    assert sorted(frame["type"] for frame in received) == ["login", "logout", "pong"]


def test_busy_server_exits_1(certs, tmp_path) -> None:
    def script(send, readline) -> None:
        send(type="error", code="server_busy", message="too many \x1b[5mconnections")

    fake = FakeServer(certs, script)
    try:
        result = run_client(None, certs, tmp_path, "alice", address=fake.address)
    finally:
        fake.close()
    line = assert_one_line_error(result, 1)
    assert line == (
        "securechat-client: the server refused the connection: "
        "server_busy: too many \\x1b[5mconnections"
    )
