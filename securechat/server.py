"""The threaded TLS transport, and the ``securechat-server`` command.

One thread accepts; each accepted socket gets its own thread, which runs the TLS
handshake under a deadline and then owns that connection's TLS object alone: it
reads, writes and closes it, so OpenSSL never sees two threads on one connection
(STYLE.md). Other threads hand it frames through :meth:`Connection.deliver`, which
only appends to a bounded queue and wakes the owner through an ``eventfd``; a
queue past its bound marks the client a slow consumer, which is then dropped.
The socket is non-blocking and the owner waits in ``poll`` on the socket and its
``eventfd`` together, so a reader that is busy never stops the writer and a
client that does not read never blocks anyone else.

Everything about the protocol lives in :class:`~securechat.session.Session` and
the :class:`~securechat.hub.Hub`; this module only moves bytes and keeps time.
"""

import argparse
import contextlib
import logging
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import DEFAULT_PORT, PROTOCOL_VERSION, __version__
from .exceptions import FrameTooLarge, PasswordFileError, StoreError
from .frames import ErrorFrame, ServerPing, Welcome, error_frame
from .framing import DEFAULT_FRAME_LIMIT, MIN_FRAME_LIMIT, LineReader
from .hub import Hub
from .limits import BcryptGate, LoginThrottle, TokenBucket
from .passwd import PasswordFile, permission_warning
from .session import Session
from .store import GroupCommitter, SqliteStore

log = logging.getLogger("securechat.server")

DATABASE_NAME = "securechat.db"

# Mozilla "intermediate" (TLS 1.2 part; TLS 1.3 suites are OpenSSL's defaults).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
READ_SIZE = 65536
WRITE_CHUNK = 256 * 1024
LINGER_SECONDS = 1.0
SLOW_CONSUMER = error_frame("slow_consumer", "you are not reading fast enough; disconnecting")


@dataclass
class Limits:
    """Time and size limits of the transport (defaults from the protocol)."""

    frame_bytes: int = DEFAULT_FRAME_LIMIT
    queue_bytes: int = 1024 * 1024
    queue_frames: int = 1000
    handshake_timeout: float = 10.0
    login_timeout: float = 10.0
    idle_ping: float = 60.0
    idle_drop: float = 120.0
    partial_timeout: float = 30.0  # a started frame must be finished within this
    flush_timeout: float = 3.0
    frame_rate: float = 10.0  # frames a second per connection, after a burst of
    frame_burst: int = 20
    max_connections: int = 10_000
    max_per_address: int = 50
    bcrypt_concurrent: int = 2 * (os.cpu_count() or 1)
    bcrypt_waiting: int = 200


def make_server_context(
    cert: str | Path, key: str | Path | None = None, client_ca: str | Path | None = None
) -> ssl.SSLContext:
    """A TLS 1.2+ server context with Mozilla intermediate ciphers.

    With ``client_ca``, clients may present a certificate signed by that CA; its
    common name then names a user who can log in without a password.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(str(cert), str(key) if key else None)
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def certificate_user(tls: ssl.SSLSocket) -> str | None:
    """The common name of the client's verified certificate, if it sent one."""
    cert = tls.getpeercert()
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str):
                return value
    return None


class _Closed(Exception):
    """The connection is over (EOF, reset, timeout); nothing more to say."""


