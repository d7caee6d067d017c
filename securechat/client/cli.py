"""``securechat-client``: the terminal client, a thin I/O layer over :mod:`.console`.

The connection, and reconnecting when it is lost, live in :mod:`securechat.client.connection`;
this module is the command line and the two input loops. Why two: on a terminal the
input line is a prompt_toolkit prompt that incoming lines print above (``patch_stdout``),
so they never clobber what is being typed; with piped input the client is a script, so
it must finish what it was asked to do (every request answered) before it logs out.

A lost connection is not the end: the client reconnects with backoff (a status line
says so; the prompt shows ``(offline)``), shows what was missed, and sends what was
typed meanwhile. ``--no-reconnect`` restores "exit 1 when the server goes away".

Errors are one line on stderr. Exit status: 0 done, 1 connection or TLS failure (or
the server went away and reconnecting was off or gave up), 2 usage, 3 login refused,
4 (piped input) a write the server could not store was not sent again, 130 interrupted.
"""

import argparse
import asyncio
import getpass
import math
import os
import sys
import threading
from collections.abc import Sequence

from securechat.client import console
from securechat.client.connection import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_LOGIN,
    EXIT_NOT_STORED,
    EXIT_USAGE,
    Chat,
    ClientError,
    Options,
)
from securechat.protocol import DEFAULT_PORT
from securechat.protocol.names import is_valid_name

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_LOGIN",
    "EXIT_NOT_STORED",
    "EXIT_USAGE",
    "main",
]

PROG = "securechat-client"
PASSWORD_ENV = "SECURECHAT_PASSWORD"  # noqa: S105 - a variable name, not a password
PIPE_RECONNECT_FOR = 60.0  # a script should not hang for ever on a server that is gone


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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


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
    parser.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help="exit (status 1) when the connection is lost, instead of reconnecting",
    )
    parser.add_argument(
        "--reconnect-for",
        type=_seconds,
        metavar="SECONDS",
        help="give up (status 1) after trying to reconnect this long (default: no limit on "
        f"a terminal, {PIPE_RECONNECT_FOR:g} s with piped input; 'inf' for no limit)",
    )
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


async def pipe_loop(chat: Chat) -> None:
    """Run stdin lines until the end or ``/quit``; a lost connection only queues them."""
    lines = StdinLines(asyncio.get_running_loop())
    while (line := await chat.guard(lines.get())) is not None:
        if not await chat.guard(chat.execute(line)):
            break


async def terminal_loop(chat: Chat) -> None:
    """A prompt showing the current room (and ``(offline)``); incoming lines print above it."""
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
        offline = "" if chat.online else "(offline) "
        line = f"{offline}#{chat.rooms.current}> " if chat.rooms.current else f"{offline}> "
        # Files moving: a progress line each above the prompt (bytes, rate, time left).
        moving = [console.format_progress(*transfer) for transfer in chat.transfers.snapshot()]
        return "\n".join([*moving, line])

    def stop_if_failed() -> None:
        if chat.failure.done() and prompt.app.is_running:
            prompt.app.exit(exception=chat.failure.exception())

    chat.on_change = prompt.app.invalidate
    chat.on_failure = lambda exc: stop_if_failed()
    with patch_stdout():
        while True:
            try:
                line = await prompt.prompt_async(message, pre_run=stop_if_failed)
            except EOFError:
                break
            if not await chat.guard(chat.execute(line)):
                break


async def run(args: argparse.Namespace, password: str) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    reconnect_for = args.reconnect_for
    if reconnect_for is None:
        reconnect_for = math.inf if interactive else PIPE_RECONNECT_FOR
    options = Options(
        host=args.host,
        port=args.port,
        cafile=args.cafile,
        user=args.user,
        json=args.json,
        reconnect=args.reconnect,
        reconnect_for=reconnect_for,
        mark_read=interactive,
        background_transfers=interactive,
    )
    chat = Chat(options, password)
    try:
        await chat.start()
        for line in console.split_argv(args.command):
            if not await chat.guard(chat.execute(line)):
                break
        else:
            await (terminal_loop(chat) if interactive else pipe_loop(chat))
        # A user at a terminal who quits means it; a script wants its lines sent.
        await chat.finish(wait_offline=not interactive)
        if chat.failed_transfers and not interactive:  # (each said why on its own line)
            count = chat.failed_transfers
            raise ClientError(f"{count} file transfer{'s' if count > 1 else ''} failed")
        if chat.unsent and not interactive:  # a script must know its lines were lost
            count = len(chat.unsent)
            raise ClientError(
                f"{count} write{'s' if count > 1 else ''} not stored by the server "
                "(it could not write to its disk) and not sent again",
                EXIT_NOT_STORED,
            )
        return 0
    finally:
        await chat.close()


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
