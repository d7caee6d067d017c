"""irssi and WeeChat against the gateway, in tmux, typed into as people type.

Each client starts with an empty home directory and is set up with the lines the README
gives (SASL PLAIN, TLS trusting the test's CA), then joins, talks with a line-protocol
client both ways, sees it leave and come back, and leaves. Skipped, saying which, where
tmux or the client is not installed (``.ci/run`` installs them).
"""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.test_client_tty import Pane
from tests.conftest import USERS


@dataclass(frozen=True)
class IrcProgram:
    name: str
    command: str  # {home}: its own directory
    setup: tuple[str, ...]  # {password}, {ca}, {port}
    joined: str  # on screen once alice has joined #general (a regular expression's text)
    left: str  # on screen once bob has left #general


IRSSI = IrcProgram(
    "irssi",
    "irssi --home={home} -n alice",
    (
        "/network add -sasl_username alice -sasl_password {password} -sasl_mechanism PLAIN "
        "securechat",
        "/server add -tls -tls_cafile {ca} -network securechat localhost {port}",
        "/connect securechat",
    ),
    joined="alice [alice@securechat] has joined #general",
    left="bob [bob@securechat] has left #general",
)
WEECHAT = IrcProgram(
    "weechat",
    "weechat --dir {home}",
    (
        "/set weechat.network.gnutls_ca_user {ca}",
        "/server add securechat localhost/{port} -ssl",
        "/set irc.server.securechat.sasl_mechanism plain",
        "/set irc.server.securechat.sasl_username alice",
        "/set irc.server.securechat.sasl_password {password}",
        "/set irc.server.securechat.nicks alice",
        "/connect securechat",
    ),
    joined="alice [alice] (",
    left="bob (bob@securechat) has left #general",
)


@pytest.fixture(params=[IRSSI, WEECHAT], ids=lambda program: program.name)
def program(request: pytest.FixtureRequest) -> IrcProgram:
    program: IrcProgram = request.param
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    if shutil.which(program.name) is None:
        pytest.skip(f"{program.name} is not installed (apt-get install {program.name}"
                    f"{'-curses' if program.name == 'weechat' else ''})")  # fmt: skip
    return program


@pytest.fixture
def pane(program: IrcProgram, tmp_path: Path) -> Iterator[Pane]:
    home = tmp_path / program.name
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TMUX")}
    env.update(TERM="xterm", HOME=str(tmp_path), LANG="C.UTF-8")
    pane = Pane(tmp_path, program.command.format(home=home), env)
    try:
        yield pane
    finally:
        pane.close()


def type_line(pane: Pane, text: str) -> None:
    """Type ``text`` and Enter, then wait for the input line to be empty again (as a person
    does: WeeChat takes lines typed at once for a paste and asks before sending them)."""
    pane.keys(text, literal=True)
    pane.wait_for(lambda screen: text[-20:] in screen[-1])
    pane.keys("Enter")
    pane.wait_for(lambda screen: text[-20:] not in screen[-1])


def seen(pane: Pane, text: str, timeout: float = 15) -> list[str]:
    return pane.wait_for(lambda screen: any(text in line for line in screen), timeout)


def test_an_irc_client_joins_talks_sees_presence_and_leaves(
    program: IrcProgram, pane: Pane, server, certs, connect
) -> None:
    pane.wait_for(lambda screen: len("".join(screen).strip()) > 20)  # (the client is up)
    port = server.irc_address[1]
    for line in program.setup:
        type_line(pane, line.format(password=USERS["alice"], ca=certs.ca_cert, port=port))
    seen(pane, "rooms are channels here")  # the MOTD: registered, so logged in by SASL
    type_line(pane, "/join #general")
    seen(pane, program.joined)

    bob = connect("bob")
    bob.request(type="join", room="general")
    seen(pane, "bob@securechat")
    bob.request(type="send", room="general", text="hello from the line protocol")
    seen(pane, "hello from the line protocol")
    type_line(pane, "hello from " + program.name)
    assert bob.expect("message", user="alice")["text"] == "hello from " + program.name

    bob.request(type="leave", room="general")
    seen(pane, program.left)
    bob.request(type="join", room="general")
    type_line(pane, "/part #general")
    assert bob.expect("presence", user="alice", event="leave")
    type_line(pane, "/quit")
