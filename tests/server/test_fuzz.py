"""Live fuzz: thousands of random and mutated frames over TLS against one running server.

Eight connections at once (four before login, four logged in) send valid frames,
mutations of them (flipped bytes, truncation, wrong types, huge numbers, unicode and
control characters, deep nesting, invalid UTF-8, unknown fields) and random binary.
Every reply must be a well-formed frame; afterwards a normal client is served as
usual and nothing of the fuzz connections is left in the server. Reproducible: each
connection draws from ``random.Random(SEED + n)``; set ``FUZZ_SEED`` to try others.
"""

import contextlib
import json
import logging
import os
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from securechat.protocol.frames import server_frame_adapter
from securechat.protocol.framing import DEFAULT_FRAME_LIMIT
from securechat.server.cli import Limits, Server
from tests.conftest import UNMETERED, USERS, run_server
from tests.server.test_abuse import ClientFrom

SEED = int(os.environ.get("FUZZ_SEED", "20261126"))
FRAMES_PER_CONNECTION = 1500
BATCH = 20  # lines sent before waiting for the answer to a ping
OVERSIZE = 70_000  # bytes without a newline: more than the frame limit

SERVER_TYPES = {
    "welcome", "login_ok", "joined", "left", "message", "edited", "deleted", "dm",
    "dm_history", "history", "rooms", "members", "presence", "ping", "pong", "bye", "error",
}  # fmt: skip
# Codes a fuzzing client may get; never internal, and (reading promptly, few connections,
# no shutdown) never slow_consumer, server_busy or shutting_down.
EXPECTED_CODES = {
    "bad_frame", "frame_too_large", "auth_required", "auth_failed", "rate_limited",
    "not_member", "not_found", "forbidden", "no_such_user",
}  # fmt: skip
CLOSING = {("bye", None), ("error", "auth_failed"), ("error", "rate_limited"),
           ("error", "frame_too_large")}  # fmt: skip

ROOMS = ["fuzz", "lobby", "r-1", "0day"]
PEERS = ["user40", "user41", "alice", "nosuchuser"]

WEIRD: list[Any] = [
    None, True, False, 0, -1, 1.0, -0.0, 1e308, 10**30, -(10**30), 2**63, 2**63 - 1, 2**64,
    "", " ", "\t\n", "x" * 4001, "y" * 4000, "\u0000", "a\u0007b", "a\rb", "\u2028", "\x7f",
    "\u0085", "\ud800", "\udfff", "\U0001f389" * 10, "\u00e9" * 33, "General", "a" * 33,
    "-lead", "../etc/passwd", "user0", "fuzz", [], {}, [1, [2, [3]]], {"a": {"b": {}}},
    ["fuzz"], {"type": "ping"},
]  # fmt: skip


def templates(rng: random.Random) -> list[dict[str, Any]]:
    room, peer = rng.choice(ROOMS), rng.choice(PEERS)
    text = rng.choice(["hi", "  spaced  ", "multi\nline\ttext", "\U0001f600 emoji", "z" * 300])
    message_id = rng.randint(1, 6)
    return [
        {"type": "login", "user": rng.choice(["user40", "user41", "ghost"]),
         "password": rng.choice(["guess", "", "p" * 80])},
        {"type": "join", "room": room},
        {"type": "join", "room": room},
        {"type": "leave", "room": room},
        {"type": "send", "room": room, "text": text},
        {"type": "send", "room": room, "text": text},
        {"type": "edit", "room": room, "id": message_id, "text": text},
        {"type": "delete", "room": room, "id": message_id},
        {"type": "dm", "to": peer, "text": text},
        {"type": "history", "room": room, "before": message_id, "limit": rng.randint(1, 200)},
        {"type": "history", "room": room, "after": 0},
        {"type": "dm_history", "with": peer},
        {"type": "rooms"},
        {"type": "members", "room": room},
        {"type": "ping"},
        {"type": "pong"},
    ]  # fmt: skip


