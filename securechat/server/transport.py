"""The TLS transport: a few I/O threads, each owning the connections it polls.

Why this shape: a thread per connection costs ~70 KiB and a context switch per
delivered frame; here each of ``Limits.io_threads`` threads runs one ``epoll`` loop
over many non-blocking connections. A connection
(:class:`~securechat.server.connection.Connection`) belongs to one I/O thread for its
whole life, and only that thread touches its TLS object (handshake, reads, writes,
close), so OpenSSL never sees two threads on one connection (STYLE.md).

Other threads reach a connection only through its
:class:`~securechat.server.mailbox.Mailbox` (a bounded queue of its own frames plus a
cursor into the feed of each of its rooms; a new frame marks the connection for its I/O
thread, which is woken through one ``eventfd`` per I/O thread, not per frame) and
:meth:`~securechat.server.connection.Connection.request_close`. A broadcast to a room of
100 therefore costs one append to the room's feed and at most one wake-up per I/O thread
(the thread is the feed's :class:`~securechat.server.mailbox.Listener`); each member's
writer then sends everything it is behind in one TLS write.

Work that may block runs elsewhere: frames of a connection that has not logged in
yet (bcrypt) go to a small worker pool (:class:`WorkerPool`). Writes are committed at
the end of the loop turn that read them, by the I/O thread itself (one transaction for
the turn, then the callbacks that deliver; the store's writer thread when the store
fsyncs, see :meth:`~securechat.server.store.GroupCommitter.commit_here`), and the
commit's own wake-ups of the thread need no eventfd. Meanwhile the connection's later
requests are held, so replies keep the order of requests. Everything about the protocol lives in
:class:`~securechat.server.session.Session` and :class:`~securechat.server.hub.Hub`.
"""

import contextlib
import heapq
import itertools
import logging
import math
import os
import select
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from securechat.protocol import DEFAULT_PORT
from securechat.protocol.frames import error_frame
from securechat.server.connection import IN, Connection, Limits
from securechat.server.hub import Hub
from securechat.server.irc import IrcGateway
from securechat.server.limits import BcryptGate, LoginThrottle
from securechat.server.mailbox import Feed
from securechat.server.monitor import ServerMonitor
from securechat.server.web import WebSite

log = logging.getLogger("securechat.server")


class WorkerPool:
    """Threads for blocking work (bcrypt), started on demand, gone when idle.

    Up to ``max_workers`` run at once; one that finds no work for ``idle`` seconds
    exits, so a login storm leaves no threads behind.
    """

    def __init__(self, max_workers: int, *, idle: float = 1.0, name: str = "login") -> None:
        self.max_workers, self.idle, self.name = max_workers, idle, name
        self._ready = threading.Condition()
        self._jobs: deque[tuple[Callable[..., object], tuple[object, ...]]] = deque()
        self._threads: set[threading.Thread] = set()
        self._idle_workers = 0
        self._stopping = False

    def submit(self, job: Callable[..., object], *args: object) -> None:
        with self._ready:
            self._jobs.append((job, args))
            self._ready.notify()
            if len(self._jobs) > self._idle_workers and len(self._threads) < self.max_workers:
                thread = threading.Thread(target=self._work, name=f"{self.name}-worker")
                self._threads.add(thread)
                thread.start()

    def _work(self) -> None:
        while True:
            with self._ready:
                self._idle_workers += 1
                self._ready.wait_for(lambda: self._jobs or self._stopping, self.idle)
                self._idle_workers -= 1
                if not self._jobs:  # idle too long, or stopping
                    self._threads.discard(threading.current_thread())
                    return
                job, args = self._jobs.popleft()
            job(*args)

    def shutdown(self) -> None:
        """Drop the jobs not started, let running ones finish, join every thread."""
        with self._ready:
            self._stopping = True
            self._jobs.clear()
            self._ready.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join()


