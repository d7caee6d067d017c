"""Unit tests of the password file (no sockets; bcrypt cost 4 for speed)."""

import logging
import os
import stat
import threading
from pathlib import Path

import bcrypt
import pytest

from securechat.exceptions import PasswordFileError, PasswordTooLong
from securechat.server import passwd
from securechat.server.passwd import (
    PasswordFile,
    delete_user,
    hash_password,
    list_users,
    permission_warning,
    read_users,
    set_password,
)

R = 4


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {name: hash_password(f"pw-{name}", R) for name in ("alice", "bob", "carol")}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "securechat.passwd"


@pytest.fixture
def checkpw_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records the hash each bcrypt.checkpw call checks against."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- hashing -------------------------------------------------------------------------


def test_hash_password_round_trip() -> None:
    hashed = hash_password("correct horse", R)
    assert hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(b"correct horse", hashed.encode())


def test_hash_password_refuses_empty_long_and_bad_rounds() -> None:
    with pytest.raises(ValueError):
        hash_password("", R)
    hash_password("x" * 72, R)
    with pytest.raises(PasswordTooLong, match="password is 73 bytes; bcrypt uses at most 72"):
        hash_password("x" * 73, R)
    with pytest.raises(PasswordTooLong, match="74 bytes"):
        hash_password("é" * 37, R)  # 37 characters, 74 bytes: counted in UTF-8
    with pytest.raises(ValueError):
        hash_password("pw", 3)


# --- reading -------------------------------------------------------------------------


def test_read_users_with_comments_and_blank_lines(path: Path, hashes: dict[str, str]) -> None:
    path.write_text(
        f"# securechat users\n\nalice:{hashes['alice']}\n   # indented comment\n"
        f"  \nbob:{hashes['bob']}"  # no final newline
    )
    assert read_users(path) == {"alice": hashes["alice"], "bob": hashes["bob"]}
    assert list_users(path) == ["alice", "bob"]


def test_read_users_missing_file_is_empty(path: Path) -> None:
    assert read_users(path) == {}
    assert list_users(path) == []


@pytest.mark.parametrize(
    "bad",
    [
        "alice",
        "alice:",
        "Alice:{h}",
        "al ice:{h}",
        ":{h}",
        "alice:{h}x",
        "alice:$2b$04$short",
        "alice:$2b$99$" + "a" * 53,
        "alice:$2b$04$" + "a" * 53,  # bcrypt refuses this salt
        "bob:{h}",  # a second bob
    ],
)
def test_malformed_line_names_file_and_line(path: Path, hashes: dict[str, str], bad: str) -> None:
    path.write_text(f"# users\nbob:{hashes['bob']}\n{bad.format(h=hashes['alice'])}\n")
    with pytest.raises(PasswordFileError) as info:
        read_users(path)
    message = str(info.value)
    assert f"{path}:3:" in message
    assert hashes["alice"] not in message and "$2b$" not in message