def encode(rng: random.Random, obj: Any) -> bytes:
    ascii_only = rng.random() < 0.5
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def fuzz_line(rng: random.Random) -> bytes:
    """One fuzzed line (without its newline; it may contain newlines of its own)."""
    frame = dict(rng.choice(templates(rng)))
    if rng.random() < 0.5:
        bad_refs = ["", "x" * 65, "\ud800", 7]
        frame["ref"] = f"r{rng.randrange(10**6)}" if rng.random() < 0.8 else rng.choice(bad_refs)
    if rng.random() < 0.004:
        frame = {"type": "logout"}
    choice = rng.random()
    if choice < 0.25:  # valid (or nearly so)
        return encode(rng, frame)
    if choice < 0.40:  # a wrong type or value
        frame[rng.choice(list(frame))] = rng.choice(WEIRD)
        return encode(rng, frame)
    if choice < 0.44:  # an unknown field
        frame[rng.choice(["extra", "Type", "__proto__", "user"])] = rng.choice(WEIRD)
        return encode(rng, frame)
    if choice < 0.48:  # a missing field
        del frame[rng.choice(list(frame))]
        return encode(rng, frame)
    if choice < 0.60:  # flipped bytes
        data = bytearray(encode(rng, frame))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice < 0.70:  # truncated JSON
        data = encode(rng, frame)
        return data[: rng.randrange(len(data))]
    if choice < 0.78:  # nesting, numbers and literals JSON parsers trip on
        depth = rng.choice([50, 1000, 10_000])
        return rng.choice([
            b"[" * depth + b"]" * depth,
            b'{"a":' * depth + b"1" + b"}" * depth,
            b'{"type":"history","room":"fuzz","before":' + b"9" * 5000 + b"}",
            b'{"type":"history","room":"fuzz","before":1e400}',
            b'{"type":"history","room":"fuzz","before":NaN}',
            b'{"type":"ping","type":"rooms"}',
            b'{"type":"ping"} {"type":"ping"}',
            b"null", b"true", b"42", b'"ping"', b"[]", b"{}", b"", b"   ", b"\r",
        ])  # fmt: skip
    if choice < 0.85:  # invalid UTF-8 inside a frame
        data = bytearray(encode(rng, frame))
        data[rng.randrange(len(data))] = rng.choice([0x80, 0xC0, 0xFF, 0xED])
        return bytes(data)
    if choice < 0.92:  # random binary
        return rng.randbytes(rng.randint(1, 300))
    data = encode(rng, frame)  # odd line endings and padding
    return rng.choice([data + b"\r", b" \t" + data + b"  ", data + b"\r\r", b"\xef\xbb\xbf" + data])


class Fuzzer:
    """One fuzzing thread: reconnects whenever the server closes on it."""

    def __init__(self, server: Server, certs: Any, index: int, source: str, user: str | None):
        self.server, self.certs = server, certs
        self.rng = random.Random(SEED + index)
        self.source, self.user = source, user
        self.oversize = index % 2 == 1  # half end their last connection with a huge line
        self.sent = 0
        self.connections = 0
        self.replies: Counter[str] = Counter()
        self.failure: str | None = None

    def check(self, raw: bytes) -> dict[str, Any]:
        assert len(raw) < DEFAULT_FRAME_LIMIT, raw[:200]  # the server keeps the limit too
        frame = json.loads(raw.decode("utf-8"))
        assert isinstance(frame, dict) and frame.get("type") in SERVER_TYPES, frame
        server_frame_adapter.validate_python(frame)  # every field well-formed
        if frame["type"] == "error":
            assert frame["code"] in EXPECTED_CODES, frame
            assert isinstance(frame["message"], str) and frame["message"], frame
            if frame["code"] == "rate_limited":
                assert frame["retry_after"] > 0, frame
        self.replies[frame.get("code") or frame["type"]] += 1
        return frame

    def run(self) -> None:
        try:
            while self.sent < FRAMES_PER_CONNECTION:
                self.one_connection()
            if self.oversize:  # and a last connection that sends too long a line
                self.one_connection(oversize=True)
        except Exception as exc:  # reported by the test's thread
            self.failure = f"seed {SEED} connection {self.source}/{self.user}: {exc!r}"

    def one_connection(self, *, oversize: bool = False) -> None:
        client = ClientFrom(self.server.address, self.certs.ca_cert, self.source)
        self.connections += 1
        buffer = b""
        last: dict[str, Any] = {}

        def read_until(done: Callable[[dict[str, Any]], bool]) -> bool:
            """Read and check frames until ``done``; False if the server closed first."""
            nonlocal buffer, last
            deadline = time.monotonic() + 10
            while True:
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    last = self.check(raw)
                    if done(last):
                        return True
                assert time.monotonic() < deadline, "no answer within 10 s"
                try:
                    data = client.sock.recv(65536)
                except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                    data = b""
                if not data:
                    return False
                buffer += data

        try:
            assert read_until(lambda f: True) and last["type"] == "welcome", last
            if self.user:
                client.send(type="login", user=self.user, password=f"{self.user}-pw")
                assert read_until(lambda f: f["type"] != "message"), "closed at login"
                assert last["type"] == "login_ok", last
            open_ = True
            while open_ and not oversize and self.sent < FRAMES_PER_CONNECTION:
                lines = [fuzz_line(self.rng) for _ in range(BATCH)]
                self.sent += len(lines)
                sync = f"sync-{self.sent}"
                data = b"".join(part + b"\n" for part in lines)
                data += json.dumps({"type": "ping", "ref": sync}).encode() + b"\n"
                # If the server closed meanwhile, its last frames are still to be read.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    client.send_raw(data)
                open_ = read_until(lambda f, sync=sync: f.get("ref") == sync)
            if oversize:
                client.send_raw(self.rng.randbytes(OVERSIZE).replace(b"\n", b" "))
                open_ = read_until(lambda f: False)
                assert last.get("code") == "frame_too_large", last
            if not open_:  # the server closed: it said why (logout, failed logins, size)
                assert (last["type"], last.get("code")) in CLOSING, last
        finally:
            client.close()


