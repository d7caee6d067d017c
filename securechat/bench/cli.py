"""``securechat-bench``: load a chat server over TLS on loopback and report what it cost.

Why a bench of our own: "fast" only means something next to the servers people would
pick instead, measured on the same machine in the same run. So this starts the server
under test itself (securechat, and with ``--peers`` ngircd, InspIRCd and miniircd over
IRC/TLS, see :mod:`securechat.bench.irc`), drives it from this separate process with
asyncio TLS clients (securechat's speak the line protocol or, with ``--transport``,
WebSocket or IRC through its gateway), and reads the server's CPU, memory, threads and
descriptors from ``/proc``. Every message carries ``~sender.seq.send_time~`` in its
text, so receivers measure end-to-end latency and count lost and duplicated messages
per sender.

The load generator is one Python process on one core; it reports its own CPU time and
says when it was the bottleneck (then a peer's numbers are a lower bound). Everything is
bounded: sizes, durations, connect and drain timeouts; servers stop with SIGTERM.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import math
import os
import re
import resource
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securechat.bench.files import move_file
from securechat.bench.irc import (
    PASSWORD,
    PEERS,
    TRANSPORTS,
    Dialect,
    Target,
    Workspace,
    add_users,
    log,
    raise_nofile,
    resolve_peers,
    run_meta,
    run_one,
    sample_process,
)
from securechat.bench.report import BOTTLENECK_PCT, chart, combine, table
from securechat.bench.wsframes import (
    PING,
    PONG,
    TEXT,
    FrameReader,
    HandshakeError,
    UpgradeReader,
    mask_frame,
    text_frames,
    upgrade_request,
)

MARK_RE = re.compile(rb"~(\d+)\.(\d+)\.(\d+)~")
SAMPLES = 2_000_000  # latency samples sorted for percentiles, at most
CONNECT_TIMEOUT = 30.0
SMALL_ROOM, SMALL_SENDERS, SMALL_RATE = 10, 2, 10.0  # the room timed in idle and logins
# securechat's flood and connection limits, lifted as the peers' are (docs/benchmarks.md)
LIFTED = ["--frame-rate=1e9", "--frame-burst=1000000000", "--max-connections=1000000",
          "--max-per-address=1000000", "--max-file-size=64G", "--file-quota=1T"]  # fmt: skip


# -- pure helpers


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile ``p`` (0-100) of already sorted values; None if empty."""
    if not sorted_values:
        return None
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def latency_summary(samples_us: Sequence[int], prefix: str = "lat") -> dict[str, float | None]:
    """p50/p90/p99/max of microsecond samples, in milliseconds.

    Past SAMPLES values the percentiles come from an evenly strided subset (sorting 20
    million Python ints takes seconds and gigabytes); the max is always exact.
    """
    values = sorted(samples_us[:: max(1, len(samples_us) // SAMPLES)])
    out: dict[str, float | None] = {}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99)):
        v = percentile(values, p)
        out[f"{prefix}_{name}_ms"] = None if v is None else round(v / 1000, 3)
    out[f"{prefix}_max_ms"] = round(max(samples_us) / 1000, 3) if len(samples_us) else None
    return out


# -- the load generator


class Run:
    """Counters and samples shared by every connection of one scenario run."""

    def __init__(self) -> None:
        self.lat = array.array("q")  # end-to-end latency of every delivery, microseconds
        self.delivered = 0
        self.expected = 0
        self.draining = False
        self.drained = asyncio.Event()
        self.stopping = False
        self.last_rx = 0
        self.disconnects = 0
        self.events: Counter[str] = Counter()
        self.senders: dict[int, Sender] = {}


class Conn(asyncio.Protocol):
    """One TLS client connection: handshake and joins line by line, then a fast path.

    In the fast path a whole block of lines is scanned with one regex for message
    marks, and per-line work only happens for the rare control line (ping, error).
    """

    def __init__(self, run: Run, dialect: Dialect, index: int, user: str, password: str) -> None:
        self.run, self.dialect, self.index = run, dialect, index
        self.user, self.password = user, password
        self.transport: asyncio.Transport | None = None
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.slow = True
        self.tail = b""
        self.last: dict[int, int] = {}  # sender -> highest seq seen
        self.count = self.dups = 0
        self.observer = False
        self.closing = False
        self.paused = False
        self.sender: Sender | None = None
        self.failure: str | None = None  # why the connection failed during setup

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=256 * 1024)
        self.write(self.dialect.hello(self.user, self.password))

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        cut = data.rfind(b"\n") + 1
        self.tail = data[cut:]
        if not cut:
            return
        block = data[:cut]
        if self.slow:  # setup: marks seen now are old history (a server's joined frame)
            for line in block.splitlines():
                self.lines.put_nowait(line)
            return
        marks = MARK_RE.findall(block)
        if marks:
            self._account(marks)
        if any(marker in block for marker in self.dialect.control_markers):
            for line in block.splitlines():
                if any(marker in line for marker in self.dialect.control_markers):
                    self._control(line)

    def _account(self, marks: list[tuple[bytes, bytes, bytes]]) -> None:
        if not marks:
            return
        run, last = self.run, self.last
        now = time.monotonic_ns() // 1000
        append, dups = run.lat.append, 0
        senders = run.senders if self.observer else None
        for s, q, t in marks:
            sender, seq = int(s), int(q)
            append(now - int(t))
            if seq > last.get(sender, 0):
                last[sender] = seq
            else:
                dups += 1
            if senders is not None and (who := senders.get(sender)) is not None:
                who.on_seen()
        self.count += len(marks)
        self.dups += dups
        run.delivered += len(marks)
        run.last_rx = now
        if run.draining and run.delivered >= run.expected:
            run.drained.set()

    def _control(self, line: bytes) -> None:
        reply, event = self.dialect.control(line)
        self.write(reply)
        if event:
            self.run.events[event] += 1
            if event == "refused" and self.sender is not None:
                self.sender.refused += 1
                self.sender.wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.run.disconnects += 1
        self.lines.put_nowait(None)
        if self.sender is not None:
            self.sender.wake.set()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.sender is not None:
            self.sender.wake.set()

    async def _next_line(self, deadline: float) -> bytes:
        line = await asyncio.wait_for(self.lines.get(), max(0.0, deadline - time.monotonic()))
        if line is None:
            raise ConnectionError(self.failure or "the server closed the connection")
        return line

    async def handshake(self, timeout: float) -> None:
        """Log in (securechat) or register (IRC); raises on refusal, close or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            line = await self._next_line(deadline)
            reply, error, done = self.dialect.handshake(line, self.user, self.password)
            self.write(reply)
            if error:
                raise ConnectionError(error)
            if done:
                return

    async def join(self, room: str, timeout: float) -> None:
        self.write(self.dialect.join_frame(room))
        deadline = time.monotonic() + timeout
        while (verdict := self.dialect.joined(await self._next_line(deadline), room)) is None:
            pass
        if verdict != "ok":
            raise ConnectionError(verdict)

    def go_fast(self) -> None:
        """Setup is over: drop queued setup lines, scan blocks from now on."""
        self.slow = False
        while not self.lines.empty():
            self.lines.get_nowait()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


class WsConn(Conn):
    """A securechat client over WebSocket (``--transport ws``): the same frames, as messages.

    It connects with ALPN ``http/1.1``, upgrades to ``/ws`` with the server's own
    ``Origin``, then speaks as :class:`Conn` does: each line it writes leaves as one
    masked text frame (:func:`~securechat.bench.wsframes.text_frames`), and during setup
    every text message received is a line. In traffic it does not walk the frames: a
    server's frames are not masked, so every message's JSON is in the byte stream as it
    is, and the marks are found there with the same one regex over the block as for
    lines. A frame header (an opcode byte, a length) never forms a mark: marks sit
    inside the ``text`` string, and a header sits between a ``}`` and a ``{``. A block
    is cut after its last ``}`` (no mark crosses one); the rare control frame (a
    ``ping``, an ``error``) is read as the JSON object around its marker. (The server
    sends no WebSocket pings in traffic: its pings are protocol frames; during setup a
    WebSocket ping is answered.)
    """

    def __init__(self, run: Run, dialect: Dialect, index: int, user: str, password: str,
                 host: str, port: int) -> None:  # fmt: skip
        super().__init__(run, dialect, index, user, password)
        self.request, key = upgrade_request(host, port)
        self.upgrade: UpgradeReader | None = UpgradeReader(key)
        self.frames = FrameReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=256 * 1024)
        transport.write(self.request)  # (the server speaks first once upgraded: no hello)

    def write(self, data: bytes) -> None:
        if data and self.upgrade is None:
            super().write(text_frames(data))

    def data_received(self, data: bytes) -> None:
        if self.upgrade is not None:
            try:
                rest = self.upgrade.feed(data)
            except HandshakeError as exc:
                self.failure = str(exc)
                self.close()
                self.lines.put_nowait(None)
                return
            if rest is None:
                return
            self.upgrade, data = None, rest
        if self.slow:
            try:
                frames = self.frames.feed(data)
            except ValueError as exc:
                self.failure = f"bad WebSocket frame from the server: {exc}"
                self.close()
                self.lines.put_nowait(None)
                return
            for opcode, payload in frames:
                if opcode == TEXT:
                    self.lines.put_nowait(payload)
                elif opcode == PING:
                    super().write(mask_frame(PONG, payload, os.urandom(4)))
            return
        if self.tail:
            data = self.tail + data
        cut = data.rfind(b"}") + 1
        block, self.tail = data[:cut], data[cut:]
        if any(marker in block for marker in self.dialect.control_markers):
            block = self._controls(block)
        marks = MARK_RE.findall(block)
        if marks:
            self._account(marks)

    def _controls(self, block: bytes) -> bytes:
        """Answer the control frames in ``block``; what of it is complete (the rest: tail)."""
        starts = sorted(
            block.rfind(b"{", 0, at)
            for marker in self.dialect.control_markers
            for at in _occurrences(block, marker)
        )
        decoder = json.JSONDecoder()
        for start in dict.fromkeys(starts):
            try:  # (latin-1: one character per byte, so the end is a byte offset too)
                _, end = decoder.raw_decode(block[start:].decode("latin-1"))
            except ValueError:  # not all here yet: from its start on, it waits for more
                self.tail = block[start:] + self.tail
                return block[:start]
            self._control(block[start : start + end])
        return block

    def go_fast(self) -> None:
        """As :meth:`Conn.go_fast`; the start of a frame not yet complete is the tail."""
        super().go_fast()
        self.tail, self.frames.buffer = self.frames.buffer, b""


def _occurrences(data: bytes, needle: bytes) -> list[int]:
    out, at = [], data.find(needle)
    while at >= 0:
        out.append(at)
        at = data.find(needle, at + 1)
    return out


class Sender:
    """The sending side of one member: frames with marks, window and refusal accounting."""

    def __init__(self, conn: Conn, room: str, pad: bytes) -> None:
        self.conn, self.index = conn, conn.index
        self.prefix, self.suffix = conn.dialect.send_affixes(room)
        self.pad = pad
        self.sent = self.refused = self.observed = 0
        self.settled: int | None = None
        self.wake = asyncio.Event()
        conn.sender = self

    def frames(self, n: int) -> bytes:
        now = time.monotonic_ns() // 1000
        parts = []
        for _ in range(n):
            self.sent += 1
            mark = b"~%d.%d.%d~" % (self.index, self.sent, now)
            parts.append(self.prefix + mark + self.pad + self.suffix)
        return b"".join(parts)

    def on_seen(self) -> None:
        self.observed += 1
        self.wake.set()

    @property
    def accepted(self) -> int:
        """Messages the receivers should get: all not refused, or after :meth:`settle`."""
        return self.sent - self.refused if self.settled is None else self.settled

    def settle(self, members: list[Conn]) -> None:
        """After the drain: messages up to the highest seq any member saw were taken.

        What no member ever saw (still in a buffer when the run stopped, or dropped for
        everyone) is not counted as lost but reported as unseen; open loop has some.
        """
        taken = max((c.last.get(self.index, 0) for c in members), default=0)
        self.settled = min(taken, self.sent - self.refused)


async def closed_loop(run: Run, s: Sender, window: int) -> None:
    """Keep at most ``window`` messages not yet seen by the room's observer."""
    while not run.stopping:
        room = window - (s.sent - s.observed - s.refused)
        if room > 0 and not s.conn.paused:
            s.conn.write(s.frames(room))
        s.wake.clear()
        await s.wake.wait()


