"""The SQLite store and the group committer, without sockets; and how they fail."""

import errno
import logging
import sqlite3
import threading

import pytest

from securechat.bench.store import main as store_bench
from securechat.exceptions import StoreError, StoreUnavailable
from securechat.server import store as store_module
from securechat.server.store import (
    _MIGRATIONS,
    CHECKPOINT_COMMITS,
    CHECKPOINT_WAL,
    RETRY_AFTER,
    RETRY_AFTER_LOCKED,
    SCHEMA_VERSION,
    AddDm,
    AddMessages,
    DeleteMessage,
    DmRecord,
    EditMessage,
    GroupCommitter,
    InlineCommitter,
    SetDmMarker,
    SqliteStore,
    StoredFile,
    StoredMessage,
    storage_failure,
)
from tests.faults import FAULTS, FaultyStore, fill, remount_read_only, sqlite_error, tmpfs

TS = "2026-11-26T02:20:28.123Z"


def message(n: int, user: str = "ann") -> StoredMessage:
    return StoredMessage(id=n, user=user, text=f"m{n}", ts=TS)


def test_new_database_is_wal_and_versioned(tmp_path):
    store = SqliteStore(tmp_path / "db")
    store.close()
    conn = sqlite3.connect(tmp_path / "db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def _wal_pages(path) -> int:
    """Pages written to the WAL since it was last started afresh."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    finally:
        conn.close()


def test_commits_leave_the_wal_to_the_checkpoint_thread(tmp_path, monkeypatch):
    """A commit never copies the WAL back (SQLite's automatic checkpoint would, at 1,000
    pages, in the I/O thread that commits); the checkpointer does, and once it has caught
    up the writer starts the WAL afresh."""
    monkeypatch.setattr(store_module, "CHECKPOINT_COMMITS", 10**9)  # (never woken)
    store = SqliteStore(tmp_path / "db")
    for n in range(1, 1201):
        store.write([AddMessages("lobby", [message(n)])])
    wal = tmp_path / "db-wal"
    assert wal.stat().st_size > 1100 * 4096  # (past where SQLite would have checkpointed)
    store.checkpointer.checkpoint()
    assert not store.checkpointer.unfinished and store.checkpointer.passes == 1
    store.write([AddMessages("lobby", [message(1201)])])
    assert _wal_pages(tmp_path / "db") < 10  # (the WAL was started afresh)
    assert store.room_counters() == {"lobby": 1201}
    store.close()
    assert not wal.exists()
    reopened = SqliteStore(tmp_path / "db")
    assert [m.id for m in reopened.recent("lobby", 3)] == [1199, 1200, 1201]
    reopened.close()


def test_the_checkpoint_thread_is_woken_by_commits(tmp_path):
    store = SqliteStore(tmp_path / "db")
    for n in range(1, CHECKPOINT_COMMITS + 1):
        store.write([AddMessages("lobby", [message(n)])])
    checkpointer = store.checkpointer
    with checkpointer.done:
        assert checkpointer.done.wait_for(lambda: checkpointer.passes >= 1, timeout=10)
    store.close()


def test_the_writer_finishes_a_checkpoint_the_thread_cannot(tmp_path, monkeypatch):
    """Under steady commits a PASSIVE pass misses the frames committed while it ran, and
    the WAL is only started afresh by a write that begins with every frame copied: once
    the WAL is CHECKPOINT_WAL pages long, the writer copies the rest after its next
    commit (once), and the write after that starts the WAL afresh."""
    monkeypatch.setattr(store_module, "CHECKPOINT_COMMITS", 10**9)
    store = SqliteStore(tmp_path / "db")
    checkpointer, used, passes = store.checkpointer, [], []
    real = store_module.Checkpointer._checkpoint

    def checkpoint(conn):
        used.append(conn)
        return passes.pop(0) if conn is not store._writer else real(conn)

    monkeypatch.setattr(store_module.Checkpointer, "_checkpoint", staticmethod(checkpoint))
    for n in range(1, 101):
        store.write([AddMessages("lobby", [message(n)])])
    for pages, unfinished in ((CHECKPOINT_WAL - 1, False), (CHECKPOINT_WAL, True)):
        passes.append(pages)  # (what a pass racing the writer finds)
        checkpointer.checkpoint()
        assert checkpointer.unfinished is unfinished
    assert store._writer not in used
    store.write([AddMessages("lobby", [message(101)])])
    assert used[-1] is store._writer and not checkpointer.unfinished
    size = (tmp_path / "db-wal").stat().st_size
    for n in range(102, 152):
        store.write([AddMessages("lobby", [message(n)])])
    assert used.count(store._writer) == 1  # (once, not after every commit)
    assert (tmp_path / "db-wal").stat().st_size == size  # (written from its start again)
    store.close()


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
    errors: list[Exception] = []
    passed = threading.Event()
    committer.submit(AddMessages("lobby", [message(1)]), lambda: acked.append(1),  # duplicate id
                     errors.append)  # fmt: skip
    committer.submit(None, passed.set)
    assert passed.wait(10)
    assert acked == []
    # A duplicate id is our bug, not the disk's: the sender is told so ("internal").
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.IntegrityError)
    committer.close()
    store.close()


# ------------------------------------------------------------ storage failures


@pytest.mark.parametrize("with_code", [True, False], ids=["with-code", "message-only"])
@pytest.mark.parametrize("reason", sorted(FAULTS))
def test_sqlite_storage_errors_are_unavailable_with_a_reason(reason, with_code):
    failure = storage_failure(sqlite_error(reason, with_code=with_code))
    assert isinstance(failure, StoreUnavailable)
    assert failure.reason == reason
    assert failure.detail == FAULTS[reason][0]
    assert failure.retry_after == (RETRY_AFTER_LOCKED if reason == "database locked"
                                   else RETRY_AFTER)  # fmt: skip


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only"),
        (OSError(errno.EIO, "Input/output error"), "I/O error"),
        (sqlite3.DatabaseError("database disk image is malformed"), "database corrupt"),
        (sqlite3.OperationalError("something new"), "database error"),
    ],
)
def test_other_storage_errors_are_unavailable(error, reason):
    failure = storage_failure(error)
    assert failure is not None and failure.reason == reason


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.IntegrityError("UNIQUE constraint failed: messages.room, messages.id"),
        sqlite3.ProgrammingError("Cannot operate on a closed database."),
        RuntimeError("bug"),
    ],
)
def test_bugs_are_not_storage_failures(error):
    assert storage_failure(error) is None


class Recorder:
    """Callbacks of committed and failed writes, and barriers, in the order they ran."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def ok(self, n: int):
        return lambda: self.events.append(("ok", n))

    def failed(self, n: int):
        return lambda error: self.events.append(("failed", n, error))

    def barrier(self, n: int):
        return lambda: self.events.append(("barrier", n))


def test_a_failed_batch_answers_each_write_as_failed_in_order_and_nothing_is_stored(tmp_path):
    store = FaultyStore(tmp_path / "db")
    committer = GroupCommitter(store)
    record = Recorder()
    committer.submit(AddMessages("lobby", [message(1)]), record.ok(1), record.failed(1))
    # Hold the writer in a callback while writes of "many connections" queue up: they
    # are then committed as one batch.
    holding, release = threading.Event(), threading.Event()
    committer.submit(None, lambda: (holding.set(), release.wait(10)))
    assert holding.wait(10)
    store.fail("disk full")
    commits = committer.commits
    committer.submit(AddMessages("lobby", [message(2), message(3)]), record.ok(2), record.failed(2))
    committer.submit(None, record.barrier(1))
    committer.submit(EditMessage("lobby", 1, "changed", TS), record.ok(4), record.failed(4))
    committer.submit(DeleteMessage("lobby", 1), record.ok(5), record.failed(5))
    committer.submit(AddDm(DmRecord(1, "ann", "bob", "hi", TS)), record.ok(6), record.failed(6))
    committer.submit(SetDmMarker("bob", 1))  # no callbacks at all: nothing to answer
    committer.submit(None, record.barrier(2))
    release.set()
    committer.close()
    assert store.failed_writes == 1  # one batch, one failed commit
    assert committer.commits == commits
    kinds = [event[:2] for event in record.events]
    assert kinds == [("ok", 1), ("failed", 2), ("barrier", 1), ("failed", 4), ("failed", 5),
                     ("failed", 6), ("barrier", 2)]  # fmt: skip
    errors = [event[2] for event in record.events if event[0] == "failed"]
    assert all(isinstance(e, StoreUnavailable) and e.reason == "disk full" for e in errors)
    assert store.room_counters() == {"lobby": 1}
    assert [(m.id, m.text, m.deleted) for m in store.recent("lobby", 10)] == [(1, "m1", False)]
    assert store.dm_state() == (0, {})
    store.close()


def test_writes_work_again_once_the_fault_clears_and_nothing_failed_comes_back(tmp_path):
    store = FaultyStore(tmp_path / "db")
    committer = GroupCommitter(store)
    record = Recorder()
    store.fail("I/O error")
    answered = threading.Event()
    committer.submit(AddMessages("lobby", [message(1)]), record.ok(1), record.failed(1))
    committer.submit(None, answered.set)
    assert answered.wait(10)
    store.heal()
    committer.submit(AddMessages("lobby", [message(2)]), record.ok(2), record.failed(2))
    committer.close()
    assert [event[:2] for event in record.events] == [("failed", 1), ("ok", 2)]
    assert [m.id for m in store.recent("lobby", 10)] == [2]  # the rolled back row stays out
    assert store.room_counters() == {"lobby": 2}
    store.close()


def test_the_log_says_once_per_episode_what_failed_and_when_it_works_again(tmp_path, caplog):
    store = FaultyStore(tmp_path / "db")
    committer = InlineCommitter(store)
    failures: list[Exception] = []
    with caplog.at_level(logging.INFO, logger="securechat.store"):
        store.fail("disk full")
        for n in range(1, 6):
            committer.submit(AddMessages("lobby", [message(n)]), None, failures.append)
        store.fail("read-only")  # another reason within the episode is news
        committer.submit(AddMessages("lobby", [message(6)]), None, failures.append)
        store.heal()
        committer.submit(AddMessages("lobby", [message(7)]))
        committer.submit(AddMessages("lobby", [message(8)]))
    assert len(failures) == 6
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["ERROR", "ERROR", "WARNING"], lines
    assert "disk full (database or disk is full)" in lines[0][1]
    assert str(tmp_path / "db") in lines[0][1]
    assert "read-only (attempt to write a readonly database)" in lines[1][1]
    assert "stored again" in lines[2][1] and "6 failed commits, 6 writes not stored" in lines[2][1]
    assert not any(r.exc_info for r in caplog.records)  # no traceback for a full disk
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="securechat.store"):
        store.fail("database locked")
        committer.submit(AddMessages("lobby", [message(9)]), None, failures.append)
    assert [r.levelname for r in caplog.records] == ["ERROR"]  # a new episode, logged again
    store.close()


