"""The gateway against an independent IRC implementation: the ``irc`` library from PyPI.

Our own raw client (``ircclient.py``) shares the parser under test; this one does not:
its registration (SASL PLAIN), its line parser, its tag parser and its ISUPPORT reader
are the library's.
"""

import functools
import ssl
import time
from collections.abc import Callable

import pytest

irc_client = pytest.importorskip("irc.client", reason="the irc library is not installed")
import irc.connection  # noqa: E402

from tests.conftest import USERS  # noqa: E402


class LibClient:
    """One ``irc`` library connection, driven from the test's thread."""

    def __init__(self, address: tuple[str, int], cafile: str, user: str) -> None:
        self.reactor = irc_client.Reactor()
        self.events: list = []
        self._read = 0
        self.reactor.add_global_handler("all_events", lambda _c, e: self.events.append(e), -10)
        context = ssl.create_default_context(cafile=cafile)
        wrapper = functools.partial(context.wrap_socket, server_hostname="localhost")
        self.conn = self.reactor.server().connect(
            address[0], address[1], user, password=USERS[user], sasl_login=user,
            connect_factory=irc.connection.Factory(wrapper=wrapper),
        )  # fmt: skip

    def wait(self, match: Callable, timeout: float = 10.0):
        """The next event (after the last one waited for) that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._read, len(self.events)):
                if match(self.events[index]):
                    self._read = index + 1
                    return self.events[index]
            assert time.monotonic() < deadline, [(e.type, e.arguments) for e in self.events]
            self.reactor.process_once(0.05)

    def event(self, kind: str, *arguments: str, timeout: float = 10.0):
        return self.wait(lambda e: e.type == kind and list(e.arguments[: len(arguments)])
                         == list(arguments), timeout)  # fmt: skip

    def close(self) -> None:
        self.conn.close()


def tags(event) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in event.tags or []}


@pytest.fixture
def lib(server, certs):
    clients: list[LibClient] = []

    def factory(user: str) -> LibClient:
        client = LibClient(server.irc_address, str(certs.ca_cert), user)
        clients.append(client)
        client.event("welcome")
        return client

    yield factory
    for client in clients:
        client.close()


def test_sasl_registration_and_isupport_as_the_library_reads_them(lib) -> None:
    alice = lib("alice")
    assert alice.conn.get_nickname() == "alice"
    assert alice.conn.is_connected()
    features = alice.conn.features
    assert list(features.chantypes) == ["#"]
    assert features.nicklen == 32 and features.channellen == 33
    assert features.casemapping == "ascii"
    alice.event("endofmotd")


def test_commands_through_the_library(lib, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    alice = lib("alice")
    alice.conn.cap("REQ", "server-time", "message-tags", "account-tag", "echo-message")
    alice.event("cap", "ACK")
    alice.conn.join("#general")
    join = alice.event("join")
    assert join.target == "#general" and join.source.nick == "alice"
    assert alice.event("namreply").arguments[-1].split() == ["alice", "bob"]
    alice.event("endofnames")
    alice.conn.privmsg("#general", "hello from the library")
    message = bob.expect("message", user="alice")
    echo = alice.event("pubmsg")
    assert echo.arguments == ["hello from the library"]
    assert tags(echo)["msgid"] == f"general/{message['id']}"
    bob.request(type="send", room="general", text="hello, library")
    pub = alice.event("pubmsg")
    assert pub.source.nick == "bob" and pub.arguments == ["hello, library"]
    assert tags(pub)["account"] == "bob" and tags(pub)["time"].endswith("Z")
    alice.conn.privmsg("bob", "a word in private")
    assert bob.expect("dm", to="bob")["text"] == "a word in private"
    bob.request(type="dm", to="alice", text="private reply")
    private = alice.wait(lambda e: e.type == "privmsg" and e.source.nick == "bob")
    assert private.arguments == ["private reply"]

    alice.conn.who("#general")
    assert [alice.event("whoreply").arguments[4] for _ in range(2)] == ["alice", "bob"]
    alice.event("endofwho")
    alice.conn.whois("bob")
    assert alice.event("whoisuser").arguments[0] == "bob"
    alice.event("endofwhois")
    alice.conn.list()
    assert alice.event("list").arguments[:2] == ["#general", "2"]
    alice.event("listend")
    alice.conn.topic("#general")
    alice.event("notopic")
    alice.conn.mode("#general", "")
    assert alice.event("channelmodeis").arguments[1] == "+nt"
    alice.conn.ison(["bob", "carol"])
    assert alice.event("ison").arguments == ["bob"]
    alice.conn.userhost(["bob"])
    assert alice.event("userhost").arguments == ["bob=+bob@securechat"]
    alice.conn.send_raw("AWAY :gone")
    alice.event("nowaway")
    alice.conn.send_raw("AWAY")
    alice.event("unaway")
    alice.conn.part("#general")
    alice.event("part")
    assert bob.expect("presence", user="alice", event="leave")
    alice.conn.quit("done")
    assert alice.event("error").target.startswith("Closing link")


def test_chathistory_pages_as_batches(lib, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    ids = [bob.request(type="send", room="general", text=f"old {n}")["id"] for n in range(6)]
    alice = lib("alice")
    alice.conn.cap("REQ", "batch", "server-time", "message-tags", "draft/chathistory")
    alice.event("cap", "ACK")
    alice.conn.join("#general")
    alice.event("endofnames")

    def page(*params: str) -> list[str]:
        alice.conn.send_raw("CHATHISTORY " + " ".join(params))
        start = alice.wait(lambda e: e.type == "batch" and e.target.startswith("+"))
        batch = start.target[1:]
        texts = []
        while True:
            event = alice.wait(lambda e: e.type in ("pubmsg", "batch"))
            if event.type == "batch":
                assert event.target == f"-{batch}"
                return texts
            assert tags(event)["batch"] == batch and tags(event)["msgid"].startswith("general/")
            texts.append(event.arguments[0])

    assert page("LATEST", "#general", "*", "2") == ["old 4", "old 5"]
    assert page("BEFORE", "#general", f"msgid=general/{ids[4]}", "2") == ["old 2", "old 3"]
    assert page("BEFORE", "#general", f"msgid=general/{ids[2]}", "2") == ["old 0", "old 1"]
    assert page("BEFORE", "#general", f"msgid=general/{ids[0]}", "2") == []


def test_a_json_client_and_the_library_see_one_order_of_ids(lib, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    alice = lib("alice")
    alice.conn.cap("REQ", "message-tags", "echo-message")
    alice.event("cap", "ACK")
    alice.conn.join("#general")
    alice.event("endofnames")
    for n in range(8):
        bob.send(type="send", room="general", text=f"json {n}")
        alice.conn.privmsg("#general", f"irc {n}")
    from_json = [bob.expect("message")["id"] for _ in range(16)]
    from_irc = [int(tags(alice.event("pubmsg"))["msgid"].split("/")[1]) for _ in range(16)]
    assert from_json == from_irc == sorted(from_irc)