def test_live_fuzz(certs, passwd_path, caplog):
    caplog.set_level(logging.WARNING)
    with run_server(certs, passwd_path, Limits(**UNMETERED)) as server:
        fuzzers = [
            *(Fuzzer(server, certs, n, "127.0.0.9", None) for n in range(4)),  # never log in
            *(Fuzzer(server, certs, n, f"127.0.0.{10 + n}", f"user{n}") for n in range(4, 8)),
        ]
        threads = [threading.Thread(target=fuzzer.run) for fuzzer in fuzzers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        failures = [fuzzer.failure for fuzzer in fuzzers if fuzzer.failure]
        assert not failures, failures
        sent = sum(fuzzer.sent for fuzzer in fuzzers)
        assert sent >= 10_000
        replies = sum((fuzzer.replies for fuzzer in fuzzers), Counter())
        assert replies["bad_frame"] > 1000 and replies["auth_required"] > 100
        assert replies["message"] > 50 and replies["frame_too_large"] >= 4

        # Every fuzz connection is gone, and with it every membership.
        assert server.wait_idle(10), server.connections()
        assert server.hub.online_users() == []
        for name, room in server.hub._rooms.items():
            assert not room.members, name
            assert room.next_id > 0, f"room {name} has no members and no history"

        # A normal client is served as usual.
        alice = ClientFrom(server.address, certs.ca_cert, "127.0.0.1")
        bob = ClientFrom(server.address, certs.ca_cert, "127.0.0.2")
        assert alice.login("alice", USERS["alice"])["type"] == "login_ok"
        assert bob.login("bob", USERS["bob"])["type"] == "login_ok"
        joined = alice.request(type="join", room="after-fuzz")
        assert joined["members"] == ["alice"] and joined["last_id"] == 0
        bob.request(type="join", room="after-fuzz")
        assert alice.expect("presence", user="bob", event="join")
        sent_message = alice.request(type="send", room="after-fuzz", text="all good?")
        assert sent_message["id"] == 1
        assert bob.expect("message")["text"] == "all good?"
        assert bob.request(type="dm", to="alice", text="yes")["type"] == "dm"
        assert alice.expect("dm", text="yes")["from"] == "bob"  # (after the fuzzers' DMs)
        rooms = alice.request(type="rooms")["rooms"]
        assert {"name": "after-fuzz", "members": 2} in rooms
        assert all(room["members"] == 0 for room in rooms if room["name"] != "after-fuzz")
        for client in (alice, bob):
            client.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    print(f"fuzz: {sent} frames; replies {dict(replies.most_common())}")
