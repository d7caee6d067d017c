"""``securechat-store-bench``: what the history store sustains, and restart time.

Drives the real :class:`~securechat.store.SqliteStore` through the real
:class:`~securechat.store.GroupCommitter` the way the hub does (many rooms, each
waiting for its acknowledgements), with and without ``fsync``, then measures how
long a hub takes to open a database holding many messages. Prints numbers; asserts
nothing. Everything happens in a temporary directory.
"""

import argparse
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from securechat.protocol.frames import timestamp
from securechat.server.hub import Hub
from securechat.server.mailbox import Mailbox
from securechat.server.store import AddMessages, GroupCommitter, SqliteStore, StoredMessage


def throughput(path: Path, *, fsync: bool, rooms: int, window: int, seconds: float) -> float:
    """Acknowledged messages per second, ``rooms`` senders each with ``window`` in flight."""
    store = SqliteStore(path, fsync=fsync)
    committer = GroupCommitter(store)
    done = threading.Event()
    acked = [0] * rooms
    text = "x" * 100

    def sender(index: int) -> None:
        room = f"room{index}"
        slots = threading.Semaphore(window)
        n = 0

        def ack() -> None:
            acked[index] += 1
            slots.release()

        while not done.is_set():
            if not slots.acquire(timeout=1):
                continue
            n += 1
            message = StoredMessage(id=n, user="bench", text=text, ts=timestamp())
            committer.submit(AddMessages(room, [message]), ack)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(rooms)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    done.wait(seconds)
    done.set()
    count = sum(acked)
    elapsed = time.perf_counter() - start
    for thread in threads:
        thread.join()
    commits = committer.commits
    committer.close()
    store.close()
    print(f"  fsync={'on ' if fsync else 'off'}: {count / elapsed:10,.0f} msg/s acknowledged "
          f"({count:,} in {elapsed:.1f} s, {count / max(commits, 1):.1f} per commit)")  # fmt: skip
    return count / elapsed


def restart(path: Path, *, messages: int, rooms: int) -> float:
    """Seconds for a hub to open a database of ``messages`` messages and serve a join."""
    store = SqliteStore(path)
    batch = []
    per_room = messages // rooms
    for r in range(rooms):
        for n in range(1, per_room + 1):
            batch.append(AddMessages(f"room{r}", [StoredMessage(n, "bench", f"m{n}", timestamp())]))
            if len(batch) == 10_000:
                store.write(batch)
                batch.clear()
    store.write(batch)
    store.close()
    start = time.perf_counter()
    store = SqliteStore(path)
    hub = Hub(user_exists=lambda user: True, store=store)
    opened = time.perf_counter() - start

    class Probe:
        user = "probe"
        rooms: set[str] = set()
        mailbox = Mailbox()

    hub.join(Probe(), "room0", None)
    first_join = time.perf_counter() - start - opened
    store.close()
    print(f"  {messages:,} messages in {rooms} rooms: hub open {opened * 1000:.1f} ms, "
          f"first join {first_join * 1000:.1f} ms")  # fmt: skip
    return opened


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="securechat-store-bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput run")
    parser.add_argument("--rooms", type=int, default=20, help="concurrent rooms (senders)")
    parser.add_argument("--window", type=int, default=20, help="messages in flight per room")
    parser.add_argument("--messages", type=int, default=100_000, help="for the restart test")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"store throughput ({args.rooms} rooms x {args.window} in flight):")
        for fsync in (False, True):
            throughput(Path(tmp) / f"t{fsync}.db", fsync=fsync, rooms=args.rooms,
                       window=args.window, seconds=args.seconds)  # fmt: skip
        print("restart:")
        restart(Path(tmp) / "r.db", messages=args.messages, rooms=100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