def test_a_bug_in_a_commit_is_logged_with_its_traceback(tmp_path, caplog):
    store = SqliteStore(tmp_path / "db")
    committer = InlineCommitter(store)
    committer.submit(AddMessages("lobby", [message(1)]))
    failures: list[Exception] = []
    with caplog.at_level(logging.INFO, logger="securechat.store"):
        committer.submit(AddMessages("lobby", [message(1)]), None, failures.append)
        committer.submit(AddMessages("lobby", [message(2)]))
    assert isinstance(failures[0], sqlite3.IntegrityError)
    assert [(r.levelname, bool(r.exc_info)) for r in caplog.records] == [("ERROR", True)]
    store.close()


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, "512k"):
        store = SqliteStore(disk / "db")
        try:
            store.write([AddMessages("lobby", [message(1)])])
            filler = fill(disk)
            with pytest.raises(sqlite3.Error) as raised:
                store.write([AddMessages("lobby", [message(2)])])
            failure = storage_failure(raised.value)
            assert failure is not None and failure.reason == "disk full"
            with pytest.raises(StoreError, match=r"cannot write to the database .*: disk full"):
                store.check_writable()
            assert [m.id for m in store.recent("lobby", 10)] == [1]  # reads work
            filler.unlink()
            store.write([AddMessages("lobby", [message(3)])])
            assert [m.id for m in store.recent("lobby", 10)] == [1, 3]
            store.check_writable()
        finally:
            store.close()


