"""Fixtures: certificates, a password file and an in-process server on port 0."""

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from securechat.admin.certs import CertPaths, make_certs
from securechat.server.cli import Limits, Server, durable_hub, make_server_context
from securechat.server.files import FileLimits
from securechat.server.passwd import PasswordFile, set_password
from securechat.server.web import WebSite
from tests.chatclient import ChatClient

USERS = {name: f"{name}-secret-pw" for name in ("alice", "bob", "carol", "dave", "admin")}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """A bounded poll on a condition another thread makes true, where no event tells
    (thread and descriptor counts, a gate's queue); not a guessed delay."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def passwd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "securechat.passwd"
    for name, password in USERS.items():
        set_password(path, name, password, rounds=4)
    for index in range(60):
        set_password(path, f"user{index}", f"user{index}-pw", rounds=4)
    return path


@contextlib.contextmanager
def run_server(
    certs: CertPaths,
    passwd: Path,
    limits: Limits | None = None,
    admins: tuple[str, ...] = (),
    data_dir: Path | None = None,
    host: str = "127.0.0.1",
    web: WebSite | None = None,
    files: FileLimits | None = None,
    irc: bool = False,
) -> Iterator[Server]:
    """A server on ``host`` (loopback) port 0 that always shuts down, and leaks no thread.

    ``web``: the web edge (HTTP and WebSocket for ALPN ``http/1.1``); none by default.
    With it, file sharing too, with ``files`` (default: the server's default limits).
    ``irc``: the IRC gateway too, on a port of its own (``server.irc_address``).
    """
    before = set(threading.enumerate())
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "data"
        passwords = PasswordFile(passwd)
        if web is not None and files is None:
            files = FileLimits()
        hub = stack.enter_context(durable_hub(data_dir, passwords, admins=admins, files=files))
        server = Server(
            make_server_context(certs.server), hub, passwords.verify, host, 0,
            limits or Limits(), web, irc_port=0 if irc else None,
        )  # fmt: skip
        server.start()
        stack.callback(server.shutdown)
        yield server
    for thread in set(threading.enumerate()) - before:
        thread.join(5)  # a connection thread may still be returning
    leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not leaked, f"threads left behind: {leaked}"


# For tests that send faster than a person: @pytest.mark.limits(**UNMETERED)
UNMETERED = {"frame_rate": 1e9, "frame_burst": 10**9}


@pytest.fixture
def server(request: pytest.FixtureRequest, certs: CertPaths, passwd_path: Path) -> Iterator[Server]:
    """A server with the protocol's default limits, or those of a ``limits`` mark."""
    marker = request.node.get_closest_marker("limits")
    limits = Limits(**marker.kwargs) if marker else Limits()
    with run_server(certs, passwd_path, limits, admins=("admin",)) as srv:
        yield srv


ClientFactory = Callable[..., ChatClient]


@pytest.fixture
def connect(server: Server, certs: CertPaths) -> Iterator[ClientFactory]:
    """Open clients to ``server``; with ``user``, also log in. All are closed afterwards."""
    clients: list[ChatClient] = []

    def factory(user: str | None = None, *, login: bool = True) -> ChatClient:
        client = ChatClient(server.address, certs.ca_cert)
        clients.append(client)
        if user is not None and login:
            reply = client.login(user, USERS.get(user) or f"{user}-pw")
            assert reply["type"] == "login_ok", reply
        return client

    yield factory
    for client in clients:
        client.close()
