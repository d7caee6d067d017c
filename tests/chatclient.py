"""A small blocking test client: one TLS socket, used by one thread at a time."""

import contextlib
import json
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

Frame = dict[str, Any]


class FrameClient:
    """What every test client of the protocol shares, whatever carries its frames:
    a backlog of frames read past, and waiting for the one that matches.

    A subclass sets ``timeout`` and ``backlog`` and reads one frame with
    :meth:`_read_frame` (by a deadline) and sends one with :meth:`send`.
    """

    timeout: float
    backlog: deque[Frame]
    last_ref = ""

    def send(self, **frame: Any) -> None:
        raise NotImplementedError

    def _read_frame(self, deadline: float) -> Frame:
        raise NotImplementedError

    def recv(self, timeout: float | None = None) -> Frame:
        """The next frame (from the backlog first)."""
        if self.backlog:
            return self.backlog.popleft()
        return self._read_frame(time.monotonic() + (timeout or self.timeout))

    def wait_for(self, match: Callable[[Frame], bool], timeout: float | None = None) -> Frame:
        """The first frame that matches; frames read past are kept in the backlog."""
        for index, frame in enumerate(self.backlog):
            if match(frame):
                del self.backlog[index]
                return frame
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            frame = self._read_frame(deadline)
            if match(frame):
                return frame
            self.backlog.append(frame)

    def expect(self, type_: str, timeout: float | None = None, **fields: Any) -> Frame:
        """Wait for a frame of ``type_`` whose fields include ``fields``."""
        return self.wait_for(
            lambda f: f.get("type") == type_ and all(f.get(k) == v for k, v in fields.items()),
            timeout,
        )

    def request(self, **frame: Any) -> Frame:
        """Send a frame with a fresh ref and return the frame that answers it."""
        ref = frame.setdefault("ref", f"r{time.monotonic_ns()}")
        self.last_ref = ref
        self.send(**frame)
        return self.wait_for(lambda f: f.get("ref") == ref)

    def login(self, user: str, password: str) -> Frame:
        self.expect("welcome")
        return self.request(type="login", user=user, password=password)


class ChatClient(FrameClient):
    """The line protocol over one TLS socket."""

    def __init__(
        self,
        address: tuple[str, int],
        cafile: Path,
        *,
        timeout: float = 10.0,
        rcvbuf: int | None = None,
        source: str | None = None,
        cert: Path | None = None,
    ) -> None:
        """``source``: the local address to connect from; ``cert``: a client certificate."""
        context = ssl.create_default_context(cafile=str(cafile))
        if cert is not None:
            context.load_cert_chain(str(cert))
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the TCP window stays small
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            raw.bind((source, 0))
        raw.settimeout(timeout)
        raw.connect(address)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.timeout = timeout
        self._buffer = b""
        self.backlog: deque[Frame] = deque()
        self.closed = False

    def send(self, **frame: Any) -> None:
        self.send_raw(json.dumps(frame).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_frame(self, deadline: float) -> Frame:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame within the timeout")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                raise ConnectionError("server closed the connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def wait_closed(self, timeout: float | None = None) -> list[Frame]:
        """Read until the server closes; return what came before."""
        frames = list(self.backlog)
        self.backlog.clear()
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                frames.append(self._read_frame(deadline))
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                raise
        self.close()
        return frames

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
