"""When the server cannot store a write: every such write is answered, over real TLS.

Two ways to make the storage fail: :class:`~tests.faults.FaultyStore` (SQLite's own
errors for a full disk, a read-only file system, an I/O error, a locked database) in
an in-process server, and a real small tmpfs filled to the last byte under a server
process. Each failed write gets ``unavailable`` with its ``ref`` and a ``retry_after``,
nobody else hears of it, reads go on, and writes work again, without a restart, once
the fault is gone; no acknowledged message is lost and no id is used twice.
"""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from securechat.server.cli import DATABASE_NAME, Limits
from securechat.server.hub import NOT_STORED
from securechat.server.store import SqliteStore
from tests.chatclient import ChatClient
from tests.conftest import UNMETERED, USERS
from tests.faults import FAULTS, FaultyStore, faulty_server, fill, remount_read_only, tmpfs
from tests.serverprocess import ROOT, ServerProcess

WRITES = {"send", "edit", "delete", "dm"}
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING) ")


def login(address: tuple[str, int], certs, user: str) -> ChatClient:
    client = ChatClient(address, certs.ca_cert)
    assert client.login(user, USERS[user])["type"] == "login_ok"
    return client


def assert_not_stored(frame: dict, ref: str) -> None:
    assert frame["type"] == "error", frame
    assert (frame["code"], frame["ref"], frame["message"]) == ("unavailable", ref, NOT_STORED)
    assert frame["retry_after"] > 0


@pytest.fixture
def faulty(certs, passwd_path, tmp_path):
    """An in-process server whose store is a FaultyStore (``server.hub.store``)."""
    with faulty_server(certs, passwd_path, tmp_path / "data", Limits(**UNMETERED)) as server:
        yield server


def test_each_write_not_stored_is_answered_and_writes_work_again(faulty, certs, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="securechat")
    store = faulty.hub.store
    assert isinstance(store, FaultyStore)
    alice = login(faulty.address, certs, "alice")
    bob = login(faulty.address, certs, "bob")
    for client in (alice, bob):
        client.request(type="join", room="general")
    kept = alice.request(type="send", room="general", text="kept")
    dm = alice.request(type="dm", to="bob", text="stored dm")
    assert (kept["id"], dm["type"]) == (1, "dm")
    acked = {1: "kept"}  # id -> text of every message acknowledged
    acked_dms = [dm["id"]]
    assert bob.expect("message")["id"] == 1
    assert bob.expect("dm")["id"] == dm["id"]

    for episode, reason in enumerate(FAULTS):
        store.fail(reason)
        since = len(caplog.records)
        requests = [
            {"type": "send", "room": "general", "text": "lost"},
            {"type": "edit", "room": "general", "id": 1, "text": "never"},
            {"type": "delete", "room": "general", "id": 1},
            {"type": "dm", "to": "bob", "text": "lost dm"},
            {"type": "send", "room": "general", "text": "batch 1"},  # three in one read:
            {"type": "send", "room": "general", "text": "batch 2"},  # one commit job
            {"type": "send", "room": "general", "text": "batch 3"},
            {"type": "history", "room": "general", "after": 0},  # reads wait, then work
            {"type": "join", "room": "general"},
            {"type": "rooms"},
            {"type": "dm_history", "with": "bob"},
        ]
        for n, frame in enumerate(requests):
            frame["ref"] = f"{episode}-{n}"
        alice.backlog.clear()  # (bob's presence: everything before the last reply)
        alice.send_raw(b"".join(json.dumps(frame).encode() + b"\n" for frame in requests))
        replies = [alice.recv() for _ in requests]
        assert [f.get("ref") for f in replies] == [f["ref"] for f in requests]  # in order
        for request, reply in zip(requests, replies, strict=True):
            if request["type"] in WRITES:
                assert_not_stored(reply, request["ref"])
        history, joined, rooms, dms = replies[-4:]
        assert [(m["id"], m["text"]) for m in history["messages"]] == sorted(acked.items())
        assert joined["last_id"] == max(acked)
        assert rooms["rooms"] == [{"name": "general", "members": 2}]
        assert [m["id"] for m in dms["messages"]] == acked_dms

        store.heal()
        after = alice.request(type="send", room="general", text=f"after {reason}")
        assert after["type"] == "message", after
        assert after["id"] == max(acked) + 5  # the four failed sends took ids: a gap
        acked[after["id"]] = after["text"]
        # The other member heard nothing of the failed writes: its next event is this.
        event = bob.wait_for(lambda f: f["type"] in ("message", "edited", "deleted", "dm"))
        assert (event["type"], event["id"]) == ("message", after["id"])

        logged = [(r.levelname, r.getMessage()) for r in caplog.records[since:]
                  if r.name == "securechat.store"]  # fmt: skip
        assert [level for level, _ in logged] == ["ERROR", "WARNING"], logged
        assert (
            f"cannot store writes in {tmp_path / 'data' / DATABASE_NAME}: {reason} ("
            in (logged[0][1])
        )
        assert "stored again" in logged[1][1]

    again = alice.request(type="dm", to="bob", text="dm after it all")
    acked_dms.append(again["id"])
    assert bob.expect("dm")["id"] == again["id"]
    assert again["id"] == acked_dms[0] + len(FAULTS) + 1  # the failed DMs' ids are a gap too
    page = alice.request(type="history", room="general", after=0)["messages"]
    assert [(m["id"], m["text"], "edited_ts" in m) for m in page] == [
        (n, text, False) for n, text in sorted(acked.items())
    ]
    assert not any(record.exc_info for record in caplog.records)  # no traceback at all
    alice.close()
    bob.close()


