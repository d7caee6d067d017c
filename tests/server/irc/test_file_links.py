"""IRC users get shared files as a line with a signed HTTPS link (issue 15).

The rendering is pure (a frame and a View in, lines out); then, over real TLS, a file
uploaded in a room reaches an IRC client as a PRIVMSG whose URL a browser without a
login token fetches: the exact bytes, and nothing for a tampered, expired or deleted
one.
"""

import hashlib
import http.client
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from securechat.admin.certs import CertPaths
from securechat.server.cli import Server
from securechat.server.files import FileLimits, FileLinks
from securechat.server.irc import IrcGateway, history
from securechat.server.irc.parse import MAX_LINE
from securechat.server.irc.render import View, dm_lines, message_lines
from securechat.server.web import StaticFiles, WebSite
from tests.chatclient import ChatClient
from tests.conftest import USERS, run_server
from tests.server.irc.conftest import register
from tests.server.irc.ircclient import IrcClient
from tests.server.web.conftest import web_context

DAY = 86400
TS = "2026-12-06T10:00:00.000Z"
SENT = datetime.fromisoformat(TS).timestamp()
FILE = {"id": "Ab3_-x9ZqRstUvWxYz0123", "name": "report.pdf", "size": 1234567,
        "sha256": "0" * 64, "mime": "application/octet-stream"}  # fmt: skip
URL = re.compile(r"https://\S+")


@pytest.fixture
def links() -> FileLinks:
    return FileLinks(os.urandom(32), days=7, public_url="https://chat.example:7443")


def link_in(line: str) -> tuple[str, str, str]:
    """The URL in ``line``, its file id and its ``link`` value."""
    match = URL.search(line)
    assert match, line
    url = match.group()
    parts = urlsplit(url)
    assert parts.path.startswith("/api/files/"), url
    (value,) = parse_qs(parts.query)["link"]
    return url, parts.path.removeprefix("/api/files/"), value


# ---------------------------------------------------------------- rendering (pure)


def test_a_file_line_carries_a_link_that_checks_for_days_after_the_message(links):
    frame = {"room": "general", "id": 4, "user": "ann", "ts": TS, "text": "the report",
             "file": FILE}  # fmt: skip
    lines = message_lines(View(links=links), frame)
    assert lines[0] == ":ann!ann@securechat PRIVMSG #general :the report"
    assert lines[1].startswith(
        ":ann!ann@securechat PRIVMSG #general :[file] report.pdf (1.2 MiB, id "
        f"{FILE['id']}) https://chat.example:7443/api/files/{FILE['id']}?link="
    )
    _, file_id, value = link_in(lines[1])
    assert file_id == FILE["id"]
    assert int(value.partition(".")[0]) == int(SENT + 7 * DAY)
    assert links.check(file_id, value, now=SENT + 7 * DAY - 1)
    assert links.verdict(file_id, value, now=SENT + 7 * DAY) == "expired"
    # The same frame gives the same lines, however often and for whichever client.
    assert message_lines(View(links=links), frame) == lines
    dm = {"id": 9, "from": "ann", "to": "bob", "ts": TS, "text": "", "file": FILE}
    (line,) = dm_lines(View.of({"server-time"}, links), dm)
    assert line.startswith(f"@time={TS} :ann!ann@securechat PRIVMSG bob :[file] report.pdf")
    assert links.check(*link_in(line)[1:], now=SENT)


def test_a_replay_gets_a_fresh_link(links):
    frame = {"room": "general", "id": 4, "user": "ann", "ts": TS, "text": "", "file": FILE}
    now = SENT + 30 * DAY  # long after the live link expired
    (line,) = message_lines(View(links=links), frame, now=now)
    _, file_id, value = link_in(line)
    assert int(value.partition(".")[0]) == int(now + 7 * DAY)
    assert links.check(file_id, value, now=now + 1)
    dm = {"id": 9, "from": "ann", "to": "bob", "ts": TS, "text": "", "file": FILE}
    (line,) = dm_lines(View(links=links), dm, now=now)
    assert links.check(*link_in(line)[1:], now=now + 1)


def test_without_links_the_file_is_named_as_before(links):
    frame = {"room": "general", "id": 4, "user": "ann", "ts": TS, "text": "", "file": FILE}
    assert message_lines(View(), frame) == [
        f":ann!ann@securechat PRIVMSG #general :[file] report.pdf (1.2 MiB, id {FILE['id']})"
    ]
    unplaced = FileLinks(os.urandom(32))  # (no URL known: no link rather than a wrong one)
    assert "https://" not in message_lines(View(links=unplaced), frame)[0]


def test_a_long_name_is_shortened_so_the_link_stays_whole_on_one_line(links):
    nick, room = "n" * 32, "r" * 32
    name = "é" * 200 + ".pdf"  # 404 bytes
    frame = {"room": room, "id": 4, "user": nick, "ts": TS, "text": "",
             "file": {**FILE, "name": name}}  # fmt: skip
    (line,) = message_lines(View(links=links), frame)
    assert len(line.encode()) + 2 <= MAX_LINE
    assert "é" * 40 + "….pdf (1.2 MiB" in line
    assert links.check(*link_in(line)[1:], now=SENT)


def test_the_gateway_renders_a_file_message_once_for_every_view_alike(links):
    gateway = IrcGateway(is_online=lambda _: True, online_users=list,
                         user_exists=lambda _: True, links=links)  # fmt: skip
    frame = {"type": "message", "room": "general", "id": 4, "user": "ann", "ts": TS,
             "text": "", "file": FILE}  # fmt: skip
    raw = json.dumps(frame, separators=(",", ":")).encode()
    first, second = View.of({"server-time"}, links), View.of({"server-time"}, links)
    assert first == second and gateway.renders(first) is gateway.renders(second)
    rendered = gateway.rendered_message(raw, first)
    assert rendered == ("\r\n".join(message_lines(first, frame)) + "\r\n").encode()
    assert gateway.rendered_message(raw, second) is rendered


