"""One connection's protocol state, sans-I/O.

A :class:`Session` takes the lines a client sent (already split by
:class:`~securechat.framing.LineReader`), validates them into frames and turns them
into hub calls; everything it has to say goes out through the ``send`` callable
the transport gave it. It is the one place where a :exc:`ProtocolError` becomes an
``error`` frame. The transport reads :attr:`Session.closing` to know when to stop
reading, flush and close.
"""

from collections.abc import Callable

from .exceptions import ProtocolError
from .frames import (
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
    Members,
    Ping,
    Pong,
    Rooms,
    Send,
    ServerPong,
    error_frame,
    parse_client_frame,
)
from .hub import Hub

MAX_LOGIN_FAILURES = 5
AUTH_FAILED_MESSAGE = "wrong user name or password"


class Session:
    """The server side of one client connection."""

    def __init__(
        self,
        hub: Hub,
        send: Callable[[bytes], None],
        authenticate: Callable[[str, str], bool],
        *,
        max_login_failures: int = MAX_LOGIN_FAILURES,
    ) -> None:
        self.hub = hub
        self._send = send
        self._authenticate = authenticate
        self._max_login_failures = max_login_failures
        self.user = ""
        self.rooms: set[str] = set()
        self.logged_in = False
        self.login_failures = 0
        self.closing = False

    def __repr__(self) -> str:
        return f"<Session user={self.user or '-'} rooms={sorted(self.rooms)}>"

    def deliver(self, data: bytes) -> None:
        """Queue an encoded frame for this connection (the hub's ``Member`` interface).

        Once the session is closing (after ``bye`` or a fatal error) nothing more is
        queued, so that frame stays the last one the client gets.
        """
        if not self.closing:
            self._send(data)

    def fail(self, error: ProtocolError) -> None:
        """Report ``error`` to the client; close afterwards if it is fatal."""
        self.deliver(error_frame(error.code, error.message, error.ref))
        if error.fatal:
            self.closing = True

    def receive_line(self, line: bytes) -> None:
        """Handle one frame line from the client."""
        if self.closing:
            return
        try:
            frame = parse_client_frame(line)
        except ProtocolError as error:
            self.fail(error)
            return
        try:
            self._dispatch(frame)
        except ProtocolError as error:
            error.ref = frame.ref
            self.fail(error)

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
        elif isinstance(frame, Pong):
            pass
        elif isinstance(frame, Login):
            self._login(frame)
        elif not self.logged_in:
            raise ProtocolError("auth_required", "log in first")
        elif isinstance(frame, Join):
            hub.join(self, frame.room, ref)
        elif isinstance(frame, Leave):
            hub.leave(self, frame.room, ref)
        elif isinstance(frame, Send):
            hub.send(self, frame.room, frame.text, ref)
        elif isinstance(frame, Edit):
            hub.edit(self, frame.room, frame.id, frame.text, ref)
        elif isinstance(frame, Delete):
            hub.delete(self, frame.room, frame.id, ref)
        elif isinstance(frame, Dm):
            hub.dm(self, frame.to, frame.text, ref)
        elif isinstance(frame, DmHistory):
            hub.dm_history(self, frame.with_, before=frame.before, limit=frame.limit, ref=ref)
        elif isinstance(frame, History):
            hub.history(self, frame.room, before=frame.before, after=frame.after,
                        limit=frame.limit, ref=ref)  # fmt: skip
        elif isinstance(frame, Rooms):
            hub.rooms(self, ref)
        elif isinstance(frame, Members):
            hub.members(self, frame.room, ref)
        elif isinstance(frame, Logout):
            self.deliver(Bye(ref=ref).encode())
            self.closing = True
        else:  # pragma: no cover - the union above is exhaustive
            raise ProtocolError("internal", f"frame type {frame.type!r} is not handled")

    def _login(self, frame: Login) -> None:
        if self.logged_in:
            raise ProtocolError("bad_frame", f"already logged in as {self.user!r}")
        if self._authenticate(frame.user, frame.password):
            self.user = frame.user
            self.logged_in = True
            self.hub.register(self)
            self.deliver(LoginOk(user=frame.user, ref=frame.ref).encode())
            return
        self.login_failures += 1
        fatal = self.login_failures >= self._max_login_failures
        raise ProtocolError("auth_failed", AUTH_FAILED_MESSAGE, fatal=fatal)
