"""Fixtures of the IRC gateway: a server with it, and raw IRC clients that register."""

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.admin.certs import CertPaths
from securechat.server.cli import Limits, Server
from tests.conftest import USERS, run_server
from tests.server.irc.ircclient import IrcClient

CAPS = ("server-time", "message-tags", "echo-message", "labeled-response", "batch",
        "account-tag", "extended-join", "away-notify", "draft/chathistory",
        "draft/message-redaction")  # fmt: skip


@pytest.fixture
def server(request: pytest.FixtureRequest, certs: CertPaths, passwd_path: Path) -> Iterator[Server]:
    """A server with the IRC gateway (and the limits of a ``limits`` mark).

    (Overrides the top ``server`` fixture, so ``connect`` opens line clients to it.)
    """
    marker = request.node.get_closest_marker("limits")
    limits = Limits(**marker.kwargs) if marker else Limits()
    with run_server(certs, passwd_path, limits, admins=("admin",), irc=True) as srv:
        yield srv


def sasl_plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@pytest.fixture
def irc(server: Server, certs: CertPaths) -> Iterator:
    """Open IRC clients; with ``user``, register it by SASL with ``caps`` (default: all)."""
    clients: list[IrcClient] = []

    def factory(user: str | None = None, caps: tuple[str, ...] = CAPS) -> IrcClient:
        client = IrcClient(server.irc_address, certs.ca_cert)
        clients.append(client)
        if user is not None:
            register(client, user, caps=caps)
        return client

    yield factory
    for client in clients:
        client.close()


def register(client: IrcClient, user: str, *, caps: tuple[str, ...] = CAPS) -> None:
    """CAP LS 302, REQ the caps and sasl, SASL PLAIN, CAP END, NICK, USER: through 376."""
    client.send("CAP LS 302", f"NICK {user}", f"USER {user} 0 * :{user} here")
    client.wait_for(lambda m: m.command == "CAP" and m.params[1] == "LS")
    client.send(f"CAP REQ :{' '.join(('sasl', *caps))}")
    client.wait_for(lambda m: m.command == "CAP" and m.params[1] == "ACK")
    client.send("AUTHENTICATE PLAIN")
    client.expect("AUTHENTICATE", "+")
    client.send(f"AUTHENTICATE {sasl_plain(user, USERS.get(user) or f'{user}-pw')}")
    client.expect("903")
    client.send("CAP END")
    client.expect("001", user)
    client.expect("376")
