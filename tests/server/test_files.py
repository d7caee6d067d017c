"""The file store without sockets: names, types, uploads into the content-addressed
store, pins against a deletion at the wrong moment, quotas, limits, the sweep."""

import hashlib
import os
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securechat.exceptions import FileRefused
from securechat.server.files import (
    MAX_NAME_BYTES,
    FileLimits,
    FileStore,
    sanitize_name,
    sniff,
)
from securechat.server.store import AddMessages, DeleteMessage, SqliteStore, StoredMessage

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db() -> SqliteStore:
    return SqliteStore(":memory:")


def make_store(tmp_path, db, **limits) -> FileStore:
    return FileStore(tmp_path, db, FileLimits(**limits), free_space=lambda _: 10**12,
                     clock=Clock())  # fmt: skip


def share(db: SqliteStore, upload, room="general", message_id=1, name="a.txt"):
    """Commit a message carrying the finished ``upload`` (what the hub does)."""
    stored = upload.finish()
    file = type(stored)(stored.id, stored.sha256, stored.size, name, stored.mime)
    db.write([AddMessages(room, [StoredMessage(message_id, upload.user, "", "ts", file=file)])])
    upload.done(True)
    return file


def blobs(store: FileStore) -> list[str]:
    return sorted(p.parent.name + p.name for p in store.blobs.glob("*/*"))


# ---------------------------------------------------------------- names and types


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("report.pdf", "report.pdf"),
        ("a/b/c.txt", "a_b_c.txt"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", None),
        (" . ", None),
        ("\x00\x01", None),
        ("C:\\Windows\\evil.exe", "C__Windows_evil.exe"),
        ("tab\there\nnew\x1b[31mred.txt", "tabherenew[31mred.txt"),
        ("gpj.\u202eexe", "gpj.exe"),  # the right-to-left override that fakes an extension
        (".bashrc", "bashrc"),
        ("  many   spaces  .txt ", "many spaces .txt"),
        ('a"b<c>d|e*f?g:h', "a_b_c_d_e_f_g_h"),
        ("e\u0301t\u00e9.txt", "\u00e9t\u00e9.txt"),  # NFC
    ],
)
def test_names_are_sanitised(raw, clean):
    if clean is None:
        with pytest.raises(ValueError):
            sanitize_name(raw)
    else:
        assert sanitize_name(raw) == clean


def test_a_long_name_keeps_its_extension_within_255_bytes():
    name = sanitize_name("x" * 1000 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) == MAX_NAME_BYTES
    wide = sanitize_name("\u00e9" * 1000 + ".txt")  # two bytes each: never cut in half
    assert wide.endswith(".txt") and len(wide.encode()) <= MAX_NAME_BYTES


