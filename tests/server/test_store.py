"""The SQLite store and the group committer, without sockets."""

import sqlite3
import threading

import pytest

from securechat.bench.store import main as store_bench
from securechat.exceptions import StoreError
from securechat.server.store import (
    SCHEMA_VERSION,
    AddDm,
    AddMessages,
    DeleteMessage,
    DmRecord,
    EditMessage,
    GroupCommitter,
    SetDmMarker,
    SqliteStore,
    StoredMessage,
)

TS = "2026-11-26T02:20:28.123Z"


def message(n: int, user: str = "ann") -> StoredMessage:
    return StoredMessage(id=n, user=user, text=f"m{n}", ts=TS)


def test_new_database_is_wal_and_versioned(tmp_path):
    store = SqliteStore(tmp_path / "db")
    store.close()
    conn = sqlite3.connect(tmp_path / "db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_database_is_refused_with_a_clear_message(tmp_path):
    SqliteStore(tmp_path / "db").close()
    conn = sqlite3.connect(tmp_path / "db")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this server"):
        SqliteStore(tmp_path / "db")


def test_writes_reads_and_counters(tmp_path):
    store = SqliteStore(tmp_path / "db")
    store.write([AddMessages("lobby", [message(n)]) for n in range(1, 6)])
    store.write([EditMessage("lobby", 2, "two", TS), DeleteMessage("lobby", 3)])
    assert store.room_counters() == {"lobby": 5}
    assert store.message("lobby", 3).deleted and store.message("lobby", 3).text == ""
    assert store.message("lobby", 2).edited_ts == TS
    assert [m.id for m in store.recent("lobby", 3)] == [3, 4, 5]
    page = store.page("lobby", before=None, after=None, limit=10, upto=4)
    assert [m.id for m in page] == [1, 2, 4]  # deleted left out, nothing past upto
    assert [m.id for m in store.page("lobby", before=5, after=None, limit=2, upto=5)] == [2, 4]
    assert [m.id for m in store.page("lobby", before=None, after=1, limit=2, upto=5)] == [2, 4]
    store.close()


def test_dms_and_markers(tmp_path):
    store = SqliteStore(tmp_path / "db")
    dms = [DmRecord(n, "ann", "bob" if n % 2 else "cat", f"d{n}", TS) for n in range(1, 6)]
    store.write([AddDm(dm) for dm in dms] + [SetDmMarker("bob", 1)])
    assert store.dm_state() == (5, {"bob": 1})
    assert [d.id for d in store.dms_after("bob", 1)] == [3, 5]
    assert [d.id for d in store.dm_page("bob", "ann", before=None, limit=10)] == [1, 3, 5]
    assert [d.id for d in store.dm_page("ann", "bob", before=5, limit=1)] == [3]
    store.write([SetDmMarker("bob", 0)])  # a marker never goes back
    assert store.dm_state()[1] == {"bob": 1}
    store.close()


def test_a_failed_transaction_writes_nothing(tmp_path):
    store = SqliteStore(tmp_path / "db")
    store.write([AddMessages("lobby", [message(1)])])
    with pytest.raises(sqlite3.IntegrityError):
        store.write([AddMessages("lobby", [message(2)]), AddMessages("lobby", [message(1)])])
    assert store.room_counters() == {"lobby": 1}
    store.close()


def test_group_committer_batches_and_keeps_order(tmp_path):
    store = SqliteStore(tmp_path / "db")
    committer = GroupCommitter(store)
    seen: list[int] = []
    done = threading.Event()
    for n in range(1, 2001):
        committer.submit(AddMessages("lobby", [message(n)]), lambda n=n: seen.append(n))
    committer.submit(None, done.set)
    assert done.wait(10)
    assert seen == list(range(1, 2001))
    assert committer.commits < 2000  # shared commits
    committer.close()
    assert store.room_counters() == {"lobby": 2000}
    store.close()


def test_store_bench_runs(capsys):
    assert store_bench(["--seconds", "0.2", "--rooms", "2", "--messages", "2000"]) == 0
    out = capsys.readouterr().out
    assert "msg/s acknowledged" in out and "hub open" in out


def test_a_failed_commit_acknowledges_nothing_but_barriers_pass(tmp_path):
    store = SqliteStore(tmp_path / "db")
    store.write([AddMessages("lobby", [message(1)])])
    committer = GroupCommitter(store)
    acked: list[int] = []
    passed = threading.Event()
    committer.submit(AddMessages("lobby", [message(1)]), lambda: acked.append(1))  # duplicate id
    committer.submit(None, passed.set)
    assert passed.wait(10)
    assert acked == []
    committer.close()
    store.close()
