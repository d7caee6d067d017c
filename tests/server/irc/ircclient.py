"""A small blocking IRC test client over TLS: raw lines in and out, parsed for matching."""

import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from securechat.server.irc.parse import Message, parse


class IrcClient:
    """One TLS connection speaking raw IRC lines (used by one thread at a time)."""

    def __init__(
        self, address: tuple[str, int], cafile: Path, *, timeout: float = 10.0,
        cert: Path | None = None,
    ) -> None:  # fmt: skip
        context = ssl.create_default_context(cafile=str(cafile))
        if cert is not None:
            context.load_cert_chain(str(cert))
        raw = socket.create_connection(address, timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.timeout = timeout
        self._buffer = b""
        self.backlog: deque[str] = deque()
        self.seen: list[str] = []  # every line read, in order

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_line(self, deadline: float) -> str:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no line within the timeout; seen:\n" + "\n".join(self.seen))
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._buffer += data
        raw, self._buffer = self._buffer.split(b"\n", 1)
        assert raw.endswith(b"\r"), raw
        line = raw[:-1].decode()
        self.seen.append(line)
        return line

    def recv(self, timeout: float | None = None) -> str:
        if self.backlog:
            return self.backlog.popleft()
        return self._read_line(time.monotonic() + (timeout or self.timeout))

    def wait_for(self, match: Callable[[Message], bool], timeout: float | None = None) -> Message:
        """The first line that matches (parsed); lines read past are kept."""
        for index, line in enumerate(self.backlog):
            message = parse(line.encode())
            if message is not None and match(message):
                del self.backlog[index]
                return message
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            line = self._read_line(deadline)
            message = parse(line.encode())
            if message is not None and match(message):
                return message
            self.backlog.append(line)

    def expect(self, command: str, *params: str, timeout: float | None = None) -> Message:
        """The next line with ``command`` whose parameters start with ``params``."""
        return self.wait_for(
            lambda m: m.command == command and m.params[: len(params)] == list(params), timeout
        )

    def lines_until(self, command: str, *params: str) -> list[Message]:
        """Every line up to and including the next ``command`` line (in order)."""
        got: list[Message] = []

        def match(message: Message) -> bool:
            got.append(message)
            return message.command == command and message.params[: len(params)] == list(params)

        deadline = time.monotonic() + self.timeout
        while self.backlog:
            message = parse(self.backlog.popleft().encode())
            if message is not None and match(message):
                return got
        while True:
            message = parse(self._read_line(deadline).encode())
            if message is not None and match(message):
                return got

    def wait_closed(self, timeout: float | None = None) -> list[str]:
        """Read until the server closes; the lines that came before."""
        lines = list(self.backlog)
        self.backlog.clear()
        deadline = time.monotonic() + (timeout or self.timeout)
        with contextlib.suppress(ConnectionError, ssl.SSLError, ConnectionResetError):
            while True:
                lines.append(self._read_line(deadline))
        self.close()
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
