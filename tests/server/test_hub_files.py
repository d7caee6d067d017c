"""The hub's part of file sharing, without sockets: a message carrying a file is posted
like any other (ids, order, delivery after the commit), its deletion releases the file."""

import json

import pytest

from securechat.exceptions import ProtocolError, StoreUnavailable
from securechat.server.store import StoredFile
from tests.faults import FaultyStore
from tests.server.test_hub import clear, connect, joined, make_hub, post

FILE = StoredFile("f1", "ab" * 32, 1234, "notes.pdf", "application/octet-stream")
INFO = {"id": "f1", "name": "notes.pdf", "size": 1234, "sha256": "ab" * 32,
        "mime": "application/octet-stream"}  # fmt: skip


class Answers:
    """The ``then`` and ``failed`` of an upload, recorded."""

    def __init__(self) -> None:
        self.posted: list[dict] = []
        self.failures: list[Exception] = []

    def then(self, frame: bytes) -> None:
        assert frame.endswith(b"\n") and frame.count(b"\n") == 1
        self.posted.append(json.loads(frame))

    def failed(self, error: Exception) -> None:
        self.failures.append(error)


def test_a_file_is_a_message_of_the_room_in_its_order():
    hub = make_hub()
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    joined(hub, ann, "lobby")
    joined(hub, bob, "lobby")
    post(hub, ann, "lobby", "before")
    clear(ann, bob)
    answers = Answers()
    hub.post_file("ann", room="lobby", text="", file=FILE, then=answers.then,
                  failed=answers.failed)  # fmt: skip
    post(hub, bob, "lobby", "after")
    [frame] = answers.posted
    assert frame == {"type": "message", "room": "lobby", "id": 2, "user": "ann", "text": "",
                     "ts": frame["ts"], "file": INFO}  # fmt: skip
    # Every member, the uploader's chat connection too, gets it as it is, without a ref.
    assert [f["id"] for f in bob.take()] == [2, 3] and ann.take()[0] == frame
    history = joined(hub, connect(hub, "cid"), "lobby")["history"]
    assert [m.get("file") for m in history] == [None, INFO, None]
    assert hub.store.recent("lobby", 5)[1].file == FILE


def test_only_a_member_of_the_room_may_post_a_file():
    hub = make_hub()
    ann = connect(hub, "ann")
    joined(hub, connect(hub, "bob"), "lobby")
    answers = Answers()
    with pytest.raises(ProtocolError) as refused:
        hub.post_file("ann", room="lobby", file=FILE, then=answers.then, failed=answers.failed)
    assert refused.value.code == "not_member"
    assert hub.in_room("bob", "lobby") and not hub.in_room("ann", "lobby")
    joined(hub, ann, "lobby")
    assert hub.in_room("ann", "lobby") and not hub.in_room("ann", "elsewhere")


def test_a_file_in_a_direct_message_goes_to_both_parties():
    hub = make_hub()
    ann, bob = connect(hub, "ann"), connect(hub, "bob")
    clear(ann, bob)
    answers = Answers()
    hub.post_file("ann", to="bob", text="for you", file=FILE, then=answers.then,
                  failed=answers.failed)  # fmt: skip
    [frame] = answers.posted
    assert frame["type"] == "dm" and frame["from"] == "ann" and frame["file"] == INFO
    assert bob.only("dm") == frame and ann.only("dm") == frame
    with pytest.raises(ProtocolError) as refused:
        hub.post_file("ann", to="nobody", file=FILE, then=answers.then, failed=answers.failed)
    assert refused.value.code == "no_such_user"


def test_a_file_not_stored_is_not_posted_and_its_id_stays_a_gap(tmp_path):
    store = FaultyStore(tmp_path / "db")
    hub = make_hub(store=store)
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    store.fail("disk full")
    answers = Answers()
    hub.post_file("ann", room="lobby", file=FILE, then=answers.then, failed=answers.failed)
    assert answers.posted == [] and isinstance(answers.failures[0], StoreUnavailable)
    assert ann.take() == []
    store.heal()
    assert post(hub, ann, "lobby", "next") == [2]


def test_deleting_a_file_message_releases_its_bytes():
    hub = make_hub()
    released: list[str] = []

    class Files:
        def released(self, sha256: str) -> bool:
            released.append(sha256)
            return True

    hub.files = Files()  # type: ignore[assignment]
    ann = connect(hub, "ann")
    joined(hub, ann, "lobby")
    hub.post_file("ann", room="lobby", file=FILE, then=lambda frame: None,
                  failed=lambda error: None)  # fmt: skip
    post(hub, ann, "lobby", "plain")
    hub.delete(ann, "lobby", 2, None)
    assert released == []  # (no file on that one)
    hub.edit(ann, "lobby", 1, "a caption after all", None)
    hub.delete(ann, "lobby", 1, None)
    assert released == [FILE.sha256]
    assert hub.store.file("f1").deleted
