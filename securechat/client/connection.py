"""The network half of ``securechat-client``: one TLS connection, and a chat that outlives it.

Why asyncio: one event loop thread does all TLS reads and writes, so OpenSSL never sees
two threads on one connection (STYLE.md), while incoming frames, input and timers are
all waited on at once.

:class:`Connection` is one TLS connection: requests go out with a fresh ``ref`` and
paced under the server's frame allowance; every frame that comes in is handed on.
:class:`Chat` is what the user sees as "the client": rooms, what was shown, lines
waiting to be sent. When its connection drops (a restart, a crash, the network) it
reconnects with backoff, logs in, rejoins its rooms and fetches what it missed with
``history after=<last id shown>``, so that each message shows once, in order, without
a gap (direct messages: it logs in with ``dm_after=<last DM id shown>``); lines typed
meanwhile wait in a bounded queue. The decisions (delays, what was
shown, what to hold back) are the pure :class:`~securechat.console.Backoff` and
:class:`~securechat.console.ResumeState`; this module only does the I/O around them.
"""

import asyncio
import contextlib
import itertools
import json
import math
import os
import ssl
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from securechat.client import console
from securechat.client.console import (
    Backoff,
    Notice,
    Quit,
    ReadMarks,
    Request,
    ResumeState,
    Retry,
    RoomTracker,
    Switch,
    Unsent,
)
from securechat.client.transfer import Server as TransferServer
from securechat.client.transfer import TransferError, Transfers, download, upload
from securechat.protocol import PROTOCOL_VERSION
from securechat.protocol.frames import (
    AnyServerFrame,
    Deleted,
    DirectMessage,
    DmHistoryReply,
    Edited,
    ErrorFrame,
    FileInfo,
    HistoryReply,
    Joined,
    LoginOk,
    Message,
    Presence,
    ReadMarker,
    ServerPing,
    Welcome,
)

EXIT_FAILURE, EXIT_USAGE, EXIT_LOGIN, EXIT_INTERRUPTED = 1, 2, 3, 130
EXIT_NOT_STORED = 4  # piped input: a write the server could not store was not sent again
CONNECT_TIMEOUT = 15.0
LOGIN_TIMEOUT = 15.0  # the server may take a while to check a bcrypt hash
REPLY_TIMEOUT = 10.0  # overall, for the replies still due when piped input ends
BYE_TIMEOUT = 5.0
READ_LIMIT = 16 * 1024 * 1024  # a reply with history is far larger than one message
# Stay under the server's default allowance (a burst of 20 frames, then 10 a second),
# leaving room for login, pong and logout, so piped input is never refused.
BURST, RATE = 16, 8.0
CATCH_UP_PAGE = 200  # the protocol's largest history page
# Marks of what was read wait this long, so that a burst of messages costs one mark_read.
MARK_READ_DELAY = 0.5
MAX_QUEUED = 100  # lines typed while offline; more are dropped, with a word to the user
MAX_FILES_KNOWN = 1000  # files of the frames shown, remembered for /download's check
# Requests that may simply be sent again when their answer was lost with the connection.
REPEATABLE = frozenset({"rooms", "members", "history", "dm_history"})

T = TypeVar("T")
Held = tuple[AnyServerFrame, str]  # a frame held back while its room catches up, and its line


