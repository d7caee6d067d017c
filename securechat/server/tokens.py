"""Login tokens: what lets a browser reload, or any client reconnect, without the password.

A token is 256 random bits (``secrets.token_urlsafe(32)``), handed out in ``login_ok``
after a login that proved who the user is, and accepted by ``login {user, token}`` until
it expires (``--token-days``), is revoked by ``logout`` on a connection that used it, or
the user's password changes or the user is deleted. Only the token's SHA-256 is stored:
a copy of the database lets nobody log in. The token carries enough entropy that a
fast hash is right here (bcrypt's cost is for guessable passwords).

Password changes and deletions are made by ``securechat-adduser`` in the password file,
which knows nothing of the database; so each token is stored with a *fingerprint* of
the user's password hash as it was at issue, and a token whose fingerprint no longer
matches the file is refused (and dropped).
"""

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from securechat.server.store import (
    AddToken,
    Callback,
    DeleteToken,
    Failed,
    Store,
    TokenRecord,
    storage_failure,
)

log = logging.getLogger("securechat.tokens")

TOKEN_BYTES = 32  # 256 bits
MAX_TOKEN_LENGTH = 256  # what a login frame may carry (ours are 43 characters)
DEFAULT_DAYS = 7.0


class Committer(Protocol):
    """What :class:`LoginTokens` needs of the store's committer (see ``store.py``)."""

    def submit(
        self, write: DeleteToken, then: Callback | None = None, failed: Failed | None = None
    ) -> None: ...


def token_hash(token: str) -> bytes:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class LoginTokens:
    """Issue, check and revoke login tokens (thread-safe: the store serialises writes).

    ``fingerprint(user)`` is what the password file holds for ``user`` now, hashed, or
    ``None`` for an unknown user. :meth:`issue` and :meth:`check` block on the store:
    they run where logins are checked (the login workers), never in an I/O thread;
    :meth:`revoke` goes through the committer like every other write.
    """

    def __init__(
        self,
        store: Store,
        committer: Committer,
        fingerprint: Callable[[str], str | None],
        *,
        days: float = DEFAULT_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._committer = committer
        self._fingerprint = fingerprint
        self.lifetime = days * 86400.0
        self._clock = clock

    def issue(self, user: str) -> str | None:
        """A new token for ``user``, stored; ``None`` if it could not be stored.

        A login goes on without a token when the disk refuses it: the client then keeps
        logging in with its password, which is what it did before tokens existed.
        """
        fingerprint = self._fingerprint(user)
        if fingerprint is None:  # (a certificate login of a user deleted meanwhile)
            return None
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        record = TokenRecord(token_hash(token), user, fingerprint, now + self.lifetime)
        try:
            self._store.write([AddToken(record, now)])
        except Exception as exc:
            failure = storage_failure(exc)
            if failure is None:
                raise
            log.warning("login token for %s not stored (%s): login_ok without one", user, failure)
            return None
        return token

    def check(self, user: str, token: str) -> bytes | None:
        """The token's hash if ``token`` is good for ``user`` now, else ``None``.

        A token that exists but is expired or stale (the password changed, the user is
        gone) is dropped from the store on the way.
        """
        digest = token_hash(token)
        record = self._store.token(digest)
        if record is None:
            return None
        good = (
            hmac.compare_digest(record.user, user)
            and hmac.compare_digest(record.fingerprint, self._fingerprint(record.user) or "")
            and record.expires > self._clock()
        )
        if not good:  # whoever holds it, it opens nothing from now on
            self.revoke(digest)
        return digest if good else None

    def holder(self, token: str) -> str | None:
        """Whose ``token`` is, if it is good now (a bearer token names no user).

        For the file API over HTTPS (``Authorization: Bearer``): the same checks as
        :meth:`check`, with the user the token was issued to. Blocks on the store: a
        worker's job.
        """
        record = self._store.token(token_hash(token))
        if record is None:
            return None
        return record.user if self.check(record.user, token) is not None else None

    def revoke(
        self, digest: bytes, then: Callback | None = None, failed: Failed | None = None
    ) -> None:
        """Delete the token with this hash; ``then`` once that is committed."""
        self._committer.submit(DeleteToken(digest), then, failed)


__all__ = ["MAX_TOKEN_LENGTH", "LoginTokens", "token_hash"]
