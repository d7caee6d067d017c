"""The IRC gateway: what all IRC connections of one server share.

Why this object: like the web edge's :class:`~securechat.server.web.WebSite`, it is
built once and handed to the transport, whose IRC listener's connections each get an
:class:`~securechat.server.irc.edge.IrcEdge` from :meth:`IrcGateway.open`. It answers the
questions IRC asks that the JSON protocol has no frame for (who is online, for ISON,
WHOIS, USERHOST and LUSERS; who is away) from the hub's read-only side, keeps the
away messages of IRC users (AWAY is IRC's alone: nobody else has one) and tells the
other IRC users who share a channel (``away-notify``), and renders a room's message once
for all the IRC members with the same :class:`~securechat.server.irc.render.View`.
"""

import json
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from securechat import __version__
from securechat.server.files import FileLinks
from securechat.server.irc.render import View, message_lines, plain_message, source
from securechat.server.limits import TokenBucket
from securechat.server.mailbox import Mailbox

if TYPE_CHECKING:
    from securechat.server.irc.edge import IrcEdge

__all__ = ["IrcGateway"]

SERVER_NAME = "irc.securechat"
# Kept rendered (a fanout is over in moments; each is cleared when full): blocks (up to a
# write's 256 KiB each, so few) and single messages (at most 16 KiB of text each), per view.
BLOCK_CACHE = 64
MESSAGE_CACHE = 1024
Blocks = dict[int, tuple[list[bytes], bytes | None]]


class IrcGateway:
    """The IRC side of one server (see the module's docstring).

    ``is_online`` and ``online_users`` come from the hub (a user with a connection
    logged in), ``user_exists`` from the password file. ``links``: the file store's
    (:class:`~securechat.server.files.FileLinks`), which every edge's
    :class:`~securechat.server.irc.render.View` carries to link shared files; None
    without a file store (``--no-web``): files are named without a link.
    """

    def __init__(
        self,
        *,
        is_online: Callable[[str], bool],
        online_users: Callable[[], list[str]],
        user_exists: Callable[[str], bool],
        server_name: str = SERVER_NAME,
        network: str = "securechat",
        version: str = __version__,
        links: FileLinks | None = None,
    ) -> None:
        self.is_online = is_online
        self.links = links
        self.online_users = online_users
        self.user_exists = user_exists
        self.server_name = server_name
        self.network = network
        self.version = f"securechat-{version}"
        self._lock = threading.Lock()
        self._edges: weakref.WeakSet[IrcEdge] = weakref.WeakSet()
        self._away: weakref.WeakKeyDictionary[IrcEdge, str] = weakref.WeakKeyDictionary()
        self._views: dict[View, tuple[dict[bytes, bytes], Blocks]] = {}  # caches, by view

    def open(
        self, *, busy: bool, cert_user: str | None, bucket: TokenBucket, mailbox: Mailbox
    ) -> "IrcEdge":
        """The edge of one new IRC connection (the transport's ``EdgeOpener``)."""
        from securechat.server.irc.edge import IrcEdge  # (edge imports this module)

        edge = IrcEdge(self, busy=busy, cert_user=cert_user, bucket=bucket, mailbox=mailbox)
        with self._lock:
            self._edges.add(edge)
        return edge

    # -- away

    def away_of(self, user: str) -> str | None:
        """The away message of ``user`` (set on any of its IRC connections), if any."""
        with self._lock:
            for edge, message in list(self._away.items()):
                if edge.user == user:
                    return message
        return None

    def set_away(self, edge: "IrcEdge", message: str | None) -> None:
        """``edge``'s user is away (or back), as told by AWAY; others are told (away-notify)."""
        with self._lock:
            if message is None:
                self._away.pop(edge, None)
            else:
                self._away[edge] = message
            others = [other for other in self._edges if other is not edge]
        user = edge.user
        line = f":{source(user)} AWAY" + (f" :{message}" if message else "")
        data = line.encode() + b"\n"
        for other in others:
            if other.wants_away_notify and other.shares_channel_with(user):
                other.mailbox.push(data)  # (a line that is not JSON: the edge sends it as is)

    # -- rendering a room's messages once for its IRC members

    def rendered(self, frames: list[bytes], view: View) -> bytes | None:
        """The IRC bytes of a block of room frames for ``view``, rendered once for all.

        ``None`` when the block holds a frame that each edge must see itself (presence:
        its idea of who is in the channel follows it), or anything but messages. The
        members of a room at one position are handed one block (the connection's fast
        path): the first renders it, the others find it in :meth:`blocks` (by the
        list's id, kept with it so that the id is not reused meanwhile). Members at
        other positions get other lists of the same frame objects, each of which is
        found in :meth:`renders` by identity (its hash kept by Python): each message is
        rendered once per view.
        """
        cache, blocks = self._caches(view)
        key = id(frames)
        hit = blocks.get(key)
        if hit is not None and hit[0] is frames:
            return hit[1]
        parts = list(map(cache.get, frames))  # (one C loop for the usual case)
        data: bytes | None = None
        if all(parts):
            data = b"".join(parts)  # type: ignore[arg-type]
        else:
            for index, raw in enumerate(frames):
                if parts[index] is None:
                    if not raw.startswith(b'{"type":"message"') or b'"ref":' in raw:
                        break
                    parts[index] = self.rendered_message(raw, view, cache)
            else:
                data = b"".join(parts)  # type: ignore[arg-type]
        if len(blocks) >= BLOCK_CACHE:
            blocks.clear()
        blocks[key] = (frames, data)
        return data

    def message(self, frame: bytes, view: View) -> str:
        """The IRC lines (CR LF between them) of one room ``message`` frame without a ref."""
        return self.rendered_message(frame, view)[:-2].decode()

    def renders(self, view: View) -> dict[bytes, bytes]:
        """The rendered messages of ``view`` (by frame): one dict per view, kept.

        An edge holds its view's, so that a message costs it one lookup by its bytes.
        """
        return self._caches(view)[0]

    def blocks(self, view: View) -> Blocks:
        """The rendered blocks of ``view``: the list's id -> (the list, its bytes or None).

        An edge holds its view's, so that a member finding a block rendered by another
        costs one lookup by an int (a View's hash is computed by Python at each lookup).
        """
        return self._caches(view)[1]

    def _caches(self, view: View) -> tuple[dict[bytes, bytes], Blocks]:
        caches = self._views.get(view)
        if caches is None:
            with self._lock:
                caches = self._views.setdefault(view, ({}, {}))
        return caches

    def rendered_message(
        self, frame: bytes, view: View, cache: dict[bytes, bytes] | None = None
    ) -> bytes:
        """One room ``message`` frame's IRC lines, each ending in CR LF: rendered once.

        (Blocks and single messages share this cache: each message is parsed once per
        view.) ``cache`` is :meth:`renders` of ``view``, when the caller holds it.
        """
        if cache is None:
            cache = self._caches(view)[0]
        part = cache.get(frame)
        if part is None:
            part = plain_message(view, frame)  # (most messages: read off the bytes)
            if part is None:
                lines = message_lines(view, json.loads(frame))
                part = ("\r\n".join(lines) + "\r\n").encode()
            if len(cache) >= MESSAGE_CACHE:
                cache.clear()
            cache[frame] = part
        return part
