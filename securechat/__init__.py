"""securechat: a small multi-room chat server and terminal client over TLS.

One folder per part, with rules about who imports whom that ``lint-imports`` checks
(the contracts are in ``pyproject.toml``):

* :mod:`securechat.protocol`: what both ends share (frame models, line framing, names,
  the protocol document). Imports no other part.
* :mod:`securechat.server`: the chat server (hub, mailboxes, sessions, store, limits,
  password file, transport). Never imports the client.
* :mod:`securechat.client`: the terminal client. Never imports the server.
* :mod:`securechat.admin`: ``securechat-adduser`` and ``securechat-certs``.
* :mod:`securechat.bench`: the benchmarks; nothing else imports them.

:mod:`securechat.exceptions` is the one exception tree, which every part may use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
