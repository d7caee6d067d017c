"""``securechat-client``: the terminal client, a thin I/O layer over :mod:`securechat.console`.

Why asyncio: one event loop thread does all TLS reads and writes, so OpenSSL never sees
two threads on one connection (STYLE.md), while incoming frames, typed or piped input
and timeouts are all waited on at once. Why two input loops: on a terminal the input
line is a prompt_toolkit prompt that incoming lines print above (``patch_stdout``), so
they never clobber what is being typed; with piped input the client is a script, so it
must finish what it was asked to do (every request answered) before it logs out.

Errors are one line on stderr. Exit status: 0 done, 1 connection or TLS failure (or the
server went away), 2 usage, 3 login refused, 130 interrupted.
"""

import argparse
import asyncio
import contextlib
import getpass
import itertools
import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from . import DEFAULT_PORT, PROTOCOL_VERSION, console
from .console import Notice, Quit, Request, RoomTracker, Switch
from .frames import AnyServerFrame, ErrorFrame, LoginOk, ServerPing, Welcome
from .names import is_valid_name

PROG = "securechat-client"
EXIT_FAILURE, EXIT_USAGE, EXIT_LOGIN, EXIT_INTERRUPTED = 1, 2, 3, 130
PASSWORD_ENV = "SECURECHAT_PASSWORD"  # noqa: S105 - a variable name, not a password
CONNECT_TIMEOUT = 15.0
LOGIN_TIMEOUT = 15.0  # the server may take a while to check a bcrypt hash
REPLY_TIMEOUT = 10.0  # overall, for the replies still due when piped input ends
BYE_TIMEOUT = 5.0
READ_LIMIT = 16 * 1024 * 1024  # a reply with history is far larger than one message
# Stay under the server's default allowance (a burst of 20 frames, then 10 a second),
# leaving room for login, pong and logout, so piped input is never refused.
BURST, RATE = 16, 8.0

T = TypeVar("T")


class ClientError(Exception):
    """Ends the client with one line on stderr and ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


class ConnectionClosed(ClientError):
    """The server closed the connection (or it broke) while we still needed it."""


# ---------------------------------------------------------------- command line


def _user(text: str) -> str:
    name = text.lower()
    if not is_valid_name(name):
        raise argparse.ArgumentTypeError(
            f"invalid user name {text!r}: 1-32 of a-z 0-9 _ -, starting with a letter or digit"
        )
    return name


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chat on a securechat server. Commands given after the options run "
        "after login (each word starting with / begins a new command); then lines are "
        "read from the terminal or from stdin. Type /help for the commands.",
    )
    parser.add_argument("--user", required=True, type=_user, help="your user name")
    parser.add_argument("--host", default="localhost", help="server name (default: localhost)")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"server port (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--cafile",
        default="certs/ca.pem",
        metavar="FILE",
        help="CA certificate to verify the server with (default: certs/ca.pem)",
    )
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"read the password from the first line of FILE (else ${PASSWORD_ENV}, "
        "else ask on the terminal)",
    )
    parser.add_argument("--json", action="store_true", help="print received frames as raw JSON")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="commands, e.g. /join general")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        del args.command[0]
    return args


def read_password(args: argparse.Namespace) -> str:
    """The password from the file, the environment or a hidden prompt; never from argv."""
    password = _password(args)
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise ClientError("the password is not valid UTF-8", EXIT_USAGE) from None
    return password


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as file:
                return file.readline().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ClientError(
                f"cannot read password file {args.password_file}: {reason}", EXIT_USAGE
            ) from None
    if (password := os.environ.get(PASSWORD_ENV)) is not None:
        return password
    if not sys.stdin.isatty():
        raise ClientError(
            f"no password: use --password-file or ${PASSWORD_ENV} when stdin is not a terminal",
            EXIT_USAGE,
        )
    try:
        return getpass.getpass(f"password for {args.user}@{args.host}: ")
    except EOFError:
        raise ClientError("no password given", EXIT_USAGE) from None


# ---------------------------------------------------------------- connection


async def open_tls(
    host: str, port: int, cafile: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and verify the server against ``cafile``, names included; no way around it."""
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
        raise ClientError(f"TLS handshake with {where} failed: {exc.reason or exc}") from None
    except TimeoutError:
        raise ClientError(f"cannot connect to {where}: timed out") from None
    except OSError as exc:
        raise ClientError(f"cannot connect to {where}: {exc.strerror or exc}") from None
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


