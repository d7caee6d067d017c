"""500 concurrent TLS clients in 20 rooms against one in-process server (loopback only).

Kept in its own file so it can be deselected (``--deselect tests/test_scale.py`` or
``--ignore``). The clients are asyncio streams in the test's thread; the server runs
its usual thread per connection. Clients come from 127.0.0.1-127.0.0.20, 25 each,
under the default per-address cap of 50.
"""

import asyncio
import json
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import bcrypt

from securechat.server.cli import Limits
from tests.conftest import run_server, wait_until

CLIENTS = 500
ROOMS = 20
ADDRESSES = 20
MESSAGES_EACH = 3
PER_ROOM = CLIENTS // ROOMS
PASSWORD = "scale-pw"
AT_ONCE = 64  # connections being set up at once (the default bcrypt line is 200 long)


def user_name(index: int) -> str:
    return f"s{index:03d}"


def write_passwd(path: Path) -> None:
    """500 users sharing one cost-4 hash, computed once."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    path.write_text("".join(f"{user_name(n)}:{hashed}\n" for n in range(CLIENTS)))
    path.chmod(0o600)


def resources() -> tuple[int, int]:
    """This process's thread count and open file descriptors."""
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


class Client:
    def __init__(self, index: int) -> None:
        self.user = user_name(index)
        self.room = f"room{index % ROOMS:02d}"
        self.source = f"127.0.0.{1 + index % ADDRESSES}"
        self.backlog: list[dict[str, Any]] = []
        self._refs = 0

    async def connect(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            *address, ssl=context, server_hostname="localhost", local_addr=(self.source, 0),
            limit=2**17,
        )  # fmt: skip

    async def recv(self) -> dict[str, Any]:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError(f"{self.user}: the server closed the connection")
        return json.loads(line)

    def send(self, **frame: Any) -> str:
        self._refs += 1
        ref = frame.setdefault("ref", f"{self.user}-{self._refs}")
        self.writer.write(json.dumps(frame).encode() + b"\n")
        return ref

    async def request(self, **frame: Any) -> dict[str, Any]:
        ref = self.send(**frame)
        while (reply := await self.recv()).get("ref") != ref:
            self.backlog.append(reply)
        return reply

    async def log_in_and_join(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        await self.connect(address, context)
        assert (await self.recv())["type"] == "welcome"
        reply = await self.request(type="login", user=self.user, password=PASSWORD)
        assert reply["type"] == "login_ok", reply
        reply = await self.request(type="join", room=self.room)
        assert reply["type"] == "joined", reply

    async def chat(self) -> list[dict[str, Any]]:
        """Send this client's messages; return every message of the room, as received."""
        for n in range(MESSAGES_EACH):
            self.send(type="send", room=self.room, text=f"{self.user} {n}")
        messages = [frame for frame in self.backlog if frame["type"] == "message"]
        while len(messages) < PER_ROOM * MESSAGES_EACH:
            frame = await self.recv()
            if frame["type"] == "message":
                messages.append(frame)
            else:
                assert frame["type"] == "presence", frame
        return messages

    async def leave(self) -> int:
        """Log out; the number of frames that came after ``bye`` (see the xfail in
        test_limits: a presence broadcast racing the logout can land after it)."""
        assert (await self.request(type="logout"))["type"] == "bye"
        after = [json.loads(line) for line in (await self.reader.read()).splitlines()]
        assert all(frame["type"] == "presence" for frame in after), after
        self.writer.transport.abort()  # the server closed after bye; no TLS goodbye needed
        return len(after)


Seen = list[tuple[Client, list[dict[str, Any]]]]


async def run_clients(address: tuple[str, int], cafile: Path) -> tuple[Seen, tuple[int, int], int]:
    """Every client's messages, the resources in use once all are in, and how many
    frames came after a ``bye``."""
    context = ssl.create_default_context(cafile=str(cafile))
    clients = [Client(n) for n in range(CLIENTS)]
    gate = asyncio.Semaphore(AT_ONCE)

    async def set_up(client: Client) -> None:
        async with gate:
            await client.log_in_and_join(address, context)

    try:
        await asyncio.gather(*(set_up(client) for client in clients))  # all in, then talk
        peak = resources()
        seen = await asyncio.gather(*(client.chat() for client in clients))
        after_bye = await asyncio.gather(*(client.leave() for client in clients))
    finally:
        for client in clients:
            if hasattr(client, "writer"):
                client.writer.transport.abort()
    return list(zip(clients, seen, strict=True)), peak, sum(after_bye)


def test_500_clients_in_20_rooms(certs, tmp_path):
    passwd = tmp_path / "scale.passwd"
    write_passwd(passwd)
    with run_server(certs, passwd, Limits()) as server:
        assert server.limits.max_per_address == 50 and CLIENTS // ADDRESSES == 25
        baseline = resources()
        started = time.monotonic()
        seen, peak, after_bye = asyncio.run(
            asyncio.wait_for(run_clients(server.address, certs.ca_cert), 60)
        )
        elapsed = time.monotonic() - started
        # A few I/O threads hold every connection: the thread count does not grow with
        # them (login workers come and go); each connection is one socket on each side.
        assert peak[0] < baseline[0] + 50, (baseline, peak)
        assert peak[1] >= baseline[1] + 2 * CLIENTS

        for client, messages in seen:
            assert {m["room"] for m in messages} == {client.room}
            ids = [m["id"] for m in messages]
            assert ids == list(range(1, PER_ROOM * MESSAGES_EACH + 1)), (client.user, ids[:10])
            expected = {
                (user_name(n), f"{user_name(n)} {k}")
                for n in range(CLIENTS)
                if n % ROOMS == int(client.room[4:])
                for k in range(MESSAGES_EACH)
            }
            assert {(m["user"], m["text"]) for m in messages} == expected
            own = [m for m in messages if m["user"] == client.user]
            assert len(own) == MESSAGES_EACH and all("ref" in m for m in own)
            assert not any("ref" in m for m in messages if m["user"] != client.user)

        # The server lets go of every thread and descriptor (a bounded poll: the last
        # connection threads may still be closing their sockets).
        assert server.wait_idle(10), server.connections()
        wait_until(lambda: resources() == baseline)  # login workers exit when idle
        assert server.hub.online_users() == []
        settled = resources()
    print(f"scale: {CLIENTS} clients in {elapsed:.1f} s; threads/fds {baseline} -> {peak} "
          f"-> {settled}; {after_bye} frames came after a bye")  # fmt: skip
