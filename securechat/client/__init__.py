"""The terminal client: :mod:`~securechat.client.console` (pure command, format and
backoff logic), :mod:`~securechat.client.connection` (the connection, reconnect and
catch-up) and :mod:`~securechat.client.cli` (``securechat-client``). Never imports the
server.
"""
