"""The exception tree of securechat.

* :exc:`SecurechatError`: base class of everything below.

  * :exc:`ProtocolError`: a client frame the server refuses. Carries the protocol
    error ``code`` and a human ``message``; the server turns it into one ``error``
    frame at one place and, unless ``fatal`` is set, the connection goes on.

    * :exc:`FrameTooLarge`: a line longer than the frame limit (always fatal).

  * :exc:`PasswordFileError`: the password file cannot be read or written.
  * :exc:`PasswordTooLong`: bcrypt only uses 72 bytes; longer passwords are refused
    rather than silently truncated.
  * :exc:`CertificateError`: the certificate tool cannot do what it was asked, or the
    server cannot load its certificate, key or client CA (at start or on SIGHUP).
  * :exc:`StoreError`: the history database (or the key of file links beside it)
    cannot be opened, or is too new.

    * :exc:`StoreUnavailable`: the storage refused a write (disk full, read-only,
      I/O error, database locked); not a bug, and it may work again later.

  * :exc:`AdminError`: ``securechat-admin`` cannot do what it was asked (the backup's
    destination exists, no such room, a server is using the database to restore over).
  * :exc:`FileRefused`: an upload or download of a shared file is refused (too large,
    over the quota, the disk too full, a hash that does not match...); carries the HTTP
    status that says so.
"""


class SecurechatError(Exception):
    """Base class of all securechat errors."""


class ProtocolError(SecurechatError):
    """A frame from the peer that breaks the protocol; becomes an ``error`` frame."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        ref: str | None = None,
        fatal: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.fatal = fatal
        self.retry_after = retry_after

    def for_ref(self, ref: str | None) -> "ProtocolError":
        """The same error answering the request with ``ref`` (a new one; this one is kept)."""
        return ProtocolError(self.code, self.message, ref=ref, fatal=self.fatal,
                             retry_after=self.retry_after)  # fmt: skip


class FrameTooLarge(ProtocolError):
    """The peer sent more than the frame limit without a newline."""

    def __init__(self, limit: int) -> None:
        super().__init__("frame_too_large", f"frame exceeds the limit of {limit} bytes", fatal=True)


class PasswordFileError(SecurechatError):
    """The password file is unreadable, malformed or cannot be written."""


class PasswordTooLong(SecurechatError):
    """The password is longer than the 72 bytes bcrypt uses."""


class CertificateError(SecurechatError):
    """The certificate tool refused or failed (e.g. files exist without --force), or the
    server's certificate files cannot be loaded (the message is one line saying why)."""


class StoreError(SecurechatError):
    """The history database cannot be opened, migrated or written (or ``link.key``,
    the key of file links beside it, is damaged)."""


class StoreUnavailable(StoreError):
    """The storage could not take a write; nothing of it was committed.

    ``reason`` is what an operator must fix, in a few words (``"disk full"``,
    ``"read-only"``, ``"I/O error"``, ``"database locked"``); ``detail`` is what the
    database or the system said; ``retry_after`` is the seconds a client is told to
    wait. A client is told only that its write was not stored: the reason is the
    operator's business, and goes to the log.
    """

    def __init__(self, reason: str, detail: str, retry_after: float) -> None:
        super().__init__(f"{reason} ({detail})")
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class AdminError(SecurechatError):
    """A data command (backup, restore, export, stats) refused or failed; the message is
    one line saying what and, where there is one, what to do about it."""


class FileRefused(SecurechatError):
    """A file upload or download is refused; nothing of an upload is kept.

    ``status`` is the HTTP status the web edge answers with (413 too large, 507 no
    space or over the quota, 400 a hash that does not match or a bad name, 429 too many
    at once...), ``message`` one sentence for the person, ``retry_after`` seconds where
    waiting helps.
    """

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
