"""The IRC gateway: irssi, WeeChat and other IRC clients in securechat's rooms.

Why here: people who chat from a terminal already have an IRC client they like, and
bots are written for IRC. With ``--irc-port`` the server opens a second TLS listener
(same certificate, reloaded on SIGHUP; never plain text) whose connections speak the
client side of IRC. Each gets an :class:`IrcEdge`, the connection's
:class:`~securechat.server.connection.Edge`: it translates IRC lines into the protocol's
frames and the frames back into IRC lines, so the session, the hub, the store, the
limits and the password file behind it are those of every other client ("translate at
the edge: the hub never learns IRC"). :class:`IrcGateway` is what the connections share.

Modules: :mod:`.parse` (lines, tags, limits, text rules: pure), :mod:`.render` (frames
to IRC lines: pure), :mod:`.edge` (one connection's state: registration, pacing, the
order of replies), :mod:`.commands` (one function per command), :mod:`.history`
(CHATHISTORY), :mod:`.numerics` (numerics by name), :mod:`.gateway`.
"""

from securechat.server.irc.edge import IrcEdge
from securechat.server.irc.gateway import IrcGateway

__all__ = ["IrcEdge", "IrcGateway"]