def _describe(frame: AnyServerFrame) -> str:
    """An error frame as ``code: message (retry after N s)``, escaped for the terminal."""
    lines = console.format_frame(frame) if isinstance(frame, ErrorFrame) else []
    return lines[0].removeprefix("! ") if lines else f"unexpected {frame.type!r} frame"


class Session:
    """One connection: requests go out with a fresh ``ref``, frames come in and are shown."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, json_mode: bool
    ) -> None:
        self.reader, self.writer, self.json_mode = reader, writer, json_mode
        self.rooms = RoomTracker()
        self.closed = asyncio.Event()
        self.close_reason = "the server closed the connection"
        self.on_change: Callable[[], None] = lambda: None  # e.g. redraw the prompt
        self.on_close: Callable[[], None] = lambda: None  # e.g. end the prompt
        self._welcome: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()
        self._pending: dict[str, tuple[dict[str, Any], asyncio.Future[Any]]] = {}
        self._refs = itertools.count(1)
        self._pacer = Pacer(BURST, RATE)
        self._reader_task = asyncio.create_task(self._read_loop())

    # -- sending

    async def _send(self, frame: dict[str, Any]) -> None:
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        self.writer.write(data)  # whole frames: writes never interleave
        await self.writer.drain()

    async def request(self, frame: dict[str, Any], *, paced: bool = True) -> "asyncio.Future[Any]":
        """Send ``frame`` with a new ``ref``; the future gets the frame that answers it."""
        if self.closed.is_set():
            raise ConnectionClosed(self.close_reason)
        frame = {**frame, "ref": f"c{next(self._refs)}"}
        reply: asyncio.Future[AnyServerFrame] = asyncio.get_running_loop().create_future()
        self._pending[frame["ref"]] = (frame, reply)
        self.rooms.sent(frame)
        self.on_change()
        if paced:
            await self._pacer.wait()
        try:
            await self._send(frame)
        except OSError as exc:
            raise ConnectionClosed(f"connection lost: {exc}") from None
        return reply

    # -- receiving

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
            for _, reply in self._pending.values():
                reply.cancel()
            self._pending.clear()
            if not self._welcome.done():
                self._welcome.cancel()
            self.on_close()

    def show(self, line: str) -> None:
        """Print a line; ``sys.stdout`` is looked up each time as ``patch_stdout`` swaps it."""
        print(line, file=sys.stdout, flush=True)

    def tell(self, notice: Notice) -> None:
        """Local messages; on stderr in ``--json`` mode, so that stdout stays pure JSON."""
        print(notice.text, file=sys.stderr if self.json_mode else sys.stdout, flush=True)

    def _handle(self, raw: str) -> None:
        try:
            frame = console.decode_server_frame(raw)
        except ValueError as exc:
            reason = console.escape(str(exc), newlines=False)
            self.tell(Notice(f"! unreadable frame from the server: {reason}", error=True))
            return
        request, reply = self._pending.pop(getattr(frame, "ref", None) or "", ({}, None))
        if self.json_mode:
            self.show(console.json_line(raw))
        elif frame is not None and request.get("type") != "login":
            for line in console.format_frame(frame):
                self.show(line)
        if isinstance(frame, ServerPing):
            self.writer.write(b'{"type":"pong"}\n')
        elif isinstance(frame, Welcome) and not self._welcome.done():
            self._welcome.set_result(frame)
        elif isinstance(frame, ErrorFrame) and not self._welcome.done():
            self._welcome.set_exception(
                ClientError(f"the server refused the connection: {_describe(frame)}")
            )
        elif isinstance(frame, ErrorFrame) and reply is None:
            self.close_reason = f"the server closed the connection ({frame.code})"
        if reply is not None:
            if isinstance(frame, ErrorFrame):
                self.rooms.refused(request)
                self.on_change()
            if not reply.done():
                reply.set_result(frame)

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

    # -- the session

    async def login(self, user: str, password: str) -> None:
        try:
            welcome = await asyncio.wait_for(self.until_closed(self._welcome), LOGIN_TIMEOUT)
        except TimeoutError:
            raise ClientError("the server sent no welcome; is it a securechat server?") from None
        if welcome.protocol != PROTOCOL_VERSION:
            raise ClientError(
                f"the server speaks protocol {welcome.protocol}, this client {PROTOCOL_VERSION}"
            )
        reply = await self.request(
            {"type": "login", "user": user, "password": password}, paced=False
        )
        try:
            frame = await asyncio.wait_for(self.until_closed(reply), LOGIN_TIMEOUT)
        except TimeoutError:
            raise ClientError("the server did not answer the login") from None
        if not isinstance(frame, LoginOk):
            raise ClientError(f"login failed: {_describe(frame)}", EXIT_LOGIN)

    async def execute(self, line: str) -> bool:
        """Run one input line; False when it asks to quit."""
        action = console.parse_command(line, self.rooms.current, self.rooms.joined)
        if isinstance(action, Quit):
            return False
        if isinstance(action, Switch):
            self.rooms.switch(action.room)
            self.on_change()
        elif isinstance(action, Notice):
            self.tell(action)
        elif isinstance(action, Request):
            await self.request(action.frame)
        return True

    async def settle(self, timeout: float) -> None:
        """Wait until every request sent so far has its answer."""
        replies = [reply for _, reply in self._pending.values()]
        if not replies:
            return
        waiting = asyncio.wait(replies, timeout=timeout)
        _, late = await self.until_closed(waiting)
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


# ---------------------------------------------------------------- the two input loops


class StdinLines:
    """Lines of stdin, read by a thread and handed to the event loop.

    A thread, because stdin may be a regular file, which event loops cannot watch;
    ``os.read`` rather than ``sys.stdin``, so exiting never waits for a buffer lock the
    thread holds while it blocks; a semaphore, so a huge input is not read ahead
    without bound.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ahead: int = 64) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._slots = threading.Semaphore(ahead)
        threading.Thread(target=self._read, daemon=True, name="stdin").start()

    async def get(self) -> str | None:
        """The next line without its line ending; None at the end."""
        line = await self._queue.get()
        self._slots.release()
        return line

    def _put(self, item: str | None) -> None:
        self._slots.acquire()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := os.read(sys.stdin.fileno(), 65536):
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    self._put(line.decode("utf-8", errors="replace").removesuffix("\r"))
            if buffer:
                self._put(buffer.decode("utf-8", errors="replace").removesuffix("\r"))
            self._put(None)
        except (OSError, RuntimeError):
            pass  # stdin broke, or the event loop is gone because the client is exiting


