"""Abuse limits: frame rate, login throttling and the bcrypt gate (sans-I/O).

Each class takes an injectable ``clock`` so its tests need no sleeping, and none
of them does I/O. The transport owns one :class:`LoginThrottle` and one
:class:`BcryptGate` for the whole server and a :class:`TokenBucket` per connection.
"""

import heapq
import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from securechat.exceptions import ProtocolError

Clock = Callable[[], float]
T = TypeVar("T")


def address_key(host: str) -> str:
    """Who is behind ``host``, for per-address limits: an IPv4 address, or an IPv6 /64.

    One IPv6 host usually holds a whole /64 and can pick any address in it, so
    limits keyed on the full address would be no limit at all. IPv4-mapped IPv6
    addresses count as the IPv4 address. Anything unparsable is its own key.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; one token per frame."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is one."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class LoginThrottle:
    """Failed logins, counted per (user, address), per address and per user.

    After ``threshold`` failures within ``window`` seconds under a key, further tries
    under it wait ``base_delay * 2**(failures - threshold)`` seconds after the last
    failure, at most ``max_delay``. Keying the strict count on the *pair* means a
    guesser on one address cannot lock the real user out from another (OWASP); the
    per-user count across addresses, against distributed guessing, starts later and
    is capped at ``user_max_delay``, so it can only slow the real user briefly. A
    success clears the user's counts.

    The wait :meth:`retry_after` gives is a promise: only checked passwords count, so
    a try turned away while waiting changes nothing, and a try made once the wait has
    passed is checked (and, if wrong, doubles the next wait). Where several keys are
    throttled, the wait is the longest of theirs.
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        window: float = 300.0,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        user_threshold: int = 20,
        user_max_delay: float = 30.0,
        max_keys: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.user_threshold = user_threshold
        self.user_max_delay = user_max_delay
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, ...], deque[float]] = {}

    def _keys(self, user: str, address: str) -> list[tuple[tuple[str, ...], int, float]]:
        return [
            (("pair", user, address), self.threshold, self.max_delay),
            (("address", address), self.threshold, self.max_delay),
            (("user", user), self.user_threshold, self.user_max_delay),
        ]

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is not None:
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[key]
                return None
        return times

    def retry_after(self, user: str, address: str) -> float:
        """Seconds this user on this address must wait before trying; 0.0 if none."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, threshold, cap in self._keys(user, address):
                times = self._recent(key, now)
                if times is not None and len(times) >= threshold:
                    delay = min(cap, self.base_delay * 2 ** (len(times) - threshold))
                    wait = max(wait, times[-1] + delay - now)
        return wait

    def failed(self, user: str, address: str) -> None:
        """Count a checked password that was wrong (never a try turned away unchecked)."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self.max_keys:
                self._prune(now)
            for key, _, _ in self._keys(user, address):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._failures.pop(("pair", user, address), None)
            self._failures.pop(("user", user), None)

    def _prune(self, now: float) -> None:
        """Forget expired counts, then the oldest down to 3/4 full, so pruning is rare."""
        for key in list(self._failures):
            self._recent(key, now)
        excess = len(self._failures) - self.max_keys * 3 // 4
        if excess > 0:
            last_failure = {key: times[-1] for key, times in self._failures.items()}
            for key in heapq.nsmallest(excess, last_failure, key=last_failure.__getitem__):
                del self._failures[key]


class BcryptGate:
    """At most ``concurrent`` password checks at once; at most ``waiting`` in line.

    bcrypt holds a core for its whole run; a login storm would otherwise starve
    chat traffic. Beyond the line, a login gets ``server_busy`` at once.
    """

    def __init__(self, concurrent: int, waiting: int) -> None:
        self._slots = threading.BoundedSemaphore(concurrent)
        self._lock = threading.Lock()
        self._waiting = 0
        self.max_waiting = waiting

    def run(self, check: Callable[..., T], *args: object) -> T:
        if not self._slots.acquire(blocking=False):  # no free slot: queue up, if there's room
            with self._lock:
                if self._waiting >= self.max_waiting:
                    raise ProtocolError("server_busy", "too many logins at once; try again "
                                        "shortly", retry_after=1.0)  # fmt: skip
                self._waiting += 1
            try:
                self._slots.acquire()
            finally:
                with self._lock:
                    self._waiting -= 1
        try:
            return check(*args)
        finally:
            self._slots.release()