class IOThread:
    """One epoll loop and the connections it owns; told when their rooms' feeds grow."""

    def __init__(
        self,
        name: str,
        flush_interval: float = 0.0,
        commit_here: Callable[[], Callable[[], None] | None] | None = None,
    ) -> None:
        """``commit_here``: called once in the thread; the function it returns commits
        what the thread's turn submitted (the hub's :meth:`~Hub.commit_here`)."""
        self._commit_here = commit_here
        self._ident = -1  # the thread's, once it runs: its own wake-ups need no eventfd
        self._epoll = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake_fd, IN)
        self._lock = threading.Lock()
        self._marked: list[Connection] = []
        self._feeds: set[Feed] = set()  # grown since their followers were last written to
        self._flush_interval = flush_interval
        self._flushed: dict[Feed, float] = {}  # feed -> when its followers were written to
        self._flush_at: float | None = None  # when the next waiting feed is due
        self._forget_above = 64  # size of _flushed at which quiet feeds are forgotten
        self._new: list[Connection] = []
        self._woken = False  # a wake-up is pending (the loop will not block in poll)
        self._signalled = False  # ... and it was written to the eventfd (another thread)
        self._stopping = False
        self._connections: dict[int, Connection] = {}
        self._timers: list[tuple[float, int, Connection]] = []
        self._seq = itertools.count()
        # Bytes its connections read and wrote (after TLS): added to by this thread
        # alone, once per read or write call; summed by the metrics at scrape time.
        self.bytes_received = self.bytes_sent = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def adopt(self, connection: Connection) -> None:
        """Take over a new connection (from the accept thread)."""
        with self._lock:
            self._new.append(connection)
            self._wake()

    def mark(self, connection: Connection) -> None:
        """Look at ``connection`` in the next turn (from any thread)."""
        with self._lock:
            self._marked.append(connection)
            self._wake()

    def appended(self, feed: Feed) -> None:
        """A feed some of our connections follow has a new frame (from any thread)."""
        with self._lock:
            if feed not in self._feeds:  # (else it waits for its turn, see _grown_feeds)
                self._feeds.add(feed)
                self._wake()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake()

    def _wake(self) -> None:
        """(Under the lock.) Make the loop look again; from the loop's own thread (a
        commit's callbacks at the end of a turn) without a system call: the loop sees
        ``_woken`` before it polls."""
        if not self._woken:
            self._woken = True
            if threading.get_ident() != self._ident:
                self._signalled = True
                os.eventfd_write(self._wake_fd, 1)

    def _grown_feeds(self, now: float) -> set[Feed]:
        """(Under the lock.) The grown feeds whose followers are to be written to now.

        A feed whose followers were written to less than ``flush_interval`` ago waits
        (its further appends do not wake the loop) until :attr:`_flush_at`.
        """
        if not self._feeds:
            return set()
        flushed, interval = self._flushed, self._flush_interval
        due: set[Feed] = set()
        later = math.inf
        for feed in self._feeds:
            at = flushed.get(feed, -math.inf) + interval
            if at <= now:
                due.add(feed)
                flushed[feed] = now
            else:
                later = min(later, at)
        self._feeds -= due
        self._flush_at = None if later == math.inf else later
        if len(flushed) > self._forget_above:  # forget feeds quiet for an interval
            self._flushed = {f: t for f, t in flushed.items() if t + interval > now}
            self._forget_above = 2 * len(self._flushed) + 64  # (amortised: not every turn)
        return due

    def watch(self, connection: Connection) -> None:
        """Register what ``connection`` waits for: epoll events and its next timer."""
        events = connection.wanted_events()
        if events != connection.events:
            if connection.events < 0:
                self._epoll.register(connection.fd, events)
                self._connections[connection.fd] = connection
            else:
                self._epoll.modify(connection.fd, events)
            connection.events = events
        when = connection.next_timer()
        if when == math.inf:  # nothing to wait for but events (e.g. a login being checked)
            return
        if connection.timer_at is None or when < connection.timer_at:
            connection.timer_at = when
            heapq.heappush(self._timers, (when, next(self._seq), connection))

    def forget(self, connection: Connection) -> None:
        if self._connections.pop(connection.fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(connection.fd)

    def _run(self) -> None:
        self._ident = threading.get_ident()
        commit = self._commit_here() if self._commit_here is not None else None
        while True:
            timeout = -1.0
            if self._woken:  # (set by this thread: nothing was written to the eventfd)
                timeout = 0.0
            elif self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            if self._flush_at is not None and timeout:
                wait = max(0.0, self._flush_at - time.monotonic())
                timeout = wait if timeout < 0 else min(timeout, wait)
            ready = self._epoll.poll(timeout)
            with self._lock:
                if self._woken:
                    if self._signalled:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(self._wake_fd)
                        self._signalled = False
                    self._woken = False
                new, self._new = self._new, []
                marked, self._marked = self._marked, []
                feeds = self._grown_feeds(time.monotonic())
                stopping = self._stopping
            due: dict[Connection, None] = dict.fromkeys(new)
            for fd, events in ready:
                connection = self._connections.get(fd)
                if connection is not None:
                    connection.readable = bool(events & (IN | select.EPOLLHUP | select.EPOLLERR))
                    due[connection] = None
            for connection in marked:
                connection.unmark()
                due[connection] = None
            writers: list[tuple[Feed, list[Connection]]] = [
                # (a copy in one C call: followers change under the room's lock)
                (feed, list(feed.followers.get(self, ())))  # type: ignore[arg-type]
                for feed in feeds
            ]
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                when, _, connection = heapq.heappop(self._timers)
                if connection.timer_at == when:
                    connection.timer_at = None
                    due[connection] = None
            for connection in due:
                if connection.state != "done":
                    connection.step()
            for feed, followers in writers:
                blocks: dict[int, tuple[bytes, int, list[bytes]]] = {}
                for connection in followers:
                    if connection not in due:
                        connection.write_feed(feed, blocks)
            if commit is not None:
                commit()  # what this turn submitted, in one transaction; then its callbacks
            if stopping:
                for connection in list(self._connections.values()):
                    connection.in_worker = False  # the workers are stopped by now
                    connection._finish()
                self._epoll.close()
                os.close(self._wake_fd)
                return


@dataclass
class Server:
    """A securechat server: listener, accept thread, I/O threads, login workers.

    ``web``: the web edge (HTTP and WebSocket for clients that choose ``http/1.1`` by
    ALPN; the context must offer it), or ``None`` for the line protocol only.
    ``irc_port``: a second TLS listener on ``host`` (same context, so a reload covers it)
    whose clients speak IRC through the gateway (:attr:`irc`); ``None``: no IRC.
    """

    context: ssl.SSLContext
    hub: Hub
    authenticate: Callable[[str, str], bool]
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    limits: Limits = field(default_factory=Limits)
    web: WebSite | None = None
    irc_port: int | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._all_gone = threading.Condition(self._lock)
        self._connections: set[Connection] = set()
        self._per_address: Counter[str] = Counter()
        self.throttle = LoginThrottle()
        self._gate = BcryptGate(self.limits.bcrypt_concurrent, self.limits.bcrypt_waiting)
        # Enough threads for every check the gate lets run or wait; idle ones exit.
        self.workers = WorkerPool(self.limits.bcrypt_concurrent + self.limits.bcrypt_waiting + 1)
        self._loops = [
            IOThread(f"io-{n}", self.limits.flush_interval, self.hub.commit_here)
            for n in range(max(1, self.limits.io_threads))
        ]
        self._next_loop = itertools.cycle(self._loops)
        self._listener: socket.socket | None = None
        self._irc_listener: socket.socket | None = None
        self.irc: IrcGateway | None = None
        if self.irc_port is not None:
            hub = self.hub
            files = hub.files if self.web is not None else None  # (served over HTTPS)
            links = files.links if files is not None else None  # (IRC users get links)
            if links is not None:
                links.locate(self.host, lambda: self.address[1])
            self.irc = IrcGateway(is_online=hub.is_online, online_users=hub.online_users,
                                  user_exists=hub.user_exists, links=links)  # fmt: skip
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._accept_thread: threading.Thread | None = None
        self._stopping = False
        self.monitor = ServerMonitor(self)  # what /metrics and /readyz say (the web edge)

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def irc_address(self) -> tuple[str, int]:
        """Where the IRC listener is (``irc_port`` 0 picks a free port)."""
        assert self._irc_listener is not None
        host, port = self._irc_listener.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Bind, listen and start the accept and I/O threads."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, self.port), family=family, backlog=1024)
        if self.irc_port is not None:
            try:
                self._irc_listener = socket.create_server(
                    (self.host, self.irc_port), family=family, backlog=1024
                )
            except OSError:
                self._listener.close()
                raise
        for loop in self._loops:
            loop.thread.start()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="accept")
        self._accept_thread.start()
        host, port = self.address
        log.info("listening on %s:%d", f"[{host}]" if ":" in host else host, port)
        if self._irc_listener is not None:
            host, port = self.irc_address
            log.info("IRC gateway (TLS) on %s:%d", f"[{host}]" if ":" in host else host, port)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        poller = select.poll()
        listeners = {self._listener.fileno(): self._listener}
        if self._irc_listener is not None:
            listeners[self._irc_listener.fileno()] = self._irc_listener
        for listener in listeners.values():
            poller.register(listener, select.POLLIN)
        poller.register(self._stop_fd, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._stop_fd in ready:
                return
            for fd in ready:
                self._accept(listeners[fd])

    def _accept(self, listener: socket.socket) -> None:
        """Take one connection from ``listener`` and hand it to an I/O thread."""
        try:
            sock, address = listener.accept()
        except OSError as exc:  # e.g. EMFILE: keep serving the connections we have
            log.warning("accept failed: %s", exc)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = next(self._next_loop)
        irc = self.irc if listener is self._irc_listener else None
        connection = Connection(self, loop, sock, address[:2],
                                opener=irc.open if irc is not None else None)  # fmt: skip
        with self._lock:
            if self._stopping:
                sock.close()
                return
            host = connection.peer
            connection.busy = (
                len(self._connections) >= self.limits.max_connections
                or self._per_address[host] >= self.limits.max_per_address
            )
            self._connections.add(connection)
            self._per_address[host] += 1
        loop.adopt(connection)

    def check_password(self, user: str, password: str) -> bool:
        """``authenticate``, at most ``bcrypt_concurrent`` at once (else wait or busy)."""
        return self._gate.run(self.authenticate, user, password)

    def forget(self, connection: Connection) -> None:
        with self._lock:
            if connection in self._connections:
                self._connections.discard(connection)
                host = connection.peer
                self._per_address[host] -= 1
                if not self._per_address[host]:
                    del self._per_address[host]
                if not self._connections:
                    self._all_gone.notify_all()

    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    def connection_count(self) -> int:
        return len(self._connections)  # (one read of a set's size: no lock needed)

    @property
    def stopping(self) -> bool:
        """:meth:`shutdown` has begun."""
        return self._stopping

    def bytes_moved(self) -> tuple[int, int]:
        """Bytes read from and written to clients since the start (after TLS)."""
        loops = self._loops
        return sum(loop.bytes_received for loop in loops), sum(loop.bytes_sent for loop in loops)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no connection is left; False if some still are after ``timeout``."""
        with self._lock:
            return self._all_gone.wait_for(lambda: not self._connections, timeout)

    def shutdown(self, timeout: float = 4.0) -> None:
        """Stop accepting, tell every connection we are shutting down, flush, stop.

        Idempotent: a second call returns at once.
        """
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            connections = list(self._connections)
        os.eventfd_write(self._stop_fd, 1)
        if self._accept_thread is not None:
            self._accept_thread.join()
        if self._listener is not None:
            self._listener.close()
        if self._irc_listener is not None:
            self._irc_listener.close()
        goodbye = error_frame("shutting_down", "the server is shutting down")
        for connection in connections:
            connection.request_close(goodbye)
        self.wait_idle(timeout)
        self.workers.shutdown()
        for loop in self._loops:
            loop.stop()
        for loop in self._loops:
            if loop.thread.is_alive():
                loop.thread.join()
        os.close(self._stop_fd)