async def pipe_loop(session: Session) -> None:
    """Run stdin lines until the end or ``/quit``."""
    lines = StdinLines(asyncio.get_running_loop())
    while (line := await session.until_closed(lines.get())) is not None:
        if not await session.execute(line):
            break


async def terminal_loop(session: Session) -> None:
    """A prompt showing the current room; incoming lines print above it."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.patch_stdout import patch_stdout

    keys = KeyBindings()

    @keys.add("c-c")
    def _clear_line(event: KeyPressEvent) -> None:
        """Ctrl-C drops the line being typed; Ctrl-D or /quit exits."""
        event.current_buffer.reset()

    prompt: PromptSession[str] = PromptSession(erase_when_done=True, key_bindings=keys)

    def message() -> str:
        return f"#{session.rooms.current}> " if session.rooms.current else "> "

    def stop_if_closed() -> None:
        if session.closed.is_set() and prompt.app.is_running:
            prompt.app.exit(exception=ConnectionClosed(session.close_reason))

    session.on_change = prompt.app.invalidate
    session.on_close = stop_if_closed
    with patch_stdout():
        while True:
            try:
                line = await prompt.prompt_async(message, pre_run=stop_if_closed)
            except EOFError:
                break
            if not await session.execute(line):
                break


async def run(args: argparse.Namespace, password: str) -> int:
    reader, writer = await open_tls(args.host, args.port, args.cafile)
    session = Session(reader, writer, args.json)
    try:
        await session.login(args.user, password)
        for line in console.split_argv(args.command):
            if not await session.execute(line):
                break
        else:
            if sys.stdin.isatty() and sys.stdout.isatty():
                await terminal_loop(session)
            else:
                await pipe_loop(session)
        await session.settle(REPLY_TIMEOUT)
        await session.logout()
        return 0
    finally:
        await session.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        password = read_password(args)
        return asyncio.run(run(args, password))
    except ClientError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.status
    except Exception as exc:  # a bug: still one line, never a traceback
        print(f"{PROG}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end the line that shows ^C
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