def test_a_read_only_file_system_is_refused_at_open(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, "512k"):
        SqliteStore(disk / "db").close()
        remount_read_only(disk)
        with pytest.raises(StoreError, match=r"cannot open the database .*read-only"):
            SqliteStore(disk / "db")


def test_a_version_2_database_is_migrated_to_shared_files(tmp_path):
    """Version 3 adds the files table and a file column to messages and DMs; what was
    stored before keeps working."""
    conn = sqlite3.connect(tmp_path / "db")
    conn.executescript(_MIGRATIONS[0] + _MIGRATIONS[1])
    conn.execute("INSERT INTO messages (room, id, user, text, ts) VALUES ('lobby', 1, 'ann', "
                 "'old', ?)", (TS,))  # fmt: skip
    conn.execute("INSERT INTO rooms VALUES ('lobby', 1)")
    conn.execute("INSERT INTO dms VALUES (1, 'ann', 'bob', 'old dm', ?)", (TS,))
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    store = SqliteStore(tmp_path / "db")
    assert store.message("lobby", 1) == StoredMessage(1, "ann", "old", TS)
    file = StoredFile("f1", "ab" * 32, 3, "a.txt", "application/octet-stream")
    again = StoredFile("f2", "ab" * 32, 3, "b.txt", "application/octet-stream")
    store.write([AddMessages("lobby", [StoredMessage(2, "ann", "", TS, file=file)]),
                 AddDm(DmRecord(2, "ann", "bob", "", TS, again))])  # fmt: skip
    assert store.recent("lobby", 5)[-1].file == file
    assert [d.file for d in store.dms_after("bob", 0)] == [None, again]
    assert store.dm_page("bob", "ann", before=None, limit=5)[-1].file == again
    store.close()
    conn = sqlite3.connect(tmp_path / "db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_files_are_counted_per_uploader_and_released_with_their_message(tmp_path):
    store = SqliteStore(tmp_path / "db")
    files = [StoredFile(f"f{n}", f"{n:064x}", 10 * n, f"{n}.txt", "image/png") for n in (1, 2)]
    store.write([AddMessages("lobby", [StoredMessage(1, "ann", "", TS, file=files[0])]),
                 AddDm(DmRecord(1, "ann", "bob", "x", TS, files[1]))])  # fmt: skip
    assert store.file_usage("ann") == 30 and store.file_usage("bob") == 0
    entry = store.file("f1")
    assert (entry.room, entry.message_id, entry.uploader, entry.deleted) == ("lobby", 1, "ann",
                                                                             False)  # fmt: skip
    dm_entry = store.file("f2")
    assert (dm_entry.sender, dm_entry.recipient, dm_entry.room) == ("ann", "bob", None)
    assert store.blobs_used() == {files[0].sha256, files[1].sha256}
    store.write([DeleteMessage("lobby", 1)])
    assert store.file("f1").deleted and not store.blob_used(files[0].sha256)
    assert store.file_usage("ann") == 20 and store.blobs_used() == {files[1].sha256}
    assert store.message("lobby", 1).file is None  # (a deleted message shows no file)
    assert store.file("nope") is None
    store.close()


# ------------------------------------------------------------ commits where the writes come from


def test_a_thread_that_commits_here_commits_its_own_writes_in_order(tmp_path):
    """An I/O thread that called ``commit_here`` is not answered by the writer thread:
    its writes wait for its own ``commit_pending`` (one transaction for the lot), and
    their callbacks run there, in the order of submission."""
    store = SqliteStore(tmp_path / "db")
    committer = GroupCommitter(store)
    seen: list[tuple[int, str]] = []
    commit = committer.commit_here()
    assert commit is not None
    commits = committer.commits
    for n in range(1, 6):
        committer.submit(AddMessages("lobby", [message(n)]),
                         lambda n=n: seen.append((n, threading.current_thread().name)))  # fmt: skip
    committer.submit(None, lambda: seen.append((0, threading.current_thread().name)))
    assert seen == []  # (nobody else commits them: the writer thread was not woken)
    commit()
    me = threading.current_thread().name
    assert seen == [(1, me), (2, me), (3, me), (4, me), (5, me), (0, me)]
    assert committer.commits == commits + 1  # one transaction
    commit()  # nothing waits: nothing happens
    assert committer.commits == commits + 1
    committer.close()
    assert store.room_counters() == {"lobby": 5}
    store.close()


def test_writes_of_other_threads_still_wake_the_writer_thread(tmp_path):
    """A thread that has not called ``commit_here`` (a login worker, a test) submits as
    before: the writer thread commits and runs the callback."""
    store = SqliteStore(tmp_path / "db")
    committer = GroupCommitter(store)
    done = threading.Event()
    names: list[str] = []

    def answered() -> None:
        names.append(threading.current_thread().name)
        done.set()

    def worker() -> None:
        committer.submit(AddMessages("lobby", [message(1)]), answered)

    thread = threading.Thread(target=worker, name="worker")
    thread.start()
    thread.join()
    assert done.wait(10)
    assert names == ["store-writer"]
    committer.close()
    store.close()


def test_when_another_thread_holds_the_batch_the_writer_commits_what_is_left(tmp_path):
    """``commit_pending`` never waits: while another batch runs (here the writer
    thread's, held in a callback), it wakes the writer thread, which commits the
    waiting writes after that batch, in submission order."""
    store = SqliteStore(tmp_path / "db")
    committer = GroupCommitter(store)
    commit = committer.commit_here()
    assert commit is not None
    holding, release, done = threading.Event(), threading.Event(), threading.Event()
    seen: list[str] = []

    def hold() -> None:
        committer.submit(None, lambda: (seen.append("held"), holding.set(), release.wait(10)))

    holder = threading.Thread(target=hold)  # (a thread of its own: it wakes the writer)
    holder.start()
    holder.join()
    assert holding.wait(10)  # the writer thread is inside that batch's callbacks
    committer.submit(AddMessages("lobby", [message(1)]), lambda: seen.append("mine"))
    committer.submit(None, done.set)
    commit()  # the batch lock is busy: the writer thread is told instead
    assert seen == ["held"]
    release.set()
    assert done.wait(10)
    assert seen == ["held", "mine"]
    committer.close()
    store.close()


def test_a_store_that_fsyncs_keeps_commits_on_the_writer_thread(tmp_path):
    """With ``fsync`` a commit waits for the disk: an I/O thread must not, so
    ``commit_here`` declines and submits keep waking the writer thread."""
    store = SqliteStore(tmp_path / "db", fsync=True)
    committer = GroupCommitter(store)
    assert committer.commit_here() is None
    done = threading.Event()
    committer.submit(AddMessages("lobby", [message(1)]), done.set)
    assert done.wait(10)
    committer.close()
    store.close()


def test_while_writes_fail_the_writer_thread_commits_for_the_io_thread(tmp_path):
    """A failing store (e.g. a database another process holds locked: each try waits
    for the busy timeout) must not stall an I/O thread: once an episode has begun, its
    writes go to the writer thread, and they are answered as failed there; when the
    store works again, the thread commits its own once more."""
    store = FaultyStore(tmp_path / "db")
    committer = GroupCommitter(store)
    commit = committer.commit_here()
    assert commit is not None
    record = Recorder()
    store.fail("disk full")
    committer.submit(AddMessages("lobby", [message(1)]), record.ok(1), record.failed(1))
    commit()  # the first failure is found here: the episode begins
    assert [event[:2] for event in record.events] == [("failed", 1)]
    done = threading.Event()
    threads: list[str] = []
    committer.submit(AddMessages("lobby", [message(2)]), record.ok(2),
                     lambda error: (threads.append(threading.current_thread().name),
                                    done.set()))  # fmt: skip
    commit()  # handed to the writer thread
    assert done.wait(10)
    assert threads == ["store-writer"]
    store.heal()
    healed = threading.Event()
    committer.submit(AddMessages("lobby", [message(3)]), healed.set)
    commit()  # (still the writer's: the episode ends with its next working commit)
    assert healed.wait(10)
    with committer._batch_lock:  # (the writer thread has finished that batch)
        pass
    here: list[str] = []
    committer.submit(AddMessages("lobby", [message(4)]),
                     lambda: here.append(threading.current_thread().name))  # fmt: skip
    commit()
    assert here == [threading.current_thread().name]
    committer.close()
    store.close()
