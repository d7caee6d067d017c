"""History survives a restart and a crash; DMs wait for offline users."""

import threading

import pytest

from tests.chatclient import ChatClient
from tests.conftest import UNMETERED, USERS
from tests.serverprocess import ServerProcess

FLOODING = ("--frame-rate", "1000000", "--frame-burst", "1000000")  # these tests send flat out


def login(server: ServerProcess, certs, user: str) -> ChatClient:
    client = ChatClient(server.address, certs.ca_cert)
    assert client.login(user, USERS.get(user) or f"{user}-pw")["type"] == "login_ok"
    return client


def test_restart_keeps_history_counters_and_waiting_dms(certs, passwd_path, tmp_path):
    data = tmp_path / "data"
    with ServerProcess(certs.server, passwd_path, data, *FLOODING) as server:
        alice = login(server, certs, "alice")
        for room in ("general", "random"):
            alice.request(type="join", room=room)
        for n in range(1, 6):
            assert alice.request(type="send", room="general", text=f"g{n}")["id"] == n
        alice.request(type="send", room="random", text="r1")
        alice.request(type="edit", room="general", id=2, text="g2 edited")
        alice.request(type="delete", room="general", id=3)
        dm = alice.request(type="dm", to="bob", text="while you were away")
        assert dm["type"] == "dm"
        assert server.terminate() == 0
        assert "shutting_down" in repr(alice.wait_closed())
    assert (data.stat().st_mode & 0o777) == 0o700

    with ServerProcess(certs.server, passwd_path, data, *FLOODING) as server:
        bob = login(server, certs, "bob")
        waiting = bob.expect("dm")
        assert (waiting["id"], waiting["text"]) == (dm["id"], "while you were away")
        joined = bob.request(type="join", room="general")
        assert joined["last_id"] == 5
        texts = [(m["id"], m["text"]) for m in joined["history"]]
        assert texts == [(1, "g1"), (2, "g2 edited"), (4, "g4"), (5, "g5")]
        assert "edited_ts" in joined["history"][1]
        assert bob.request(type="send", room="general", text="after")["id"] == 6
        assert bob.request(type="join", room="random")["last_id"] == 1
        rooms = bob.request(type="rooms")["rooms"]
        assert [r["name"] for r in rooms] == ["general", "random"]
        page = bob.request(type="dm_history", **{"with": "alice"})
        assert [m["text"] for m in page["messages"]] == ["while you were away"]
        bob.close()
        # A second login of bob does not get the same DM again.
        again = login(server, certs, "bob")
        assert again.request(type="ping")["type"] == "pong"
        assert not [f for f in again.backlog if f["type"] == "dm"]
        again.close()
        assert server.terminate() == 0


def test_crash_loses_nothing_acknowledged(certs, passwd_path, tmp_path):
    data = tmp_path / "data"
    acked: dict[str, list[int]] = {}  # room -> ids acknowledged to anyone
    per_sender: list[list[int]] = [[], [], []]
    with ServerProcess(certs.server, passwd_path, data, *FLOODING) as server:
        started = threading.Barrier(4)
        crashed = threading.Event()
        lock = threading.Lock()

        def sender(index: int) -> None:
            room = f"room{index % 2}"
            client = login(server, certs, f"user{index}")
            client.request(type="join", room=room)
            started.wait(10)
            n = 0
            try:
                while n < 100_000:  # bounded; the server dies long before
                    n += 1
                    reply = client.request(type="send", room=room, text=f"{index}:{n}")
                    assert reply["type"] == "message"
                    per_sender[index].append(reply["id"])
                    with lock:
                        acked.setdefault(room, []).append(reply["id"])
            except (ConnectionError, OSError):
                assert crashed.is_set()
            finally:
                client.close()

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        started.wait(10)
        watcher = login(server, certs, "carol")
        watcher.request(type="join", room="room0")
        while True:  # let some traffic commit, then crash mid-stream
            if watcher.expect("message")["id"] >= 200:
                break
        crashed.set()
        server.kill()
        for thread in threads:
            thread.join(30)
        watcher.close()

    assert sum(map(len, acked.values())) >= 200
    for ids in per_sender:  # each sender's acks come in increasing id order
        assert ids == sorted(ids)
    with ServerProcess(certs.server, passwd_path, data, *FLOODING) as server:
        reader = login(server, certs, "carol")
        for room, ids in acked.items():
            assert len(set(ids)) == len(ids)  # no id acknowledged twice
            joined = reader.request(type="join", room=room)
            assert joined["last_id"] >= max(ids)
            stored = []
            after = 0
            while page := reader.request(type="history", room=room, after=after, limit=200)[
                "messages"
            ]:
                stored += [m["id"] for m in page]
                after = page[-1]["id"]
            assert stored == list(range(1, joined["last_id"] + 1))  # no gap, none twice
            assert set(ids) <= set(stored)
            nxt = reader.request(type="send", room=room, text="after the crash")
            assert nxt["id"] == joined["last_id"] + 1
        reader.close()
        assert server.terminate() == 0


@pytest.mark.limits(**UNMETERED)
def test_history_paging_edge_cases(connect):
    alice = connect("alice")
    alice.request(type="join", room="empty")
    assert alice.request(type="history", room="empty")["messages"] == []
    assert alice.request(type="history", room="empty", after=0)["messages"] == []
    alice.request(type="join", room="paged")
    for n in range(1, 11):
        alice.request(type="send", room="paged", text=f"m{n}")
    alice.request(type="delete", room="paged", id=5)

    def ids(**kwargs) -> list[int]:
        reply = alice.request(type="history", room="paged", **kwargs)
        assert reply["type"] == "history", reply
        return [m["id"] for m in reply["messages"]]

    assert ids(before=1) == []
    assert ids(before=2) == [1]
    assert ids(after=10) == []
    assert ids(limit=3) == [8, 9, 10]
    assert ids(before=7, limit=3) == [3, 4, 6]
    assert ids(after=3, limit=3) == [4, 6, 7]
    assert ids(limit=200) == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert ids(limit=1) == [10]
    for bad in ({"limit": 0}, {"limit": 201}, {"before": 0}, {"before": 1, "after": 1}):
        reply = alice.request(type="history", room="paged", **bad)
        assert reply["code"] == "bad_frame", bad
