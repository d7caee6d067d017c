"""The HTTP half of the web edge: the web client's files, and the way to ``/ws``.

Why this shape: a browser reaches the chat on the same TLS port as every other client
(ALPN ``http/1.1`` says it is one; see :mod:`securechat.server.web`), loads the page,
then opens a WebSocket to ``/ws``. :class:`WebEdge` is that connection's protocol,
sans-I/O like the rest: ``h11`` parses requests and frames responses, the connection's
I/O thread feeds it the bytes it reads and sends what it answers, and after a good
upgrade it hands over to :class:`~securechat.server.web.websocket.WebSocketCodec`.

What a request can reach is fixed at start-up: :class:`StaticFiles` lists the files of
the web client's folder once and keeps them in a dict keyed by URL path. A request's
path is only ever looked up there, never joined to a filesystem path, so ``..``,
encoded slashes or anything else not in the dict is simply a 404. Every response
carries the same security headers (a CSP without inline script or style, no framing,
no sniffing, no referrer). Files are sent with their content hash as ``ETag`` and
``Cache-Control: no-cache``: the browser revalidates (a 304 costs a few bytes) and
never runs an old script with a new page. The WebSocket upgrade is refused (403) unless
``Origin`` is this server's own origin or one listed with ``--web-origin``, so another
site's page cannot open a chat connection with its visitor's browser.
"""

import contextlib
import hashlib
import importlib.resources
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from urllib.parse import urlsplit

import h11
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection
from wsproto.handshake import H11Handshake

from securechat.exceptions import ProtocolError
from securechat.server.web.websocket import WebSocketCodec

__all__ = [
    "SECURITY_HEADERS",
    "WS_PATH",
    "StaticFile",
    "StaticFiles",
    "WebEdge",
    "WebSite",
    "normalize_origin",
]

WS_PATH = b"/ws"
MAX_REQUEST_HEAD = 16 * 1024  # request line and headers; more is 431
OUT_BUDGET = 256 * 1024  # answered bytes waiting to be sent before more requests are read
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy",
     b"default-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]  # fmt: skip
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "mjs": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
    "map": "application/json",
    "webmanifest": "application/manifest+json",
    "txt": "text/plain; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
    "webp": "image/webp",
    "woff2": "font/woff2",
}
# What a listed file may be called: plain names only (no dot files, no spaces, no
# escapes), so every file has exactly one URL and it needs no decoding.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
REASONS = {
    304: "Not Modified", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 413: "Content Too Large", 426: "Upgrade Required",
    431: "Request Header Fields Too Large", 503: "Service Unavailable",
}  # fmt: skip


@dataclass(frozen=True)
class StaticFile:
    """One file of the web client, read once at start-up."""

    body: bytes
    content_type: bytes
    etag: bytes  # a strong validator: the quoted start of the content's SHA-256

    @classmethod
    def of(cls, name: str, body: bytes) -> "StaticFile":
        extension = name.rpartition(".")[2].lower()
        content_type = CONTENT_TYPES.get(extension, "application/octet-stream")
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, content_type.encode(), f'"{digest}"'.encode())


class StaticFiles:
    """The allow-list: URL path (bytes, as it comes in the request) -> file.

    ``/`` is ``/index.html`` when there is one.
    """

    def __init__(self, files: dict[bytes, StaticFile]) -> None:
        self.files = dict(files)
        if b"/index.html" in self.files:
            self.files[b"/"] = self.files[b"/index.html"]

    @classmethod
    def from_folder(cls, folder: Traversable) -> "StaticFiles":
        """Every file under ``folder`` with a plain name (subfolders too); read now."""
        files: dict[bytes, StaticFile] = {}

        def walk(node: Traversable, prefix: str) -> None:
            for entry in sorted(node.iterdir(), key=lambda e: e.name):
                if not FILE_NAME.fullmatch(entry.name) or entry.name == "__pycache__":
                    continue
                path = f"{prefix}/{entry.name}"
                if entry.is_dir():
                    walk(entry, path)
                elif entry.is_file():
                    files[path.encode()] = StaticFile.of(entry.name, entry.read_bytes())

        if folder.is_dir():
            walk(folder, "")
        return cls(files)

    @classmethod
    def packaged(cls) -> "StaticFiles":
        """The web client shipped in the package (``securechat/server/web/static``)."""
        return cls.from_folder(importlib.resources.files("securechat.server.web") / "static")

    def get(self, path: bytes) -> StaticFile | None:
        return self.files.get(path)


