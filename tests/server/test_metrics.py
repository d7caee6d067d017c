"""Monitoring over real HTTPS: /metrics (parsed as Prometheus reads it) while clients chat,
who may read it, /healthz, /readyz through a storage failure; and the pure parts."""

import contextlib
import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from prometheus_client.parser import text_string_to_metric_families

from securechat.server import cli, store
from securechat.server.cli import Limits, Server
from securechat.server.metrics import ServerMetrics
from securechat.server.web import StaticFiles, WebSite
from securechat.server.web.files import Answer
from securechat.server.web.monitoring import (
    address_allowed,
    monitoring_answer,
    parse_networks,
)
from tests.chatclient import ChatClient
from tests.conftest import UNMETERED, USERS, run_server, wait_until
from tests.faults import FaultyStore
from tests.server.irc.ircclient import IrcClient
from tests.server.web.conftest import WsClient

ROOM = "zebracrossing"  # a name that appears nowhere else, to look for in the metrics
Values = dict[tuple[str, frozenset[tuple[str, str]]], float]


def site(allow: tuple[str, ...] = ("127.0.0.1", "::1")) -> WebSite:
    return WebSite(StaticFiles({}), metrics_allow=allow)


@contextlib.contextmanager
def web_server(certs, passwd_path, **options) -> Iterator[Server]:
    options.setdefault("web", site())
    with run_server(certs, passwd_path, admins=("admin",), **options) as server:
        yield server