# ---------------------------------------------------------------- over TLS, as users do


@pytest.fixture
def server(certs: CertPaths, passwd_path: Path) -> Iterator[Server]:
    """Web (with file sharing) and IRC on one server: what the CLI starts by default."""
    site = WebSite(StaticFiles({}))
    with run_server(certs, passwd_path, web=site, files=FileLimits(upload_burst=100),
                    irc=True) as srv:  # fmt: skip
        yield srv


def fetch(url: str, certs: CertPaths, method: str = "GET", **headers: str):
    """What a browser does with the URL: TLS to its host and port (ALPN http/1.1), no
    token, no cookie."""
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.hostname and parts.port
    connection = http.client.HTTPSConnection(parts.hostname, parts.port,
                                             context=web_context(certs), timeout=10)  # fmt: skip
    try:
        connection.request(method, f"{parts.path}?{parts.query}", headers=headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def upload(server: Server, certs: CertPaths, token: str, body: bytes, name: str) -> dict:
    connection = http.client.HTTPSConnection("localhost", server.address[1],
                                             context=web_context(certs), timeout=10)  # fmt: skip
    try:
        connection.request("POST", f"/api/files?room=general&name={name}", body=body,
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    assert response.status == 201, answer
    return json.loads(answer)


def test_an_irc_user_fetches_a_shared_file_from_the_link_in_the_line(server, certs, monkeypatch):
    alice = ChatClient(server.address, certs.ca_cert)
    bob = IrcClient(server.irc_address, certs.ca_cert)
    try:
        token = alice.login("alice", USERS["alice"])["token"]
        assert alice.request(type="join", room="general")["type"] == "joined"
        register(bob, "bob", caps=())  # (a plain client: no tags, no history)
        bob.send("JOIN #general")
        bob.expect("366")

        body = os.urandom(300_000)
        frame = upload(server, certs, token, body, "minutes.pdf")
        line = bob.expect("PRIVMSG", "#general").params[1]
        assert line.startswith(f"[file] minutes.pdf (293.0 KiB, id {frame['file']['id']}) ")
        url, file_id, value = link_in(line)
        assert file_id == frame["file"]["id"]
        host, port = server.address
        assert url.startswith(f"https://{host}:{port}/api/files/")

        status, headers, got = fetch(url, certs)
        assert status == 200 and hashlib.sha256(got).hexdigest() == frame["file"]["sha256"]
        assert got == body
        assert headers["content-disposition"].startswith('attachment; filename="minutes.pdf"')
        assert headers["content-type"] == "application/octet-stream"
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]
        status, headers, got = fetch(url, certs, "HEAD")
        assert (status, headers["content-length"], got) == (200, str(len(body)), b"")
        status, headers, got = fetch(url, certs, Range="bytes=100-199")
        assert (status, got) == (206, body[100:200])

        # A link changed by hand, or moved to another file, is refused with what to do.
        expires, _, mac = value.partition(".")
        forged = url.replace(value, f"{int(expires) + 3600}.{mac}")
        status, _, got = fetch(forged, certs)
        assert status == 403 and b"not valid" in got and b"/download" in got
        other = upload(server, certs, token, b"other bytes", "other.txt")["file"]["id"]
        assert fetch(url.replace(file_id, other), certs)[0] == 403
        assert fetch(url.replace(value, ""), certs)[0] == 403
        assert fetch(url + "&link=" + value, certs)[0] == 403  # (given twice: not one link)
        # An expired one says so (410), and how to get the file anyway.
        links = server.hub.files.links
        stale = url.replace(value, links.sign(file_id, int(time.time()) - 1))
        status, _, got = fetch(stale, certs)
        assert status == 410 and got == (b"this link has expired: ask for the file again, "
                                         b"or fetch it with securechat-client /download "
                                         + file_id.encode() + b"\n")  # fmt: skip
        # Without a link, a token is still needed.
        assert fetch(url.split("?")[0] + "?", certs)[0] == 401

        # History replays give a fresh link (a client that asks for chathistory).
        carol = IrcClient(server.irc_address, certs.ca_cert)
        try:
            register(carol, "carol")
            carol.send("JOIN #general")
            carol.expect("366")
            later = time.time() + 3 * DAY  # (the replay's clock: three days on)
            monkeypatch.setattr(history, "time", SimpleNamespace(time=lambda: later))
            carol.send("CHATHISTORY LATEST #general * 10")
            batch = carol.expect("BATCH").params[0][1:]
            texts = [m.params[1] for m in carol.lines_until("BATCH", f"-{batch}")
                     if m.command == "PRIVMSG"]  # fmt: skip
            (again,) = [text for text in texts if text.startswith("[file] minutes")]
            _, _, fresh = link_in(again)
            assert int(fresh.partition(".")[0]) == int(later + links.days * DAY)
            assert fetch(link_in(again)[0], certs)[0] == 200
        finally:
            carol.close()

        # Deleting the message revokes the link with the file.
        assert alice.request(type="delete", room="general", id=frame["id"])["type"] == "deleted"
        status, _, got = fetch(url, certs)
        assert status == 404 and b"deleted" in got
    finally:
        alice.close()
        bob.close()


def test_without_the_web_edge_irc_users_get_no_link(certs, passwd_path):
    with run_server(certs, passwd_path, files=FileLimits(), irc=True) as srv:
        assert srv.hub.files is not None and srv.irc is not None
        assert srv.irc.links is None  # (nothing would answer the link)
