"""The web edge: HTTP and WebSocket on the chat's own TLS port, for browsers.

Why here: a browser cannot speak the line protocol, but it can load a page and open a
WebSocket. After the TLS handshake the connection looks at ALPN: a client that offered
``http/1.1`` (every browser) is answered ``http/1.1`` and talks to a :class:`WebEdge`;
one that offered nothing (the terminal client, ``openssl s_client``) gets the line
protocol as before. ``GET /`` and the other files of the web client come from
:class:`StaticFiles` (an allow-list made at start-up); ``GET /ws`` upgrades to a
WebSocket whose text messages are the protocol's frames, one each, with the limits,
rate limits and errors of the line protocol (:mod:`.websocket`).

Everything here is sans-I/O (``h11`` for HTTP, ``wsproto`` for the upgrade, the
``websockets`` core for the frames after it): the
connection's I/O thread owns the socket and feeds the bytes in, so a browser costs what
a line client costs: no thread, no second event loop. The connection reaches this
package only through the small interface it declares
(:class:`~securechat.server.connection.Edge`); the transport builds the
:class:`WebSite` and hands it over.
"""

from securechat.server.web.http import StaticFiles, WebEdge, WebSite, normalize_origin
from securechat.server.web.websocket import WebSocketCodec

__all__ = ["StaticFiles", "WebEdge", "WebSite", "WebSocketCodec", "normalize_origin"]