class ClientError(Exception):
    """Ends the client with one line on stderr and ``status``, unless ``retry`` says a
    later attempt may succeed (then a reconnect tries again, after ``retry_after``)."""

    def __init__(
        self,
        message: str,
        status: int = EXIT_FAILURE,
        *,
        retry: bool = False,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.status, self.retry, self.retry_after = status, retry, retry_after


class ConnectionClosed(ClientError):
    """The server closed the connection (or it broke) while we still needed it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=True)


async def open_tls(
    host: str, port: int, cafile: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and verify the server against ``cafile``, names included; no way around it.

    A certificate that does not verify is not retried: waiting does not fix it, and
    retrying would look like a client that shrugs it off.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    unverified = f"cannot verify the server's certificate against {cafile}"
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ClientError(f"{unverified}: cannot load it: {reason}") from None
    try:
        return await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host, limit=READ_LIMIT
            ),
            CONNECT_TIMEOUT,
        )
    except ssl.SSLCertVerificationError as exc:
        raise ClientError(f"{unverified}: {exc.verify_message or exc.reason}") from None
    except ssl.SSLError as exc:
        raise ClientError(
            f"TLS handshake with {where} failed: {exc.reason or exc}", retry=True
        ) from None
    except TimeoutError:
        raise ClientError(f"cannot connect to {where}: timed out", retry=True) from None
    except OSError as exc:  # asyncio's strerror repeats the address: use the errno's text
        reason = os.strerror(exc.errno) if exc.errno else exc.strerror or exc
        raise ClientError(f"cannot connect to {where}: {reason}", retry=True) from None
    except (UnicodeError, ValueError) as exc:  # e.g. a host name that is not valid text
        raise ClientError(f"cannot connect to {where!r}: {exc}") from None


class Pacer:
    """A token bucket, so a long piped input is paced rather than refused."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens, self.last = float(burst), time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate)
            self.tokens, self.last = 1.0, time.monotonic()
        self.tokens -= 1


def describe(frame: AnyServerFrame) -> str:
    """An error frame as ``code: message (retry after N s)``, escaped for the terminal."""
    lines = console.format_frame(frame) if isinstance(frame, ErrorFrame) else []
    return lines[0].removeprefix("! ") if lines else f"unexpected {frame.type!r} frame"


@dataclass
class Pending:
    """A request waiting for its answer; ``shown``: display the answer the usual way (else
    the code that sent it deals with it)."""

    frame: dict[str, Any]
    reply: "asyncio.Future[AnyServerFrame]"
    shown: bool


OnFrame = Callable[[AnyServerFrame | None, str, Pending | None], None]


class Connection:
    """One TLS connection; each frame that arrives goes to ``on_frame`` with its request.

    When it closes, the requests still unanswered are kept in ``unanswered`` (their
    futures are cancelled) and ``on_close`` is called, before anything else runs.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_frame: OnFrame,
        on_close: Callable[["Connection"], None],
        tell: Callable[[Notice], None],
    ) -> None:
        self.reader, self.writer = reader, writer
        self.on_frame, self.on_close, self.tell = on_frame, on_close, tell
        self.closed = asyncio.Event()
        self.close_reason = "the server closed the connection"
        self.established = False  # logged in and resumed: a close now means reconnect
        self.loss_reported = False
        self.rooms: set[str] = set()  # joined (or being joined) on this connection
        self.unanswered: list[Pending] = []
        self._welcome: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()
        self._pending: dict[str, Pending] = {}
        self._refs = itertools.count(1)
        self._pacer = Pacer(BURST, RATE)
        self._reader_task = asyncio.create_task(self._read_loop())

    async def request(
        self, frame: dict[str, Any], *, paced: bool = True, shown: bool = True
    ) -> "asyncio.Future[AnyServerFrame]":
        """Send ``frame`` with a new ``ref``; the future gets the frame that answers it.

        Raises ConnectionClosed only when the connection was closed before: then the
        frame was not sent. Once it is registered a request never raises; if the
        connection breaks, the request is in ``unanswered``.
        """
        if self.closed.is_set():
            raise ConnectionClosed(self.close_reason)
        frame = {**frame, "ref": f"c{next(self._refs)}"}
        reply: asyncio.Future[AnyServerFrame] = asyncio.get_running_loop().create_future()
        self._pending[frame["ref"]] = Pending(frame, reply, shown)
        if frame["type"] == "join":
            self.rooms.add(frame["room"])
        elif frame["type"] == "leave":
            self.rooms.discard(frame["room"])
        if paced:
            await self._pacer.wait()
        if not self.closed.is_set():
            data = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()
            self.writer.write(data + b"\n")  # whole frames: writes never interleave
            try:
                await self.writer.drain()
            except OSError as exc:
                self.close_reason = f"connection lost: {exc}"
                self.writer.transport.abort()  # the read loop ends and tells
        return reply

    async def _read_loop(self) -> None:
        try:
            while line := await self.reader.readline():
                if not line.endswith(b"\n"):
                    break  # cut off by the close
                self._handle(line.decode("utf-8", errors="replace"))
        except (OSError, ValueError, ssl.SSLError) as exc:  # ValueError: a line over the limit
            self.close_reason = f"connection lost: {exc}"
        finally:
            self.closed.set()
            self.unanswered = list(self._pending.values())
            self._pending.clear()
            for pending in self.unanswered:
                pending.reply.cancel()
            if not self._welcome.done():
                self._welcome.cancel()
            self.on_close(self)

    def _handle(self, raw: str) -> None:
        try:
            frame = console.decode_server_frame(raw)
        except ValueError as exc:
            reason = console.escape(str(exc), newlines=False)
            self.tell(Notice(f"! unreadable frame from the server: {reason}", error=True))
            return
        pending = self._pending.pop(getattr(frame, "ref", None) or "", None)
        self.on_frame(frame, raw, pending)
        if isinstance(frame, ServerPing):
            self.writer.write(b'{"type":"pong"}\n')
        elif isinstance(frame, Welcome) and not self._welcome.done():
            self._welcome.set_result(frame)
        elif isinstance(frame, ErrorFrame) and not self._welcome.done():
            self._welcome.set_exception(
                ClientError(f"the server refused the connection: {describe(frame)}", retry=True)
            )
        elif isinstance(frame, ErrorFrame) and pending is None:
            self.close_reason = f"the server closed the connection ({frame.code})"
        if pending is not None and not pending.reply.done():
            pending.reply.set_result(frame)

    async def until_closed(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the connection closes first (then ConnectionClosed)."""
        task = asyncio.ensure_future(awaitable)
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            done, _ = await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if task in done and not task.cancelled():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ConnectionClosed(self.close_reason)

    async def login(self, user: str, password: str, dm_after: int | None = None) -> LoginOk:
        """Log in; with ``dm_after``, the server sends every DM after that id first.

        Returns the ``login_ok`` (its ``token`` is what file transfers present)."""
        try:
            welcome = await asyncio.wait_for(self.until_closed(self._welcome), LOGIN_TIMEOUT)
        except TimeoutError:
            raise ClientError(
                "the server sent no welcome; is it a securechat server?", retry=True
            ) from None
        if welcome.protocol != PROTOCOL_VERSION:
            raise ClientError(
                f"the server speaks protocol {welcome.protocol}, this client {PROTOCOL_VERSION}"
            )
        frame: dict[str, Any] = {"type": "login", "user": user, "password": password}
        if dm_after is not None:
            frame["dm_after"] = dm_after
        reply = await self.request(frame, paced=False, shown=False)
        try:
            answer = await asyncio.wait_for(self.until_closed(reply), LOGIN_TIMEOUT)
        except TimeoutError:
            raise ClientError("the server did not answer the login", retry=True) from None
        if not isinstance(answer, LoginOk):
            # A wrong password stays wrong; a server that is busy or throttling may relent.
            code = answer.code if isinstance(answer, ErrorFrame) else ""
            retry_after = (answer.retry_after or 0.0) if isinstance(answer, ErrorFrame) else 0.0
            raise ClientError(
                f"login failed: {describe(answer)}",
                EXIT_LOGIN,
                retry=code in ("rate_limited", "server_busy", "shutting_down", "internal"),
                retry_after=retry_after,
            )
        return answer

    async def settle(self, timeout: float) -> None:
        """Wait until every request sent so far has its answer."""
        replies = [pending.reply for pending in self._pending.values()]
        if not replies:
            return
        _, late = await self.until_closed(asyncio.wait(replies, timeout=timeout))
        if late:
            raise ClientError(
                f"no answer from the server to {len(late)} request(s) within {timeout:g} s"
            )

    async def logout(self) -> None:
        reply = await self.request({"type": "logout"}, paced=False)
        try:
            await asyncio.wait_for(self.until_closed(reply), BYE_TIMEOUT)
        except TimeoutError:
            raise ClientError("the server did not answer the logout") from None

    async def close(self) -> None:
        self._reader_task.cancel()
        self.writer.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task


@dataclass
class Options:
    """What the chat needs of the command line."""

    host: str
    port: int
    cafile: str
    user: str
    json: bool = False
    reconnect: bool = True
    reconnect_for: float = math.inf  # seconds of trying before giving up
    mark_read: bool = False  # tell the server what was shown in the current room (a terminal)
    background_transfers: bool = False  # a terminal: files move while the chat goes on


class Chat:
    """The client across connections: rooms, what was shown, lines waiting to be sent.

    Input goes straight out while ``online``; otherwise it waits in ``queue`` (at most
    ``MAX_QUEUED`` frames). A reconnect sends the queue after the rooms have caught up.
    A failure that ends the client (a refused login, a certificate that does not
    verify, giving up) is set on ``failure``; the input loops wait with :meth:`guard`.
    """

    def __init__(self, options: Options, password: str) -> None:
        self.options, self._password = options, password
        self.rooms = RoomTracker()
        self.state: ResumeState[Held] = ResumeState()
        self.backoff = Backoff()
        self.queue: deque[dict[str, Any]] = deque()
        self.unsure: list[dict[str, Any]] = []  # sends whose answer the connection lost
        self.conn: Connection | None = None
        self.online = False
        self.quitting = False
        self.failure: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_change: Callable[[], None] = lambda: None  # e.g. redraw the prompt
        self.on_failure: Callable[[ClientError], None] = lambda exc: None  # e.g. end the prompt
        self._online = asyncio.Event()
        self._lost = asyncio.Event()
        self._mine: list[tuple[str, str]] = []  # own messages shown while not online
        self._told_queued = False
        self._supervisor: asyncio.Task[None] | None = None
        self.unsent = Unsent()  # writes the server could not store, for /retry
        self.marks = ReadMarks()
        self._marking: asyncio.TimerHandle | None = None
        self._mark_tasks: set[asyncio.Task[object]] = set()
        self.token: str | None = None  # the login token of the last login_ok (file transfers)
        self.transfers = Transfers(time.monotonic)  # under way, for the progress line
        self.failed_transfers = 0
        self._transfer_tasks: set[asyncio.Task[None]] = set()
        self._files: dict[str, FileInfo] = {}  # files of the frames shown, by id (newest)

    # -- output

    def show(self, line: str) -> None:
        """Print a line; ``sys.stdout`` is looked up each time as ``patch_stdout`` swaps it."""
        print(line, file=sys.stdout, flush=True)

    def tell(self, notice: Notice) -> None:
        """Local messages; on stderr in ``--json`` mode, so that stdout stays pure JSON."""
        print(notice.text, file=sys.stderr if self.options.json else sys.stdout, flush=True)

    def _on_frame(self, frame: AnyServerFrame | None, raw: str, pending: Pending | None) -> None:
        if isinstance(frame, Message | Edited | Deleted | Presence) and self.state.held(
            frame.room, (frame, raw)
        ):
            return
        if pending is not None and pending.shown and isinstance(frame, ErrorFrame):
            self.rooms.refused(pending.frame)
            self.on_change()
            if console.not_stored(frame, pending.frame):  # kept for /retry, said beside it
                if self.options.json:
                    self.show(console.json_line(raw))
                self.tell(self.unsent.add(pending.frame))
                return
        if pending is not None and not pending.shown:
            if self.options.json:
                self.show(console.json_line(raw))
            return
        self._display(frame, raw)

    def _display(self, frame: AnyServerFrame | None, raw: str) -> None:
        """Show a frame, unless it is a message or direct message shown before."""
        if isinstance(frame, Message):
            if not self.state.fresh(frame.room, frame.id):
                return
            self._note_mine(frame.room, frame.user, frame.text)
            self._read(frame.room, frame.id)
        elif isinstance(frame, DirectMessage) and not self.state.fresh_dm(frame.id):
            return
        self._note_files(frame)
        if isinstance(frame, Joined):
            self.state.joined(frame.room, frame.last_id)
            self.marks.told(frame.room, frame.read_id)
            if frame.history:
                self._read(frame.room, frame.history[-1].id)
        elif isinstance(frame, ReadMarker) and frame.room is not None:
            self.marks.told(frame.room, frame.id)  # (read here or on another device)
        if self.options.json:
            self.show(console.json_line(raw))
        elif frame is not None:
            for line in console.format_frame(frame):
                self.show(line)

    def _note_files(self, frame: AnyServerFrame | None) -> None:
        """Remember the files shown, so that ``/download`` checks their hash too."""
        records: list[Any] = []
        if isinstance(frame, Message | DirectMessage):
            records = [frame]
        elif isinstance(frame, Joined):
            records = list(frame.history)
        elif isinstance(frame, HistoryReply | DmHistoryReply):
            records = list(frame.messages)
        for record in records:
            if record.file is not None:
                self._files[record.file.id] = record.file
        while len(self._files) > MAX_FILES_KNOWN:
            del self._files[next(iter(self._files))]

    # -- file transfers

    async def transfer(self, action: console.Upload | console.Download) -> None:
        """Run ``/upload`` or ``/download``: in the background on a terminal (the chat
        goes on, the prompt shows the progress), else to its end before the next line."""
        if self.options.background_transfers:
            task = asyncio.create_task(self._transfer(action))
            self._transfer_tasks.add(task)
            task.add_done_callback(self._transfer_tasks.discard)
        else:
            await self._transfer(action)

    async def _transfer(self, action: console.Upload | console.Download) -> None:
        options = self.options
        if self.token is None:
            self._transfer_failed("the server gave no login token: files cannot be shared")
            return
        server = TransferServer(options.host, options.port, options.cafile, self.token)
        if isinstance(action, console.Upload):
            label = f"up {os.path.basename(action.path)}"
        else:
            label = f"down {action.file_id}"
        key = self.transfers.start(console.escape(label, newlines=False))
        loop = asyncio.get_running_loop()
        redraw = _Throttle(loop, self.on_change, 0.25)

        def progress(done: int, total: int | None) -> None:  # (in the transfer's thread)
            self.transfers.update(key, done, total)
            redraw()

        stop = self.transfers.stop
        try:
            if isinstance(action, console.Upload):
                frame = await asyncio.to_thread(
                    upload, server, action.path, room=action.room, to=action.to,
                    text=action.text, progress=progress, stop=stop,
                )  # fmt: skip
                file = frame["file"]
                where = f"#{action.room}" if action.room else f"a direct message to {action.to}"
                name = console.escape(file["name"], newlines=False)
                self.tell(Notice(f"* shared {name} ({console.format_size(file['size'])}) "
                                 f"in {where}"))  # fmt: skip
            else:
                known = self._files.get(action.file_id)

                def target(name: str) -> str:
                    try:
                        return console.download_target(action.path, name, is_dir=os.path.isdir,
                                                       exists=os.path.exists)  # fmt: skip
                    except ValueError as exc:
                        raise TransferError(str(exc)) from None

                path, size, _ = await asyncio.to_thread(
                    download, server, action.file_id, target,
                    sha256=known.sha256 if known else None, progress=progress, stop=stop,
                )  # fmt: skip
                shown = console.escape(path, newlines=False)
                self.tell(Notice(f"* saved {shown} ({console.format_size(size)}, SHA-256 "
                                 "checked)"))  # fmt: skip
        except TransferError as exc:
            what = "upload of" if isinstance(action, console.Upload) else "download of"
            subject = action.path if isinstance(action, console.Upload) else action.file_id
            self._transfer_failed(f"{what} {subject} failed: {exc}")
        finally:
            self.transfers.end(key)
            self.on_change()

    def _transfer_failed(self, why: str) -> None:
        self.failed_transfers += 1
        self.tell(Notice(f"! {console.escape(why, newlines=False)}", error=True))

    async def end_transfers(self) -> None:
        """Stop the transfers under way (the client is quitting) and wait for them."""
        self.transfers.stop.set()
        if self._transfer_tasks:
            await asyncio.wait(set(self._transfer_tasks), timeout=5)

    # -- read markers

    def _read(self, room: str, message_id: int) -> None:
        """A message was shown: if its room is current, tell the server (soon, coalesced)."""
        if self.options.mark_read:
            self.marks.shown(room, message_id, self.rooms.current)
            self._schedule_marks()

    def _schedule_marks(self) -> None:
        if self.marks.wanted and self._marking is None:
            loop = asyncio.get_running_loop()
            self._marking = loop.call_later(MARK_READ_DELAY, self._send_marks)

    def _send_marks(self) -> None:
        """Send the marks due, one frame per room however many messages were shown."""
        self._marking = None
        conn = self.conn
        if not (self.online and conn is not None):
            return  # kept: sent after the next message shown once back online
        for frame in self.marks.take():
            task = asyncio.ensure_future(conn.request(frame, shown=False))
            self._mark_tasks.add(task)
            task.add_done_callback(self._mark_sent)

    def _mark_sent(self, task: "asyncio.Task[object]") -> None:
        self._mark_tasks.discard(task)
        if not task.cancelled():
            task.exception()  # (a connection closed meanwhile: the next mark says it again)

    def _note_mine(self, room: str, user: str, text: str) -> None:
        if user == self.options.user and not self.online:
            self._mine.append((room, text))

    # -- connecting

    async def _connect(self) -> Connection:
        options = self.options
        reader, writer = await open_tls(options.host, options.port, options.cafile)
        conn = Connection(reader, writer, self._on_frame, self._on_close, self.tell)
        self.conn = conn
        try:
            # Once a DM was shown, every login resumes after it (see ResumeState.last_dm).
            ok = await conn.login(options.user, self._password, self.state.last_dm or None)
        except BaseException:
            await conn.close()
            raise
        if ok.token is not None:
            self.token = ok.token
        return conn

    async def start(self) -> None:
        """The first connection: any failure ends the client (nothing to resume yet)."""
        conn = await self._connect()
        conn.established = self.online = True
        self._online.set()
        self.backoff.connected()
        self._supervisor = asyncio.create_task(self._supervise())

    def _on_close(self, conn: Connection) -> None:
        """(Synchronously, as the connection closes.) Go offline; keep what was unanswered."""
        if conn is not self.conn:
            return
        self.online = False
        self._online.clear()
        for pending in conn.unanswered:
            self._salvage(pending)
        if not self.quitting:
            self._report_loss(conn)
        self.on_change()

    def _report_loss(self, conn: Connection) -> None:
        """Wake the supervisor, once per established connection."""
        if conn.established and not conn.loss_reported:
            conn.loss_reported = True
            self._lost.set()

    def _salvage(self, pending: Pending) -> None:
        """A request lost its answer with the connection: send it again, or say so.

        Joins and leaves need nothing: the reconnect rejoins the rooms the user is in.
        """
        frame = {key: value for key, value in pending.frame.items() if key != "ref"}
        kind = frame["type"]
        if kind == "send":
            self.unsure.append(frame)
        elif kind in REPEATABLE and pending.shown:
            self.queue.append(frame)
        elif kind in ("dm", "edit", "delete"):
            what = {
                "dm": lambda: f"direct message to {frame['to']}",
                "edit": lambda: f"edit of [{frame['id']}] in #{frame['room']}",
                "delete": lambda: f"deletion of [{frame['id']}] in #{frame['room']}",
            }[kind]()
            lost = f"! no answer to the {what} before the connection was lost"
            self.tell(Notice(f"{lost}; it may or may not have been done", error=True))

    async def _supervise(self) -> None:
        """For the life of the client: when the connection is lost, reconnect."""
        try:
            while True:
                await self._lost.wait()
                self._lost.clear()
                assert self.conn is not None
                reason = self.conn.close_reason
                if not self.options.reconnect:
                    raise ConnectionClosed(reason)
                await self.conn.close()
                await self._reconnect(reason)
        except ClientError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: end the client rather than stay offline for ever
            self._fail(ClientError(f"internal error: {type(exc).__name__}: {exc}"))

    def _fail(self, exc: ClientError) -> None:
        if not self.failure.done():
            self.failure.set_exception(exc)
            self.on_failure(exc)

    async def _reconnect(self, reason: str) -> None:
        """Try until resumed, a failure that waiting cannot fix, or ``reconnect_for``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.reconnect_for
        self.backoff.lost()
        delay = self.backoff.next_delay()
        self.tell(Notice(f"* connection lost ({reason}); reconnecting in {delay:.1f} s"))
        while True:
            await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
            try:
                await self._resume()
                return
            except ClientError as exc:
                if not exc.retry:
                    raise
                if loop.time() >= deadline:
                    raise ClientError(
                        f"gave up reconnecting after {self.options.reconnect_for:g} s: {exc}"
                    ) from None
                delay = max(self.backoff.next_delay(), exc.retry_after)
                self.tell(Notice(f"* cannot reconnect: {exc}; retrying in {delay:.1f} s"))

    async def _resume(self) -> None:
        """Log in, rejoin the rooms in order, show what was missed, send what waited."""
        conn = await self._connect()
        self.tell(Notice("* reconnected"))
        try:
            await self._rejoin(conn)
        except BaseException:
            await conn.close()  # half resumed: the next attempt starts from a clean slate
            raise
        self._mine.clear()
        conn.established = self.online = True
        self._told_queued = False
        self._online.set()
        self.backoff.connected()
        self.on_change()

    async def _rejoin(self, conn: Connection) -> None:
        known = [room for room in self.rooms.joined if self.state.seen(room) is not None]
        for room in self.state.holding():
            if room not in known:  # left meanwhile: what an earlier attempt held is moot
                self.state.release(room)
        replies = []
        for room in list(self.rooms.joined):
            if room in known:
                self.state.hold(room)
            frame = {"type": "join", "room": room}
            replies.append((room, await conn.request(frame, shown=room not in known)))
        for room, reply in replies:
            answer = await _answer(conn, reply)
            if room in known:
                await self._catch_up(conn, room, answer)
        await self._flush(conn)
        if conn.closed.is_set():  # closed while flushing: the next attempt sends the rest
            raise ConnectionClosed(conn.close_reason)

    async def _catch_up(self, conn: Connection, room: str, joined: AnyServerFrame) -> None:
        """Show the messages of ``room`` after the last one shown, then what was held."""
        if not isinstance(joined, Joined):
            _retry_if_throttled(joined)
            self.tell(Notice(f"! cannot rejoin #{room}: {describe(joined)}", error=True))
            self.rooms.refused({"type": "join", "room": room})
            self.on_change()
        elif self.state.is_reset(room, joined.last_id):
            self.tell(Notice(f"* #{room} has a new history on the server; showing it afresh"))
            self.state.joined(room, joined.last_id)
            if not self.options.json:
                for line in console.format_frame(joined):
                    self.show(line)
        else:
            if not self.options.json:
                self.show(console.format_rejoined(joined))
            after = self.state.rejoined(room, joined.last_id)
            while after is not None:
                frame = {"type": "history", "room": room, "after": after, "limit": CATCH_UP_PAGE}
                page = await _answer(conn, await conn.request(frame, shown=False))
                if not isinstance(page, HistoryReply):
                    _retry_if_throttled(page)
                    self.tell(Notice(f"! cannot fetch the missed messages of #{room}: "
                                     f"{describe(page)}", error=True))  # fmt: skip
                    break
                new, after = self.state.page(room, page.messages)
                for record in new:
                    self._note_mine(room, record.user, record.text)
                    if not self.options.json:
                        self.show(console.format_record(record))
        for frame, raw in self.state.release(room):
            self._display(frame, raw)

    async def _flush(self, conn: Connection) -> None:
        """Send again the sends the catch-up did not show, then the queue, oldest first."""
        resend = console.unconfirmed(self.unsure, self._mine)
        self.unsure.clear()
        self._mine.clear()
        self.queue.extendleft(reversed(resend))
        while self.queue:
            frame = self.queue.popleft()
            if frame["type"] == "join" and frame["room"] in conn.rooms:
                continue  # rejoined already
            if frame["type"] == "leave" and frame["room"] not in conn.rooms:
                continue  # not rejoined at all
            try:
                await conn.request(frame)
            except ConnectionClosed:
                self.queue.appendleft(frame)
                raise

    # -- input

    async def guard(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the chat fails first (then raise that failure)."""
        task = asyncio.ensure_future(awaitable)
        await asyncio.wait({task, self.failure}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        self.failure.result()  # raises
        raise AssertionError("unreachable")  # pragma: no cover

    async def execute(self, line: str) -> bool:
        """Run one input line; False when it asks to quit."""
        action = console.parse_command(line, self.rooms.current, self.rooms.joined)
        if isinstance(action, Quit):
            return False
        if isinstance(action, Switch):
            self.rooms.switch(action.room)
            self.on_change()
            if self.options.mark_read:
                self.marks.switched(action.room)
                self._schedule_marks()
        elif isinstance(action, Notice):
            self.tell(action)
        elif isinstance(action, console.Upload | console.Download):
            await self.transfer(action)
        elif isinstance(action, Request):
            await self.submit(action.frame)
        elif isinstance(action, Retry):
            retried = self.unsent.retry()
            if isinstance(retried, Notice):
                self.tell(retried)
            else:
                for frame in retried:
                    await self.submit(frame)
        return True

    async def submit(self, frame: dict[str, Any]) -> None:
        """Send now, or queue until reconnected; a join or leave counts at once, so that
        the lines after it go to the right room either way."""
        self.rooms.sent(frame)
        self.on_change()
        if self.online and self.conn is not None:
            try:
                await self.conn.request(frame)
                return
            except ConnectionClosed:
                if not self.options.reconnect:
                    raise
        if len(self.queue) >= MAX_QUEUED:
            self.tell(Notice(f"! offline, and {MAX_QUEUED} requests are waiting already: "
                             f"dropped {frame['type']} {_summary(frame)}", error=True))  # fmt: skip
            return
        self.queue.append(frame)
        if not self._told_queued:
            self._told_queued = True
            self.tell(Notice("* offline: what you type is sent once reconnected"))

    async def finish(self, *, wait_offline: bool) -> None:
        """Input ended: wait for the answers, then log out.

        Offline, with ``wait_offline`` (piped input) and something still to send, first
        wait for the reconnect (bounded by ``--reconnect-for``); otherwise just stop.
        """
        while True:
            conn = self.conn
            if not self.online or conn is None:
                if not self.options.reconnect:
                    raise ConnectionClosed(conn.close_reason if conn else "not connected")
                if wait_offline and (self.queue or self.unsure):
                    await self.guard(self._online.wait())
                    continue
                if self.queue or self.unsure:
                    count = len(self.queue) + len(self.unsure)
                    self.tell(Notice(f"! offline: {count} request(s) not sent", error=True))
                return
            try:
                await self.guard(conn.settle(REPLY_TIMEOUT))
                self.quitting = True
                await self.guard(conn.logout())
                return
            except ConnectionClosed:
                if not self.options.reconnect:
                    raise
                self.quitting = False  # lost before the bye: reconnect if anything is due
                self._report_loss(conn)

    async def close(self) -> None:
        self.quitting = True
        await self.end_transfers()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.conn is not None:
            await self.conn.close()
        if self.failure.done() and not self.failure.cancelled():
            self.failure.exception()  # retrieved: no "never retrieved" warning


class _Throttle:
    """Call ``callback`` in ``loop`` at most once per ``interval`` seconds, from any thread
    (a transfer's progress redraws the prompt a few times a second, not per chunk)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None], interval: float
    ) -> None:
        self._loop, self._callback, self._interval = loop, callback, interval
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._loop.call_soon_threadsafe(self._callback)


async def _answer(conn: Connection, reply: "asyncio.Future[AnyServerFrame]") -> AnyServerFrame:
    """The answer to a request of the resume; a server that does not answer is retried."""
    try:
        return await asyncio.wait_for(conn.until_closed(reply), REPLY_TIMEOUT)
    except TimeoutError:
        raise ClientError(
            f"the server did not answer within {REPLY_TIMEOUT:g} s", retry=True
        ) from None


def _retry_if_throttled(frame: AnyServerFrame) -> None:
    """A resume request refused for now (not for good) is a reason to try again later."""
    if isinstance(frame, ErrorFrame) and frame.code in ("rate_limited", "server_busy"):
        raise ClientError(describe(frame), retry=True, retry_after=frame.retry_after or 0.0)


def _summary(frame: dict[str, Any]) -> str:
    """A short, escaped description of a request for a notice."""
    text = str(frame.get("text") or frame.get("room") or frame.get("to") or "")
    text = text if len(text) <= 40 else text[:39] + "…"
    return repr(console.escape(text, newlines=False))
