"""Many clients at once, and heavy traffic both ways on one TLS connection."""

import contextlib
import json
import select
import ssl
import threading

import pytest

from tests.chatclient import ChatClient
from tests.conftest import UNMETERED

ROOMS = 5
PER_ROOM = 10
MESSAGES_EACH = 20


@pytest.mark.limits(**UNMETERED)
def test_fifty_clients_in_five_rooms_see_every_message_once_in_order(server, certs):
    users = [f"user{index}" for index in range(ROOMS * PER_ROOM)]
    joined = threading.Barrier(len(users), timeout=30)
    failures: list[str] = []

    def run(index: int, user: str) -> None:
        room = f"room{index % ROOMS}"
        client = ChatClient(server.address, certs.ca_cert)
        try:
            assert client.login(user, f"{user}-pw")["type"] == "login_ok"
            assert client.request(type="join", room=room)["type"] == "joined"
            joined.wait()
            for n in range(MESSAGES_EACH):
                client.send(type="send", room=room, text=f"{user} {n}")
            seen = []
            while len(seen) < PER_ROOM * MESSAGES_EACH:
                frame = client.expect("message")
                assert frame["room"] == room
                seen.append(frame)
            ids = [frame["id"] for frame in seen]
            assert ids == list(range(1, PER_ROOM * MESSAGES_EACH + 1)), ids[:20]
            by_sender: dict[str, list[int]] = {}
            for frame in seen:
                sender, n = frame["text"].split()
                assert sender == frame["user"]
                by_sender.setdefault(sender, []).append(int(n))
            assert len(by_sender) == PER_ROOM
            assert all(ns == list(range(MESSAGES_EACH)) for ns in by_sender.values())
        except Exception as exc:  # reported by the main thread
            failures.append(f"{user}: {exc!r}")
            joined.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(i, u)) for i, u in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[:5]
    assert not any(thread.is_alive() for thread in threads)


def _pump(sock: ssl.SSLSocket, frames: list[bytes], room: str, window: int) -> list[dict]:
    """Write ``frames`` and read their echoes at once, from one thread.

    At most ``window`` frames are unanswered at a time: a client that writes much
    faster than it reads is (rightly) dropped as a slow consumer.
    """
    sock.setblocking(False)
    buffer = b""
    echoes: list[dict] = []
    out = b""
    queued = 0
    while len(echoes) < len(frames):
        if not out and queued < len(frames) and queued - len(echoes) < window:
            batch = frames[queued : queued + min(50, window - (queued - len(echoes)))]
            out, queued = b"".join(batch), queued + len(batch)
        readable, writable, _ = select.select([sock], [sock] if out else [], [], 10)
        assert readable or writable or sock.pending(), "no progress for 10 s"
        if writable and out:  # a retried SSL write must offer the same bytes: out only shrinks
            with contextlib.suppress(ssl.SSLWantWriteError, ssl.SSLWantReadError):
                out = out[sock.send(out[:16384]) :]
        if readable or sock.pending():
            try:
                data = sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            assert data, "server closed the connection"
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                frame = json.loads(line)
                assert frame["type"] != "error", frame
                if frame["type"] == "message" and frame.get("ref"):
                    assert frame["room"] == room
                    echoes.append(frame)
    return echoes


@pytest.mark.limits(**UNMETERED)
def test_heavy_traffic_both_ways_on_one_connection_while_others_chat(server, connect):
    """The server reads and writes one TLS connection flat out in both directions."""
    heavy = connect("alice")
    heavy.request(type="join", room="flood")
    others = [connect(user) for user in ("bob", "carol", "dave")]
    for other in others:  # (members of the flood room would be dropped as slow readers)
        other.request(type="join", room="quiet")
    count = 3000
    text = "z" * 900
    frames = [
        json.dumps(
            {"type": "send", "room": "flood", "text": f"{n} {text}", "ref": f"h{n}"}
        ).encode()
        + b"\n"
        for n in range(count)
    ]
    stop = threading.Event()
    chatter_errors: list[str] = []

    def chatter() -> None:  # others keep talking in another room meanwhile
        try:
            n = 0
            while not stop.is_set() and n < 500:
                n += 1
                reply = others[0].request(type="send", room="quiet", text=f"q{n}")
                assert reply["id"] == n
        except Exception as exc:
            chatter_errors.append(repr(exc))

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        echoes = _pump(heavy.sock, frames, "flood", window=500)
    finally:
        stop.set()
        thread.join(30)
    assert not chatter_errors
    assert [frame["ref"] for frame in echoes] == [f"h{n}" for n in range(count)]
    assert [frame["id"] for frame in echoes] == list(range(1, count + 1))
