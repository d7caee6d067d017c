"""One client connection of the TLS transport: handshake, reads, writes, close.

A :class:`Connection` belongs to one :class:`~securechat.server.transport.IOThread` for
its whole life, and only that thread touches its TLS object, so OpenSSL never sees two
threads on one connection (STYLE.md). Other threads reach it only through its
:class:`~securechat.server.mailbox.Mailbox` side (frames queued, the I/O thread marked)
and :meth:`Connection.request_close`. The protocol itself is its
:class:`~securechat.server.session.Session`.

A client that chose HTTP by ALPN (a browser; the transport's ``Server.web`` says
whether there is a web edge) talks through an :class:`Edge` instead of the
:class:`~securechat.protocol.framing.LineReader`: the edge turns what is read into frame
lines and the encoded frames into what is written, and answers HTTP requests itself
until a WebSocket opens, when the session begins as a line client's does after the
handshake. A line client's path (``edge is None``) is the same as without the edge.
A connection of the IRC listener gets its edge from the handshake on (``opener``, the
transport's :class:`~securechat.server.irc.IrcGateway`), which paces its input itself
(IRC's fake lag: :attr:`Edge.resume_at`) instead of having the session refuse frames.
"""

import contextlib
import logging
import math
import os
import select
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from securechat import __version__
from securechat.exceptions import FrameTooLarge, ProtocolError
from securechat.protocol import PROTOCOL_VERSION
from securechat.protocol.frames import ServerPing, Welcome, error_frame
from securechat.protocol.framing import DEFAULT_FRAME_LIMIT, LineReader
from securechat.server.limits import TokenBucket, address_key
from securechat.server.mailbox import Feed, Mailbox
from securechat.server.session import Line, Session

if TYPE_CHECKING:
    from securechat.server.transport import IOThread, Server

log = logging.getLogger("securechat.server")

READ_SIZE = 65536
READS_PER_TURN = 16  # then let the other connections of the thread have a turn
WRITE_CHUNK = 256 * 1024
# A TLS record carries at most 16 KiB and OpenSSL writes each record with its own
# write(2); with TCP_NODELAY each record would leave as a segment of its own, paying the
# kernel's TCP send path (and on loopback the receive path) each time. A larger write is
# corked so that its records leave together. Linux only; elsewhere they go one by one.
TLS_RECORD = 16384
TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)
LINGER_SECONDS = 1.0
SLOW_CONSUMER = error_frame("slow_consumer", "you are not reading fast enough; disconnecting")
IN, OUT = select.EPOLLIN, select.EPOLLOUT
ALPN_HTTP = "http/1.1"  # the protocol a client names to get the web edge
NO_LINES: tuple[()] = ()  # a connection's ``held`` when it holds no line (shared)


class Edge(Protocol):
    """A protocol between the TLS byte stream and the session's frame lines (web, IRC).

    Declared here so that the connection need not import the edges (the import
    contracts keep ``connection`` and ``web`` apart; the transport wires them).
    """

    @property
    def chatting(self) -> bool:
        """Frames flow (a WebSocket is open): the session has begun."""

    @property
    def finished(self) -> bool:
        """Nothing more will be said after what :meth:`wire` gives: close then."""

    @property
    def backlogged(self) -> bool:
        """Input is held back until the output before it is sent: read no more."""

    @property
    def heard(self) -> bool:
        """The last :meth:`receive` completed something (a request, a message, a ping)."""

    @property
    def partial(self) -> bool:
        """Part of a request or message is held."""

    @property
    def plain(self) -> bool:
        """:meth:`wire` depends on its frames alone now (nothing of the edge's own waits):
        members in this state may share one encoding of a room's frames."""

    @property
    def shared_wire(self) -> bool:
        """Members at one position of a feed may be sent one edge's :meth:`wire` of it (the
        WebSocket's); else each member's own edge is handed the shared block (the IRC
        edge's state follows the frames it is given; it renders from a cache of its own)."""

    @property
    def resume_at(self) -> float:
        """While :attr:`backlogged`, when to offer the held input again: ``0`` once the
        output before it is sent, a :func:`time.monotonic` time (the IRC edge's fake lag:
        a line over the allowance waits for its token), or ``math.inf``: not before more
        frames came to :meth:`wire` (they wake the connection)."""

    @property
    def kind(self) -> str:
        """What the client speaks, for the metrics' connections by kind: ``http``,
        ``websocket`` (the web edge, before and after the upgrade), ``irc``."""

    def receive(self, data: bytes) -> list[Line]:
        """Feed bytes read (``b""``: go on with what is held); the frame lines completed.

        May raise :exc:`~securechat.exceptions.FrameTooLarge`.
        """

    def wire(self, frames: list[bytes]) -> bytes:
        """The edge's own bytes waiting, then ``frames`` (encoded frames, each ending in a
        newline: the same objects for every member of a room) as sent."""

    def close(self) -> bytes:
        """What to send last, once, before closing (e.g. a WebSocket close frame)."""


