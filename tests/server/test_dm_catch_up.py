"""Exact DM catch-up over real TLS: ``login`` with ``dm_after`` after a connection died
with direct messages in flight (protocol.md, "Exact DM catch-up")."""

import json
import socket
import struct
import threading

import pytest

from tests.chatclient import ChatClient, Frame
from tests.conftest import UNMETERED, USERS


def login(client: ChatClient, user: str, dm_after: int | None = None) -> None:
    client.expect("welcome")
    extra = {} if dm_after is None else {"dm_after": dm_after}
    reply = client.request(type="login", user=user, password=USERS[user], **extra)
    assert reply["type"] == "login_ok", reply


def reset(client: ChatClient) -> None:
    """Die the hard way: a TCP reset, whatever the kernel still held for the client."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def send_dms(client: ChatClient, to: str, texts: list[str]) -> list[int]:
    """Send DMs pipelined, 200 in a write (the sender's replies stay well within the
    queue bound); the ids of their replies, in order."""
    ids = []
    for start in range(0, len(texts), 200):
        refs = [f"d{n}" for n in range(start, min(start + 200, len(texts)))]
        lines = [
            json.dumps({"type": "dm", "to": to, "text": texts[int(ref[1:])], "ref": ref})
            for ref in refs
        ]
        client.send_raw("".join(line + "\n" for line in lines).encode())
        for ref in refs:
            reply = client.wait_for(lambda f, ref=ref: f.get("ref") == ref)
            assert reply["type"] == "dm", reply
            ids.append(reply["id"])
    return ids


def dms_until(client: ChatClient, last: int) -> list[Frame]:
    """The ``dm`` frames that come, up to the one with id ``last``."""
    got: list[Frame] = []
    while not got or got[-1]["id"] < last:
        frame = client.recv()
        if frame["type"] == "dm":
            got.append(frame)
    return got


def no_more_dms(client: ChatClient) -> None:
    """Nothing but room events and replies comes before the answer to a ping."""
    assert client.request(type="ping")["type"] == "pong"
    assert not [frame for frame in client.backlog if frame["type"] == "dm"]


@pytest.mark.limits(**UNMETERED)
def test_dms_in_flight_when_the_connection_dies_come_again_once_in_order(connect, server, certs):
    alice, phone = connect("alice"), connect("bob")  # phone: another connection of bob
    bob = ChatClient(server.address, certs.ca_cert, rcvbuf=4096)
    login(bob, "bob")
    first = send_dms(alice, "bob", [f"early {n}" for n in range(5)])
    received = dms_until(bob, first[-1])
    assert [f["id"] for f in received] == first
    # Bob stops reading: these are queued for him, in the sockets' buffers or the
    # server's, when his connection dies. The server counts them as delivered.
    in_flight = send_dms(alice, "bob", [f"in flight {n} " + "x" * 200 for n in range(200)])
    reset(bob)
    # Without dm_after they would never come again.
    legacy = connect()
    login(legacy, "bob")
    no_more_dms(legacy)
    legacy.close()
    # While he is away: more to him, and one from him (from his other connection).
    away = send_dms(alice, "bob", [f"away {n}" for n in range(20)])
    away += send_dms(phone, "carol", ["from bob's phone"])

    later: list[int] = []
    sender = threading.Thread(target=lambda: later.extend(
        send_dms(alice, "bob", [f"during the catch-up {n}" for n in range(50)])))  # fmt: skip
    sender.start()
    back = connect()
    login(back, "bob", dm_after=received[-1]["id"])
    sender.join(30)
    assert not sender.is_alive() and len(later) == 50
    expected = in_flight + away + later
    got = dms_until(back, expected[-1])
    assert [f["id"] for f in got] == expected == list(range(first[-1] + 1, expected[-1] + 1))
    assert all(f["from"] == "bob" or f["to"] == "bob" for f in got)
    assert "ref" not in got[0] and got[200]["text"] == "away 0"
    no_more_dms(back)
    alice.send(type="dm", to="bob", text="live")  # and live ones as usual
    assert back.expect("dm")["id"] == expected[-1] + 1


@pytest.mark.limits(**UNMETERED)
def test_a_catch_up_longer_than_the_queue_bound_is_no_slow_consumer(connect):
    alice = connect("alice")
    waiting = send_dms(alice, "bob", [f"while away {n}" for n in range(1500)])  # > 1,000
    back = connect()
    login(back, "bob", dm_after=0)
    got = dms_until(back, waiting[-1])
    assert [f["id"] for f in got] == waiting
    no_more_dms(back)