class Connection:
    """One client connection, owned by one thread (see the module docstring)."""

    def __init__(self, server: "Server", sock: socket.socket, address: tuple[str, int]) -> None:
        self.server = server
        self.limits = server.limits
        self.address = address
        self.raw = sock
        self.tls: ssl.SSLSocket | None = None
        self._lock = threading.Lock()  # guards the queue and the wake fd, never I/O
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._woken = False
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._overflow = False
        self._sealed = False
        self._close_reason: bytes | None = None
        self._done = False
        self.busy = False  # over a connection limit: say server_busy and close
        self.session = Session(
            server.hub, self.deliver, server.check_password, address=address[0],
            throttle=server.throttle, wake=self._wake_up,
            bucket=TokenBucket(self.limits.frame_rate, self.limits.frame_burst),
        )  # fmt: skip
        self.thread = threading.Thread(
            target=self.run, name=f"conn-{address[0]}:{address[1]}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<Connection {self.address[0]}:{self.address[1]} {self.session.user or '-'}>"

    # -- called from any thread

    def deliver(self, data: bytes) -> None:
        """Queue one encoded frame; never blocks. Past the bound: slow consumer."""
        with self._lock:
            if self._done or self._overflow or self._sealed:
                return
            if (
                len(self._queue) >= self.limits.queue_frames
                or self._queued_bytes + len(data) > self.limits.queue_bytes
            ):
                self._overflow = True
            else:
                self._queue.append(data)
                self._queued_bytes += len(data)
            self._wake()

    def _seal(self, final_frame: bytes) -> None:
        """Queue ``final_frame`` as the last frame; later deliveries are dropped."""
        with self._lock:
            self._queue.append(final_frame)
            self._queued_bytes += len(final_frame)
            self._sealed = True

    def request_close(self, final_frame: bytes) -> None:
        """Ask the owner thread to send ``final_frame``, flush and close (e.g. shutdown)."""
        with self._lock:
            if self._done:
                return
            self._close_reason = final_frame
            self._wake()

    def _wake_up(self) -> None:
        """Wake the owner thread (e.g. a commit it waits for is done)."""
        with self._lock:
            if not self._done:
                self._wake()

    def _wake(self) -> None:
        if not self._woken:
            self._woken = True
            os.eventfd_write(self._wake_fd, 1)

    def _clear_wake(self) -> None:
        with self._lock:
            if self._woken:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
                self._woken = False

    def _take(self) -> bytes:
        """Everything queued, as one buffer (capped at WRITE_CHUNK unless one frame is larger)."""
        with self._lock:
            parts: list[bytes] = []
            size = 0
            while self._queue and (size < WRITE_CHUNK or not parts):
                part = self._queue.popleft()
                parts.append(part)
                size += len(part)
            self._queued_bytes -= size
            return b"".join(parts)

    # -- the owner thread

    def run(self) -> None:
        try:
            self._handshake()
            assert self.tls is not None
            if self.busy:
                self.deliver(error_frame("server_busy", "too many connections; try again later"))
                self.session.closing = True
            else:
                self.session.cert_user = certificate_user(self.tls)
                self.deliver(Welcome(version=__version__, protocol=PROTOCOL_VERSION).encode())
            self._serve()
        except _Closed:
            pass
        except (OSError, ssl.SSLError) as exc:
            log.debug("%r: %s", self, exc)
        except Exception:
            log.exception("%r: internal error", self)
        finally:
            self._finish()

    def _wait(self, sock: socket.socket, events: int, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Closed
        poller = select.poll()
        poller.register(sock, events)
        if not poller.poll(remaining * 1000):
            raise _Closed

    def _handshake(self) -> None:
        self.raw.setblocking(False)
        self.tls = self.server.context.wrap_socket(
            self.raw, server_side=True, do_handshake_on_connect=False
        )
        deadline = time.monotonic() + self.limits.handshake_timeout
        while True:
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self._wait(self.tls, select.POLLIN, deadline)
            except ssl.SSLWantWriteError:
                self._wait(self.tls, select.POLLOUT, deadline)

    def _serve(self) -> None:
        tls, limits, session = self.tls, self.limits, self.session
        assert tls is not None
        reader = LineReader(limits.frame_bytes)
        poller = select.poll()
        poller.register(self._wake_fd, select.POLLIN)
        now = time.monotonic()
        login_deadline = now + limits.login_timeout
        last_heard = now
        pinged = False
        partial_since: float | None = None  # when the unfinished frame began
        pending = b""
        held: deque[bytes] = deque()  # lines read but not handled yet
        closing_since: float | None = None
        while True:
            # Clear the wake-up before looking at anything it may announce: a wake-up
            # after this point leaves the eventfd readable, so poll cannot miss it.
            self._clear_wake()
            # Handle what was read, one request at a time: while a write of this
            # connection waits for its commit, later requests wait too, so replies
            # come in request order (and the socket is not read meanwhile).
            while held and not session.waiting and not session.closing:
                session.receive_line(held.popleft())
            # Decide whether to wind down.
            if closing_since is None:
                with self._lock:
                    reason, overflow = self._close_reason, self._overflow
                if overflow:
                    self._send_best_effort(SLOW_CONSUMER)
                    raise _Closed
                if reason is not None:
                    self._seal(reason)
                    session.closing = True
                if session.closing:
                    closing_since = time.monotonic()
            # Write what is queued.
            if not pending:
                pending = self._take()
            want_read_for_write = False
            while pending:
                try:
                    sent = tls.send(pending)
                except ssl.SSLWantWriteError:
                    break
                except ssl.SSLWantReadError:
                    want_read_for_write = True
                    break
                pending = pending[sent:] or self._take()
            if closing_since is not None and not pending:
                with self._lock:
                    empty = not self._queue
                if empty:
                    return
            # Wait for the socket, the queue, or a timer.
            now = time.monotonic()
            if closing_since is not None:
                deadline = closing_since + limits.flush_timeout
            elif not session.logged_in:
                deadline = login_deadline
            else:
                deadline = last_heard + (limits.idle_drop if pinged else limits.idle_ping)
            if partial_since is not None and closing_since is None:
                deadline = min(deadline, partial_since + limits.partial_timeout)
            if now >= deadline:
                if closing_since is not None:
                    raise _Closed
                if partial_since is not None and now >= partial_since + limits.partial_timeout:
                    self._send_best_effort(error_frame("bad_frame", "frame not finished in time"))
                    raise _Closed
                if not session.logged_in:
                    self._send_best_effort(error_frame("auth_required", "login timed out"))
                    raise _Closed
                if pinged:
                    raise _Closed
                pinged = True
                self.deliver(ServerPing().encode())
                continue
            reading = closing_since is None and not held
            events = (select.POLLIN if reading or want_read_for_write else 0) | (
                select.POLLOUT if pending else 0
            )
            poller.register(tls, events)
            timeout = 0.0 if reading and tls.pending() else (deadline - now) * 1000
            ready = dict(poller.poll(timeout))
            if reading and (ready.get(tls.fileno(), 0) or tls.pending()):
                lines = self._read(reader)
                if lines:
                    last_heard = time.monotonic()
                    pinged = False
                    held.extend(lines)
                if not reader.pending:
                    partial_since = None
                elif partial_since is None:
                    partial_since = time.monotonic()

    def _read(self, reader: LineReader) -> list[bytes]:
        """Read what the socket has (a bounded amount); return the complete lines."""
        assert self.tls is not None
        lines: list[bytes] = []
        for _ in range(16):
            try:
                data = self.tls.recv(READ_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not data:
                if lines:  # handle what came before the end, then close
                    break
                raise _Closed
            try:
                lines += reader.feed(data)
            except FrameTooLarge as error:
                self.session.fail(error)
                break
        return lines

    def _send_best_effort(self, frame: bytes) -> None:
        """Try to send one last frame without waiting (slow consumer, timeouts)."""
        assert self.tls is not None
        with contextlib.suppress(OSError, ssl.SSLError):
            self.tls.send(frame)

    def _finish(self) -> None:
        """Leave the hub, close the socket politely, release the wake fd."""
        self.session.close()
        with self._lock:
            self._done = True
            self._queue.clear()
            os.close(self._wake_fd)
        sock = self.tls or self.raw
        # Half-close, then drain briefly: closing with unread input would send a reset
        # that can destroy our last frame (e.g. frame_too_large) before the client reads it.
        with contextlib.suppress(OSError, ValueError):
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            while poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                if not socket.socket.recv(sock, READ_SIZE):
                    break
        sock.close()
        self.server._forget(self)


@dataclass
class Server:
    """A securechat server: listener, accept thread and connection threads."""

    context: ssl.SSLContext
    hub: Hub
    authenticate: Callable[[str, str], bool]
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._per_address: Counter[str] = Counter()
        self.throttle = LoginThrottle()
        self._gate = BcryptGate(self.limits.bcrypt_concurrent, self.limits.bcrypt_waiting)
        self._listener: socket.socket | None = None
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._accept_thread: threading.Thread | None = None
        self._stopping = False

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None
        host, port = self._listener.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Bind, listen and start accepting in a background thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, self.port), family=family, backlog=512)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="accept")
        self._accept_thread.start()
        host, port = self.address
        log.info("listening on %s:%d", f"[{host}]" if ":" in host else host, port)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._stop_fd, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._stop_fd in ready:
                return
            try:
                sock, address = self._listener.accept()
            except OSError as exc:  # e.g. EMFILE: keep serving the connections we have
                log.warning("accept failed: %s", exc)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(self, sock, address[:2])
            with self._lock:
                if self._stopping:
                    sock.close()
                    continue
                host = connection.address[0]
                connection.busy = (
                    len(self._connections) >= self.limits.max_connections
                    or self._per_address[host] >= self.limits.max_per_address
                )
                self._connections.add(connection)
                self._per_address[host] += 1
            connection.thread.start()

    def check_password(self, user: str, password: str) -> bool:
        """``authenticate``, at most ``bcrypt_concurrent`` at once (else wait or busy)."""
        return self._gate.run(self.authenticate, user, password)

    def _forget(self, connection: Connection) -> None:
        with self._lock:
            if connection in self._connections:
                self._connections.discard(connection)
                host = connection.address[0]
                self._per_address[host] -= 1
                if not self._per_address[host]:
                    del self._per_address[host]

    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    def shutdown(self, timeout: float = 4.0) -> None:
        """Stop accepting, tell every connection we are shutting down, flush, join.

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
        goodbye = error_frame("shutting_down", "the server is shutting down")
        for connection in connections:
            connection.request_close(goodbye)
        deadline = time.monotonic() + timeout
        for connection in connections:
            connection.thread.join(max(0.0, deadline - time.monotonic()))
        os.close(self._stop_fd)


@contextlib.contextmanager
def durable_hub(
    data_dir: Path,
    passwords: PasswordFile,
    *,
    admins: Sequence[str] = (),
    fsync: bool = False,
    frame_limit: int = DEFAULT_FRAME_LIMIT,
) -> Iterator[Hub]:
    """A hub whose history lives in ``data_dir`` (created 0700), committed in groups.

    On exit, everything submitted is committed and delivered before the store closes.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        log.warning("data directory %s is accessible by other users; chmod 700 it", data_dir)
    store = SqliteStore(data_dir / DATABASE_NAME, fsync=fsync)
    committer = GroupCommitter(store)
    try:
        yield Hub(user_exists=lambda user: user in passwords.users(), admins=admins,
                  store=store, committer=committer, max_frame_bytes=frame_limit)  # fmt: skip
    finally:
        committer.close()
        store.close()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="securechat-server", description="Run a securechat server (TLS only)."
    )
    parser.add_argument("--cert", required=True, help="PEM certificate chain (may hold the key)")
    parser.add_argument("--key", help="PEM private key, if not in --cert")
    parser.add_argument("--client-ca", help="CA of client certificates; their CN logs in "
                        "as that user without a password")  # fmt: skip
    parser.add_argument("--passwd", default="securechat.passwd", help="password file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free)")
    parser.add_argument("--admins", default="", help="comma-separated admin user names")
    parser.add_argument("--data-dir", default="data", help="where history is stored")
    parser.add_argument("--fsync", action="store_true",
                        help="fsync every commit (survives power loss; slower)")  # fmt: skip
    parser.add_argument("--frame-limit", type=int, default=DEFAULT_FRAME_LIMIT,
                        help=f"largest frame in bytes (at least {MIN_FRAME_LIMIT})")  # fmt: skip
    limits = parser.add_argument_group("limits (defaults from the protocol)")
    defaults = Limits()
    limits.add_argument("--frame-rate", type=float, default=defaults.frame_rate,
                        help="frames a second per connection")  # fmt: skip
    limits.add_argument("--frame-burst", type=int, default=defaults.frame_burst,
                        help="frames a connection may send at once")  # fmt: skip
    limits.add_argument("--max-connections", type=int, default=defaults.max_connections)
    limits.add_argument("--max-per-address", type=int, default=defaults.max_per_address)
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.frame_limit < MIN_FRAME_LIMIT:
        parser.error(f"--frame-limit must be at least {MIN_FRAME_LIMIT}")
    if args.frame_rate <= 0 or args.frame_burst < 1:
        parser.error("--frame-rate must be positive and --frame-burst at least 1")
    if args.max_connections < 1 or args.max_per_address < 1:
        parser.error("--max-connections and --max-per-address must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        context = make_server_context(args.cert, args.key, args.client_ca)
    except (OSError, ssl.SSLError) as exc:
        names = " or ".join(filter(None, [args.cert, args.key, args.client_ca]))
        print(f"securechat-server: cannot load certificate {names}: {exc}", file=sys.stderr)
        return 1
    passwd_path = Path(args.passwd)
    if not passwd_path.exists():
        log.warning("password file %s does not exist: nobody can log in until "
                    "you add a user with securechat-adduser", passwd_path)  # fmt: skip
    elif warning := permission_warning(passwd_path):
        log.warning("%s", warning)
    try:
        passwords = PasswordFile(passwd_path)
    except PasswordFileError as exc:
        print(f"securechat-server: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()  # handlers first: a signal during start-up still stops us
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    admins = [name.strip() for name in args.admins.split(",") if name.strip()]
    limits = Limits(
        frame_bytes=args.frame_limit, frame_rate=args.frame_rate, frame_burst=args.frame_burst,
        max_connections=args.max_connections, max_per_address=args.max_per_address,
    )  # fmt: skip
    try:
        with durable_hub(Path(args.data_dir), passwords, admins=admins, fsync=args.fsync,
                         frame_limit=args.frame_limit) as hub:  # fmt: skip
            server = Server(context, hub, passwords.verify, args.host, args.port, limits)
            try:
                server.start()
            except OSError as exc:
                print(f"securechat-server: cannot listen on {args.host}:{args.port}: {exc}",
                      file=sys.stderr)  # fmt: skip
                return 1
            stop.wait()
            log.info("shutting down")
            server.shutdown()
    except (StoreError, OSError) as exc:
        print(f"securechat-server: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


__all__ = ["Connection", "ErrorFrame", "Limits", "Server", "main", "make_server_context"]

if __name__ == "__main__":
    raise SystemExit(main())