@given(st.text(max_size=600))
def test_any_name_is_safe_or_refused(raw):
    try:
        name = sanitize_name(raw)
    except ValueError:
        return
    assert name and len(name.encode()) <= MAX_NAME_BYTES
    assert not set(name) & set('/\\:*?"<>|')
    assert not name.startswith((".", " ")) and name != ".."
    assert all(ch.isprintable() or ch == " " for ch in name)


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 12, "image/jpeg"),
        (b"GIF89a" + b"\0" * 10, "image/gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'>", "application/octet-stream"),
        (b"<html><script>", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_only_safe_raster_images_get_a_type(head, mime):
    assert sniff(head) == mime


# ---------------------------------------------------------------- uploads


def test_an_upload_lands_in_the_store_by_its_hash(tmp_path, db):
    store = make_store(tmp_path, db)
    upload = store.begin("alice", 11)
    upload.write(b"hello ")
    upload.write(b"world")
    file = share(db, upload)
    digest = hashlib.sha256(b"hello world").hexdigest()
    assert (file.sha256, file.size, file.mime) == (digest, 11, "application/octet-stream")
    assert store.blob_path(digest).read_bytes() == b"hello world"
    assert blobs(store) == [digest]
    assert list(store.temp.iterdir()) == []
    assert oct(store.blob_path(digest).stat().st_mode & 0o777) == "0o600"
    entry = store.lookup(file.id)
    assert entry is not None and entry.uploader == "alice" and entry.room == "general"


def test_the_same_bytes_are_stored_once(tmp_path, db):
    store = make_store(tmp_path, db)
    first, second = store.begin("alice", 3), store.begin("bob", 3)
    first.write(b"abc")
    second.write(b"abc")
    a = share(db, first, message_id=1)
    b = share(db, second, message_id=2)
    assert a.id != b.id and a.sha256 == b.sha256
    assert len(blobs(store)) == 1 and list(store.temp.iterdir()) == []


def test_a_wrong_hash_stores_nothing(tmp_path, db):
    store = make_store(tmp_path, db)
    upload = store.begin("alice", 3, hashlib.sha256(b"abd").hexdigest())
    upload.write(b"abc")
    with pytest.raises(FileRefused) as refused:
        upload.finish()
    assert refused.value.status == 400
    assert blobs(store) == [] and list(store.temp.iterdir()) == []
    assert store.begin("alice", 1)  # (the upload no longer counts as in progress)


def test_an_aborted_upload_leaves_nothing(tmp_path, db):
    store = make_store(tmp_path, db, uploads_at_once=1)
    upload = store.begin("alice", 100)
    upload.write(b"x" * 50)
    upload.abort()
    upload.abort()  # (idempotent)
    assert list(store.temp.iterdir()) == [] and blobs(store) == []
    store.begin("alice", 1)  # its place is free again


def test_streamed_bytes_past_the_limit_are_refused(tmp_path, db):
    store = make_store(tmp_path, db, max_file_size=10)
    with pytest.raises(FileRefused) as declared:
        store.begin("alice", 11)
    assert declared.value.status == 413
    upload = store.begin("alice", None)  # (chunked: no length said)
    upload.write(b"x" * 10)
    with pytest.raises(FileRefused) as streamed:
        upload.write(b"x")
    assert streamed.value.status == 413
    assert list(store.temp.iterdir()) == []


def test_a_full_disk_while_writing_is_507_and_nothing_left(tmp_path, db, monkeypatch):
    store = make_store(tmp_path, db)
    upload = store.begin("alice", 10)

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(FileRefused) as refused:
        upload.write(b"x" * 10)
    monkeypatch.undo()
    assert refused.value.status == 507
    assert list(store.temp.iterdir()) == []


def test_the_quota_counts_live_files_and_uploads_in_progress(tmp_path, db):
    store = make_store(tmp_path, db, quota=100)
    upload = store.begin("alice", 60)
    upload.write(b"x" * 60)
    share(db, upload)
    with pytest.raises(FileRefused) as over:
        store.begin("alice", 41)
    assert over.value.status == 507 and "quota" in over.value.message
    in_progress = store.begin("alice", 30)  # 90 of 100
    with pytest.raises(FileRefused):
        store.begin("alice", 20)
    in_progress.abort()
    store.begin("alice", 40).abort()  # (its reservation is gone)
    store.begin("bob", 100).abort()  # per user
    db.write([DeleteMessage("general", 1)])
    store.begin("alice", 100).abort()  # a deleted message's file no longer counts


def test_the_free_disk_floor(tmp_path, db):
    free = [10_000]
    store = FileStore(tmp_path, db, FileLimits(min_free=1000), free_space=lambda _: free[0])
    store.begin("alice", 8000).abort()
    with pytest.raises(FileRefused) as low:
        store.begin("alice", 9001)
    assert low.value.status == 507
    free[0] = 500
    with pytest.raises(FileRefused):
        store.begin("alice", 1)


def test_uploads_at_once_and_the_rate_per_user(tmp_path, db):
    clock = Clock()
    store = FileStore(tmp_path, db, FileLimits(uploads_at_once=2, upload_rate=1.0,
                      upload_burst=3), free_space=lambda _: 10**12, clock=clock)  # fmt: skip
    first, second = store.begin("alice", 1), store.begin("alice", 1)
    with pytest.raises(FileRefused) as busy:
        store.begin("alice", 1)
    assert busy.value.status == 429 and busy.value.retry_after
    store.begin("bob", 1).abort()  # (another user is not counted with alice)
    first.abort()
    second.abort()
    store.begin("alice", 1).abort()  # the third of the burst
    with pytest.raises(FileRefused) as fast:
        store.begin("alice", 1)
    assert fast.value.status == 429 and fast.value.retry_after == pytest.approx(1.0)
    clock.now += 1.0
    store.begin("alice", 1).abort()


# ---------------------------------------------------------------- removal


def test_a_deleted_message_releases_its_blob_unless_another_carries_it(tmp_path, db):
    store = make_store(tmp_path, db)
    for message_id in (1, 2):
        upload = store.begin("alice", 3)
        upload.write(b"abc")
        file = share(db, upload, message_id=message_id)
    db.write([DeleteMessage("general", 1)])
    assert not store.released(file.sha256) and blobs(store) == [file.sha256]
    db.write([DeleteMessage("general", 2)])
    assert store.released(file.sha256) and blobs(store) == []
    assert store.lookup(file.id).deleted


def test_a_pinned_blob_survives_a_deletion_of_the_same_bytes(tmp_path, db):
    """An upload of bytes a deleted message carried: between placing the blob and the
    commit of its message, the deletion's release must not remove it."""
    store = make_store(tmp_path, db)
    old = store.begin("alice", 3)
    old.write(b"abc")
    share(db, old, message_id=1)
    new = store.begin("bob", 3)
    new.write(b"abc")
    stored = new.finish()  # placed (found there), pinned, not committed yet
    db.write([DeleteMessage("general", 1)])
    assert not store.released(stored.sha256)
    assert blobs(store) == [stored.sha256]
    new.done(False)  # its message was not stored after all: now it goes
    assert blobs(store) == []


def test_concurrent_uploads_of_the_same_bytes_leave_one_blob(tmp_path, db):
    store = make_store(tmp_path, db, uploads_at_once=8, upload_burst=100)
    data = os.urandom(300_000)
    barrier = threading.Barrier(8)
    files = []

    def upload(n: int) -> None:
        up = store.begin(f"user{n}", len(data))
        for start in range(0, len(data), 65536):
            up.write(data[start : start + 65536])
        barrier.wait()
        files.append(up.finish())
        up.done(not n % 2)  # (half of the messages fail to commit)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({f.sha256 for f in files}) == 1
    assert blobs(store) == [files[0].sha256] or blobs(store) == []  # (nothing committed here)
    assert list(store.temp.iterdir()) == []


def test_the_sweep_removes_unfinished_uploads_and_orphans(tmp_path, db):
    store = make_store(tmp_path, db)
    kept = store.begin("alice", 4)
    kept.write(b"kept")
    file = share(db, kept)
    orphan = store.blob_path(hashlib.sha256(b"orphan").hexdigest())
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    (store.temp / "dead.part").write_bytes(b"half")
    again = make_store(tmp_path, db)  # a restart
    assert again.sweep() == (1, 1)
    assert blobs(again) == [file.sha256] and list(again.temp.iterdir()) == []


def test_lookups_of_bad_ids_never_reach_the_database(tmp_path, db):
    store = make_store(tmp_path, db)
    for bad in ("", "../x", "a/b", "x" * 65, "é"):
        assert store.lookup(bad) is None
    with pytest.raises(ValueError):
        store.blob_path("../../etc/passwd")