def test_non_utf8_file(path: Path, hashes: dict[str, str]) -> None:
    path.write_bytes(f"alice:{hashes['alice']}\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(PasswordFileError, match=":2: not UTF-8"):
        read_users(path)


# --- writing -------------------------------------------------------------------------


def test_set_password_creates_0600_file_adds_then_changes(path: Path) -> None:
    assert set_password(path, "alice", "first", R) is True
    assert mode(path) == 0o600
    assert mode(Path(f"{path}.lock")) == 0o600
    first = read_users(path)["alice"]
    assert bcrypt.checkpw(b"first", first.encode())
    assert set_password(path, "alice", "second", R) is False
    second = read_users(path)["alice"]
    assert second != first and bcrypt.checkpw(b"second", second.encode())
    assert path.read_text() == f"alice:{second}\n"


def test_edits_preserve_comments_and_blank_lines(path: Path, hashes: dict[str, str]) -> None:
    path.write_text(
        f"# header\n\nalice:{hashes['alice']}\n# about bob\nbob:{hashes['bob']}\n\n# end\n"
    )
    assert set_password(path, "bob", "new-bob", R) is False
    assert set_password(path, "carol", "pw-carol", R) is True
    assert delete_user(path, "alice") is True
    users = read_users(path)
    assert path.read_text() == (
        f"# header\n\n# about bob\nbob:{users['bob']}\n\n# end\ncarol:{users['carol']}\n"
    )
    assert bcrypt.checkpw(b"new-bob", users["bob"].encode())


def test_delete_absent_user(path: Path) -> None:
    assert delete_user(path, "nobody") is False
    assert not path.exists()
    set_password(path, "alice", "pw", R)
    assert delete_user(path, "nobody") is False
    assert delete_user(path, "alice") is True
    assert delete_user(path, "alice") is False
    assert path.read_text() == ""


@pytest.mark.parametrize("name", ["Alice", "a b", "", "-x", "a" * 33, "al:ice", "é"])
def test_invalid_user_names_raise_value_error(path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        set_password(path, name, "pw", R)
    with pytest.raises(ValueError, match="invalid user name"):
        delete_user(path, name)
    assert not path.exists()


def test_write_replaces_file_and_leaves_no_temp_files(path: Path) -> None:
    set_password(path, "alice", "pw", R)
    path.chmod(0o644)
    inode = path.stat().st_ino
    set_password(path, "bob", "pw", R)
    assert path.stat().st_ino != inode  # os.replace, never an in-place write
    assert mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, f"{path.name}.lock"]


def test_writer_refuses_malformed_file(path: Path) -> None:
    path.write_text("# users\nnot a valid line\n")
    with pytest.raises(PasswordFileError, match=":2:"):
        set_password(path, "alice", "pw", R)
    assert path.read_text() == "# users\nnot a valid line\n"


def test_concurrent_writers_lose_no_user(path: Path) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for k in range(4):
                set_password(path, f"user{n}-{k}", f"pw{n}{k}", R)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list_users(path) == sorted(f"user{n}-{k}" for n in range(8) for k in range(4))


def test_permission_warning(path: Path) -> None:
    assert permission_warning(path) is None  # missing
    set_password(path, "alice", "pw", R)
    assert permission_warning(path) is None
    path.chmod(0o644)
    warning = permission_warning(path)
    assert warning is not None and "0644" in warning and "chmod 600" in warning
    path.chmod(0o620)
    assert permission_warning(path) is not None


# --- PasswordFile --------------------------------------------------------------------


def test_verify(path: Path) -> None:
    set_password(path, "alice", "pw-alice", R)
    set_password(path, "bob", "pässwörd ✓", R)
    pf = PasswordFile(path)
    assert pf.users() == ["alice", "bob"]
    assert pf.verify("alice", "pw-alice") is True
    assert pf.verify("bob", "pässwörd ✓") is True
    assert pf.verify("alice", "pw-bob") is False
    assert pf.verify("alice", "pw-alice ") is False
    assert pf.verify("mallory", "pw-alice") is False
    assert pf.verify("alice", "") is False
    assert pf.verify("alice", "pw-alice" + "x" * 70) is False
    assert pf.verify("ålice", "pw-alice") is False
    assert pf.verify("alice", "\udcff") is False  # not encodable
    assert pf.verify(None, None) is False  # type: ignore[arg-type]


def test_exists_follows_the_file_as_it_changes(path: Path) -> None:
    pf = PasswordFile(path)
    assert not pf.exists("alice")
    set_password(path, "alice", "pw-alice", R)
    assert pf.exists("alice") and not pf.exists("bob") and not pf.exists("Alice")
    delete_user(path, "alice")
    assert not pf.exists("alice")


def test_missing_file_has_no_users(path: Path) -> None:
    pf = PasswordFile(path)
    assert pf.users() == []
    assert pf.verify("alice", "pw") is False
    set_password(path, "alice", "pw", R)
    assert pf.verify("alice", "pw") is True
    path.unlink()
    assert pf.verify("alice", "pw") is False


def test_constructor_rejects_malformed_file(path: Path) -> None:
    path.write_text("garbage\n")
    with pytest.raises(PasswordFileError):
        PasswordFile(path)


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "pw-alice"), ("alice", "wrong"), ("mallory", "pw"), ("alice", "x" * 73), ("", "")],
)
def test_every_verify_costs_one_checkpw(
    path: Path, checkpw_calls: list[bytes], user: str, password: str
) -> None:
    set_password(path, "alice", "pw-alice", R)
    pf = PasswordFile(path)
    pf.verify(user, password)
    assert len(checkpw_calls) == 1
    assert checkpw_calls[0].startswith(b"$2b$04$")  # the cost of the file's hashes