def test_nothing_that_failed_reaches_the_database(faulty, certs, tmp_path):
    """After the fault, and a clean shutdown, the file holds what was acknowledged."""
    store = faulty.hub.store
    alice = login(faulty.address, certs, "alice")
    alice.request(type="join", room="general")
    assert alice.request(type="send", room="general", text="one")["id"] == 1
    store.fail("disk full")
    assert_not_stored(alice.request(type="send", room="general", text="two", ref="x"), "x")
    store.heal()
    assert alice.request(type="send", room="general", text="three")["id"] == 3
    alice.close()
    faulty.shutdown()
    reopened = SqliteStore(tmp_path / "data" / DATABASE_NAME)
    assert [(m.id, m.text) for m in reopened.recent("general", 10)] == [(1, "one"), (3, "three")]
    reopened.close()


def test_a_full_disk_is_answered_unavailable_until_space_returns(certs, passwd_path, tmp_path):
    with (
        tmpfs(tmp_path / "disk", "2m") as disk,
        ServerProcess(certs.server, passwd_path, disk / "data") as server,
    ):
        alice = login(server.address, certs, "alice")
        bob = login(server.address, certs, "bob")
        for client in (alice, bob):
            client.request(type="join", room="general")
        assert alice.request(type="send", room="general", text="before")["id"] == 1
        filler = fill(disk)
        since = len(server.log)
        assert_not_stored(alice.request(type="send", room="general", text="lost", ref="s"), "s")
        assert_not_stored(alice.request(type="dm", to="bob", text="lost", ref="m"), "m")
        server.wait_for_log(r" ERROR securechat\.store: cannot store writes in .*: disk full \(",
                            since)  # fmt: skip
        history = alice.request(type="history", room="general")
        assert [m["text"] for m in history["messages"]] == ["before"]
        filler.unlink()
        assert alice.request(type="send", room="general", text="after")["id"] == 3
        server.wait_for_log(r" WARNING securechat\.store: writes are stored again", since)
        assert [bob.expect("message")["id"] for _ in range(2)] == [1, 3]
        alice.close()
        bob.close()
        assert server.terminate() == 0
        errors = [line for line in server.log[since:] if " ERROR " in line]
        assert len(errors) == 1, errors  # once for the episode, not once per write
        assert "Traceback" not in "".join(server.log)


# ---------------------------------------------------------------- start-up


def start_server(certs, passwd: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the server on ``data_dir``, expecting it to exit at once."""
    return subprocess.run(
        [sys.executable, "-m", "securechat.server.cli", "--cert", str(certs.server),
         "--passwd", str(passwd), "--data-dir", str(data_dir), "--port", "0"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def assert_refused(result: subprocess.CompletedProcess[str], data_dir: Path, *words: str) -> str:
    """Exit 1 with one line of error (log lines aside) and no traceback, naming
    ``data_dir`` and saying ``words`` (outside the path); that line."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("securechat-server: "), result.stderr
    assert str(data_dir) in lines[0]
    said = lines[0].replace(str(data_dir), "<dir>").lower()
    for word in words:
        assert word.lower() in said, lines[0]
    return lines[0]


def make_database(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    SqliteStore(data_dir / DATABASE_NAME).close()


def test_start_on_a_full_disk_is_refused_in_one_line(certs, passwd_path, tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        make_database(disk / "data")
        fill(disk)
        assert_refused(start_server(certs, passwd_path, disk / "data"), disk / "data", "full")


@pytest.mark.parametrize("existing", [True, False], ids=["database", "no-data-dir"])
def test_start_on_a_read_only_data_dir_is_refused_in_one_line(
    certs, passwd_path, tmp_path, existing
):
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: use a read-only mount
        disk = tmp_path / "disk"
        with tmpfs(disk, "1m"):
            if existing:
                make_database(disk / "data")
            remount_read_only(disk)
            result = start_server(certs, passwd_path, disk / "data")
            assert_refused(result, disk / "data", "read-only")
        return
    parent = tmp_path / "parent"
    parent.mkdir()
    if existing:
        make_database(parent / "data")
        (parent / "data").chmod(0o500)
    else:
        parent.chmod(0o500)
    try:
        result = start_server(certs, passwd_path, parent / "data")
        assert_refused(result, parent / "data", "not writable" if existing else "permission denied")
    finally:
        parent.chmod(0o700)
        if existing:
            (parent / "data").chmod(0o700)
