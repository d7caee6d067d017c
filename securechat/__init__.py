"""securechat: a small multi-room chat server and terminal client over TLS.

The package is layered as in STYLE.md: pure protocol code at the bottom
(:mod:`securechat.frames`, :mod:`securechat.framing`, :mod:`securechat.hub`), the
password file beside it (:mod:`securechat.passwd`), and thin I/O layers on top
(:mod:`securechat.server`, :mod:`securechat.client`).
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
DEFAULT_PORT = 7443

__all__ = ["DEFAULT_PORT", "PROTOCOL_VERSION", "__version__"]
