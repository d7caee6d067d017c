"""What the server counts for ``GET /metrics``: Prometheus counters and scrape-time gauges.

Why this shape: the parts that see an event (a login in the session, a message in the
hub, a commit in the store's writer thread, a slow consumer in the connection) bump a
counter of one :class:`ServerMetrics`, the hub's (one per server, each with its own
:class:`~prometheus_client.CollectorRegistry`, so several servers in one process, as in
the tests, never share or clash). What is a state rather than an event (connections by
kind, outgoing queues, rooms, the database's size, bytes read and written) is read only
when Prometheus scrapes: the transport hands a :class:`Snapshot` maker to
:meth:`ServerMetrics.watch`, and nothing on the hot path pays for it.

Cost on the hot paths: the hub bumps ``messages`` and ``deliveries`` once per batch of
messages (deliveries are the batch's frames times the room's member connections, counted
from the feed's followers, a set per I/O thread), never once per member. Bytes read and
written are plain integers of each I/O thread (one add per read or write call, by the
one thread that owns the connection), summed at scrape time.

Privacy and cardinality: no label carries a user or room name; the only labels are
small fixed sets (``kind``, ``result``).

This module imports no other part of the server (the lowest layer): every part may
count here.
"""

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = [
    "CONNECTION_KINDS",
    "CONTENT_TYPE",
    "LOGIN_RESULTS",
    "ServerMetrics",
    "Snapshot",
    "StorageState",
    "database_bytes",
]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
# What a connection speaks (``Connection.kind``): shown even at 0, so a series never
# appears out of nowhere (rate() and alerts need it to exist before it moves).
CONNECTION_KINDS = ("handshake", "line", "http", "websocket", "irc")
LOGIN_RESULTS = ("ok", "failed", "throttled", "busy")
# Seconds; a commit takes about a millisecond, an fsync'd one a few, a locked database
# up to SQLite's busy_timeout (5 s).
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                  2.5, 5.0, 10.0)  # fmt: skip


class StorageState(Protocol):
    """Whether writes work (the store's committer): for ``/readyz`` and a gauge."""

    @property
    def problem(self) -> str | None:
        """Why writes fail now (``"disk full"``...), or ``None`` while they work."""

    def probe(self) -> None:
        """While writes fail: try one soon (any thread, never blocks), so that a disk
        freed while nobody writes is noticed."""


@dataclass
class Snapshot:
    """The state of a server when it is scraped (made by the transport)."""

    connections: Mapping[str, int] = field(default_factory=dict)  # by kind
    queued_frames: int = 0  # frames waiting to be sent, all connections together
    queued_bytes: int = 0
    longest_queue: int = 0  # frames waiting for the connection furthest behind
    bytes_received: int = 0  # protocol bytes read (after TLS), since the start
    bytes_sent: int = 0
    users_online: int = 0
    rooms: int = 0
    store_bytes: int = 0
    ready: bool = True


def database_bytes(path: str | None) -> int:
    """The size of a SQLite database on disk: its file and its write-ahead log."""
    if not path or path == ":memory:":
        return 0
    total = 0
    for name in (path, f"{path}-wal"):
        with contextlib.suppress(OSError):  # (no WAL file: nothing to add)
            total += os.stat(name).st_size
    return total


class ServerMetrics:
    """One server's counters and its registry (see the module's docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        logins = Counter("securechat_logins", "Login attempts by result: ok, failed (wrong "
                         "password, token or certificate), throttled (turned away unchecked "
                         "after failures), busy (too many checks at once)", ["result"],
                         registry=registry)  # fmt: skip
        # The children, looked up once: an increment is then one locked add.
        self.logins_ok = logins.labels("ok")
        self.logins_failed = logins.labels("failed")
        self.logins_throttled = logins.labels("throttled")
        self.logins_busy = logins.labels("busy")
        self.rate_limited = Counter("securechat_rate_limited_frames", "Frames refused "
                                    "with rate_limited (over --frame-rate)",
                                    registry=registry)  # fmt: skip
        messages = Counter("securechat_messages", "Messages stored and delivered, by kind: "
                           "room or dm (direct)", ["kind"], registry=registry)  # fmt: skip
        self.room_messages = messages.labels("room")
        self.direct_messages = messages.labels("dm")
        self.deliveries = Counter("securechat_deliveries", "Copies of messages queued for "
                                  "connections (a room message times the room's member "
                                  "connections; a direct message's live copies)",
                                  registry=registry)  # fmt: skip
        self.slow_consumers = Counter("securechat_slow_consumer_disconnects", "Connections "
                                      "closed for not reading (slow_consumer)",
                                      registry=registry)  # fmt: skip
        self.commit_seconds = Histogram("securechat_commit_seconds", "Time a commit (one "
                                        "transaction for every write waiting) took, of the "
                                        "commits that worked", buckets=COMMIT_BUCKETS,
                                        registry=registry)  # fmt: skip
        self.commits_failed = Counter("securechat_commits_failed", "Commits that failed "
                                      "(their writes were answered unavailable or "
                                      "internal)", registry=registry)  # fmt: skip
        self.storage: StorageState | None = None  # set by the committer that reports here
        self._watch: Callable[[], Snapshot] | None = None
        registry.register(_StateCollector(self))

    def watch(self, snapshot: Callable[[], Snapshot]) -> None:
        """Have each scrape read the server's state from ``snapshot`` (the transport's)."""
        self._watch = snapshot

    def exposition(self) -> bytes:
        """Everything, in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def _state(self) -> Iterator[Metric]:
        storage = self.storage
        problem = storage.problem if storage is not None else None
        yield _gauge("storage_ok", "1 while writes are stored, 0 while they fail", problem is None)
        watch = self._watch
        if watch is None:
            return
        state = watch()
        yield _gauge("ready", "1 while /readyz says ready", state.ready)
        kinds = GaugeMetricFamily(
            "securechat_connections",
            "Open connections by kind: handshake (TLS not done), line, http, websocket, irc",
            labels=["kind"],
        )
        for kind in dict.fromkeys((*CONNECTION_KINDS, *state.connections)):
            kinds.add_metric([kind], state.connections.get(kind, 0))
        yield kinds
        yield _gauge("users_online", "Users with a connection logged in", state.users_online)
        yield _gauge(
            "outgoing_queue_frames",
            "Frames waiting to be sent, all connections together",
            state.queued_frames,
        )
        yield _gauge(
            "outgoing_queue_bytes",
            "Bytes waiting to be sent, all connections together",
            state.queued_bytes,
        )
        yield _gauge(
            "outgoing_queue_longest_frames",
            "Frames waiting for the connection furthest behind (slow_consumer past 1,000)",
            state.longest_queue,
        )
        yield CounterMetricFamily(
            "securechat_received_bytes",
            "Protocol bytes read from clients (after TLS)",
            value=state.bytes_received,
        )
        yield CounterMetricFamily(
            "securechat_sent_bytes",
            "Protocol bytes written to clients (before TLS)",
            value=state.bytes_sent,
        )
        yield _gauge("rooms", "Rooms (with history or members)", state.rooms)
        yield _gauge(
            "store_bytes",
            "Size of the database and its write-ahead log on disk",
            state.store_bytes,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"securechat_{name}", documentation, value=value)


class _StateCollector:
    """A registry's view of the state read at scrape time (a custom collector)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._state()
