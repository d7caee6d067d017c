"""One connection's protocol state, sans-I/O.

A :class:`Session` takes the lines a client sent (already split by
:class:`~securechat.framing.LineReader`), validates them into frames and turns them
into hub calls; everything it has to say goes to the connection's
:class:`~securechat.mailbox.Mailbox` (the transport's connection is one). It is
the one place where a :exc:`ProtocolError` becomes an ``error`` frame. The
transport reads :attr:`Session.closing` to know when to stop reading, flush and close.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from securechat.exceptions import ProtocolError
from securechat.protocol.frames import (
    AnyClientFrame,
    Bye,
    Delete,
    Dm,
    DmHistory,
    Edit,
    History,
    Join,
    Leave,
    Login,
    LoginOk,
    Logout,
    MarkRead,
    Members,
    Ping,
    Pong,
    Rooms,
    Send,
    ServerPong,
    error_frame,
    parse_client_frame,
    salvage_ref,
)
from securechat.server.hub import Hub, not_stored
from securechat.server.limits import LoginThrottle, TokenBucket
from securechat.server.mailbox import Mailbox
from securechat.server.tokens import token_hash

log = logging.getLogger("securechat.session")

WRITES = (Send, Edit, Delete, Dm, MarkRead)  # answered after their commit; may be pipelined
# A frame line as the transport hands it over, or the error an edge found in its place
# (a WebSocket binary message): answered in order, after the rate limit, like a bad line.
Line = bytes | ProtocolError
MAX_LOGIN_FAILURES = 5
MAX_REFUSALS = 100  # refused frames (decaying by one a second) before a flooder is dropped
AUTH_FAILED_MESSAGE = "wrong user name or password"


class Session:
    """The server side of one client connection."""

    def __init__(
        self,
        hub: Hub,
        mailbox: Mailbox,
        authenticate: Callable[[str, str], bool],
        *,
        address: str = "",
        cert_user: str | None = None,
        throttle: LoginThrottle | None = None,
        bucket: TokenBucket | None = None,
        max_login_failures: int = MAX_LOGIN_FAILURES,
        max_refusals: int = MAX_REFUSALS,
        clock: Callable[[], float] = time.monotonic,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.hub = hub
        self.mailbox = mailbox
        self._authenticate = authenticate
        self.address = address
        self.cert_user = cert_user  # the user named by a verified client certificate
        self._throttle = throttle
        self._bucket = bucket
        self._max_login_failures = max_login_failures
        self._max_refusals = max_refusals
        self._clock = clock
        self._refusals = 0.0
        self._refusals_stamp = clock()
        self.user = ""
        self.rooms: set[str] = set()
        self.logged_in = False
        self.login_failures = 0
        self.token_hash: bytes | None = None  # the login token this connection used or got
        self.closing = False
        self._lock = threading.Lock()  # one last frame, however many threads end us
        self.doomed = False  # a fatal error is on its way: read nothing more
        self._pending = 0  # barriers (after writes, or errors behind them) not yet passed
        self._write_barrier = False  # a barrier for the writes is in the committer's queue
        self._writes_after_it = False  # writes were submitted after that barrier
        # Requests waiting for those: rarely any, so a list (an empty one is 56 bytes
        # where an empty deque is 760, per idle connection).
        self._held: list[AnyClientFrame] = []
        self._wake = wake  # tells the transport that held requests may go

    def __repr__(self) -> str:
        return f"<Session user={self.user or '-'} rooms={sorted(self.rooms)}>"

    def deliver(self, data: bytes) -> None:
        """Queue an encoded frame for this connection.

        Once the session is closing (after ``bye`` or a fatal error) nothing more is
        queued. This check is the cheap, unlocked one; a frame that slips past it while
        another thread ends the session is dropped by the mailbox, sealed under its
        own lock by ``push_last``.
        """
        if not self.closing:
            self.mailbox.push(data)

    def _last(self, data: bytes) -> None:
        """Send ``data`` as the last frame: nothing is queued after it."""
        with self._lock:
            if self.closing:
                return
            self.closing = True
        self.mailbox.push_last(data)

    def fail(self, error: ProtocolError) -> None:
        """Report ``error`` to the client; close afterwards if it is fatal."""
        data = error_frame(error.code, error.message, error.ref, error.retry_after)
        if error.fatal:
            self._last(data)
        else:
            self.deliver(data)

    @property
    def waiting(self) -> bool:
        """Requests are held until earlier writes are delivered: feed no more lines."""
        return bool(self._held)

    def receive_line(self, line: Line) -> None:
        """Handle one frame line from the client (see :meth:`receive_lines`)."""
        if self._held:  # (a transport feeds no lines meanwhile; this keeps the order)
            if not (self.closing or self.doomed):
                frame = self._parse(line)
                if isinstance(frame, ProtocolError):
                    self.answer(frame)
                else:
                    self._held.append(frame)
            return
        self.receive_lines(deque((line,)))

    def receive_lines(self, lines: deque[Line]) -> None:
        """Handle frame lines from the front of ``lines`` (the transport's thread).

        Replies keep the order of requests. Writes (send, edit, delete, dm) are
        answered after their commit, so they may be pipelined; any other request
        that comes while writes are pending is held until they are delivered (see
        :meth:`resume`), and an error meanwhile is queued behind them. Lines are
        taken until one is held (:attr:`waiting`) or the session closes; a run of
        ``send`` frames to one room is carried out as one batch (one commit job, one
        append to the room's feed), which is what a client that pipelines sends.
        """
        run: list[Send] = []
        while lines and not self._held and not self.closing and not self.doomed:
            frame = self._parse(lines.popleft())
            if isinstance(frame, Send) and self.logged_in:
                if run and frame.room != run[0].room:
                    self._send_run(run)
                    run = []
                run.append(frame)
                continue
            if run:
                self._send_run(run)
                run = []
            if isinstance(frame, ProtocolError):
                self.answer(frame)
            elif self._pending and not isinstance(frame, WRITES):
                self._held.append(frame)
            else:
                self._handle(frame)
        if run:
            self._send_run(run)
        if self.doomed:
            lines.clear()  # nothing more is read from a client being disconnected

    def _parse(self, line: Line) -> AnyClientFrame | ProtocolError:
        """The frame on ``line``, or the error to answer it with (over the rate, invalid)."""
        if self._bucket is not None and (wait := self._bucket.take()):
            return self._refusal(wait, salvage_ref(line) if isinstance(line, bytes) else None)
        if isinstance(line, ProtocolError):  # what the edge found in place of a line
            return line
        try:
            return parse_client_frame(line)
        except ProtocolError as error:
            return error

    def resume(self) -> None:
        """Handle held requests that may go now (the transport's thread, after a wake-up)."""
        while self._held and not self.closing and not self.doomed:
            if self._pending and not isinstance(self._held[0], WRITES):
                return
            self._handle(self._held.pop(0))

    def _handle(self, frame: AnyClientFrame) -> None:
        self._carry_out(partial(self._dispatch, frame), [frame])

    def _send_run(self, run: list[Send]) -> None:
        """Post a run of ``send`` frames to one room as one batch."""
        if len(run) == 1:
            self._handle(run[0])
            return
        posts = [(frame.text, frame.ref) for frame in run]

        def post() -> None:
            self.hub.send_run(self, run[0].room, posts)
            self._await_commit()

        self._carry_out(post, run)

    def _carry_out(self, action: Callable[[], None], frames: list[AnyClientFrame]) -> None:
        """Run ``action`` for ``frames``; if it fails, answer each frame with the error."""
        try:
            action()
        except ProtocolError as error:
            for frame in frames:
                self.answer(error.for_ref(frame.ref))
        except Exception:  # a bug of ours: say so, keep the connection, keep the log
            log.exception("internal error handling %s from %s", frames[0].type, self.user or "-")
            for frame in frames:
                self.answer(ProtocolError("internal", "internal server error; the request "
                                          "was not carried out", ref=frame.ref))  # fmt: skip

    def answer(self, error: ProtocolError) -> None:
        """Report ``error`` now, or after the writes still pending if there are any.

        A fatal error ends the input at once (``doomed``); the connection closes when
        the error is sent, after the replies that come before it.
        """
        if error.fatal:
            self.doomed = True
        if self._pending:
            self._after_pending(partial(self.fail, error))
        else:
            self.fail(error)

    def _refusal(self, wait: float, ref: str | None) -> ProtocolError:
        """The answer to a frame over the rate; fatal for a client that keeps flooding."""
        self.hub.metrics.rate_limited.inc()
        now = self._clock()
        self._refusals = max(0.0, self._refusals - (now - self._refusals_stamp)) + 1
        self._refusals_stamp = now
        if self._refusals > self._max_refusals:
            return ProtocolError("rate_limited", "too many frames refused; disconnecting",
                                 ref=ref, retry_after=wait, fatal=True)  # fmt: skip
        return ProtocolError("rate_limited", "slow down: frame refused", ref=ref,
                             retry_after=wait)  # fmt: skip

    def close(self) -> None:
        """The connection is gone: leave every room. Safe to call more than once."""
        self.closing = True
        if self.logged_in:
            self.logged_in = False
            self.hub.disconnect(self)

    def _dispatch(self, frame: AnyClientFrame) -> None:
        hub, ref = self.hub, frame.ref
        if isinstance(frame, Ping):
            self.deliver(ServerPong(ref=ref).encode())
        elif isinstance(frame, Login):
            self._login(frame)
        elif not self.logged_in:  # the contract: only ping is answered before login
            raise ProtocolError("auth_required", "log in first")
        elif isinstance(frame, Send):  # (the most common frame first)
            hub.send(self, frame.room, frame.text, ref)
            self._await_commit()
        elif isinstance(frame, Pong):
            pass
        elif isinstance(frame, Join):
            hub.join(self, frame.room, ref)
        elif isinstance(frame, Leave):
            hub.leave(self, frame.room, ref)
        elif isinstance(frame, Edit):
            hub.edit(self, frame.room, frame.id, frame.text, ref)
            self._await_commit()
        elif isinstance(frame, Delete):
            hub.delete(self, frame.room, frame.id, ref)
            self._await_commit()
        elif isinstance(frame, Dm):
            hub.dm(self, frame.to, frame.text, ref)
            self._await_commit()
        elif isinstance(frame, DmHistory):
            hub.dm_history(self, frame.with_, before=frame.before, limit=frame.limit, ref=ref)
        elif isinstance(frame, History):
            hub.history(self, frame.room, before=frame.before, after=frame.after,
                        limit=frame.limit, ref=ref)  # fmt: skip
        elif isinstance(frame, Rooms):
            hub.rooms(self, ref)
        elif isinstance(frame, Members):
            hub.members(self, frame.room, ref)
        elif isinstance(frame, MarkRead):
            hub.mark_read(self, frame.room, frame.with_, frame.id, ref)
            self._await_commit()
        elif isinstance(frame, Logout):
            self._logout(ref)
        else:  # pragma: no cover - the union above is exhaustive
            raise ProtocolError("internal", f"frame type {frame.type!r} is not handled")

    def _logout(self, ref: str | None) -> None:
        """``bye``, once the token this connection used (or was given) is revoked."""
        tokens, digest = self.hub.tokens, self.token_hash
        if tokens is None or digest is None:
            self._last(Bye(ref=ref).encode())
            return
        self.doomed = True  # read nothing more: the session ends with the revocation

        def not_revoked(error: Exception) -> None:
            problem = not_stored(error)
            message = f"logged out, but the login token is still valid: {problem.message}"
            self._last(error_frame(problem.code, message, ref, problem.retry_after))

        tokens.revoke(digest, lambda: self._last(Bye(ref=ref).encode()), not_revoked)

    def _await_commit(self) -> None:
        """Count the write just submitted as pending until it is delivered.

        One barrier covers a run of pipelined writes: while one is queued, later
        writes only note that it must be renewed when it passes (one committer
        entry per commit batch instead of one per write).
        """
        with self._lock:
            if self._write_barrier:
                self._writes_after_it = True
                return
            self._write_barrier = True
            self._pending += 1
        self.hub.after_commits(self._write_barrier_passed, self)

    def _write_barrier_passed(self) -> None:
        """(The committer's thread.) Renew the barrier, or stop counting the writes."""
        with self._lock:
            renew = self._write_barrier = self._writes_after_it
            self._writes_after_it = False
        if renew:
            self.hub.after_commits(self._write_barrier_passed, self)
        else:
            self._passed()

    def _after_pending(self, then: Callable[[], None]) -> None:
        """Run ``then`` after everything submitted so far; pending until then."""
        with self._lock:
            self._pending += 1

        def done() -> None:
            then()
            self._passed()

        self.hub.after_commits(done, self)

    def _passed(self) -> None:
        """A barrier has passed; once none is pending, held requests may go."""
        with self._lock:
            self._pending -= 1
            last = not self._pending
        if last and self._held:
            self._wake()

    def _login(self, frame: Login) -> None:
        if self.logged_in:
            raise ProtocolError("bad_frame", f"already logged in as {self.user!r}")
        user, throttle = frame.user, self._throttle
        metrics = self.hub.metrics
        if throttle is not None and (wait := throttle.retry_after(user, self.address)) > 0:
            # Turned away unchecked: the throttle does not count it (the wait stays what it
            # was), this connection does (five failed logins of any kind close it).
            metrics.logins_throttled.inc()
            log.info("login of %s from %s throttled", user, self.address,
                     extra={"user": user, "address": self.address})  # fmt: skip
            raise ProtocolError("rate_limited", "too many failed logins; wait and try again",
                                retry_after=wait, fatal=self._login_failed())  # fmt: skip
        tokens, token = self.hub.tokens, None
        method = "token" if frame.token else "password" if frame.password else "certificate"
        # For the log (JSON logs carry these as fields); never the password or the token.
        fields = {"user": user, "address": self.address, "method": method}
        if frame.token is not None:  # (tokens are checked and issued here, in a login worker)
            self.token_hash = tokens.check(user, frame.token) if tokens is not None else None
            ok = self.token_hash is not None
        elif frame.password is None:  # only with a client certificate naming this user
            ok = self.cert_user == user and self.hub.user_exists(user)
        else:
            try:
                ok = self._authenticate(user, frame.password)
            except ProtocolError:  # server_busy: too many checks at once
                metrics.logins_busy.inc()
                raise
        if ok:
            metrics.logins_ok.inc()
            log.info("login of %s from %s (%s)", user, self.address, method, extra=fields)
            if throttle is not None:
                throttle.succeeded(user, self.address)
            if tokens is not None and frame.token is None:
                token = tokens.issue(user)
                self.token_hash = token_hash(token) if token is not None else None
            self.user = user
            self.logged_in = True
            self.deliver(LoginOk(user=user, token=token, ref=frame.ref).encode())
            self.hub.register(self, frame.dm_after)  # after login_ok: the DMs due come next
            return
        metrics.logins_failed.inc()
        log.info("failed login of %s from %s (%s)", user, self.address, method, extra=fields)
        if throttle is not None:
            throttle.failed(user, self.address)
        raise ProtocolError("auth_failed", AUTH_FAILED_MESSAGE, fatal=self._login_failed())

    def _login_failed(self) -> bool:
        """Count a failed login on this connection; True when it must close."""
        self.login_failures += 1
        return self.login_failures >= self._max_login_failures
