"""The chat server.

Pure core first: :mod:`~securechat.server.hub` (rooms, ids, who gets which frame),
:mod:`~securechat.server.mailbox` (feeds and per-connection queues),
:mod:`~securechat.server.session` (one connection's protocol state),
:mod:`~securechat.server.store` (SQLite and its commit thread),
:mod:`~securechat.server.limits` and :mod:`~securechat.server.passwd`. The I/O edge is
:mod:`~securechat.server.transport` (TLS, epoll I/O threads), and
:mod:`~securechat.server.cli` wires it all into ``securechat-server``.

Kept free of imports so that ``securechat.server.passwd`` (used by the admin tools)
does not load the whole server.
"""