def test_dummy_cost_follows_the_file(path: Path, checkpw_calls: list[bytes]) -> None:
    for name in ("alice", "bob"):
        set_password(path, name, "pw", 5)
    set_password(path, "carol", "pw", R)
    PasswordFile(path).verify("mallory", "pw")
    assert checkpw_calls[0].startswith(b"$2b$05$")  # the most common cost


def test_reload_after_set_password(path: Path) -> None:
    set_password(path, "alice", "old", R)
    pf = PasswordFile(path)
    assert pf.verify("alice", "old")
    set_password(path, "alice", "new", R)  # same size, most likely the same second
    assert pf.verify("alice", "new")
    assert not pf.verify("alice", "old")


def _same_size_change(path: Path) -> str:
    """New content for the file with alice's password changed to "new" and the same size."""
    new = f"alice:{hash_password('new', R)}\n"
    assert len(new) == path.stat().st_size
    return new


def test_reload_detects_new_inode_with_same_size_and_mtime(path: Path) -> None:
    set_password(path, "alice", "old", R)
    pf = PasswordFile(path)
    before = path.stat()
    tmp = path.with_name("tmp")
    tmp.write_text(_same_size_change(path))
    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(tmp, path)
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert pf.verify("alice", "new")


def test_reload_detects_in_place_size_change_with_same_mtime(path: Path) -> None:
    set_password(path, "alice", "old", R)
    pf = PasswordFile(path)
    before = path.stat()
    with path.open("a") as f:
        f.write(f"bob:{hash_password('pw-bob', R)}\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ino == before.st_ino
    assert pf.verify("bob", "pw-bob")


def test_reload_detects_in_place_mtime_change_with_same_size(path: Path) -> None:
    set_password(path, "alice", "old", R)
    pf = PasswordFile(path)
    before = path.stat()
    with path.open("r+") as f:
        f.write(_same_size_change(path))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    after = path.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    assert pf.verify("alice", "new")


def test_broken_file_keeps_last_good_snapshot(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    set_password(path, "alice", "hunter2-secret", R)
    good_hash = read_users(path)["alice"]
    pf = PasswordFile(path)
    path.write_text(f"alice:{good_hash}\nbob:{good_hash[:-1]}\n")
    with caplog.at_level(logging.WARNING, logger="securechat.passwd"):
        assert pf.verify("alice", "hunter2-secret")
        assert not pf.verify("bob", "hunter2-secret")
    warnings = [r for r in caplog.records if r.name == "securechat.passwd"]
    assert len(warnings) == 1  # once per problem, not once per login
    assert ":2:" in warnings[0].getMessage()
    assert good_hash[7:29] not in caplog.text and "hunter2" not in caplog.text
    with pytest.raises(PasswordFileError):  # writers refuse the broken file too
        set_password(path, "bob", "pw-bob", R)
    path.write_text(f"bob:{good_hash}\n")  # fixed: reloads
    assert pf.users() == ["bob"]


def test_unreadable_file_keeps_last_good_snapshot(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    set_password(path, "alice", "pw", R)
    pf = PasswordFile(path)
    path.unlink()
    path.mkdir()  # open() now fails with IsADirectoryError
    with caplog.at_level(logging.WARNING, logger="securechat.passwd"):
        assert pf.verify("alice", "pw")
    assert "cannot read" in caplog.text


def test_verify_is_thread_safe_during_rewrites(path: Path) -> None:
    set_password(path, "alice", "pw", R)
    pf = PasswordFile(path)
    stop = threading.Event()
    results: list[bool] = []
    errors: list[BaseException] = []

    def login() -> None:
        try:
            while True:  # at least one login per thread
                results.append(pf.verify("alice", "pw"))
                if stop.is_set():
                    break
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=login) for _ in range(4)]
    for t in threads:
        t.start()
    for n in range(20):
        set_password(path, f"user{n}", "x", R)  # alice's line is untouched
    stop.set()
    for t in threads:
        t.join()
    assert errors == [] and results and all(results)
    assert pf.users() == sorted(["alice", *(f"user{n}" for n in range(20))])


def test_module_constants() -> None:
    assert passwd.DEFAULT_ROUNDS == 12
    assert passwd.MAX_PASSWORD_BYTES == 72