def normalize_origin(url: str) -> str:
    """``scheme://host[:port]`` in lower case, as a browser sends it in ``Origin``.

    Raises :exc:`ValueError` for anything that is not an origin (a path, a query, no
    host), so a mistyped ``--web-origin`` is refused at start-up rather than never
    matching.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"{url!r} is not an origin (https://host[:port])")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{url!r} is not an origin: no path, query or user part")
    return f"{parts.scheme}://{parts.netloc}".lower()


class WebSite:
    """What the web edge serves: the static files and the origins allowed on ``/ws``.

    Built once at start-up (the transport's ``Server.web``); :meth:`open` makes the
    protocol object of each connection that chose HTTP.
    """

    def __init__(self, files: StaticFiles | None = None, origins: Iterable[str] = ()) -> None:
        self.files = files if files is not None else StaticFiles.packaged()
        self.origins = frozenset(normalize_origin(origin) for origin in origins)

    def origin_allowed(self, origin: bytes | None, host: bytes | None) -> bool:
        """``Origin`` is ours (``https://`` + the ``Host`` asked for) or a listed one."""
        if origin is None:
            return False
        seen = origin.decode("latin-1").lower()
        if seen in self.origins:
            return True
        return host is not None and seen == "https://" + host.decode("latin-1").lower()

    def open(self, *, frame_limit: int, busy: bool = False) -> "WebEdge":
        return WebEdge(self, frame_limit=frame_limit, busy=busy)


class WebEdge:
    """One HTTP/1.1 connection: requests in, responses out, until it upgrades to /ws.

    The connection (:class:`~securechat.server.connection.Connection`) drives it:
    :meth:`receive` with what it read, :meth:`wire` for what to send, :meth:`close`
    before it closes. :attr:`chatting` turns true once ``/ws`` is upgraded; from then on
    the calls go to the WebSocket codec and the chat session begins. ``busy`` (the
    server is over a connection limit): files get 503; ``/ws`` is upgraded so that the
    session can say ``server_busy`` as it does to a line client.
    """

    def __init__(self, site: WebSite, *, frame_limit: int, busy: bool = False) -> None:
        self._site = site
        self._frame_limit = frame_limit
        self._busy = busy
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        self._ws: WebSocketCodec | None = None
        self._out = bytearray()
        self._stalled = False
        self._head = False  # the request being answered is a HEAD: no body
        self._finished = False
        self._heard = False
        self._partial = False

    # -- what the connection reads (the WebSocket codec's once upgraded)

    @property
    def chatting(self) -> bool:
        """The WebSocket is open: frames flow, the session has begun."""
        return self._ws is not None

    @property
    def finished(self) -> bool:
        """Nothing more will be said after what :meth:`wire` gives (close then)."""
        return self._ws.finished if self._ws is not None else self._finished

    @property
    def backlogged(self) -> bool:
        """Requests wait for the answers before them to be sent (read no more)."""
        return self._ws is None and self._stalled

    @property
    def heard(self) -> bool:
        """The last :meth:`receive` completed a request (or message)."""
        return self._ws.heard if self._ws is not None else self._heard

    @property
    def partial(self) -> bool:
        """Part of a request (or message) is held."""
        return self._ws.partial if self._ws is not None else self._partial

    @property
    def plain(self) -> bool:
        """Upgraded, and :meth:`wire` would give only its frames, as messages."""
        return self._ws is not None and not self._out and self._ws.plain

    def receive(self, data: bytes) -> list[bytes | ProtocolError]:
        """Feed bytes read from the client (``b""``: go on with requests held back).

        Answers requests; returns the frame lines for the session once upgraded.
        """
        if self._ws is not None:
            return self._ws.receive(data)
        http = self._http
        self._heard = False
        if data and not self._finished:
            http.receive_data(data)
        self._stalled = False
        while not self._finished:
            if len(self._out) >= OUT_BUDGET:
                self._stalled = True
                break
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                self._refuse(exc.error_status_hint)
                break
            if event is h11.NEED_DATA:
                break
            if event is h11.PAUSED:
                if http.our_state is h11.DONE and http.their_state is h11.DONE:
                    http.start_next_cycle()  # keep-alive: the next request
                    continue
                break
            if isinstance(event, h11.Request):
                self._heard = True
                self._answer(event)
                if self._ws is not None:  # upgraded: the rest is WebSocket
                    return self._ws.receive(http.trailing_data[0])
            elif isinstance(event, h11.ConnectionClosed):
                self._finished = True
            if http.our_state is h11.MUST_CLOSE:
                self._finished = True
        self._partial = not self._finished and bool(http.trailing_data[0])
        return []

    def wire(self, frames: bytes) -> bytes:
        """Bytes to send: answers, or (upgraded) our frames and ``frames`` as messages.

        Frames that come before the upgrade (e.g. ``shutting_down``) have no one to go
        to and are dropped.
        """
        if self._ws is not None and not self._out:
            return self._ws.wire(frames)
        out, self._out = self._out, bytearray()
        if self._ws is not None:  # (the 101 response first)
            out += self._ws.wire(frames)
        return bytes(out)

    def close(self) -> bytes:
        """What to send last: a WebSocket close frame, or nothing for plain HTTP."""
        if self._ws is not None:
            return self.wire(b"") + self._ws.close()
        self._finished = True
        return self.wire(b"")

    # -- answering requests

    def _answer(self, request: h11.Request) -> None:
        path = request.target.partition(b"?")[0]
        method = request.method
        self._head = method == b"HEAD"
        if path == WS_PATH and method == b"GET":
            self._upgrade(request)
        elif self._busy:
            self._reply(503, b"the server is busy; try again later\n", close=True,
                        extra=[(b"retry-after", b"10")])  # fmt: skip
        elif method not in (b"GET", b"HEAD"):
            # (a body may follow; closing spares reading it)
            self._reply(405, b"only GET and HEAD\n", close=True, extra=[(b"allow", b"GET, HEAD")])
        elif (file := self._site.files.get(path)) is None:
            self._reply(404, b"not found\n")
        else:
            self._send_file(request, file)

    def _send_file(self, request: h11.Request, file: StaticFile) -> None:
        headers = [
            (b"content-type", file.content_type),
            (b"etag", file.etag),
            (b"cache-control", b"no-cache"),
            *SECURITY_HEADERS,
        ]
        if any(name == b"if-none-match" and _etag_matches(value, file.etag)
               for name, value in request.headers):  # fmt: skip
            self._out += self._http.send(h11.Response(status_code=304, headers=headers)) or b""
            self._out += self._http.send(h11.EndOfMessage()) or b""
            return
        headers.append((b"content-length", str(len(file.body)).encode()))
        self._out += self._http.send(h11.Response(status_code=200, headers=headers)) or b""
        if not self._head:
            self._out += self._http.send(h11.Data(data=file.body)) or b""
        self._out += self._http.send(h11.EndOfMessage()) or b""

    def _upgrade(self, request: h11.Request) -> None:
        """``GET /ws``: check the origin, then let wsproto check and accept the upgrade."""
        host = origin = None
        for name, value in request.headers:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
        if not self._site.origin_allowed(origin, host):
            self._reply(403, b"this origin may not open a chat connection\n", close=True)
            return
        handshake = H11Handshake(ConnectionType.SERVER)
        status, extra = 400, []
        try:
            handshake.initiate_upgrade_connection(request.headers, request.target)
            data = handshake.send(AcceptConnection())
        except Exception as exc:  # a bad upgrade request, whichever layer noticed
            hint = getattr(exc, "event_hint", None)
            if isinstance(hint, RejectConnection):
                status, extra = hint.status_code, list(hint.headers)
            self._reply(status, b"not a valid WebSocket upgrade\n", close=True, extra=extra)
            return
        assert handshake.connection is not None
        self._out += data
        self._ws = WebSocketCodec(handshake.connection, self._frame_limit)

    def _reply(
        self,
        status: int,
        body: bytes,
        *,
        close: bool = False,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *SECURITY_HEADERS,
            *(extra or []),
        ]
        if close:
            headers.append((b"connection", b"close"))
        reason = REASONS.get(status, "Error").encode()
        self._out += self._http.send(h11.Response(status_code=status, headers=headers,
                                                  reason=reason)) or b""  # fmt: skip
        if not self._head:
            self._out += self._http.send(h11.Data(data=body)) or b""
        self._out += self._http.send(h11.EndOfMessage()) or b""

    def _refuse(self, status: int) -> None:
        """A request h11 could not parse: answer ``status`` if we still can, then close."""
        with contextlib.suppress(h11.LocalProtocolError):  # (then just close)
            self._reply(status, b"bad request\n", close=True)
        self._finished = True


def _etag_matches(header: bytes, etag: bytes) -> bool:
    """``If-None-Match`` names ``etag`` (or is ``*``); weak or strong, as RFC 9110 says."""
    for candidate in header.split(b","):
        candidate = candidate.strip()
        if candidate == b"*" or candidate.removeprefix(b"W/") == etag:
            return True
    return False
