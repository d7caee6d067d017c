"""securechat-admin: backup under load, restore and its refusals, export, stats, CLI errors."""

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from securechat.admin import data
from securechat.admin.data import main
from securechat.server.cli import DATABASE_NAME, Limits
from securechat.server.store import (
    SCHEMA_VERSION,
    AddDm,
    AddMessages,
    DeleteMessage,
    DmRecord,
    EditMessage,
    SqliteStore,
    StoredMessage,
)
from tests.chatclient import ChatClient
from tests.conftest import UNMETERED, USERS, run_server

ROOT = Path(__file__).resolve().parents[2]
T1 = "2026-12-01T09:00:00.000Z"
T2 = "2026-12-01T10:30:00.000Z"
EDITED = "2026-12-01T11:00:00.000Z"
T3 = "2026-12-01T23:59:59.999Z"
T4 = "2026-12-02T08:00:00.000Z"


def make_data_dir(data_dir: Path) -> Path:
    """A data directory with a known history: edits, a deletion, DMs (one to oneself)."""
    data_dir.mkdir(mode=0o700)
    store = SqliteStore(data_dir / DATABASE_NAME)
    store.write([
        AddMessages("general", [StoredMessage(1, "alice", "hello", T1),
                                StoredMessage(2, "bob", "two\nlines", T2),
                                StoredMessage(3, "alice", "oops", T3),
                                StoredMessage(4, "carol", "later", T4)]),
        AddMessages("random", [StoredMessage(1, "bob", "r1", T2)]),
        EditMessage("general", 2, "two\nlines, edited", EDITED),
        DeleteMessage("general", 3),
        AddDm(DmRecord(1, "alice", "bob", "hi bob", T1)),
        AddDm(DmRecord(2, "bob", "alice", "hi alice", T2)),
        AddDm(DmRecord(3, "carol", "dave", "not bob's", T3)),
        AddDm(DmRecord(4, "carol", "bob", "from carol", T4)),
        AddDm(DmRecord(5, "bob", "bob", "note to self", T4)),
    ])  # fmt: skip
    store.close()
    return data_dir


def run(*args: str) -> int:
    return main([str(arg) for arg in args])


