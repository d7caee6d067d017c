"""Login tokens: issued at login, accepted instead of the password, revoked as promised.

End to end over real TLS, plus the expiry on a fake clock (tokens last days).
"""

import logging
import re
import shutil

import pytest

from securechat.server.passwd import delete_user, set_password
from securechat.server.store import InlineCommitter, SqliteStore
from securechat.server.tokens import LoginTokens, token_hash
from tests.chatclient import ChatClient
from tests.conftest import USERS, run_server


def token_login(client: ChatClient, user: str, token: str) -> dict:
    client.expect("welcome")
    return client.request(type="login", user=user, token=token)


@pytest.fixture
def own_passwd(passwd_path, tmp_path):
    """A copy of the password file this test may change."""
    path = tmp_path / "securechat.passwd"
    shutil.copy(passwd_path, path)
    return path


def test_a_token_logs_in_instead_of_the_password(certs, passwd_path, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    with run_server(certs, passwd_path, data_dir=tmp_path / "data") as server:
        first = ChatClient(server.address, certs.ca_cert)
        reply = first.login("alice", USERS["alice"])
        token = reply["token"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 256 bits, url-safe
        second = ChatClient(server.address, certs.ca_cert)
        again = token_login(second, "alice", token)
        assert again == {"type": "login_ok", "user": "alice", "ref": again["ref"]}  # no new one
        second.request(type="join", room="general")
        first.request(type="join", room="general")
        sent = second.request(type="send", room="general", text="from a token session")
        assert first.expect("message", id=sent["id"])["user"] == "alice"
        other = ChatClient(server.address, certs.ca_cert)
        assert token_login(other, "bob", token)["code"] == "auth_failed"  # alice's, not bob's
        for client in (first, second, other):
            client.close()
    assert token not in caplog.text
    stored = SqliteStore(tmp_path / "data" / "securechat.db")  # only its hash is kept
    assert stored.token(token_hash(token)) is None  # (revoked by bob's try: it was exposed)
    stored.close()


def test_a_wrong_token_is_auth_failed_and_throttled_like_a_password(certs, passwd_path):
    with run_server(certs, passwd_path) as server:
        guesser = ChatClient(server.address, certs.ca_cert)
        guesser.expect("welcome")
        codes = [
            guesser.request(type="login", user="carol", token=f"guess{n}")["code"] for n in range(5)
        ]
        assert codes == ["auth_failed"] * 5
        assert guesser.wait_closed() == []
        again = ChatClient(server.address, certs.ca_cert)
        reply = token_login(again, "carol", "guess5")
        assert reply["code"] == "rate_limited" and reply["retry_after"] > 0
        again.close()


def test_logout_revokes_the_token_of_that_connection(certs, passwd_path):
    with run_server(certs, passwd_path) as server:
        with_password = ChatClient(server.address, certs.ca_cert)
        issued = with_password.login("bob", USERS["bob"])["token"]
        with_token = ChatClient(server.address, certs.ca_cert)
        assert token_login(with_token, "bob", issued)["type"] == "login_ok"
        bye = with_token.request(type="logout")
        assert bye == {"type": "bye", "ref": bye["ref"]}
        assert with_token.wait_closed() == []
        later = ChatClient(server.address, certs.ca_cert)
        assert token_login(later, "bob", issued)["code"] == "auth_failed"
        later.close()
        # A logout on a password connection revokes the token it was given.
        fresh = ChatClient(server.address, certs.ca_cert)
        given = fresh.login("bob", USERS["bob"])["token"]
        assert fresh.request(type="logout")["type"] == "bye"
        fresh.wait_closed()
        late = ChatClient(server.address, certs.ca_cert)
        assert token_login(late, "bob", given)["code"] == "auth_failed"
        with_password.close()
        late.close()


def test_a_password_change_or_deletion_revokes_every_token(certs, own_passwd):
    with run_server(certs, own_passwd) as server:
        tokens = {}
        for user in ("alice", "dave"):
            client = ChatClient(server.address, certs.ca_cert)
            tokens[user] = client.login(user, USERS[user])["token"]
            client.close()
        set_password(own_passwd, "alice", "a-brand-new-password", rounds=4)
        delete_user(own_passwd, "dave")
        for user in ("alice", "dave"):
            client = ChatClient(server.address, certs.ca_cert)
            assert token_login(client, user, tokens[user])["code"] == "auth_failed"
            client.close()
        client = ChatClient(server.address, certs.ca_cert)
        assert client.login("alice", "a-brand-new-password")["type"] == "login_ok"
        client.close()


def test_tokens_expire_after_their_days(tmp_path):
    now = [1_000_000.0]
    store = SqliteStore(tmp_path / "db.sqlite")
    users = {"ann": "fingerprint-1"}
    tokens = LoginTokens(store, InlineCommitter(store), users.get, days=7, clock=lambda: now[0])
    token = tokens.issue("ann")
    assert token is not None
    assert tokens.check("ann", token) == token_hash(token)
    now[0] += 7 * 86400 - 1
    assert tokens.check("ann", token) is not None
    now[0] += 1
    assert tokens.check("ann", token) is None  # expired, and dropped
    assert store.token(token_hash(token)) is None
    old = tokens.issue("ann")
    assert old is not None
    users["ann"] = "fingerprint-2"  # the password changed
    assert tokens.check("ann", old) is None
    assert tokens.issue("nobody") is None  # an unknown user gets no token
    now[0] += 30 * 86400
    tokens.issue("ann")  # issuing drops every expired token
    assert store.token(token_hash(old)) is None
    store.close()