def get(
    server: Server, certs, path: str, *, source: str | None = None, token: str | None = None
) -> tuple[int, dict[str, str], str]:
    """``GET path`` over TLS with ALPN http/1.1 (from ``source``); status, headers, body."""
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.set_alpn_protocols(["http/1.1"])
    connection = http.client.HTTPSConnection(
        "localhost", server.address[1], context=context, timeout=10,
        source_address=(source, 0) if source else None,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def parse(text: str) -> Values:
    """Every sample: (name, labels) -> value, as Prometheus' own parser reads the text."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(server: Server, certs) -> Values:
    status, headers, body = get(server, certs, "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(body)


def value(values: Values, name: str, **labels: str) -> float:
    return values[name, frozenset(labels.items())]


def login(server: Server, certs, user: str, **options) -> tuple[ChatClient, dict]:
    client = ChatClient(server.address, certs.ca_cert, **options)
    reply = client.login(user, USERS[user])
    assert reply["type"] == "login_ok", reply
    return client, reply


def test_counters_move_as_clients_chat(certs, passwd_path):
    with web_server(certs, passwd_path) as server:
        before = scrape(server, certs)
        alice, _ = login(server, certs, "alice")
        bob, _ = login(server, certs, "bob")
        intruder = ChatClient(server.address, certs.ca_cert)
        assert intruder.login("carol", "not-her-password")["code"] == "auth_failed"
        intruder.close()
        for client in (alice, bob):
            client.request(type="join", room=ROOM)
        for n in range(3):
            alice.send(type="send", room=ROOM, text=f"hello {n}")
        for n in range(3):
            assert bob.expect("message")["text"] == f"hello {n}"
        assert alice.request(type="dm", to="bob", text="psst")["type"] == "dm"
        ws = WsClient(server, certs)
        assert ws.login("carol")["type"] == "login_ok"

        def settled() -> Values:
            values = scrape(server, certs)
            kinds = {kind: value(values, "securechat_connections", kind=kind)
                     for kind in ("line", "websocket", "irc")}  # fmt: skip
            return values if kinds == {"line": 2, "websocket": 1, "irc": 0} else {}

        wait_until(lambda: bool(settled()))  # (the intruder's connection is gone)
        after = settled()

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("securechat_logins_total", result="ok") == 3
        assert moved("securechat_logins_total", result="failed") == 1
        assert moved("securechat_logins_total", result="throttled") == 0
        assert moved("securechat_messages_total", kind="room") == 3
        assert moved("securechat_messages_total", kind="dm") == 1
        # each room message to both members' connections (the sender's own copy too),
        # the direct message to bob and as alice's echo
        assert moved("securechat_deliveries_total") == 3 * 2 + 2
        assert moved("securechat_received_bytes_total") > 3 * len('"text":"hello 0"')
        assert moved("securechat_sent_bytes_total") > 3 * 2 * len('"text":"hello 0"')
        assert value(after, "securechat_connections", kind="http") >= 1  # (this scrape)
        assert value(after, "securechat_users_online") == 3
        assert value(after, "securechat_rooms") == 1
        assert value(after, "securechat_store_bytes") > 0
        assert moved("securechat_commit_seconds_count") >= 2  # (the sends, the DM)
        assert value(after, "securechat_commits_failed_total") == 0
        assert value(after, "securechat_storage_ok") == value(after, "securechat_ready") == 1
        assert value(after, "securechat_outgoing_queue_frames") >= 0
        for client in (alice, bob, ws):
            client.close()


def test_no_user_or_room_name_in_the_metrics(certs, passwd_path):
    with web_server(certs, passwd_path) as server:
        alice, _ = login(server, certs, "alice")
        alice.request(type="join", room=ROOM)
        alice.request(type="send", room=ROOM, text="secret plans")
        status, _, text = get(server, certs, "/metrics")
        assert status == 200
        for name in ("alice", ROOM, "secret", *USERS):
            assert name not in text
        alice.close()


def test_irc_connections_are_counted_by_kind(certs, passwd_path):
    with web_server(certs, passwd_path, irc=True) as server:
        client = IrcClient(server.irc_address, certs.ca_cert)
        wait_until(lambda: value(scrape(server, certs), "securechat_connections", kind="irc") == 1)
        client.close()


def test_rate_limited_and_throttled_logins_are_counted(certs, passwd_path):
    limits = Limits(frame_rate=0.1, frame_burst=6)
    with web_server(certs, passwd_path, limits=limits) as server:
        alice, _ = login(server, certs, "alice")
        alice.send_raw(b'{"type":"ping"}\n' * 10)  # 5 go through (with the login: 6)
        for _ in range(5):
            alice.expect("error", code="rate_limited")
        guesser = ChatClient(server.address, certs.ca_cert)
        for _ in range(5):  # five failures: this connection is closed, the throttle starts
            guesser.send(type="login", user="bob", password="guess")
        for _ in range(5):
            assert guesser.expect("error")["code"] == "auth_failed"
        guesser.close()
        guesser = ChatClient(server.address, certs.ca_cert)
        assert guesser.login("bob", "guess")["code"] == "rate_limited"  # turned away unchecked
        values = scrape(server, certs)
        assert value(values, "securechat_rate_limited_frames_total") == 5
        assert value(values, "securechat_logins_total", result="failed") == 5
        assert value(values, "securechat_logins_total", result="throttled") == 1
        assert value(values, "securechat_logins_total", result="ok") == 1
        guesser.close()
        alice.close()


def test_a_slow_consumer_disconnect_is_counted(certs, passwd_path):
    limits = Limits(queue_frames=20, queue_bytes=16 * 1024, **UNMETERED)
    with web_server(certs, passwd_path, limits=limits) as server:
        stuck, _ = login(server, certs, "carol", rcvbuf=4096)
        stuck.request(type="join", room=ROOM)
        alice, _ = login(server, certs, "alice")
        alice.request(type="join", room=ROOM)
        text = "y" * 3000
        for sent in range(1, 7000):  # until the server drops carol (bounded: 20 MB)
            alice.send(type="send", room=ROOM, text=f"{sent} {text}")
            frame = alice.wait_for(lambda f: f["type"] in ("message", "presence"))
            if frame["type"] == "presence":
                assert frame["user"] == "carol" and frame["event"] == "leave"
                break
        else:
            pytest.fail("the stuck client was never dropped")
        assert value(scrape(server, certs), "securechat_slow_consumer_disconnects_total") == 1
        for client in (stuck, alice):
            client.close()


# -- who may read /metrics


def test_a_foreign_address_gets_404_unless_an_admin_token_comes_with_it(certs, passwd_path):
    with web_server(certs, passwd_path, web=site(("127.0.0.1",))) as server:
        foreign = "127.0.0.2"  # (loopback, but not in --metrics-allow)
        status, _, body = get(server, certs, "/metrics", source=foreign)
        assert (status, body) == (404, "not found\n")  # as for any path that is not there
        admin, reply = login(server, certs, "admin")
        status, _, body = get(server, certs, "/metrics", source=foreign, token=reply["token"])
        assert status == 200
        assert "securechat_logins_total" in body
        bob, reply = login(server, certs, "bob")
        assert get(server, certs, "/metrics", source=foreign, token=reply["token"])[0] == 404
        assert get(server, certs, "/metrics", source=foreign, token="x" * 43)[0] == 404
        # health checks are open to anyone who reaches the port (a load balancer)
        assert get(server, certs, "/healthz", source=foreign)[::2] == (200, "ok\n")
        assert get(server, certs, "/readyz", source=foreign)[::2] == (200, "ready\n")
        assert get(server, certs, "/metrics")[0] == 200  # (127.0.0.1 is allowed)
        for client in (admin, bob):
            client.close()


def test_allow_none_leaves_only_admin_tokens(certs, passwd_path):
    with web_server(certs, passwd_path, web=site(("none",))) as server:
        assert get(server, certs, "/metrics")[0] == 404
        admin, reply = login(server, certs, "admin")
        assert get(server, certs, "/metrics", token=reply["token"])[0] == 200
        admin.close()


# -- readiness


@contextlib.contextmanager
def faulty_web_server(certs, passwd_path: Path, data_dir: Path) -> Iterator[Server]:
    """A server with the web edge on a :class:`FaultyStore` (``server.hub.store``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "SqliteStore", FaultyStore)
        with web_server(certs, passwd_path, data_dir=data_dir) as server:
            assert isinstance(server.hub.store, FaultyStore)
            yield server


def test_readyz_is_503_while_writes_fail_and_200_after(certs, passwd_path, tmp_path):
    with faulty_web_server(certs, passwd_path, tmp_path / "data") as server:
        assert get(server, certs, "/readyz")[::2] == (200, "ready\n")
        alice, _ = login(server, certs, "alice")
        alice.request(type="join", room=ROOM)
        server.hub.store.fail("disk full")
        assert alice.request(type="send", room=ROOM, text="lost")["code"] == "unavailable"
        status, headers, body = get(server, certs, "/readyz")
        assert (status, body) == (503, "not ready: cannot store writes (disk full)\n")
        assert headers["retry-after"] == "5"
        assert get(server, certs, "/healthz")[0] == 200  # alive all the same
        values = scrape(server, certs)
        assert value(values, "securechat_commits_failed_total") == 1
        assert value(values, "securechat_storage_ok") == value(values, "securechat_ready") == 0
        server.hub.store.heal()
        assert alice.request(type="send", room=ROOM, text="kept")["type"] == "message"
        assert get(server, certs, "/readyz")[::2] == (200, "ready\n")
        alice.close()


def test_readyz_notices_a_freed_disk_without_traffic(certs, passwd_path, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PROBE_INTERVAL", 0.0)
    with faulty_web_server(certs, passwd_path, tmp_path / "data") as server:
        alice, _ = login(server, certs, "alice")
        alice.request(type="join", room=ROOM)
        server.hub.store.fail("read-only")
        assert alice.request(type="send", room=ROOM, text="lost")["code"] == "unavailable"
        alice.close()
        assert get(server, certs, "/readyz")[0] == 503  # (and its probe fails too)
        assert get(server, certs, "/readyz")[0] == 503
        server.hub.store.heal()  # nobody writes from now on: the probes must see it
        wait_until(lambda: get(server, certs, "/readyz")[0] == 200)


def test_readyz_is_503_at_the_connection_limit_and_healthz_still_200(certs, passwd_path):
    with web_server(certs, passwd_path, limits=Limits(max_connections=2)) as server:
        alice, _ = login(server, certs, "alice")
        status, _, body = get(server, certs, "/readyz")  # (this is the second connection)
        assert (status, body) == (503, "not ready: at the connection limit\n")
        alice.close()
        wait_until(lambda: get(server, certs, "/readyz")[0] == 200)
        bob, _ = login(server, certs, "bob")
        carol, _ = login(server, certs, "carol")
        # a third connection is over the limit (a client would get server_busy), but a
        # health check on it is answered
        assert get(server, certs, "/healthz")[::2] == (200, "ok\n")
        for client in (bob, carol):
            client.close()


def test_readyz_is_503_while_shutting_down(certs, passwd_path):
    with web_server(certs, passwd_path) as server:
        assert server.monitor.not_ready() is None
        server.shutdown()
        assert server.monitor.not_ready() == "shutting down"


# -- the pure parts


def request(method: bytes, target: bytes, token: str | None = None) -> h11.Request:
    headers = [(b"host", b"localhost")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return h11.Request(method=method, target=target, headers=headers)


class FakeMonitor:
    def __init__(self, admin_token: str = "good", problem: str | None = None) -> None:
        self.admin_token, self.problem, self.asked = admin_token, problem, []

    def not_ready(self) -> str | None:
        return self.problem

    def metrics_text(self) -> bytes:
        return b"# metrics\n"

    def is_admin_token(self, token: str) -> bool:
        self.asked.append(token)
        return token == self.admin_token


def answer(path: bytes, *, method: bytes = b"GET", address: str = "10.0.0.9", token=None,
           monitor=None, allow=("127.0.0.1",)) -> Answer:  # fmt: skip
    result = monitoring_answer(request(method, path, token), path, address=address,
                               monitor=monitor or FakeMonitor(),
                               allow=parse_networks(allow))  # fmt: skip
    return result if isinstance(result, Answer) else result()


def test_monitoring_answers():
    assert answer(b"/healthz").status == 200
    assert answer(b"/readyz").body == b"ready\n"
    assert answer(b"/readyz", monitor=FakeMonitor(problem="shutting down")).status == 503
    assert answer(b"/metrics").status == 404
    assert answer(b"/metrics", address="127.0.0.1").body == b"# metrics\n"
    assert answer(b"/metrics", address="::ffff:127.0.0.1").status == 200
    assert answer(b"/metrics", token="good").status == 200
    assert answer(b"/metrics", token="bad").status == 404
    assert answer(b"/metrics", method=b"POST", address="127.0.0.1").status == 405
    no_server = monitoring_answer(request(b"GET", b"/healthz"), b"/healthz", monitor=None,
                                  address="127.0.0.1", allow=())  # fmt: skip
    assert isinstance(no_server, Answer) and no_server.status == 404


def test_the_token_is_checked_off_the_io_thread_and_only_when_needed():
    monitor = FakeMonitor()
    job = monitoring_answer(request(b"GET", b"/metrics", "good"), b"/metrics", monitor=monitor,
                            address="10.0.0.9", allow=())  # fmt: skip
    assert not isinstance(job, Answer) and monitor.asked == []  # (a worker's job)
    assert job().status == 200 and monitor.asked == ["good"]
    answer(b"/metrics", address="127.0.0.1", token="good", monitor=monitor)
    assert monitor.asked == ["good"]  # an allowed address needs no token


def test_networks_and_addresses():
    networks = parse_networks(["127.0.0.1, ::1", "10.0.0.0/8", "fd00::/8"])
    assert address_allowed("10.1.2.3", networks)
    assert address_allowed("::ffff:10.1.2.3", networks)
    assert address_allowed("fd12::1", networks)
    assert address_allowed("::1", networks)
    assert not address_allowed("11.0.0.1", networks)
    assert not address_allowed("", networks)
    assert parse_networks(["none"]) == ()
    with pytest.raises(ValueError, match="not an address"):
        parse_networks(["10.0.0.300"])


def test_the_server_refuses_a_bad_metrics_allow(capsys):
    with pytest.raises(SystemExit):
        cli._parse_args(["--cert", "x.pem", "--metrics-allow", "localhost"])
    assert "--metrics-allow" in capsys.readouterr().err
    args = cli._parse_args(["--cert", "x.pem"])
    assert args.metrics_allow == ["127.0.0.1", "::1"]


def test_each_server_has_its_own_registry():
    one, two = ServerMetrics(), ServerMetrics()
    one.logins_ok.inc()
    assert b'securechat_logins_total{result="ok"} 1.0' in one.exposition()
    assert b'securechat_logins_total{result="ok"} 0.0' in two.exposition()