def one_line_error(err: str, *needles: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("securechat-admin: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def messages_in(path: Path, room: str) -> dict[int, str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT id, text FROM messages WHERE room = ?", (room,))
        return dict(rows.fetchall())


def files_in(data_dir: Path) -> list[str]:
    """The names in ``data_dir`` but the WAL's two, which a read-only connection to a
    stopped server's database leaves (empty) behind."""
    wal = {f"{DATABASE_NAME}-wal", f"{DATABASE_NAME}-shm"}
    return sorted(set(os.listdir(data_dir)) - wal)


# ------------------------------------------------------------ backup and restore


def login(server, certs, user: str) -> ChatClient:
    client = ChatClient(server.address, certs.ca_cert)
    assert client.login(user, USERS.get(user) or f"{user}-pw")["type"] == "login_ok"
    return client


def room_history(client: ChatClient, room: str) -> list[dict]:
    """Every live message of ``room``, paged with ``after``."""
    messages: list[dict] = []
    while True:
        after = messages[-1]["id"] if messages else 0
        page = client.request(type="history", room=room, after=after, limit=200)["messages"]
        if not page:
            return messages
        messages += page


def test_backup_under_load_restores_every_acknowledged_message(certs, passwd_path, tmp_path):
    source, backup_dir, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    acked: list[tuple[str, int, str]] = []  # (room, id, text), in the order acknowledged
    lock = threading.Condition()  # notified for each message acknowledged
    stop = threading.Event()
    warmed = threading.Barrier(3)

    with run_server(certs, passwd_path, Limits(**UNMETERED), data_dir=source) as server:
        alice = login(server, certs, "alice")
        alice.request(type="join", room="general")
        for text in ("one", "two", "three"):
            assert alice.request(type="send", room="general", text=text)["type"] == "message"
        assert alice.request(type="edit", room="general", id=2, text="two!")["type"] == "edited"
        assert alice.request(type="delete", room="general", id=3)["type"] == "deleted"
        assert alice.request(type="dm", to="bob", text="kept")["type"] == "dm"

        def sender(index: int) -> int:
            client = login(server, certs, f"user{index}")
            room = f"load{index}"
            client.request(type="join", room=room)
            sent = 0
            while not stop.is_set():
                sent += 1
                reply = client.request(type="send", room=room, text=f"{index}:{sent}")
                assert reply["type"] == "message", reply
                with lock:
                    acked.append((room, reply["id"], reply["text"]))
                    lock.notify_all()
                if sent == 20:
                    warmed.wait(10)
            client.close()
            return sent

        with ThreadPoolExecutor(2) as pool:
            senders = [pool.submit(sender, index) for index in range(2)]
            try:
                warmed.wait(10)  # both are sending
                with lock:
                    before = list(acked)

                def mid_backup(remaining: int, total: int) -> None:
                    if remaining == total - 1:  # after the first page: the server goes on
                        with lock:
                            wanted = len(acked) + 20
                            assert lock.wait_for(lambda: len(acked) >= wanted, 10)

                made = data.backup(source, backup_dir, pages=1, progress=mid_backup)
            finally:
                stop.set()
            sent = [future.result(30) for future in senders]
        alice.close()
    assert sum(sent) == len(acked)

    database = backup_dir / DATABASE_NAME
    assert os.listdir(backup_dir) == [DATABASE_NAME]
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup_dir.stat().st_mode) == 0o700
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no temp left
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file
        last_ids = dict(conn.execute("SELECT name, last_id FROM rooms"))
    backed_up = {room: messages_in(database, room) for room in ("load0", "load1")}
    assert made.messages == sum(map(len, backed_up.values())) + 2
    for room, messages in backed_up.items():  # a snapshot: each room's ids 1..last, no gap
        assert sorted(messages) == list(range(1, last_ids[room] + 1))
    for room, message_id, text in before:
        assert backed_up[room][message_id] == text
    for room, message_id, text in acked:
        assert backed_up[room].get(message_id, text) == text

    assert run("restore", backup_dir, "--data-dir", restored) == 0
    with run_server(certs, passwd_path, Limits(**UNMETERED), data_dir=restored) as server:
        bob = login(server, certs, "bob")
        assert bob.expect("dm")["text"] == "kept"  # still waiting for him
        joined = bob.request(type="join", room="general")
        history = [(m["id"], m["text"], "edited_ts" in m) for m in joined["history"]]
        assert (joined["last_id"], history) == (3, [(1, "one", False), (2, "two!", True)])
        assert bob.request(type="send", room="general", text="next")["id"] == 4
        for room, messages in backed_up.items():
            bob.request(type="join", room=room)
            assert {m["id"]: m["text"] for m in room_history(bob, room)} == messages
            next_id = bob.request(type="send", room=room, text="after the restore")["id"]
            assert next_id == last_ids[room] + 1
        bob.close()


def test_backup_copies_the_file_store_and_restore_puts_it_back(tmp_path, capsys):
    source = make_data_dir(tmp_path / "data")
    (source / "files" / "ab").mkdir(parents=True)
    (source / "files" / "ab" / "cdef").write_bytes(b"x" * 3000)
    dest = tmp_path / "backup"
    assert run("backup", dest, "--data-dir", source) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"backed up {source / DATABASE_NAME} to {dest} in ")
    assert "4 messages in 2 rooms, 5 direct messages; 1 file (2.9 KiB) in files/" in said
    assert sorted(os.listdir(dest)) == ["files", DATABASE_NAME]
    assert (dest / "files" / "ab" / "cdef").read_bytes() == b"x" * 3000

    target = make_data_dir(tmp_path / "target")
    (target / "files").mkdir()
    (target / "files" / "old").write_text("old")
    assert run("restore", dest, "--data-dir", target, "--force") == 0
    said = capsys.readouterr().out
    assert "4 messages in 2 rooms, 5 direct messages, 1 file, schema version" in said
    assert (target / "files" / "ab" / "cdef").read_bytes() == b"x" * 3000
    kept = [name for name in os.listdir(target) if name.startswith("files.before-restore-")]
    assert len(kept) == 1 and (target / kept[0] / "old").read_text() == "old"


