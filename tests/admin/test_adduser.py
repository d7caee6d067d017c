"""The securechat-adduser command, run as a subprocess (bcrypt cost 4 for speed)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from securechat.admin import adduser
from securechat.server.passwd import read_users

ROOT = Path(__file__).resolve().parents[2]
PASSWD = "securechat.passwd"


def run(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "securechat.admin.adduser", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def add(cwd: Path, name: str, password: str) -> subprocess.CompletedProcess[str]:
    return run(cwd, "--rounds", "4", "--password-stdin", name, stdin=password + "\n")


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("securechat-adduser: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_add_change_list_delete(tmp_path: Path) -> None:
    result = add(tmp_path, "alice", " two words ")
    assert (result.returncode, result.stdout, result.stderr) == (0, "added user alice\n", "")
    path = tmp_path / PASSWD
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    hashed = read_users(path)["alice"].encode()
    assert hashed.startswith(b"$2b$04$")
    assert bcrypt.checkpw(b" two words ", hashed)  # only the newline is stripped

    result = add(tmp_path, "alice", "changed")
    assert (result.returncode, result.stdout) == (0, "changed password of alice\n")
    assert bcrypt.checkpw(b"changed", read_users(path)["alice"].encode())

    assert add(tmp_path, "bob", "pw-bob").returncode == 0
    result = run(tmp_path, "--list")
    assert (result.returncode, result.stdout, result.stderr) == (0, "alice\nbob\n", "")

    result = run(tmp_path, "--delete", "alice")
    assert (result.returncode, result.stdout) == (0, "deleted user alice\n")
    assert run(tmp_path, "--list").stdout == "bob\n"


def test_passwd_option(tmp_path: Path) -> None:
    other = tmp_path / "sub" / "users"
    other.parent.mkdir()
    args = ["--passwd", str(other), "--rounds", "4", "--password-stdin", "carol"]
    result = run(tmp_path, *args, stdin="pw\r\n")
    assert result.returncode == 0, result.stderr
    assert bcrypt.checkpw(b"pw", read_users(other)["carol"].encode())
    assert not (tmp_path / PASSWD).exists()
    assert run(tmp_path, "--passwd", str(other), "--list").stdout == "carol\n"


def test_delete_unknown_user(tmp_path: Path) -> None:
    add(tmp_path, "alice", "pw")
    assert_one_line_error(run(tmp_path, "--delete", "bob"), "no user bob")


def test_bad_name(tmp_path: Path) -> None:
    assert_one_line_error(add(tmp_path, "Bad Name", "pw"), "invalid user name")
    assert_one_line_error(run(tmp_path, "--delete", "a:b"), "invalid user name")
    assert not (tmp_path / PASSWD).exists()


def test_password_over_72_bytes_is_refused(tmp_path: Path) -> None:
    result = add(tmp_path, "alice", "é" * 37)
    assert_one_line_error(result, "password is 74 bytes; bcrypt uses at most 72")
    assert not (tmp_path / PASSWD).exists()


def test_empty_password_is_refused(tmp_path: Path) -> None:
    assert_one_line_error(add(tmp_path, "alice", ""), "empty password")
    assert_one_line_error(run(tmp_path, "--password-stdin", "alice"), "empty password")  # EOF


def test_piped_stdin_needs_password_stdin(tmp_path: Path) -> None:
    result = run(tmp_path, "--rounds", "4", "alice", stdin="pw\n")
    assert_one_line_error(result, "--password-stdin")
    assert not (tmp_path / PASSWD).exists()


def test_malformed_file(tmp_path: Path) -> None:
    (tmp_path / PASSWD).write_text("# users\nalice:nothash\n")
    assert_one_line_error(add(tmp_path, "bob", "pw"), f"{PASSWD}:2:")
    assert_one_line_error(run(tmp_path, "--list"), f"{PASSWD}:2:")


def test_permission_warning_is_printed(tmp_path: Path) -> None:
    add(tmp_path, "alice", "pw")
    (tmp_path / PASSWD).chmod(0o644)
    result = run(tmp_path, "--list")
    assert result.returncode == 0 and result.stdout == "alice\n"
    assert "warning" in result.stderr and "chmod 600" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--list", "alice"],
        ["--delete"],
        ["--delete", "--list", "alice"],
        ["--rounds", "3", "alice"],
        ["--rounds", "32", "alice"],
        ["--delete", "--password-stdin", "alice"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = run(tmp_path, *args)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


class FakeTty:
    def isatty(self) -> bool:
        return True


def test_terminal_prompts_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["secret", "secret", "secret", "typo"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(sys, "stdin", FakeTty())
    monkeypatch.setattr(adduser.getpass, "getpass", fake_getpass)
    path = tmp_path / PASSWD
    assert adduser.main(["--passwd", str(path), "--rounds", "4", "alice"]) == 0
    assert prompts == ["Password for alice: ", "Repeat password: "]
    assert capsys.readouterr().out == "added user alice\n"
    assert adduser.main(["--passwd", str(path), "--rounds", "4", "alice"]) == 1
    assert capsys.readouterr().err == "securechat-adduser: passwords do not match\n"
    assert bcrypt.checkpw(b"secret", read_users(path)["alice"].encode())


def test_wrapper_script(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "adduser"
    assert os.access(script, os.X_OK)
    bin_dir = tmp_path / "bin"  # python3 = this interpreter; no securechat-adduser
    bin_dir.mkdir()
    shim = bin_dir / "python3"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    result = subprocess.run(
        [str(script), "--rounds", "4", "--password-stdin", "alice"],
        cwd=work,
        env=env,
        input="pw\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "added user alice\n"), result.stderr
    assert list(read_users(work / PASSWD)) == ["alice"]
