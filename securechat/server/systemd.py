"""Tell systemd how the server is doing (``Type=notify`` units), without libsystemd.

The protocol is one datagram per message to the ``AF_UNIX`` socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace): ``READY=1`` once the
server listens, ``RELOADING=1`` with ``MONOTONIC_USEC`` while a SIGHUP reload runs,
``STOPPING=1`` when it shuts down, ``STATUS=...`` for ``systemctl status``. Outside
systemd the variable is unset and every call does nothing.
"""

import logging
import os
import socket
import time

log = logging.getLogger("securechat.server")


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ...) to systemd; True if a manager was told."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not fields:
        return False
    if address.startswith("@"):  # the abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True


def reloading() -> bool:
    """``RELOADING=1`` with the monotonic time systemd asks for (since systemd 253)."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the certificate")


__all__ = ["notify", "reloading"]