def test_a_file_removed_while_the_store_is_copied_is_skipped(tmp_path, monkeypatch):
    store = tmp_path / "files"
    (store / "ab").mkdir(parents=True)
    for name in ("kept", "gone"):
        (store / "ab" / name).write_bytes(name.encode())
    copy2 = data.shutil.copy2

    def racing_copy2(src, dst, **kwargs):
        if Path(src).name == "gone":
            Path(src).unlink()  # its last message was deleted just now
        return copy2(src, dst, **kwargs)

    monkeypatch.setattr(data.shutil, "copy2", racing_copy2)
    assert data._copy_tree(store, tmp_path / "copy") == (1, 4)
    assert os.listdir(tmp_path / "copy" / "ab") == ["kept"]
    assert stat.S_IMODE((tmp_path / "copy" / "ab").stat().st_mode) == 0o700


def test_backup_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    source = make_data_dir(tmp_path / "data")
    dest = tmp_path / "backup"
    assert run("backup", dest, "--data-dir", source) == 0
    store = SqliteStore(source / DATABASE_NAME)
    store.write([AddMessages("random", [StoredMessage(2, "bob", "r2", T4)])])
    store.close()
    capsys.readouterr()
    assert run("backup", dest, "--data-dir", source) == 1
    one_line_error(capsys.readouterr().err, f"{dest} exists; --force")
    assert messages_in(dest / DATABASE_NAME, "random") == {1: "r1"}
    assert run("backup", dest, "--data-dir", source, "--force") == 0
    assert messages_in(dest / DATABASE_NAME, "random") == {1: "r1", 2: "r2"}

    other = tmp_path / "documents"
    other.mkdir()
    (other / "thesis.txt").write_text("precious")
    capsys.readouterr()
    assert run("backup", other, "--data-dir", source, "--force") == 1
    one_line_error(capsys.readouterr().err, "not a file or a securechat backup")
    assert os.listdir(other) == ["thesis.txt"]
    assert run("backup", source / "backup", "--data-dir", source) == 1
    one_line_error(capsys.readouterr().err, "inside the data directory")
    assert sorted(os.listdir(tmp_path)) == ["backup", "data", "documents"]  # no temp left


def test_restore_refuses_what_is_not_a_securechat_database(tmp_path, capsys):
    target = make_data_dir(tmp_path / "data")
    original = messages_in(target / DATABASE_NAME, "general")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    newer = tmp_path / "newer"
    assert run("backup", newer, "--data-dir", target) == 0
    with contextlib.closing(sqlite3.connect(newer / DATABASE_NAME)) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    capsys.readouterr()

    cases = [
        (junk, "is not a securechat database"),
        (other, "is not a securechat database (no table rooms)"),
        (newer, f"has schema version {SCHEMA_VERSION + 1}, newer than this securechat's"),
        (tmp_path / "missing", "no backup"),
        (tmp_path / "documents", "no database"),
    ]
    (tmp_path / "documents").mkdir()
    for source, needle in cases:
        assert run("restore", source, "--data-dir", target, "--force") == 1
        one_line_error(capsys.readouterr().err, needle)
    assert files_in(target) == [DATABASE_NAME]  # untouched, no temp left
    assert messages_in(target / DATABASE_NAME, "general") == original


