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
import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection
from wsproto.handshake import H11Handshake

from securechat.exceptions import FileRefused, ProtocolError
from securechat.server.files import Upload
from securechat.server.web.files import (
    API_PATH,
    LOG_IN_FIRST,
    READ_CHUNK,
    Answer,
    Download,
    Handoff,
    UploadAsk,
    authorize_download,
    authorize_upload,
    bearer,
    download_head,
    etag_matches,
    finish_upload,
    link_of,
    parse_upload,
)
from securechat.server.web.monitoring import (
    DEFAULT_METRICS_ALLOW,
    MONITORING_PATHS,
    Monitor,
    monitoring_answer,
    parse_networks,
)
from securechat.server.web.websocket import WebSocketCodec

if TYPE_CHECKING:
    from securechat.server.hub import Hub

log = logging.getLogger("securechat.web")

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
TURN_BUDGET = 1024 * 1024  # bytes of a download sent in one turn of the I/O thread at most
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy",
     b"default-src 'self'; connect-src 'self'; img-src 'self' blob:; frame-ancestors 'none'; "
     b"base-uri 'none'"),
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
    200: "OK", 201: "Created", 206: "Partial Content", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 410: "Gone", 413: "Content Too Large", 416: "Range Not Satisfiable",
    426: "Upgrade Required", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable", 507: "Insufficient Storage",
}  # fmt: skip
Submit = Callable[..., None]  # runs a job in a worker thread (the transport's WorkerPool)


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
    protocol object of each connection that chose HTTP. ``metrics_allow``: the addresses
    and networks that may read ``/metrics`` without a token (``--metrics-allow``; see
    :mod:`.monitoring`).
    """

    def __init__(
        self,
        files: StaticFiles | None = None,
        origins: Iterable[str] = (),
        metrics_allow: Iterable[str] = DEFAULT_METRICS_ALLOW,
    ) -> None:
        self.files = files if files is not None else StaticFiles.packaged()
        self.origins = frozenset(normalize_origin(origin) for origin in origins)
        self.metrics_allow = parse_networks(metrics_allow)

    def origin_allowed(self, origin: bytes | None, host: bytes | None) -> bool:
        """``Origin`` is ours (``https://`` + the ``Host`` asked for) or a listed one."""
        if origin is None:
            return False
        seen = origin.decode("latin-1").lower()
        if seen in self.origins:
            return True
        return host is not None and seen == "https://" + host.decode("latin-1").lower()

    def open(
        self,
        *,
        frame_limit: int,
        busy: bool = False,
        hub: "Hub | None" = None,
        submit: Submit | None = None,
        wake: Callable[[], None] | None = None,
        address: str = "",
        monitor: Monitor | None = None,
    ) -> "WebEdge":
        """The edge of one connection; with ``hub`` (whose ``files`` is set), ``submit``
        and ``wake`` (the connection's), it serves the file API too; with ``monitor``
        (the server's) and ``submit``, the monitoring paths, for the peer ``address``."""
        return WebEdge(self, frame_limit=frame_limit, busy=busy, hub=hub, submit=submit,
                       wake=wake, address=address, monitor=monitor)  # fmt: skip


class WebEdge:
    """One HTTP/1.1 connection: requests in, responses out, until it upgrades to /ws.

    The connection (:class:`~securechat.server.connection.Connection`) drives it:
    :meth:`receive` with what it read, :meth:`wire` for what to send, :meth:`close`
    before it closes. :attr:`chatting` turns true once ``/ws`` is upgraded; from then on
    the calls go to the WebSocket codec and the chat session begins. ``busy`` (the
    server is over a connection limit): files get 503; ``/ws`` is upgraded so that the
    session can say ``server_busy`` as it does to a line client.

    The file API (:mod:`.files`): an upload's body is written to its temporary file as
    it is read (:class:`~securechat.server.files.Upload`, at most a read's worth at a
    time in the I/O thread); what may wait on the database or the disk (the token, the
    fsync, the commit) runs in a worker through ``submit``, the edge reading nothing
    meanwhile (:attr:`backlogged`, :attr:`resume_at` infinite: the worker's ``wake``
    says when); a download is read from its file a chunk at a time as :meth:`wire` is
    asked for more, that is as the socket takes it. A transfer that moves, and work
    under way for one, count as heard: the keep-alive limit waits while they go on.
    """

    def __init__(
        self,
        site: WebSite,
        *,
        frame_limit: int,
        busy: bool = False,
        hub: "Hub | None" = None,
        submit: Submit | None = None,
        wake: Callable[[], None] | None = None,
        address: str = "",
        monitor: Monitor | None = None,
    ) -> None:
        self._site = site
        self._frame_limit = frame_limit
        self._busy = busy
        self._address = address  # the peer's, for /metrics
        self._monitor = monitor if submit is not None else None
        # The file API, when the hub has a file store and there are workers.
        self._hub = hub if hub is not None and hub.files is not None and submit else None
        self._submit = submit
        self._wake = wake or (lambda: None)
        self._waiting: Handoff | None = None  # a worker's result is awaited ...
        self._then: Callable[[Any], None] | None = None  # ... for this
        self._upload: Upload | None = None  # the upload whose body is being read
        self._ask: UploadAsk | None = None
        self._download: list[int] | None = None  # [fd, offset, bytes left] being sent
        self._moved = False  # a download moved since the last receive
        self._turn = TURN_BUDGET  # download bytes this turn may still read (see _pump)
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
    def kind(self) -> str:
        """``websocket`` once upgraded, ``http`` before (connections by kind)."""
        return "http" if self._ws is None else "websocket"

    @property
    def finished(self) -> bool:
        """Nothing more will be said after what :meth:`wire` gives (close then)."""
        return self._ws.finished if self._ws is not None else self._finished

    @property
    def backlogged(self) -> bool:
        """Requests wait for the answers before them to be sent, or for a worker, or a
        download is being sent (read no more)."""
        return self._ws is None and (
            self._stalled or self._waiting is not None or self._download is not None
        )

    @property
    def heard(self) -> bool:
        """The last :meth:`receive` completed a request (or message)."""
        return self._ws.heard if self._ws is not None else self._heard

    @property
    def partial(self) -> bool:
        """Part of a request (or message) is held."""
        return self._ws.partial if self._ws is not None else self._partial

    @property
    def resume_at(self) -> float:
        """Held requests go on once the answers before them are sent; not before a
        worker's wake-up while one works for this connection."""
        return math.inf if self._waiting is not None else 0.0

    shared_wire = True  # (a WebSocket's messages are the same bytes for every member)

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
        self._heard, self._moved = self._moved, False  # (a download that moved is heard)
        self._turn = TURN_BUDGET  # (the connection's turn: see _pump)
        if data and not self._finished:
            http.receive_data(data)
        self._stalled = False
        while not self._finished:
            if http.our_state is h11.MUST_CLOSE:
                self._finished = True
                break
            if self._waiting is not None:
                result = self._waiting.take()
                if result is None:
                    self._heard = True  # (work under way for a request: not idle)
                    break
                then, self._waiting, self._then = self._then, None, None
                assert then is not None
                then(result)
                self._heard = True
                continue
            if self._download is not None:
                break  # (wire sends it; the next requests wait)
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
            elif isinstance(event, h11.Data):
                if self._upload is not None:
                    self._heard = True
                    self._take_body(event.data)
            elif isinstance(event, h11.EndOfMessage):
                if self._upload is not None:
                    self._end_body()
            elif isinstance(event, h11.ConnectionClosed):
                self._finished = True
            if http.our_state is h11.MUST_CLOSE:
                self._finished = True
        busy = self._upload is not None or self._waiting is not None  # (a body is awaited)
        self._partial = not self._finished and not busy and bool(http.trailing_data[0])
        return []

    def wire(self, frames: list[bytes]) -> bytes:
        """Bytes to send: answers, or (upgraded) our frames and ``frames`` as messages.

        Frames that come before the upgrade (e.g. ``shutting_down``) have no one to go
        to and are dropped.
        """
        if self._ws is not None and not self._out:
            return self._ws.wire(frames)
        if self._download is not None and len(self._out) < OUT_BUDGET and self._turn > 0:
            self._pump()
        out, self._out = self._out, bytearray()
        if self._ws is not None:  # (the 101 response first)
            out += self._ws.wire(frames)
        return bytes(out)

    def close(self) -> bytes:
        """What to send last: a WebSocket close frame, or nothing for plain HTTP."""
        if self._ws is not None:
            return self.wire([]) + self._ws.close()
        self._finished = True
        self._download_done()  # (a download cut short: its response cannot end well)
        return self.wire([])

    def release(self) -> None:
        """The connection is gone: let go of the file transfers (idempotent).

        An upload not fully read is dropped (its temporary file too: nothing is posted);
        a worker still busy for this connection discards what it makes; an open download
        is closed.
        """
        if self._waiting is not None:
            _discard(self._waiting.abandon())
            self._waiting = self._then = None
        if self._upload is not None:
            self._upload.abort()
            self._upload = None
        self._download_done()

    # -- answering requests

    def _answer(self, request: h11.Request) -> None:
        path = request.target.partition(b"?")[0]
        method = request.method
        self._head = method == b"HEAD"
        if path == WS_PATH and method == b"GET":
            self._upgrade(request)
        elif path in MONITORING_PATHS:  # (before busy: a full server still says so)
            self._monitoring(request, path)
        elif self._busy:
            self._reply(503, b"the server is busy; try again later\n", close=True,
                        extra=[(b"retry-after", b"10")])  # fmt: skip
        elif path == API_PATH or path.startswith(API_PATH + b"/"):
            self._file_request(request, path)
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
        if any(name == b"if-none-match" and etag_matches(value, file.etag)
               for name, value in request.headers):  # fmt: skip
            self._out += self._http.send(h11.Response(status_code=304, headers=headers)) or b""
            self._out += self._http.send(h11.EndOfMessage()) or b""
            return
        headers.append((b"content-length", str(len(file.body)).encode()))
        self._out += self._http.send(h11.Response(status_code=200, headers=headers)) or b""
        if not self._head:
            self._out += self._http.send(h11.Data(data=file.body)) or b""
        self._out += self._http.send(h11.EndOfMessage()) or b""

    def _monitoring(self, request: h11.Request, path: bytes) -> None:
        """``/metrics``, ``/healthz``, ``/readyz`` (:mod:`.monitoring`): answered now, or
        by a worker when the answer reads the database or walks the connections."""
        answer = monitoring_answer(request, path, monitor=self._monitor, address=self._address,
                                   allow=self._site.metrics_allow)  # fmt: skip
        if isinstance(answer, Answer):
            self._send(answer)
        else:
            self._work(answer, then=self._send)

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
        if self._upload is not None:  # (e.g. a body that broke its chunked framing)
            self._upload.abort()
            self._upload = None
        with contextlib.suppress(h11.LocalProtocolError):  # (then just close)
            self._reply(status, b"bad request\n", close=True)
        self._finished = True

    # -- the file API (see .files)

    def _file_request(self, request: h11.Request, path: bytes) -> None:
        method = request.method
        if self._hub is None:  # (no file store: --no-web, or a tool without workers)
            self._reply(404, b"not found\n", close=method == b"POST")
        elif path == API_PATH:
            if method == b"POST":
                self._start_upload(request)
            else:
                self._reply(405, b"POST a file here\n", close=True,
                            extra=[(b"allow", b"POST")])  # fmt: skip
        elif method in (b"GET", b"HEAD"):
            link, token = link_of(request), bearer(request)  # (a link, if given, decides)
            if link is None and token is None:
                self._send(Answer.refused(FileRefused(401, LOG_IN_FIRST)))
                return
            file_id = path[len(API_PATH) + 1 :].decode("latin-1")
            self._work(authorize_download, self._hub, token, file_id, link,
                       then=partial(self._start_download, request))  # fmt: skip
        else:
            self._reply(405, b"only GET and HEAD\n", close=True,
                        extra=[(b"allow", b"GET, HEAD")])  # fmt: skip

    def _work(self, job: Callable[..., Any], *args: Any, then: Callable[[Any], None]) -> None:
        """Run ``job(*args)`` in a worker; ``then(result)`` here once it is done.

        A :exc:`FileRefused` becomes its :class:`Answer`; a bug, a 500. Until then the
        edge reads nothing (see :attr:`backlogged`).
        """
        assert self._submit is not None
        handoff = self._waiting = Handoff(self._wake)
        self._then = then

        def run() -> None:
            try:
                result = job(*args)
            except FileRefused as error:
                result = Answer.refused(error)
            except Exception:
                log.exception("internal error in the file API")
                result = Answer(500, b"internal server error\n")
            if not handoff.put(result):
                _discard(result)

        self._submit(run)

    def _start_upload(self, request: h11.Request) -> None:
        assert self._hub is not None and self._hub.files is not None
        try:
            ask = parse_upload(request, self._hub.files.limits.max_file_size)
        except FileRefused as error:
            self._send(Answer.refused(error), close=True)  # (the body is not read)
            return
        self._work(authorize_upload, self._hub, ask, then=partial(self._upload_authorized, ask))

    def _upload_authorized(self, ask: UploadAsk, result: Upload | Answer) -> None:
        if isinstance(result, Answer):
            self._send(result, close=True)
            return
        self._upload, self._ask = result, ask
        if self._http.they_are_waiting_for_100_continue:
            self._out += self._http.send(h11.InformationalResponse(status_code=100)) or b""

    def _take_body(self, data: bytes) -> None:
        upload = self._upload
        assert upload is not None
        try:
            upload.write(data)
        except FileRefused as error:  # (the upload dropped itself)
            self._upload = None
            self._send(Answer.refused(error), close=True)
        except OSError as exc:
            self._upload = None
            log.error("cannot write an upload to %s: %s", upload.path.parent, exc)
            self._send(Answer(500, b"the server could not store the file\n"), close=True)

    def _end_body(self) -> None:
        """The whole body is here: store the file and post it (a worker), then answer."""
        upload, ask, hub = self._upload, self._ask, self._hub
        assert upload is not None and ask is not None and hub is not None
        self._upload = self._ask = None
        handoff = self._waiting = Handoff(self._wake)
        self._then = self._send

        def run() -> None:
            try:
                finish_upload(hub, upload, ask, handoff)
            except Exception:
                log.exception("internal error storing an upload")
                upload.abort()
                handoff.put(Answer(500, b"internal server error; the file was not posted\n"))

        assert self._submit is not None
        self._submit(run)

    def _start_download(self, request: h11.Request, result: Download | Answer) -> None:
        if isinstance(result, Answer):
            self._send(result)
            return
        status, headers, offset, count = download_head(request, result.entry)
        reason = REASONS.get(status, "OK").encode()
        self._out += self._http.send(h11.Response(status_code=status, headers=headers,
                                                  reason=reason)) or b""  # fmt: skip
        if self._head or status not in (200, 206) or count == 0:
            result.discard()
            self._out += self._http.send(h11.EndOfMessage()) or b""
            return
        self._download = [result.fd, offset, count]

    def _pump(self) -> None:
        """Read the download's next chunk into the output (the socket took the last).

        At most :data:`TURN_BUDGET` bytes between two :meth:`receive` calls, which the
        connection makes once a turn while a download goes: then :meth:`wire` gives
        nothing, and the I/O thread serves its other connections before the next MiB
        (else one fast reader would have a whole turn of 64 writes, 16 MiB, to itself).
        """
        assert self._download is not None
        fd, offset, left = self._download
        try:
            chunk = os.pread(fd, min(READ_CHUNK, left), offset)
        except OSError as exc:
            log.error("cannot read a shared file: %s", exc)
            chunk = b""
        if not chunk:  # (it cannot shrink: a read error) the response cannot be finished
            self._download_done()
            self._finished = True
            return
        self._out += self._http.send(h11.Data(data=chunk)) or b""
        self._moved = True
        self._turn -= len(chunk)
        self._download[1:] = offset + len(chunk), left - len(chunk)
        if left == len(chunk):
            self._download_done()
            self._out += self._http.send(h11.EndOfMessage()) or b""
            self._stalled = True  # (requests that came meanwhile: at the next receive)

    def _download_done(self) -> None:
        if self._download is not None:
            with contextlib.suppress(OSError):
                os.close(self._download[0])
            self._download = None

    def _send(self, answer: Answer, *, close: bool = False) -> None:
        """Send a whole answer (keep-alive unless ``close``: a body left unread)."""
        given = {name for name, _ in answer.headers}
        headers = [] if b"content-type" in given else [(b"content-type",
                                                       b"text/plain; charset=utf-8")]  # fmt: skip
        headers += [(b"content-length", str(len(answer.body)).encode()), *SECURITY_HEADERS,
                    *answer.headers]  # fmt: skip
        if close or answer.close:
            headers.append((b"connection", b"close"))
        reason = REASONS.get(answer.status, "Error").encode()
        self._out += self._http.send(h11.Response(status_code=answer.status, headers=headers,
                                                  reason=reason)) or b""  # fmt: skip
        if not self._head:
            self._out += self._http.send(h11.Data(data=answer.body)) or b""
        self._out += self._http.send(h11.EndOfMessage()) or b""


def _discard(result: object) -> None:
    """Let go of a worker's result nobody will take (the connection went away)."""
    if isinstance(result, Upload):
        result.abort()
    elif isinstance(result, Download):
        result.discard()