async def open_loop(run: Run, s: Sender, batch: int = 16) -> None:
    """As fast as the server takes it: write until TCP pushes back, then wait."""
    while not run.stopping:
        if s.conn.paused:
            s.wake.clear()
            await s.wake.wait()
            continue
        s.conn.write(s.frames(batch))
        await asyncio.sleep(0)


async def paced_loop(run: Run, s: Sender, rate: float, phase: float) -> None:
    """``rate`` messages a second, starting at ``phase`` of the first interval."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    due = loop.time() + phase * interval
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        if run.stopping:
            return
        n = min(100, int((loop.time() - due) / interval) + 1)
        if not s.conn.paused:
            s.conn.write(s.frames(n))
        due += n * interval


async def open_conn(run: Run, target: Target, index: int, user: str, password: str = PASSWORD,
                    timeout: float = CONNECT_TIMEOUT) -> Conn:  # fmt: skip
    """Connect, TLS, and log in / register; the Conn is in setup (slow) mode."""
    loop = asyncio.get_running_loop()

    context = target.context

    def make() -> Conn:
        if target.transport == "ws":
            return WsConn(run, target.dialect, index, user, password, target.host, target.port)
        return Conn(run, target.dialect, index, user, password)

    if target.transport == "ws":
        assert target.web_context is not None  # (ALPN http/1.1: the web edge)
        context = target.web_context
    _, conn = await asyncio.wait_for(
        loop.create_connection(
            make, target.host, target.port,
            ssl=context, server_hostname=target.host, ssl_handshake_timeout=timeout,
        ), timeout,
    )  # fmt: skip
    try:
        await conn.handshake(timeout)
    except BaseException:
        conn.close()
        raise
    return conn


Member = tuple[int, str, str | None]  # index (also the nick number), user name, room or None


async def connect_many(
    run: Run, target: Target, members: list[Member], concurrency: int
) -> tuple[list[Conn], list[str]]:
    """Open (index, user, room-or-None) connections, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, user: str, room: str | None) -> Conn:
        async with gate:
            conn = await open_conn(run, target, index, user)
            if room is not None:
                try:
                    await conn.join(room, CONNECT_TIMEOUT)
                except BaseException:
                    conn.close()
                    raise
            conn.go_fast()
            return conn

    results = await asyncio.gather(*(one(*m) for m in members), return_exceptions=True)
    conns = [r for r in results if isinstance(r, Conn)]
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return conns, errors