def test_restore_refuses_a_damaged_backup(tmp_path, capsys):
    source = tmp_path / "data"
    source.mkdir()
    store = SqliteStore(source / DATABASE_NAME)
    rows = [StoredMessage(n, "alice", f"message {n} " + "x" * 300, T1) for n in range(1, 401)]
    store.write([AddMessages("general", rows)])
    store.close()
    assert run("backup", tmp_path / "backup", "--data-dir", source) == 0
    database = tmp_path / "backup" / DATABASE_NAME
    with contextlib.closing(sqlite3.connect(database)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with open(database, "r+b") as f:  # a leaf page in the middle of the messages
        f.seek(page_size * (pages // 2))
        f.write(b"\xff" * page_size)
    capsys.readouterr()
    assert run("restore", tmp_path / "backup", "--data-dir", tmp_path / "new") == 1
    one_line_error(capsys.readouterr().err, "damaged")
    assert os.listdir(tmp_path / "new") == []


def test_restore_refuses_a_running_servers_data_dir_and_keeps_the_old_database(
    certs, passwd_path, tmp_path, capsys
):
    backup_dir = tmp_path / "backup"
    assert run("backup", backup_dir, "--data-dir", make_data_dir(tmp_path / "old")) == 0
    live = tmp_path / "data"
    with run_server(certs, passwd_path, data_dir=live) as server:
        alice = login(server, certs, "alice")
        alice.request(type="join", room="general")
        alice.request(type="send", room="general", text="the live one")
        capsys.readouterr()
        assert run("restore", backup_dir, "--data-dir", live, "--force") == 1
        one_line_error(capsys.readouterr().err, "is in use (is the server running?)")
        assert alice.request(type="send", room="general", text="still here")["id"] == 2
        alice.close()
    assert sorted(os.listdir(live)) == [DATABASE_NAME]

    assert run("restore", backup_dir, "--data-dir", live) == 1
    one_line_error(capsys.readouterr().err, "exists; --force replaces it")
    assert run("restore", backup_dir, "--data-dir", live, "--force") == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0] == (f"restored {backup_dir} to {live / DATABASE_NAME}: 4 messages in 2 "
                       f"rooms, 5 direct messages, schema version {SCHEMA_VERSION}")  # fmt: skip
    names = sorted(os.listdir(live))
    assert len(names) == 2 and names[0] == DATABASE_NAME  # no -wal or -shm left
    kept = live / names[1]
    assert names[1].startswith(f"{DATABASE_NAME}.before-restore-")
    assert said[1] == f"kept the old database as {kept}"
    assert messages_in(kept, "general") == {1: "the live one", 2: "still here"}
    assert messages_in(live / DATABASE_NAME, "general")[4] == "later"
    assert stat.S_IMODE((live / DATABASE_NAME).stat().st_mode) == 0o600


def test_restore_over_a_crashed_servers_database_keeps_what_its_wal_held(tmp_path, capsys):
    assert run("backup", tmp_path / "backup", "--data-dir", make_data_dir(tmp_path / "a")) == 0
    live = tmp_path / "data"
    live.mkdir()
    store = SqliteStore(tmp_path / "a" / DATABASE_NAME)
    try:  # a crash image: the database and its WAL as a killed server leaves them
        store.write([AddMessages("random", [StoredMessage(2, "bob", "only in the WAL", T4)])])
        for suffix in ("", "-wal", "-shm"):
            shutil.copyfile(tmp_path / "a" / f"{DATABASE_NAME}{suffix}",
                            live / f"{DATABASE_NAME}{suffix}")  # fmt: skip
    finally:
        store.close()
    assert os.path.getsize(live / f"{DATABASE_NAME}-wal") > 0
    assert run("restore", tmp_path / "backup", "--data-dir", live, "--force") == 0
    names = sorted(os.listdir(live))
    assert len(names) == 2 and names[0] == DATABASE_NAME  # the old WAL went with the old db
    assert messages_in(live / names[1], "random")[2] == "only in the WAL"
    assert messages_in(live / DATABASE_NAME, "random") == {1: "r1"}


def test_restore_moves_aside_a_wal_left_without_its_database(tmp_path, capsys):
    assert run("backup", tmp_path / "backup", "--data-dir", make_data_dir(tmp_path / "a")) == 0
    live = tmp_path / "data"
    live.mkdir()
    (live / f"{DATABASE_NAME}-wal").write_bytes(b"someone else's frames")
    assert run("restore", tmp_path / "backup", "--data-dir", live) == 0
    stray = [name for name in os.listdir(live) if name.endswith("-wal")]
    assert len(stray) == 1 and stray[0].startswith(f"{DATABASE_NAME}.before-restore-")
    assert messages_in(live / DATABASE_NAME, "random") == {1: "r1"}


def test_restore_of_an_older_schema_says_the_server_migrates_it(tmp_path, capsys):
    old = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(old)) as conn:
        conn.executescript(
            "CREATE TABLE rooms (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL);"
            "CREATE TABLE messages (room TEXT, id INTEGER, user TEXT, text TEXT, ts TEXT,"
            " edited_ts TEXT, deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (room, id));"
            "CREATE TABLE dms (id INTEGER PRIMARY KEY, sender TEXT, recipient TEXT, text TEXT,"
            " ts TEXT);"
            "CREATE TABLE dm_markers (user TEXT PRIMARY KEY, last_id INTEGER NOT NULL);"
            "PRAGMA user_version=1;"
        )
    assert run("restore", old, "--data-dir", tmp_path / "data") == 0
    said = capsys.readouterr().out
    assert f"migrates it to schema version {SCHEMA_VERSION} when it starts" in said
    SqliteStore(tmp_path / "data" / DATABASE_NAME).close()  # and the server can open it


# -------------------------------------------------------------------- export


def export(capsysbinary, data_dir: Path, *args: str) -> str:
    assert run("export", "--data-dir", data_dir, *args) == 0
    captured = capsysbinary.readouterr()
    assert captured.err == b""
    return captured.out.decode("utf-8")


def jsonl(text: str) -> list[dict]:
    assert text.endswith("\n") or not text
    return [json.loads(line) for line in text.splitlines()]


def test_export_room_jsonl_and_txt(tmp_path, capsysbinary):
    source = make_data_dir(tmp_path / "data")
    assert jsonl(export(capsysbinary, source, "--room", "general")) == [
        {"room": "general", "id": 1, "user": "alice", "text": "hello", "ts": T1},
        {"room": "general", "id": 2, "user": "bob", "text": "two\nlines, edited", "ts": T2,
         "edited_ts": EDITED},
        {"room": "general", "id": 4, "user": "carol", "text": "later", "ts": T4},
    ]  # fmt: skip
    assert export(capsysbinary, source, "--room", "general", "--format", "txt") == (
        f"{T1} [1] alice: hello\n"
        f"{T2} [2] bob: two\n"
        f"    lines, edited (edited {EDITED})\n"
        f"{T4} [4] carol: later\n"
    )
    assert export(capsysbinary, source, "--room", "random", "--format", "txt") == (
        f"{T2} [1] bob: r1\n"
    )


@pytest.mark.parametrize(
    ("since", "ids"),
    [
        ("2026-12-01", [1, 2, 4]),
        ("2026-12-01T10:00", [2, 4]),
        ("2026-12-01T10:30:00Z", [2, 4]),  # at or after
        ("2026-12-01T11:30:00+01:00", [2, 4]),  # = 10:30 UTC
        ("2026-12-01T10:30:00.001", [4]),
        ("2026-12-02", [4]),
        ("2027-01-01", []),
    ],
)
def test_export_since(tmp_path, capsysbinary, since, ids):
    source = make_data_dir(tmp_path / "data")
    exported = jsonl(export(capsysbinary, source, "--room", "general", "--since", since))
    assert [record["id"] for record in exported] == ids


def test_export_dms_of_a_user(tmp_path, capsysbinary):
    source = make_data_dir(tmp_path / "data")
    assert jsonl(export(capsysbinary, source, "--dms", "bob")) == [
        {"id": 1, "from": "alice", "to": "bob", "text": "hi bob", "ts": T1},
        {"id": 2, "from": "bob", "to": "alice", "text": "hi alice", "ts": T2},
        {"id": 4, "from": "carol", "to": "bob", "text": "from carol", "ts": T4},
        {"id": 5, "from": "bob", "to": "bob", "text": "note to self", "ts": T4},
    ]
    assert export(capsysbinary, source, "--dms", "carol", "--since", "2026-12-02",
                  "--format", "txt") == f"{T4} [4] carol -> bob: from carol\n"  # fmt: skip
    assert export(capsysbinary, source, "--dms", "nobody") == ""


def test_export_describes_shared_files(tmp_path, capsysbinary):
    store_module = pytest.importorskip("securechat.server.store")
    if not hasattr(store_module, "StoredFile"):
        pytest.skip("no shared files (schema version 3) in this tree")
    photo = store_module.StoredFile("f1", "ab" * 32, 3000, "photo.png", "image/png")
    shared_again = store_module.StoredFile("f2", "ab" * 32, 3000, "photo.png", "image/png")
    source = tmp_path / "data"
    source.mkdir()
    store = SqliteStore(source / DATABASE_NAME)
    store.write([
        AddMessages("general", [StoredMessage(1, "alice", "", T1, file=photo),
                                StoredMessage(2, "bob", "nice", T2)]),
        AddDm(DmRecord(1, "alice", "bob", "the photo", T3, file=shared_again)),
    ])  # fmt: skip
    store.close()
    info = {"id": "f1", "name": "photo.png", "size": 3000, "sha256": "ab" * 32,
            "mime": "image/png"}  # fmt: skip
    assert jsonl(export(capsysbinary, source, "--room", "general")) == [
        {"room": "general", "id": 1, "user": "alice", "text": "", "ts": T1, "file": info},
        {"room": "general", "id": 2, "user": "bob", "text": "nice", "ts": T2},
    ]
    assert jsonl(export(capsysbinary, source, "--dms", "bob")) == [
        {
            "id": 1,
            "from": "alice",
            "to": "bob",
            "text": "the photo",
            "ts": T3,
            "file": {**info, "id": "f2"},
        }
    ]
    assert export(capsysbinary, source, "--room", "general", "--format", "txt") == (
        f"{T1} [1] alice: [file: photo.png, 2.9 KiB]\n{T2} [2] bob: nice\n"
    )


def test_export_reads_in_pages(tmp_path):
    source = make_data_dir(tmp_path / "data")
    with contextlib.closing(data.open_read_only(source / DATABASE_NAME)) as conn:
        for page in (1, 2, 3):
            assert list(data.room_messages(conn, "general", page=page)) == list(
                data.room_messages(conn, "general")
            )
            assert list(data.dm_messages(conn, "bob", page=page)) == list(
                data.dm_messages(conn, "bob")
            )
        assert [m["id"] for m in data.room_messages(conn, "general", T2, page=1)] == [2, 4]


def test_export_unknown_room(tmp_path, capsysbinary):
    source = make_data_dir(tmp_path / "data")
    assert run("export", "--data-dir", source, "--room", "gneral") == 1
    captured = capsysbinary.readouterr()
    assert captured.out == b""
    one_line_error(captured.err.decode(), "no room gneral in", "(rooms: general, random)")


# --------------------------------------------------------------------- stats


def test_stats(tmp_path, passwd_path, capsys):
    source = make_data_dir(tmp_path / "data")
    assert run("stats", "--data-dir", source, "--passwd", passwd_path) == 0
    lines = capsys.readouterr().out.splitlines()
    size = (source / DATABASE_NAME).stat().st_size
    assert lines[0] == f"database: {source / DATABASE_NAME}, schema version {SCHEMA_VERSION}"
    assert lines[1] == f"size: {size / 1024:.1f} KiB"
    assert lines[2:] == [
        f"users: {len(USERS) + 60} in {passwd_path}",
        "rooms: 2",
        "messages: 4 (and 1 deleted)",
        "direct messages: 5",
        f"oldest message: {T1}",
        f"newest message: {T4}",
    ]
    assert run("stats", "--data-dir", source, "--passwd", tmp_path / "none") == 0
    assert f"users: 0 (no password file {tmp_path / 'none'}" in capsys.readouterr().out


def test_stats_of_a_running_server_counts_what_is_still_in_the_wal(tmp_path, capsys):
    source = make_data_dir(tmp_path / "data")
    store = SqliteStore(source / DATABASE_NAME)  # as the server keeps it open
    try:
        store.write([AddMessages("random", [StoredMessage(2, "bob", "r2", T4)])])
        assert run("stats", "--data-dir", source, "--passwd", tmp_path / "none") == 0
        said = capsys.readouterr().out
        assert "messages: 5 (and 1 deleted)" in said
        assert "of WAL)" in said
    finally:
        store.close()


# --------------------------------------------------------------- CLI errors


def test_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for command in (["stats"], ["export", "--room", "general"], ["backup", tmp_path / "b"]):
        assert run(*command, "--data-dir", missing) == 1
        one_line_error(capsys.readouterr().err, f"no database {missing / DATABASE_NAME}",
                       "see --data-dir")  # fmt: skip
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / DATABASE_NAME).write_bytes(b"\0" * 5000)
    assert run("stats", "--data-dir", junk) == 1
    one_line_error(capsys.readouterr().err, "is not a securechat database")
    assert run("backup", tmp_path / "no" / "such" / "dir", "--data-dir", junk) == 1
    one_line_error(capsys.readouterr().err, f"no directory {tmp_path / 'no' / 'such'}")
    with pytest.raises(SystemExit) as usage:
        run("export", "--room", "general", "--since", "yesterday")
    assert usage.value.code == 2
    assert "not an ISO date" in capsys.readouterr().err


def test_as_a_command(tmp_path):
    """``python -m securechat.admin.data``: one line and status 1, or usage and status 2."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "securechat.admin.data"]

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    failed = call("stats")
    assert (failed.returncode, failed.stdout) == (1, "")
    one_line_error(failed.stderr, "no database data/securechat.db (no directory data")
    usage = call()
    assert usage.returncode == 2 and "usage: securechat-admin" in usage.stderr
    assert "Traceback" not in usage.stderr
