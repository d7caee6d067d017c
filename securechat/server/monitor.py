"""What a running server says about itself: its metrics' state, readiness, admin tokens.

Why here: the web edge answers ``GET /metrics``, ``/healthz`` and ``/readyz`` (see
:mod:`securechat.server.web.monitoring`), but what the answers say is the transport's
to know (its connections, its I/O threads, whether it is shutting down) and the hub's
(rooms, users, the store). The transport makes one :class:`ServerMonitor` and hands it
to each web connection; the web edge sees only the small interface it declares.

Threads: it only reads. :meth:`ServerMonitor.not_ready` is a few attribute reads (the
I/O thread answers ``/readyz`` with it); the metrics (the transport's connection set,
copied under its lock, and each mailbox's backlog under that mailbox's lock) and the
token check (one indexed SQLite read) run in a worker thread.
"""

from collections import Counter
from typing import TYPE_CHECKING

from securechat.server.metrics import Snapshot, database_bytes

if TYPE_CHECKING:
    from securechat.server.transport import Server

__all__ = ["ServerMonitor"]


class ServerMonitor:
    """The monitoring view of one :class:`~securechat.server.transport.Server`."""

    def __init__(self, server: "Server") -> None:
        self._server = server
        server.hub.metrics.watch(self.snapshot)

    def not_ready(self) -> str | None:
        """Why the server would not take a new login and store its messages, or ``None``.

        Not ready: shutting down, at its connection limit (a new
        client would get ``server_busy``), or its writes fail (a full disk...; this also
        has the store try a write, so that a freed disk is noticed without traffic).
        """
        server = self._server
        if server.stopping:
            return "shutting down"
        if server.connection_count() >= server.limits.max_connections:
            return "at the connection limit"  # (a new client would get server_busy)
        storage = server.hub.metrics.storage
        problem = storage.problem if storage is not None else None
        if problem is not None:
            assert storage is not None
            storage.probe()
            return f"cannot store writes ({problem})"
        return None

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of this server's metrics."""
        return self._server.hub.metrics.exposition()

    def is_admin_token(self, token: str) -> bool:
        """Whether ``token`` is a good login token of an admin (``--admins``).

        Blocks on the store (one indexed read; a stale token is revoked on the way): a
        worker's job.
        """
        hub = self._server.hub
        if hub.tokens is None or not hub.admins:
            return False
        holder = hub.tokens.holder(token)
        return holder is not None and holder in hub.admins

    def snapshot(self) -> Snapshot:
        """The server's state now (each scrape): connections, queues, bytes, rooms, store."""
        server, hub = self._server, self._server.hub
        kinds: Counter[str] = Counter()
        frames = size = longest = 0
        for connection in server.connections():
            kinds[connection.kind] += 1
            waiting, waiting_bytes = connection.backlog()
            frames += waiting
            size += waiting_bytes
            longest = max(longest, waiting)
        received, sent = server.bytes_moved()
        return Snapshot(
            connections=kinds, queued_frames=frames, queued_bytes=size, longest_queue=longest,
            bytes_received=received, bytes_sent=sent, users_online=len(hub.online_users()),
            rooms=hub.room_count(), store_bytes=database_bytes(getattr(hub.store, "path", None)),
            ready=self.not_ready() is None,
        )  # fmt: skip
