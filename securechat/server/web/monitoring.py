"""Monitoring over HTTPS: ``GET /metrics``, ``/healthz`` and ``/readyz``.

Why on the chat's own port: it is the one port the server has, already TLS, already
open to the load balancer; a second listener would need its own certificate handling
and firewall rule. :class:`~securechat.server.web.http.WebEdge` sends these three paths
here; what they say comes from the transport through :class:`Monitor` (the server's
:class:`~securechat.server.monitor.ServerMonitor`).

Who may ask:

- ``/healthz`` (the process serves: always ``200 ok``) and ``/readyz`` (``200 ready``,
  or ``503`` with the reason: shutting down, at the connection limit, writes failing)
  are open to anyone who reaches the port: a load balancer or an orchestrator probes
  them without credentials, and they say nothing about anyone.
- ``/metrics`` is for the addresses of ``--metrics-allow`` (default ``127.0.0.1`` and
  ``::1``: a Prometheus on the same machine), or for a request with an admin's login
  token (``Authorization: Bearer TOKEN``, checked in a worker: one indexed read of the
  database). Everyone else gets the same ``404`` as for any path that does not exist,
  so the metrics' existence is not advertised.

The metrics are made in a worker too: they walk every connection (10,000 of them take
some milliseconds) and no I/O thread should wait for that. ``/healthz`` and ``/readyz``
are answered at once, in the I/O thread (a few attribute reads), so a probe gets its
answer even while the workers are busy with a login storm.
"""

import ipaddress
from collections.abc import Callable, Iterable
from typing import Protocol

import h11

from securechat.server.web.files import Answer, bearer

__all__ = [
    "DEFAULT_METRICS_ALLOW",
    "MONITORING_PATHS",
    "Monitor",
    "Network",
    "address_allowed",
    "monitoring_answer",
    "parse_networks",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
METRICS_PATH, HEALTHZ_PATH, READYZ_PATH = b"/metrics", b"/healthz", b"/readyz"
MONITORING_PATHS = frozenset((METRICS_PATH, HEALTHZ_PATH, READYZ_PATH))
DEFAULT_METRICS_ALLOW = ("127.0.0.1", "::1")
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format
NO_STORE = (b"cache-control", b"no-store")
NOT_FOUND = Answer(404, b"not found\n")  # (what any unknown path gets)


class Monitor(Protocol):
    """What the server says about itself (the transport's
    :class:`~securechat.server.monitor.ServerMonitor`)."""

    def not_ready(self) -> str | None:
        """Why it is not ready (``/readyz`` 503), or ``None``. Cheap and never blocks:
        called in the I/O thread, so a probe is answered even when the workers are busy
        with a login storm."""

    def metrics_text(self) -> bytes:
        """The Prometheus exposition (walks every connection: a worker's job)."""

    def is_admin_token(self, token: str) -> bool:
        """Whether ``token`` is a good login token of an admin (reads the database: a
        worker's job)."""


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``--metrics-allow`` values: addresses or networks, each may be comma-separated.

    ``127.0.0.1``, ``10.0.0.0/8``, ``::1``, ``fd00::/8``; ``none`` (alone) allows no
    address (admin tokens only). Raises :exc:`ValueError` naming a bad entry.
    """
    networks: list[Network] = []
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item or item.lower() == "none":
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an address or a network "
                                 "(e.g. 10.0.0.5, 10.0.0.0/8, ::1)") from None  # fmt: skip
    return tuple(networks)


def address_allowed(address: str, networks: Iterable[Network]) -> bool:
    """Whether the peer ``address`` is in one of ``networks``.

    An IPv4 client of a dual-stack listener shows as ``::ffff:a.b.c.d``: it is checked
    as ``a.b.c.d``. Anything that is not an address (a Unix socket's ``""``) is not.
    """
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def monitoring_answer(
    request: h11.Request,
    path: bytes,
    *,
    monitor: Monitor | None,
    address: str,
    allow: Iterable[Network],
) -> Answer | Callable[[], Answer]:
    """The answer to a request for one of :data:`MONITORING_PATHS`: at once (an
    :class:`Answer`), or a job that makes it, for a worker (``/metrics``: it walks every
    connection, and a token is checked in the database)."""
    if monitor is None:  # (a web edge with no server behind it: tools, unit tests)
        return NOT_FOUND
    if request.method not in (b"GET", b"HEAD"):
        return Answer(405, b"only GET and HEAD\n", [(b"allow", b"GET, HEAD"), NO_STORE])
    if path == HEALTHZ_PATH:
        return Answer(200, b"ok\n", [NO_STORE])
    if path == READYZ_PATH:
        return _readiness(monitor)
    if address_allowed(address, allow):
        return lambda: _metrics(monitor)
    token = bearer(request)
    if token is None:
        return NOT_FOUND
    return lambda: _metrics(monitor) if monitor.is_admin_token(token) else NOT_FOUND


def _readiness(monitor: Monitor) -> Answer:
    problem = monitor.not_ready()
    if problem is None:
        return Answer(200, b"ready\n", [NO_STORE])
    return Answer(503, f"not ready: {problem}\n".encode(), [NO_STORE, (b"retry-after", b"5")])


def _metrics(monitor: Monitor) -> Answer:
    return Answer(200, monitor.metrics_text(), [(b"content-type", METRICS_TYPE), NO_STORE])