class EdgeOpener(Protocol):
    """Makes the edge of a connection that has one from its handshake on (the IRC gateway).

    ``bucket`` is the connection's frame allowance: such an edge paces its input with it
    (delays lines, as IRC clients expect) and the session refuses nothing for the rate.
    ``mailbox`` is the connection's, for what the edge's gateway sends it from elsewhere.
    """

    def __call__(
        self, *, busy: bool, cert_user: str | None, bucket: TokenBucket, mailbox: Mailbox
    ) -> Edge: ...


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
    # Half the cores (at least one): with the GIL, more I/O threads mostly pass it to
    # each other (a futex and a context switch each time: a fifth of the CPU in the
    # rooms scenario on 2 cores, issue 18); the other half runs the kernel's TCP.
    io_threads: int = max(1, (os.cpu_count() or 1) // 2)
    # The members of a busy room are written its frames at most once per this many
    # seconds (per I/O thread): frames appended meanwhile go out together. A frame after
    # a quiet spell goes out at once; replies and direct messages never wait.
    flush_interval: float = 0.005


class _Closed(Exception):
    """The connection is over (EOF, reset, timeout); nothing more to say."""


class Connection(Mailbox):
    """One client connection; its I/O thread calls :meth:`step` whenever it may advance.

    It is its session's mailbox: the hub queues frames on it from any thread.
    Small when idle (issue 18): slots, and :attr:`held` an empty tuple until lines come.
    """

    __slots__ = ("__dict__", "__weakref__", "_close_reason", "_marked", "address", "bucket",
                 "busy", "deadline", "edge", "events", "fd", "held", "in_worker", "last_heard",
                 "limits", "loop", "more", "opener", "partial_since", "peer", "pending", "pinged",
                 "raw", "readable", "reader", "server", "session", "state", "timer_at", "tls",
                 "want_read", "want_write")  # fmt: skip

    def __init__(
        self,
        server: "Server",
        loop: "IOThread",
        sock: socket.socket,
        address: tuple[str, int],
        opener: EdgeOpener | None = None,
    ) -> None:
        """``opener``: the edge to speak through from the handshake on (an IRC listener's)."""
        limits = server.limits
        super().__init__(max_frames=limits.queue_frames, max_bytes=limits.queue_bytes,
                         listener=loop)  # fmt: skip
        self.server, self.loop, self.limits = server, loop, limits
        self.address = address
        self.peer = address_key(address[0])  # what the per-address limits count
        self.raw = sock
        self.fd = sock.fileno()
        self.tls: ssl.SSLSocket | None = None
        # Shared with other threads, under the mailbox's lock (never held during I/O).
        self._marked = False
        self._close_reason: bytes | None = None
        self.busy = False  # over a connection limit: say server_busy and close
        self.opener = opener
        self.bucket = TokenBucket(self.limits.frame_rate, self.limits.frame_burst)
        self.session = Session(
            server.hub, self, server.check_password,
            address=self.peer,
            throttle=server.throttle, wake=self.wake,
            bucket=self.bucket if opener is None else None,  # (an opened edge paces)
        )  # fmt: skip
        # Owned by the I/O thread.
        self.state = "handshake"
        self.reader = LineReader(self.limits.frame_bytes)
        self.edge: Edge | None = None  # the web edge, for a client that chose HTTP
        # Lines read, not handled yet: a deque while there are any (see _hold).
        self.held: deque[Line] | tuple[()] = NO_LINES
        self.pending = b""  # bytes of an unfinished TLS write
        self.in_worker = False  # a pre-login frame is being handled by a worker
        self.readable = self.want_write = self.want_read = self.more = False
        self.events = -1  # what is registered with epoll
        self.timer_at: float | None = None
        now = time.monotonic()
        self.deadline = now + self.limits.handshake_timeout
        self.last_heard = now
        self.pinged = False
        self.partial_since: float | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.address[0]}:{self.address[1]} {self.session.user or '-'}>"

    @property
    def kind(self) -> str:
        """What it speaks (``line``, or its edge's kind), ``handshake`` before TLS is done.

        Read by the metrics from another thread: two attribute reads, no lock.
        """
        edge = self.edge
        if edge is not None:
            return edge.kind
        return "handshake" if self.state == "handshake" else "line"

    # -- called from any thread

    def ready(self) -> None:
        """(The mailbox's hook, under its lock.) Have the I/O thread look at us."""
        if not self._marked:
            self._marked = True
            self.loop.mark(self)

    def request_close(self, final_frame: bytes) -> None:
        """Ask the I/O thread to send ``final_frame``, flush and close (e.g. shutdown)."""
        with self.lock:
            if not self.done:
                self._close_reason = final_frame
                self.ready()

    def wake(self) -> None:
        """Have the I/O thread look at this connection again (e.g. a commit is done)."""
        with self.lock:
            if not self.done:
                self.ready()

    # -- the I/O thread

    def unmark(self) -> None:
        with self.lock:
            self._marked = False

    def step(self) -> None:
        """Advance as far as possible without blocking; then wait for epoll or a timer."""
        try:
            if self.state == "handshake":
                self._handshake()
            if self.state == "serving":
                self._serve()
            if self.state == "closing":
                self._close_gently()
            if self.state == "linger":
                self._linger()
            if self.state == "dead":
                self._finish()
        except _Closed:
            self._finish()
        except (OSError, ssl.SSLError) as exc:
            log.debug("%r: %s", self, exc)
            self._finish()
        except Exception:
            log.exception("%r: internal error", self)
            self._finish()
        if self.state != "done":
            self.loop.watch(self)

    def wanted_events(self) -> int:
        if self.state == "handshake":
            return OUT if self.want_write else IN
        if self.state == "serving":
            reading = not self.held and not self.in_worker and not self.session.doomed
            if self.edge is not None and self.edge.backlogged:
                reading = False
            return (IN if reading or self.want_read else 0) | (OUT if self.want_write else 0)
        if self.state == "closing":
            return (OUT if self.want_write else 0) | (IN if self.want_read else 0)
        return IN if self.state == "linger" else 0

    def _handshake(self) -> None:
        if self.tls is None:
            self.raw.setblocking(False)
            self.tls = self.server.context.wrap_socket(
                self.raw, server_side=True, do_handshake_on_connect=False
            )
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.want_write = False
        except ssl.SSLWantWriteError:
            self.want_write = True
        else:
            self.want_write = False
            self.state = "serving"
            web = self.server.web
            if self.opener is not None:
                self.edge = self.opener(busy=self.busy, cert_user=_certificate_user(self.tls),
                                        bucket=self.bucket, mailbox=self)  # fmt: skip
                self._begin()
            elif web is not None and self.tls.selected_alpn_protocol() == ALPN_HTTP:
                # Until a WebSocket opens, the login deadline is the keep-alive limit.
                # (The file API does what may block in the workers, then wakes us.)
                self.edge = web.open(frame_limit=self.limits.frame_bytes, busy=self.busy,
                                     hub=self.server.hub, submit=self.server.workers.submit,
                                     wake=self.wake, address=self.address[0],
                                     monitor=self.server.monitor)  # fmt: skip
                self.deadline = time.monotonic() + self.limits.login_timeout
            else:
                self._begin()
            return
        if time.monotonic() >= self.deadline:
            raise _Closed

    def _begin(self) -> None:
        """The session starts (handshake done, or WebSocket open): welcome, login deadline."""
        assert self.tls is not None
        now = self.last_heard = time.monotonic()
        self.deadline = now + self.limits.login_timeout
        if self.busy:
            self.session.fail(ProtocolError("server_busy", "too many connections; try "
                                            "again later", fatal=True))  # fmt: skip
        else:
            self.session.cert_user = _certificate_user(self.tls)
            self.push(Welcome(version=__version__, protocol=PROTOCOL_VERSION).encode())

    def _serve(self) -> None:
        session = self.session
        with self.lock:
            reason, overflow = self._close_reason, self.overflow
        if overflow:
            self.server.hub.metrics.slow_consumers.inc()
            self._send_best_effort(SLOW_CONSUMER)
            raise _Closed
        if reason is not None and not session.closing:
            session.closing = True
            self.push_last(reason)
        session.resume()
        edge = self.edge
        if edge is not None and edge.backlogged and not self.pending:
            self._receive(b"")  # requests held back while their answers were sent
        if (not self.held and not self.in_worker and not session.closing and not session.doomed
                and not (edge is not None and edge.backlogged)):  # fmt: skip
            self._read()
        while self.held and not session.waiting and not session.closing and not self.in_worker:
            if session.logged_in:
                session.receive_lines(self.held)  # (as many as it takes: sends in runs)
            else:  # may run bcrypt: not on this thread
                self.in_worker = True
                self.server.workers.submit(self._handle_in_worker, self.held.popleft())
        if not self.held:
            self.held = NO_LINES  # (an idle connection keeps no deque)
        if edge is not None and edge.finished and not self.held and not self.in_worker:
            session.closing = True  # (the peer closed, or HTTP ends after the answers)
        self._flush()
        if edge is not None:
            if edge.finished and not self.held and not self.in_worker:
                session.closing = True  # (what was sent said the last word)
            elif (edge.backlogged and not self.pending and not self.want_write
                    and edge.resume_at <= time.monotonic()):  # fmt: skip
                self.wake()  # the next requests, once the others of this thread had a turn
        if session.closing and not self.in_worker:
            self.state = "closing"
            self.deadline = time.monotonic() + self.limits.flush_timeout
            return
        self._check_timers()

    def write_feeds(self) -> None:
        """(A feed the connection follows has grown.) Send, without the rest of a step.

        The hot path of a busy room, once per member and turn: a connection that is
        serving and not waiting for its socket only needs :meth:`_flush`.
        """
        if self.state != "serving":
            self.step()
            return
        if self.want_write:
            return  # epoll says when the socket takes more
        try:
            self._flush()
        except (OSError, ssl.SSLError) as exc:
            log.debug("%r: %s", self, exc)
            self._finish()
            return
        if self.want_write or self.want_read:
            self.loop.watch(self)

    def write_feed(self, feed: Feed, blocks: dict[int, tuple[bytes, int, list[bytes]]]) -> None:
        """(``feed`` has grown.) Send what this member is behind in it, in one write.

        The hot path of a busy room, once per member and turn. Members at the same
        position in the feed share one joined block (``blocks``, by position, for this
        turn) and each gets it in one ``send``; WebSocket members at the same position
        share its encoding as messages too (made by the first one's codec: a server's
        frames are not masked, so every member's would be the same bytes), under the
        position's complement. Anything else takes the general path
        (:meth:`write_feeds`): frames of its own queued, an unfinished write, a member
        of several rooms, a closing or overflowing connection, a member far behind, an
        edge with bytes of its own to send first.
        """
        edge = self.edge
        if self.state != "serving" or self.pending or (edge is not None and not edge.plain):
            self.write_feeds()
            return
        if self.want_write:
            return  # epoll says when the socket takes more
        with self.lock:
            cursor = self.cursors.get(feed)
            if (cursor is None or len(self.cursors) > 1 or self.queue or self.overflow
                    or self.sealed or self.done):  # fmt: skip
                block = None  # (a member of several rooms gets all of them at once)
            else:
                block = blocks.get(cursor)
                if block is None:
                    got = feed.read(cursor, WRITE_CHUNK)
                    if got is not None and got[1] == feed.end:  # (all of it, in budget)
                        block = blocks[cursor] = (b"".join(got[0]), got[1], got[0])
                if block is not None:
                    self.cursors[feed] = block[1]
        if block is None:
            self.write_feeds()
            return
        if not block[0]:
            return
        if edge is None:
            self.pending = block[0]
        elif not edge.shared_wire:
            self.pending = edge.wire(block[2])
        else:
            assert cursor is not None  # (the block starts there)
            encoded = blocks.get(~cursor)
            if encoded is None:
                encoded = blocks[~cursor] = (edge.wire(block[2]), block[1], block[2])
            self.pending = encoded[0]
        try:
            waiting = not self._send_pending()
        except (OSError, ssl.SSLError) as exc:
            log.debug("%r: %s", self, exc)
            self._finish()
            return
        if waiting:
            self.loop.watch(self)  # for the socket to take the rest
        elif self.pending:  # (a part was taken: the general path sends the rest)
            self.write_feeds()

    def _handle_in_worker(self, line: bytes) -> None:
        try:
            self.session.receive_line(line)
        except Exception:
            log.exception("%r: internal error in a worker", self)
        finally:
            self.in_worker = False
            self.wake()

    def _read(self) -> None:
        assert self.tls is not None
        if not (self.readable or self.want_read or self.more):
            return  # (epoll is level-triggered: unread bytes in the socket come back)
        self.readable = self.want_read = self.more = False
        for _ in range(READS_PER_TURN):
            try:
                data = self.tls.recv(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLWantWriteError:
                self.want_write = True
                break
            if not data:
                if self.held:
                    break  # handle what came before the end first
                raise _Closed
            self.loop.bytes_received += len(data)  # (this thread's own count: no lock)
            try:
                if self.edge is None:
                    if lines := self.reader.feed(data):
                        self._hold(lines)
                elif not self._receive(data):
                    self.more = True  # (OpenSSL may hold more, decrypted: look when resuming)
                    break
            except FrameTooLarge as error:
                self.session.answer(error)
                return
            if len(data) < TLS_RECORD and not self.tls.pending():
                # Less than a full record and nothing decrypted left over: most likely
                # all there was (a quiet client's one frame). Another recv would only
                # say so (a read(2) and an exception); epoll is level-triggered and says
                # so if more has come meanwhile.
                break
        else:  # more may be waiting, in the socket or decrypted in OpenSSL's buffer
            self.more = True
            self.wake()  # let the other connections of this thread have a turn first
        now = time.monotonic()
        if self.held or (self.edge is not None and self.edge.heard):
            self.last_heard = now
            self.pinged = False
        if not (self.reader.pending if self.edge is None else self.edge.partial):
            self.partial_since = None
        elif self.partial_since is None:
            self.partial_since = now

    def _receive(self, data: bytes) -> bool:
        """Feed ``data`` to the edge; False when it reads no more (finished, held back)."""
        edge = self.edge
        assert edge is not None
        chatting = edge.chatting
        if lines := edge.receive(data):
            self._hold(lines)
        if not chatting:
            if edge.chatting:  # the WebSocket has just opened
                self._begin()
            elif edge.heard:  # a request: the keep-alive limit starts again
                self.deadline = time.monotonic() + self.limits.login_timeout
        return not (edge.finished or edge.backlogged)

    def _hold(self, lines: list[Line]) -> None:
        held = self.held
        if held:
            assert isinstance(held, deque)
            held.extend(lines)
        else:
            self.held = deque(lines)

    def _flush(self) -> None:
        assert self.tls is not None
        self.want_write = False
        for _ in range(64):
            if not self.pending:
                if self.edge is None:
                    self.pending = self.next_chunk(WRITE_CHUNK)
                else:
                    self.pending = self.edge.wire(self.next_frames(WRITE_CHUNK))
                if not self.pending:
                    return
            if not self._send_pending():
                return
        self.wake()  # a busy writer: come back after the others

    def _send_pending(self) -> bool:
        """Write :attr:`pending` (or some of it); False if the socket must be waited for."""
        assert self.tls is not None
        corked = TCP_CORK is not None and len(self.pending) > TLS_RECORD
        if corked:
            self.tls.setsockopt(socket.IPPROTO_TCP, TCP_CORK, 1)
        try:
            sent = self.tls.send(self.pending)
        except ssl.SSLWantWriteError:
            self.want_write = True
            return False
        except ssl.SSLWantReadError:
            self.want_read = True
            return False
        finally:
            if corked:  # (whatever happened: nothing may wait for the cork's timer)
                self.tls.setsockopt(socket.IPPROTO_TCP, TCP_CORK, 0)
        self.pending = self.pending[sent:]
        self.loop.bytes_sent += sent  # (this thread's own count: no lock)
        return True

    def _check_timers(self) -> None:
        now, limits, session = time.monotonic(), self.limits, self.session
        if self.partial_since is not None and now >= self.partial_since + limits.partial_timeout:
            self._send_best_effort(error_frame("bad_frame", "frame not finished in time"))
            raise _Closed
        if not session.logged_in:
            if now >= self.deadline and not self.in_worker:
                self._send_best_effort(error_frame("auth_required", "login timed out"))
                raise _Closed
            return
        if now >= self.last_heard + (limits.idle_drop if self.pinged else limits.idle_ping):
            if self.pinged:
                raise _Closed
            self.pinged = True
            self.push(ServerPing().encode())

    def next_timer(self) -> float:
        """When :meth:`step` must run again even if nothing happens."""
        limits = self.limits
        if self.state in ("handshake", "closing", "linger"):
            return self.deadline
        if not self.session.logged_in:
            # A login a worker is checking ends with a wake-up; past the deadline, a
            # timer would only spin the loop until then (seen in a login storm).
            when = math.inf if self.in_worker else self.deadline
        else:
            when = self.last_heard + (limits.idle_drop if self.pinged else limits.idle_ping)
        if self.partial_since is not None:
            when = min(when, self.partial_since + limits.partial_timeout)
        edge = self.edge
        if self.state == "serving" and edge is not None and edge.backlogged:
            when = min(when, edge.resume_at)  # (the fake lag's next token)
        return when

    def _close_gently(self) -> None:
        """Flush what is queued (bounded by flush_timeout), then half-close."""
        self._flush()
        if self.pending or self.want_write:
            if time.monotonic() >= self.deadline:
                raise _Closed
            return
        edge = self.edge
        if edge is not None and edge.finished:
            pass  # (it sends nothing more: what is queued has no one to go to)
        elif not self.idle():
            return
        elif edge is not None:
            self.pending = edge.close()  # e.g. the WebSocket close frame, after the last frame
            self._flush()
            if self.pending or self.want_write:
                return  # (back here once it is sent)
        assert self.tls is not None
        # Half-close, then drain briefly: closing with unread input sends a reset that
        # can destroy our last frame (e.g. frame_too_large) before the client reads it.
        self.tls.shutdown(socket.SHUT_WR)
        self.state = "linger"
        self.deadline = time.monotonic() + LINGER_SECONDS
        self.readable = True

    def _linger(self) -> None:
        sock = self.tls or self.raw
        while self.readable:
            try:
                data = socket.socket.recv(sock, READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                raise _Closed
        self.readable = False
        if time.monotonic() >= self.deadline:
            raise _Closed

    def _send_best_effort(self, frame: bytes) -> None:
        """Try to send one last frame without waiting (slow consumer, timeouts)."""
        if self.tls is not None and not self.pending:
            if self.edge is not None:
                frame = self.edge.wire([frame]) + self.edge.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                if frame:
                    self.tls.send(frame)

    def _finish(self) -> None:
        """Leave the hub, close the socket, forget the connection (once a worker is done)."""
        if self.in_worker:
            self.state = "dead"  # the worker's wake-up brings us back here
            return
        self.session.close()
        self.drop()
        self.loop.forget(self)
        (self.tls or self.raw).close()
        self.state = "done"
        # An edge holding more than bytes (the web edge's file transfers: a temporary
        # file, an open file, a worker's result to come) has ``release``: let go of it.
        release = getattr(self.edge, "release", None)
        if release is not None:
            release()
        self.server.forget(self)


def _certificate_user(tls: ssl.SSLSocket) -> str | None:
    """The common name of the client's verified certificate, if it sent one."""
    cert = tls.getpeercert()
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str):
                return value
    return None
