"""Read markers over real TLS: per user, never backwards, told to every connection, kept."""

from tests.chatclient import ChatClient
from tests.conftest import USERS, run_server


def logged_in(server, certs, user: str) -> ChatClient:
    client = ChatClient(server.address, certs.ca_cert)
    assert client.login(user, USERS[user])["type"] == "login_ok"
    return client


def test_marks_reach_every_connection_of_the_user_and_never_go_back(certs, passwd_path, tmp_path):
    data = tmp_path / "data"
    with run_server(certs, passwd_path, data_dir=data) as server:
        laptop, phone, bob = (logged_in(server, certs, u) for u in ("alice", "alice", "bob"))
        for client in (laptop, phone, bob):
            assert client.request(type="join", room="general")["read_id"] == 0
        ids = [bob.request(type="send", room="general", text=f"m{n}")["id"] for n in range(3)]
        reply = phone.request(type="mark_read", room="general", id=ids[1])
        assert reply == {"type": "read", "room": "general", "id": ids[1], "ref": reply["ref"]}
        assert laptop.expect("read", room="general") == {"type": "read", "room": "general",
                                                         "id": ids[1]}  # fmt: skip
        lower = laptop.request(type="mark_read", room="general", id=ids[0])
        assert lower["id"] == ids[1]  # an older mark changes nothing ...
        beyond = laptop.request(type="mark_read", room="general", id=10**6)
        assert beyond["id"] == ids[2]  # ... and no mark passes the newest message
        assert phone.expect("read", room="general")["id"] == ids[2]  # (not the lower one)
        assert all(f["type"] != "read" for f in bob.backlog)  # bob's marks are his own
        # DM conversations have their own marker.
        dm = bob.request(type="dm", to="alice", text="psst")
        phone.expect("dm", id=dm["id"])
        marked = phone.request(type="mark_read", **{"with": "bob"}, id=dm["id"])
        assert marked == {"type": "read", "with": "bob", "id": dm["id"], "ref": marked["ref"]}
        assert laptop.expect("read", **{"with": "bob"})["id"] == dm["id"]
        # The errors: a room not joined, a user who does not exist.
        assert laptop.request(type="mark_read", room="random", id=1)["code"] == "not_member"
        assert laptop.request(type="mark_read", **{"with": "nobody"}, id=1)["code"] == (
            "no_such_user"
        )
        for client in (laptop, phone, bob):
            client.close()
    with run_server(certs, passwd_path, data_dir=data) as server:  # and after a restart
        tablet = logged_in(server, certs, "alice")
        assert tablet.request(type="join", room="general")["read_id"] == ids[2]
        again = tablet.request(type="mark_read", **{"with": "bob"}, id=0)
        assert again["id"] == dm["id"]
        bob = logged_in(server, certs, "bob")
        assert bob.request(type="join", room="general")["read_id"] == 0
        tablet.close()
        bob.close()


def test_mark_read_keeps_the_order_of_replies(certs, passwd_path):
    with run_server(certs, passwd_path) as server:
        alice = logged_in(server, certs, "alice")
        alice.request(type="join", room="general")
        alice.send(type="send", room="general", text="one", ref="s1")
        alice.send(type="mark_read", room="general", id=1, ref="m1")
        alice.send(type="send", room="general", text="two", ref="s2")
        alice.send(type="mark_read", room="general", id=2, ref="m2")
        alice.send(type="members", room="general", ref="q")
        got = [alice.wait_for(lambda f: "ref" in f)["ref"] for _ in range(5)]
        assert got == ["s1", "m1", "s2", "m2", "q"]
        alice.close()
