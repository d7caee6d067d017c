"""Running as a service: sd_notify, --check, JSON logs, the systemd unit."""

import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from securechat.admin.certs import make_certs
from securechat.server import systemd
from tests.chatclient import ChatClient
from tests.conftest import USERS
from tests.serverprocess import ROOT, ServerProcess

UNIT = ROOT / "deploy" / "securechat.service"


def datagrams(sock: socket.socket, count: int) -> list[dict[str, str]]:
    """The next ``count`` notifications, each as its fields."""
    got = []
    for _ in range(count):
        data = sock.recv(4096).decode()
        got.append(dict(line.split("=", 1) for line in data.split("\n")))
    return got


def test_the_server_tells_systemd_ready_reloading_and_stopping(certs, passwd_path, tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        manager.settimeout(15)
        server = ServerProcess(certs.server, passwd_path, tmp_path / "data",
                               env={"NOTIFY_SOCKET": str(path)})  # fmt: skip
        with server:
            [ready] = datagrams(manager, 1)
            host, port = server.address
            assert ready == {"READY": "1", "STATUS": f"listening on {host}:{port}"}
            client = ChatClient(server.address, certs.ca_cert)  # it really is ready
            assert client.login("alice", USERS["alice"])["type"] == "login_ok"
            server.proc.send_signal(signal.SIGHUP)
            reloading, ready_again = datagrams(manager, 2)
            assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
            assert ready_again["READY"] == "1"
            client.close()
            server.proc.send_signal(signal.SIGTERM)
            [stopping] = datagrams(manager, 1)
            assert stopping["STOPPING"] == "1"
            assert server.proc.wait(10) == 0


def test_notify_reaches_an_abstract_socket_and_is_quiet_outside_systemd(monkeypatch):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        name = f"securechat-test-{id(manager)}"
        manager.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1", "STATUS=hi")
        assert manager.recv(100) == b"READY=1\nSTATUS=hi"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not systemd.notify("READY=1")


def check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securechat.server", "--check", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_check_passes_a_good_setup(certs, passwd_path, tmp_path):
    done = check("--cert", str(certs.server), "--passwd", str(passwd_path), "--data-dir",
                 str(tmp_path / "data"), "--port", "0", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "securechat-server --check: ok, 0 warnings"
    assert not (tmp_path / "data").exists()  # it only looks


def test_check_reports_each_problem_in_one_line(certs, tmp_path):
    soon = make_certs(tmp_path / "soon", days=3)
    other = make_certs(tmp_path / "other")
    mismatched = tmp_path / "mismatched.pem"
    mismatched.write_bytes(soon.server.read_bytes().split(b"-----BEGIN PRIVATE KEY")[0])
    key = tmp_path / "other.key"
    key.write_bytes(b"-----BEGIN PRIVATE KEY" + other.server.read_bytes().split(
        b"-----BEGIN PRIVATE KEY")[1])  # fmt: skip
    bad_passwd = tmp_path / "bad.passwd"
    bad_passwd.write_text("this is not a password file\n")
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = check("--cert", str(mismatched), "--key", str(key), "--passwd", str(bad_passwd),
                     "--data-dir", str(not_a_dir / "data"), "--port", str(port),
                     cwd=tmp_path)  # fmt: skip
        near = check("--cert", str(soon.server), "--passwd", str(bad_passwd), "--port", "0",
                     "--data-dir", str(tmp_path / "data"), cwd=tmp_path)  # fmt: skip
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert any("does not match the certificate" in line for line in lines), lines
    assert any(line.startswith("securechat-server --check: problem:") and "bad.passwd" in line
               for line in lines), lines  # fmt: skip
    assert any("is not a directory" in line for line in lines), lines
    assert any(f"cannot listen on 127.0.0.1:{port}" in line for line in lines), lines
    assert lines[-1] == "securechat-server --check: 4 problems, 0 warnings"
    assert any("warning: certificate" in line and "expires in 2 days" in line
               for line in near.stdout.splitlines()), near.stdout  # fmt: skip


def test_json_logs_are_one_object_a_line_without_secrets(certs, passwd_path, tmp_path):
    with ServerProcess(certs.server, passwd_path, tmp_path / "data", "--log-format", "json",
                       "--log-level", "DEBUG") as server:  # fmt: skip
        client = ChatClient(server.address, certs.ca_cert)
        token = client.login("alice", USERS["alice"])["token"]
        client.request(type="logout")
        client.wait_closed()
        assert server.terminate() == 0
    entries = [json.loads(line) for line in server.log]  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert any(entry["message"].startswith("listening on ") for entry in entries)
    [login] = [entry for entry in entries if entry["message"].startswith("login of alice")]
    assert (login["user"], login["address"], login["method"]) == ("alice", "127.0.0.1", "password")
    text = "".join(server.log)
    assert USERS["alice"] not in text and token not in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_unit_verifies(tmp_path):
    venv = Path(sys.executable).parent.parent  # the unit's /opt/securechat/.venv, here
    unit = tmp_path / "securechat.service"
    unit.write_text(UNIT.read_text().replace("/opt/securechat/.venv", str(venv)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Type=notify" in unit.read_text() and "ExecReload=/bin/kill -HUP $MAINPID" in (
        unit.read_text()
    )
