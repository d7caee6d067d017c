"""Fixtures of the web edge: a server with it, HTTPS and WebSocket test clients.

Browsers offer ALPN ``http/1.1``; these clients do the same (``web_context``), which
is what puts a connection on the web edge rather than the line protocol.
"""

import contextlib
import http.client
import json
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from securechat.admin.certs import CertPaths
from securechat.server.cli import Limits, Server
from securechat.server.web import StaticFiles, WebSite
from tests.chatclient import ChatClient, Frame, FrameClient
from tests.conftest import USERS, run_server

PAGE = b"<!doctype html>\n<title>securechat</title>\n<script src=/app.js type=module></script>\n"
SCRIPT = b"export const hello = 'securechat';\n"
STYLE = b"body { margin: 0 }\n"


@pytest.fixture(scope="session")
def web_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A web client's folder with known contents (the real one is written elsewhere)."""
    folder = tmp_path_factory.mktemp("static")
    (folder / "index.html").write_bytes(PAGE)
    (folder / "app.js").write_bytes(SCRIPT)
    (folder / "style.css").write_bytes(STYLE)
    (folder / "icons").mkdir()
    (folder / "icons" / "chat.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    (folder / ".hidden").write_bytes(b"secret")
    return folder


@pytest.fixture
def web_server(
    request: pytest.FixtureRequest, certs: CertPaths, passwd_path: Path, web_files: Path
) -> Iterator[Server]:
    """A server with the web edge (and the limits of a ``limits`` mark)."""
    marker = request.node.get_closest_marker("limits")
    limits = Limits(**marker.kwargs) if marker else Limits()
    site = WebSite(StaticFiles.from_folder(web_files), origins=["https://chat.example"])
    with run_server(certs, passwd_path, limits, web=site) as server:
        yield server


def web_context(
    certs: CertPaths, alpn: list[str] | None = None, *, tls12: bool = False
) -> ssl.SSLContext:
    """A client context trusting the test CA and offering ``alpn`` (default http/1.1).

    ``tls12``: at most TLS 1.2, for the ``websockets`` sync client. It reads in a thread
    of its own while the caller's thread writes, on one SSL object; under TLS 1.3 the
    reader may be handling the server's session tickets (sent after the handshake) just
    as the first request is written, which OpenSSL does not allow (seen here as a lost
    request or a bad record MAC). TLS 1.2 sends nothing after its handshake.
    ``test_websocket_over_tls13`` covers TLS 1.3 with a one-thread client.
    """
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.set_alpn_protocols(["http/1.1"] if alpn is None else alpn)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def https(server: Server, certs: CertPaths, alpn: list[str] | None = None):
    """An ``http.client`` connection to ``server`` over TLS, offering ALPN http/1.1."""
    return http.client.HTTPSConnection(
        "localhost", server.address[1], context=web_context(certs, alpn), timeout=10
    )


def own_origin(server: Server) -> str:
    return f"https://localhost:{server.address[1]}"


class WsClient(FrameClient):
    """A WebSocket chat client (the ``websockets`` library's sync client) with the
    helpers of :class:`~tests.chatclient.ChatClient`: one frame per text message."""

    def __init__(
        self,
        server: Server,
        certs: CertPaths,
        *,
        origin: str | None = None,
        rcvbuf: int | None = None,
        max_queue: int | tuple[int, int] = 16,
        timeout: float = 10.0,
    ) -> None:
        sock = socket.create_connection(server.address, timeout=timeout)
        if rcvbuf is not None:
            sock.close()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect(server.address)
        self._exit = contextlib.ExitStack()
        self.ws: ClientConnection = self._exit.enter_context(connect(
            f"wss://localhost:{server.address[1]}/ws",
            sock=sock,
            ssl=web_context(certs, tls12=True),
            origin=origin or own_origin(server),  # type: ignore[arg-type]
            max_queue=max_queue,
            open_timeout=timeout,
            close_timeout=2,
            compression=None,
        ))  # fmt: skip
        self.timeout = timeout
        self.backlog: deque[Frame] = deque()

    def send(self, **frame: Any) -> None:
        self.ws.send(json.dumps(frame))

    def _read_frame(self, deadline: float) -> Frame:
        message = self.ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        assert isinstance(message, str), "every server frame is a text message"
        return json.loads(message)

    def login(self, user: str, password: str | None = None) -> Frame:
        return super().login(user, password or USERS[user])

    def wait_closed(self, timeout: float | None = None) -> list[Frame]:
        """Read until the server closes; the frames that came before (then ws.close_code)."""
        from websockets.exceptions import ConnectionClosed

        frames = list(self.backlog)
        self.backlog.clear()
        deadline = time.monotonic() + (timeout or self.timeout)
        with contextlib.suppress(ConnectionClosed):
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the server did not close the connection")
                frames.append(json.loads(self.ws.recv(timeout=remaining)))
        return frames

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._exit.close()


@pytest.fixture
def line_connect(web_server: Server, certs: CertPaths) -> Iterator[Callable[..., ChatClient]]:
    """Open line-protocol clients to ``web_server`` (ALPN: none); with ``user``, log in."""
    clients: list[ChatClient] = []

    def factory(user: str | None = None) -> ChatClient:
        client = ChatClient(web_server.address, certs.ca_cert)
        clients.append(client)
        if user is not None:
            reply = client.login(user, USERS.get(user) or f"{user}-pw")
            assert reply["type"] == "login_ok", reply
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def ws_connect(web_server: Server, certs: CertPaths) -> Iterator[Callable[..., WsClient]]:
    """Open WebSocket clients to ``web_server``; with ``user``, also log in."""
    clients: list[WsClient] = []

    def factory(user: str | None = None, **options: Any) -> WsClient:
        client = WsClient(web_server, certs, **options)
        clients.append(client)
        if user is not None:
            reply = client.login(user, USERS.get(user) or f"{user}-pw")
            assert reply["type"] == "login_ok", reply
        return client

    yield factory
    for client in clients:
        client.close()