@dataclass
class RoomPlan:
    """A room: its member connections, which of them send, and the observer (closed loop)."""

    name: str
    members: list[Conn]
    senders: list[Sender] = field(default_factory=list)

    def expected_for(self, conn: Conn) -> int:
        return sum(s.accepted for s in self.senders if conn.dialect.echo or s.conn is not conn)


async def traffic(run: Run, target: Target, rooms: list[RoomPlan], opts: argparse.Namespace,
                  mode: str, rate: float, duration: float,
                  until: Awaitable[Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Send for ``duration`` (or until ``until`` is done), drain, and measure."""
    senders = [s for room in rooms for s in room.senders]
    run.senders = {s.index: s for s in senders}
    ru0, cpu0 = resource.getrusage(resource.RUSAGE_SELF), sample_process(target.pid)
    t0 = time.monotonic()
    start_us = time.monotonic_ns() // 1000
    if mode == "closed":
        loops = [closed_loop(run, s, opts.window) for s in senders]
    elif mode == "open":
        loops = [open_loop(run, s) for s in senders]
    else:  # spread the senders over the interval rather than all at once
        loops = [paced_loop(run, s, rate, (i * 0.618034) % 1.0) for i, s in enumerate(senders)]
    tasks = [asyncio.create_task(c) for c in loops]
    log(f"{target.name}: {len(senders)} senders, {mode}")
    if until is not None:
        await until
    else:
        await asyncio.sleep(duration)  # the measurement window itself, not a readiness wait
    run.stopping = True
    sent_until = time.monotonic()
    run.expected = sum(room.expected_for(c) for room in rooms for c in room.members)
    run.draining = True
    if run.delivered >= run.expected:
        run.drained.set()
    try:
        await asyncio.wait_for(run.drained.wait(), opts.drain)
    except TimeoutError:
        log(f"{target.name}: {run.expected - run.delivered:,} deliveries pending after the drain")
    ru1, cpu1 = resource.getrusage(resource.RUSAGE_SELF), sample_process(target.pid)
    wall = time.monotonic() - t0
    drain_s = time.monotonic() - sent_until
    for task in tasks:
        task.cancel()
    for room in rooms:
        for sender in room.senders:
            sender.settle(room.members)
    run.expected = sum(room.expected_for(c) for room in rooms for c in room.members)
    lost = dups = 0
    for room in rooms:
        for c in room.members:
            unique, expected = c.count - c.dups, room.expected_for(c)
            lost += max(0, expected - unique)
            dups += c.dups + max(0, unique - expected)
    active = max(1e-9, (run.last_rx - start_us) / 1e6) if run.delivered else sent_until - t0
    bench_cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall * 100
    out: dict[str, Any] = {
        "seconds": round(active, 3),
        "drain_s": round(drain_s, 3),
        "sent": sum(s.sent for s in senders),
        "refused": sum(s.refused for s in senders),
        "delivered": run.delivered,
        "expected": run.expected,
        "unseen": sum(s.sent - s.refused - s.accepted for s in senders),
        "delivered_fraction": round(run.delivered / run.expected, 5) if run.expected else None,
        "lost": lost,
        "duplicated": dups,
        "disconnects": run.disconnects,
        "delivered_per_s": round(run.delivered / active, 1),
        **latency_summary(run.lat),
        "bench_cpu_pct": round(bench_cpu, 1),
        "bench_bottleneck": bench_cpu >= BOTTLENECK_PCT,
    }
    if run.events:
        out["events"] = dict(run.events)
    if cpu0 is not None and cpu1 is not None:
        cpu = cpu1.cpu_s - cpu0.cpu_s
        out["server_cpu_s"] = round(cpu, 3)
        out["server_cpu_pct"] = round(cpu / (cpu1.at - cpu0.at) * 100, 1)
        if run.delivered:
            out["cpu_ms_per_1000"] = round(cpu * 1000 / (run.delivered / 1000), 4)
        out["server_rss_mib"] = round(cpu1.rss_kib / 1024, 1)
        out["server_threads"], out["server_fds"] = cpu1.threads, cpu1.fds
    return out


async def join_rooms(run: Run, target: Target, members: list[Member], opts: argparse.Namespace,
                     senders: int | None = None) -> tuple[list[RoomPlan], list[str]]:  # fmt: skip
    """Connect and join every (index, user, room); the first ``senders`` of each room send.

    Clients that could not connect are left out and returned as errors: a server that
    turns some away is still measured with the others (the table says how many failed).
    """
    limit = min(opts.connect_concurrency, target.connect_limit)
    conns, errors = await connect_many(run, target, members, limit)
    room_of = {index: room for index, _, room in members}
    by_room: dict[str, list[Conn]] = {}
    for c in sorted(conns, key=lambda c: c.index):
        by_room.setdefault(room_of[c.index] or "", []).append(c)
    if not any(len(cs) > 1 for cs in by_room.values()):
        close_all([RoomPlan("", conns)])
        raise RuntimeError(f"{len(errors)} of {len(members)} clients failed: {errors[:1]}")
    pad = b" " + b"x" * max(0, opts.text_bytes)
    plans = [RoomPlan(name, cs) for name, cs in by_room.items()]
    for plan in plans:
        plan.senders = [Sender(c, plan.name, pad) for c in plan.members[:senders]]
        plan.members[-1].observer = plan.members[-1].sender is None  # paces a closed loop
    return plans, errors


def _failures(errors: list[str]) -> dict[str, Any]:
    return {"connect_failed": len(errors), **({"first_error": errors[0]} if errors else {})}


def close_all(plans: list[RoomPlan], *more: Conn) -> None:
    for c in [*(c for p in plans for c in p.members), *more]:
        c.close()


async def chat(target: Target, opts: argparse.Namespace, rooms: int, size: int, senders: int,
               mode: str, rate: float) -> dict[str, Any]:  # fmt: skip
    """``rooms`` rooms of ``size`` members, the first ``senders`` of each sending."""
    run = Run()
    members = [(i, f"u{i}", f"r{i // size}") for i in range(rooms * size)]
    plans, errors = await join_rooms(run, target, members, opts, senders)
    try:
        result = await traffic(run, target, plans, opts, mode, rate, opts.duration or 15.0)
    finally:
        close_all(plans)
    return {"connections": sum(len(p.members) for p in plans), **_failures(errors), **result}


async def scenario_fanout(target: Target, opts: argparse.Namespace) -> dict[str, Any]:
    """One room of ``members``, ``senders`` of them sending (an observer paces a closed loop)."""
    return await chat(target, opts, 1, opts.members, opts.senders, opts.mode, opts.rate)


async def scenario_rooms(target: Target, opts: argparse.Namespace) -> dict[str, Any]:
    """``rooms`` rooms of ``room_size``; every client sends ``room_rate`` messages a second."""
    size = opts.room_size
    return await chat(target, opts, opts.rooms, size, size, "paced", opts.room_rate)


async def small_room(run: Run, target: Target, opts: argparse.Namespace) -> list[RoomPlan]:
    """The room whose latency is timed while idle connections or logins load the server."""
    members = [(i, f"u{i}", "small") for i in range(SMALL_ROOM)]
    plans, errors = await join_rooms(run, target, members, opts, SMALL_SENDERS)
    if errors:
        close_all(plans)
        raise RuntimeError(f"small room: {errors[0]}")
    return plans


async def scenario_idle(target: Target, opts: argparse.Namespace) -> dict[str, Any]:
    """``idle`` logged-in silent connections; memory per connection and a small room's latency."""
    run = Run()
    room = await small_room(run, target, opts)
    before = sample_process(target.pid)
    t0 = time.monotonic()
    members = [(SMALL_ROOM + i, f"u{SMALL_ROOM + i}", None) for i in range(opts.idle)]
    limit = min(opts.connect_concurrency, target.connect_limit)
    idle, errors = await connect_many(run, target, members, limit)
    connect_s = time.monotonic() - t0
    after = sample_process(target.pid)
    try:
        duration = opts.duration or 10.0
        result = await traffic(run, target, room, opts, "paced", SMALL_RATE, duration)
    finally:
        close_all(room, *idle)
    out: dict[str, Any] = {
        "connections": len(idle) + SMALL_ROOM,
        "idle_connected": len(idle),
        "connect_failed": len(errors),
        "connects_per_s": round(len(idle) / connect_s, 1) if connect_s > 0 else None,
        **result,
    }
    if errors:
        out["first_error"] = errors[0]
    if before is not None and after is not None and idle and sample_process(target.pid):
        out["rss_before_mib"] = round(before.rss_kib / 1024, 1)
        out["rss_per_conn_kib"] = round((after.rss_kib - before.rss_kib) / len(idle), 2)
        out["threads_per_conn"] = round((after.threads - before.threads) / len(idle), 3)
        out["fds_per_conn"] = round((after.fds - before.fds) / len(idle), 3)
    return out


async def scenario_logins(target: Target, opts: argparse.Namespace) -> dict[str, Any]:
    """``logins`` clients log in at once, again and again, at bcrypt cost ``login_cost``."""
    run = Run()
    room = await small_room(run, target, opts)
    login_run = Run()  # login clients do not count as chat deliveries
    deadline = time.monotonic() + (opts.duration or 10.0)
    times: list[float] = []
    done_at: list[float] = []
    failures: list[str] = []
    t0 = time.monotonic()

    async def worker(i: int) -> None:
        while time.monotonic() < deadline and len(failures) < 20:
            start = time.monotonic()
            try:
                conn = await open_conn(login_run, target, 10**6 + i, f"l{i}", timeout=120.0)
            except (OSError, ConnectionError, TimeoutError, ssl.SSLError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            times.append((time.monotonic() - start) * 1e6)
            done_at.append(time.monotonic())
            conn.close()

    async def all_workers() -> None:
        await asyncio.gather(*(worker(i) for i in range(opts.logins)))

    try:
        result = await traffic(run, target, room, opts, "paced", SMALL_RATE, 0, all_workers())
    finally:
        close_all(room)
    span = (max(done_at) - t0) if done_at else None
    return {
        "connections": SMALL_ROOM + opts.logins,
        "logins": len(times),
        "login_failed": len(failures),
        "logins_per_s": round(len(times) / span, 2) if span else None,
        **latency_summary([int(t) for t in times], "login"),
        **result,
        **({"first_error": failures[0]} if failures else {}),
    }


async def scenario_files(target: Target, opts: argparse.Namespace) -> dict[str, Any]:
    """A file of ``file_mib`` MiB up, then down, over HTTPS while a small room chats."""
    run = Run()
    room = await small_room(run, target, opts)
    moving = asyncio.create_task(asyncio.to_thread(move_file, target, opts.file_mib,
                                                   f"u{SMALL_ROOM}"))  # fmt: skip
    try:
        result = await traffic(run, target, room, opts, "paced", SMALL_RATE, 0, moving)
    finally:
        close_all(room)
    return {"connections": SMALL_ROOM + 1, **moving.result(), **result}


SCENARIOS = {
    "fanout": scenario_fanout,
    "rooms": scenario_rooms,
    "idle": scenario_idle,
    "logins": scenario_logins,
    "files": scenario_files,
}
PEER_SCENARIOS = ("fanout", "rooms", "idle")  # the others have no IRC counterpart


# -- report


TRANSPORT_NAMES = {"line": "the line protocol", "ws": "WebSocket (ALPN http/1.1, /ws)",
                   "irc": "IRC/TLS (the gateway, --irc-port)",
                   "base": "the line protocol (the --baseline checkout)"}  # fmt: skip


def describe(scenario: str, opts: argparse.Namespace) -> str:
    """The scenario's heading: what ran, how big, how long, over which transport."""
    d, o = opts.duration, opts
    small = f"a room of {SMALL_ROOM} with {SMALL_SENDERS} senders at {SMALL_RATE:g} msg/s"
    how = {"closed": f"closed loop, window {o.window}", "open": "open loop",
           "paced": f"paced, {o.rate:g} msg/s per sender"}[o.mode]  # fmt: skip
    return (
        {
            "fanout": f"fanout: one room of {o.members}, {o.senders} senders, {how}, {d or 15:g} s",
            "rooms": f"rooms: {o.rooms} rooms of {o.room_size}, each client {o.room_rate:g} msg/s, "
            f"{d or 15:g} s",
            "idle": f"idle: {o.idle} idle logged-in TLS connections; {small}, {d or 10:g} s",
            "logins": f"logins: {o.logins} clients logging in at once, bcrypt cost {o.login_cost}, "
            f"{d or 10:g} s; {small} meanwhile",
            "files": f"files: a file of {o.file_mib} MiB up, then down, over HTTPS (the file "
            f"API); {small} meanwhile",
        }[scenario]
        + "; "
        + ", ".join(f"{TRANSPORTS[t]} over {TRANSPORT_NAMES[t]}" for t in o.transports)
        + ("; the IRC peers over IRC/TLS" if o.peer_list and scenario in PEER_SCENARIOS else "")
    )


# -- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="securechat-bench",
        description="Load a chat server over TLS on loopback and report what it cost "
        "(docs/benchmarks.md). Use --name=value for values that start with a dash.",
    )
    a = p.add_argument
    a("--scenario", default="fanout", choices=[*SCENARIOS, "all"])
    a("--peers", default="", help=f"comma-separated IRC peers to compare: {','.join(PEERS)}")
    a("--transport", default="line",
      help="securechat's clients: line (the line protocol), ws (WebSocket), irc (IRC "
      "through its own gateway), or several, e.g. line,irc (interleaved: a "
      "securechat-irc/securechat column)")  # fmt: skip
    a("--baseline", type=Path,
      help="with --transport ...,base: a directory holding another checkout's securechat "
      "package, run as the securechat-base column (before/after in one run)")  # fmt: skip
    a("--baseline-arg", action="append", default=[],
      help="another argument for the securechat-base server alone (repeatable)")  # fmt: skip
    a("--install-peers", action="store_true", help="apt-get/pip install missing peers")
    a("--duration", type=float, help="seconds of traffic per run (default 15 or 10)")
    a("--mode", choices=["open", "closed", "paced"], help="fanout sending mode (default closed)")
    a("--window", type=int, default=20, help="closed loop: messages in flight per sender")
    a("--rate", type=float, default=100.0, help="paced: messages/s per sender")
    a("--members", type=int, default=100, help="fanout: members of the room")
    a("--senders", type=int, default=10, help="fanout: members that send")
    a("--rooms", type=int, default=100, help="rooms: number of rooms")
    a("--room-size", type=int, default=10, help="rooms: members per room")
    a("--room-rate", type=float, default=1.0, help="rooms: messages/s per client")
    a("--idle", type=int, default=1000, help="idle: idle connections to hold")
    a("--logins", type=int, default=100, help="logins: clients logging in at once")
    a("--login-cost", type=int, default=12, help="logins: bcrypt cost of their passwords")
    a("--file-mib", type=int, default=1024, help="files: MiB of the file moved each way")
    a("--text-bytes", type=int, default=32, help="padding in each message text")
    a("--connect-concurrency", type=int, default=100, help="connections opened at once")
    a("--drain", type=float, default=5.0, help="seconds to wait for in-flight messages")
    a("--timeout", type=float, default=600.0, help="seconds before a run is abandoned")
    a("--repeat", type=int, default=1,
      help="rounds of each scenario, the servers interleaved: medians and ranges")  # fmt: skip
    a("--server-arg", action="append", default=[], help="extra securechat-server argument")
    a("--keep-limits", action="store_true", help="keep securechat's flood/connection limits")
    a("--host", default="127.0.0.1", help="with --port: an already running securechat")
    a("--port", type=int, help="target a running securechat instead of starting one")
    a("--cafile", help="with --port: CA certificate of the running server")
    a("--passwd", help="with --port: its password file, to add the bench users to")
    a("--server-pid", type=int, help="with --port: its pid, for CPU and memory")
    a("--json", type=Path, help="write every number to this file")
    a("--chart", type=Path, help="write a PNG of latency percentiles (needs matplotlib)")
    a("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    a("--smoke", action="store_true", help="a few-second fanout check; exit 1 on any loss")
    opts = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    rate_given = any(a == "--rate" or a.startswith("--rate=") for a in given)
    opts.mode = opts.mode or ("paced" if rate_given else "closed")
    if opts.smoke:
        opts.scenario, opts.members, opts.senders = "fanout", 10, 2
        opts.duration = opts.duration or 2.0
    if opts.repeat < 1:
        p.error("--repeat must be at least 1")
    if opts.port and not opts.cafile:
        p.error("--port needs --cafile (the CA that signed the server's certificate)")
    if opts.senders >= opts.members:
        p.error("--senders must be below --members (a non-sender observes the room)")
    opts.server_args = ([] if opts.keep_limits else LIFTED) + opts.server_arg
    opts.peer_list = [x.strip() for x in opts.peers.split(",") if x.strip()]
    opts.transports = list(dict.fromkeys(x.strip() for x in opts.transport.split(",") if x.strip()))
    if not opts.transports or set(opts.transports) - set(TRANSPORTS):
        p.error(f"--transport: one or more of {', '.join(TRANSPORTS)}, comma-separated")
    base = opts.baseline
    if "base" in opts.transports and not (base and (base / "securechat").is_dir()):
        p.error("--transport base needs --baseline DIR, with DIR/securechat the package to run")
    if unknown := set(opts.peer_list) - set(PEERS):
        p.error(f"unknown peers: {', '.join(sorted(unknown))}")
    return opts


def rounds(
    scenario: str,
    names: list[str],
    ws: Workspace,
    opts: argparse.Namespace,
    peers: dict[str, list[str]],
) -> dict[str, dict[str, Any]]:
    """Run ``scenario`` against every server ``opts.repeat`` times, interleaved.

    Each round starts with the next server (a, b, c; b, c, a; ...), so no server always
    follows the same one; each server's rounds are then :func:`combine`-d.
    """
    play = SCENARIOS[scenario]
    each: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i in range(opts.repeat):
        if opts.repeat > 1:
            log(f"{scenario}: round {i + 1} of {opts.repeat}")
        start = i % len(names)
        for name in names[start:] + names[:start]:
            each[name].append(run_one(scenario, play, name, ws, opts, peers, i + 1))
    return {name: combine(each[name]) for name in names}


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    soft, hard = raise_nofile()
    log(f"RLIMIT_NOFILE soft={soft} hard={hard} (raised; servers started here inherit it)")
    if (load := os.getloadavg()[0]) > 0.5:
        log(f"load average {load:.2f} before the run: other work on this machine skews numbers")
    if opts.idle + SMALL_ROOM + 100 > soft:
        opts.idle = max(0, soft - SMALL_ROOM - 100)
        log(f"idle connections capped at {opts.idle} by RLIMIT_NOFILE")
    scenarios = list(SCENARIOS) if opts.scenario == "all" else [opts.scenario]
    peers, skipped = resolve_peers(opts.peer_list, opts.install_peers)
    ws = Workspace(opts.keep)
    users = max(opts.members, opts.rooms * opts.room_size, opts.idle + SMALL_ROOM)
    ws.make_users(users, opts.logins if "logins" in scenarios else 0, opts.login_cost)
    if opts.port and opts.passwd:
        add_users(Path(opts.passwd), users)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for scenario in scenarios:
            names = [TRANSPORTS[t] for t in opts.transports]
            names += list(peers) if scenario in PEER_SCENARIOS else []  # (others: none)
            results[scenario] = rounds(scenario, names, ws, opts, peers)
            print(table(describe(scenario, opts), scenario, results[scenario]), flush=True)
    finally:
        ws.close()
    if skipped:
        print("skipped peers: " + "; ".join(f"{n}: {r}" for n, r in skipped.items()))
    if opts.json:
        meta = run_meta(opts, [soft, hard], skipped)
        opts.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        log(f"numbers written to {opts.json}")
    if opts.chart:
        log(chart(opts.chart, results))
    if opts.smoke:
        return max(smoke_verdict(results["fanout"][TRANSPORTS[t]], TRANSPORTS[t])
                   for t in opts.transports)  # fmt: skip
    return 0


def smoke_verdict(r: dict[str, Any], name: str = "securechat") -> int:
    """Exit code of ``--smoke`` for column ``name``: 1 if anything was lost, duplicated,
    dropped or died."""
    keys = ("lost", "duplicated", "unseen", "disconnects", "connect_failed")
    problems = [f"{k}={r[k]}" for k in keys if r.get(k)]
    if r.get("server_died") or "error" in r:
        problems.append(r.get("error", "the server died"))
    if not r.get("delivered"):
        problems.append("nothing was delivered")
    if problems:
        print(f"smoke: {name}: FAILED: " + "; ".join(map(str, problems)))
        return 1
    print(f"smoke: {name}: ok ({r['delivered']:,} deliveries, none lost or duplicated)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
