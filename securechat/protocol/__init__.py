"""The wire protocol both ends share: frame models, line framing, names, the document.

Pure code: no sockets, no threads, and no import of any other part of securechat
(only :mod:`securechat.exceptions`).
"""

PROTOCOL_VERSION = 1
DEFAULT_PORT = 7443

__all__ = ["DEFAULT_PORT", "PROTOCOL_VERSION"]
