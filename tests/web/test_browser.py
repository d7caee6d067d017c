"""The web client in a real browser: headless Chromium against a real server.

Two browser pages (alice and bob, each in its own browser context, as two people) and
a line-protocol client (carol, tests/chatclient.py) share rooms over real TLS on
127.0.0.1: messages each way, edit, delete, a refused delete, direct messages,
presence, unread counts, scrolling back through history, a message of HTML shown as
text, a reconnect that catches up. Every wait is on something the page shows
(Playwright's ``expect`` polls the DOM) or a frame the line client reads; no sleeps.

Needs Playwright (the ``test`` extra) and Debian's chromium (``apt-get install
chromium``); skipped with the reason otherwise.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from securechat.admin.certs import CertPaths
from securechat.server.cli import Limits, Server
from securechat.server.web import WebSite
from tests.chatclient import ChatClient
from tests.conftest import UNMETERED, USERS, run_server

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install -y chromium)"
)
expect.set_options(timeout=10_000)  # a shared two-core machine: be patient, not slow
ONE_UNREAD = re.compile(r"^\s*1 unread$")  # the badge: "1", and " unread" for screen readers


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module (before any server, so its threads are not leaks)."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def site(certs: CertPaths, passwd_path: Path) -> Iterator[Server]:
    """A server with the web edge serving the real web client, unmetered (the tests
    fill a room's history faster than a person types)."""
    with run_server(
        certs, passwd_path, Limits(**UNMETERED), admins=("admin",), web=WebSite()
    ) as server:
        yield server


class Browser:
    """One person's page in its own browser context, with what went wrong on it.

    With ``cuttable``, its WebSocket goes through a Playwright route that the test can
    cut (:meth:`cut`) and keep cut until :meth:`mend`, to see the page lose the
    connection and come back. Playwright's Python client relays each frame of a routed
    WebSocket itself, and the sync API only does so while the test is inside a
    Playwright call: wait on the page (``expect``) before blocking on the line client.
    """

    def __init__(self, chromium: Any, server: Server, *, cuttable: bool = False) -> None:
        self.context = chromium.new_context(ignore_https_errors=True)
        self.page = self.context.new_page()
        self.origin = f"https://localhost:{server.address[1]}"
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("dialog", self._dialog)
        self._blocked = False
        self._sockets: list[Any] = []
        if cuttable:
            self.page.route_web_socket("**/ws", self._route)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.errors.append(f"dialog: {dialog.message}")  # e.g. alert(1) from an injection
        dialog.dismiss()

    def _route(self, ws: Any) -> None:
        if self._blocked:
            ws.close()
        else:
            self._sockets += [ws, ws.connect_to_server()]

    def cut(self) -> None:
        """Drop the connection (the page's side and the server's) and refuse new ones."""
        self._blocked = True
        for ws in self._sockets:
            ws.close()
        self._sockets.clear()

    def mend(self) -> None:
        self._blocked = False
        self.page.click("#reconnect-now")

    def sign_in(self, user: str, hash_: str = "", *, keep: bool = False) -> None:
        self.page.goto(f"{self.origin}/{hash_}")
        self.page.get_by_label("User name").fill(user)
        self.page.get_by_label("Password").fill(USERS[user])
        if keep:
            self.page.get_by_label("Keep me signed in").check()
        self.page.get_by_label("Password").press("Enter")
        expect(self.page.locator("#chat")).to_be_visible()

    def saved(self) -> dict[str, Any] | None:
        """What the page keeps across reloads (localStorage, else sessionStorage)."""
        raw = self.page.evaluate(
            "localStorage.getItem('securechat') ?? sessionStorage.getItem('securechat')"
        )
        return None if raw is None else json.loads(raw)

    def message(self, text: str) -> Any:
        return self.page.locator("#messages li.msg", has_text=text)

    def target(self, label: str) -> Any:
        return self.page.locator("#sidebar a.target", has_text=label)

    def say(self, text: str) -> None:
        self.page.get_by_label("Message", exact=True).fill(text)
        self.page.get_by_label("Message", exact=True).press("Enter")

    def ids(self) -> list[int]:
        return [int(i) for i in self.page.locator("#messages li[data-id]").evaluate_all(
            "items => items.map(li => li.dataset.id)")]  # fmt: skip

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def people(browser: Any, site: Server) -> Iterator[Any]:
    """A factory of browser pages; at the end, none may have had an error."""
    opened: list[Browser] = []

    def open_page(**options: Any) -> Browser:
        page = Browser(browser, site, **options)
        opened.append(page)
        return page

    yield open_page
    errors = {id(page): page.errors for page in opened}
    for page in opened:
        page.close()
    assert all(not e for e in errors.values()), errors


def line_client(server: Server, certs: CertPaths, user: str) -> ChatClient:
    client = ChatClient(server.address, certs.ca_cert)
    assert client.login(user, USERS[user])["type"] == "login_ok"
    return client


def test_two_pages_and_a_line_client(people: Any, site: Server, certs: CertPaths) -> None:
    alice, bob = people(), people()
    alice.sign_in("alice", "#/room/general")  # a shared link: joined after signing in
    expect(alice.page.locator("#title")).to_have_text("#general")
    expect(alice.page.get_by_label("Message", exact=True)).to_be_focused()
    bob.sign_in("bob", "#/room/general")
    carol = line_client(site, certs, "carol")
    try:
        assert carol.request(type="join", room="general")["type"] == "joined"

        # presence: both pages see carol arrive
        for page in (alice, bob):
            expect(page.page.locator("#member-list")).to_contain_text("carol")
        expect(alice.page.locator("#member-list")).to_contain_text("bob")

        # messages each way, Enter sends, Shift+Enter is a new line
        carol.request(type="send", room="general", text="hi from the terminal")
        expect(alice.message("hi from the terminal")).to_be_visible()
        expect(bob.message("hi from the terminal")).to_be_visible()
        alice.say("hello from alice")
        mine = carol.expect("message", room="general", user="alice", text="hello from alice")
        expect(bob.message("hello from alice")).to_be_visible()
        alice.page.fill("#compose", "two")
        alice.page.press("#compose", "Shift+Enter")
        alice.page.type("#compose", "lines")
        alice.page.press("#compose", "Enter")
        carol.expect("message", room="general", user="alice", text="two\nlines")
        assert alice.page.input_value("#compose") == ""

        # what looks like HTML is text; http(s) links are links, safely
        carol.request(type="send", room="general", text="<img src=x onerror=alert(1)>")
        carol.request(type="send", room="general", text="docs: https://example.com/guide.")
        for page in (alice, bob):
            expect(page.message("docs:")).to_be_visible()
            text = page.message("<img").locator(".text")
            expect(text).to_have_text("<img src=x onerror=alert(1)>")
            assert page.page.locator("#messages img").count() == 0
        link = alice.message("docs:").locator("a")
        expect(link).to_have_text("https://example.com/guide")
        expect(link).to_have_attribute("href", "https://example.com/guide")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        expect(link).to_have_attribute("target", "_blank")

        # the id shows on hover (title); alice edits her message
        own = alice.message("hello from alice")
        expect(own).to_have_attribute("title", re.compile(rf"^#{mine['id']} · "))
        own.hover()
        own.get_by_role("button", name=f"Edit message {mine['id']}").click()
        box = alice.page.locator(".edit-box")
        expect(box).to_be_focused()
        box.fill("hello again")
        box.press("Enter")
        carol.expect("edited", room="general", id=mine["id"], text="hello again")
        edited = bob.message("hello again")
        expect(edited.locator(".edited")).to_have_text("(edited)")

        # and deletes it (asked once more); bob's page drops it
        edited = alice.message("hello again")
        edited.hover()
        edited.get_by_role("button", name=f"Delete message {mine['id']}").click()
        alice.page.locator("#messages .actions.confirm button.danger").click()
        carol.expect("deleted", room="general", id=mine["id"], by="alice")
        expect(bob.message("hello again")).to_have_count(0)

        # bob may not delete carol's message: the refusal shows, the message stays
        theirs = bob.message("hi from the terminal")
        theirs.hover()
        theirs.get_by_role("button", name=re.compile("^Delete message")).click()
        bob.page.locator("#messages .actions.confirm button.danger").click()
        expect(bob.page.locator(".notice")).to_be_visible()
        expect(theirs).to_be_visible()

        # a direct message: a new conversation with an unread badge, answered
        carol.request(type="dm", to="alice", text="psst alice")
        expect(alice.target("@carol").locator(".badge")).to_have_text(ONE_UNREAD)
        alice.target("@carol").click()
        expect(alice.page.locator("#title")).to_have_text("@carol")
        expect(alice.message("psst alice")).to_be_visible()
        expect(alice.target("@carol").locator(".badge")).to_have_count(0)
        assert alice.page.url.endswith("#/dm/carol")
        alice.say("hi carol")
        carol.expect("dm", **{"from": "alice", "to": "carol", "text": "hi carol"})

        # unread in a room not in view; opening it reads it
        carol.request(type="send", room="general", text="while alice looks elsewhere")
        expect(alice.target("#general").locator(".badge")).to_have_text(ONE_UNREAD)
        expect(alice.page).to_have_title(re.compile(r"^\(1\) "))
        alice.target("#general").click()
        expect(alice.message("while alice looks elsewhere")).to_be_visible()
        expect(alice.target("#general").locator(".badge")).to_have_count(0)

        # carol leaves: presence reaches the pages
        carol.request(type="leave", room="general")
        expect(alice.page.locator("#member-list")).not_to_contain_text("carol")
        expect(bob.page.locator("#member-list")).not_to_contain_text("carol")
    finally:
        carol.close()


def test_scrolling_back_through_history(people: Any, site: Server, certs: CertPaths) -> None:
    carol = line_client(site, certs, "carol")
    try:
        carol.request(type="join", room="archive")
        for n in range(1, 121):
            carol.send(type="send", room="archive", text=f"old {n}", ref=f"s{n}")
        carol.expect("message", ref="s120")
    finally:
        carol.close()
    alice = people()
    alice.sign_in("alice")
    alice.page.fill("#join-room", "archive")
    alice.page.press("#join-room", "Enter")
    expect(alice.message("old 120")).to_be_visible()
    assert alice.ids() == list(range(71, 121))  # the last 50, oldest first
    log = alice.page.locator("#log")
    log.evaluate("el => { el.scrollTop = 0; }")
    expect(alice.page.locator('#messages li[data-id="21"]')).to_be_attached()
    log.evaluate("el => { el.scrollTop = 0; }")
    expect(alice.page.locator("#log-start")).to_have_text("The beginning of #archive.")
    assert alice.ids() == list(range(1, 121))  # each once, in order


def test_reconnect_catches_up_each_message_once(
    people: Any, site: Server, certs: CertPaths
) -> None:
    carol = line_client(site, certs, "carol")
    try:
        carol.request(type="join", room="general")
        carol.request(type="send", room="general", text="before")
        alice = people(cuttable=True)
        alice.sign_in("alice", "#/room/general")
        expect(alice.message("before")).to_be_visible()
        carol.request(type="dm", to="alice", text="dm before")
        expect(alice.target("@carol")).to_be_visible()

        alice.cut()
        expect(alice.page.locator("#status")).to_contain_text("Offline")
        alice.say("typed while offline")
        expect(alice.message("typed while offline")).to_contain_text("waiting for the connection")
        for n in range(1, 71):  # more than the 50 that joined brings back
            carol.send(type="send", room="general", text=f"missed {n}", ref=f"m{n}")
        carol.expect("message", ref="m70")
        carol.request(type="dm", to="alice", text="dm while away")

        alice.mend()
        expect(alice.page.locator("#status")).to_be_hidden()
        expect(alice.message("missed 70")).to_be_visible()
        sent = alice.page.locator("#messages li[data-id]", has_text="typed while offline")
        expect(sent).to_be_visible()  # acknowledged: the server's copy replaced the pending one
        mine = carol.expect("message", room="general", user="alice", text="typed while offline")
        expect(alice.page.locator(f'#messages li[data-id="{mine["id"]}"]')).to_be_visible()
        ids = alice.ids()
        assert ids == list(range(ids[0], mine["id"] + 1)), ids  # each once, in order, no gap
        assert ids[0] <= 2  # "before" is still there

        alice.target("@carol").click()
        expect(alice.message("dm while away")).to_have_count(1)
        expect(alice.message("dm before")).to_have_count(1)
        history = carol.request(type="history", room="general", limit=200)
        copies = [m for m in history["messages"] if m["text"] == "typed while offline"]
        assert len(copies) == 1, "sent once, not again after the reconnect"
    finally:
        carol.close()


def test_reload_keeps_the_session_and_sign_out_forgets_it(
    people: Any, site: Server, certs: CertPaths
) -> None:
    probe = ChatClient(site.address, certs.ca_cert)
    try:  # login tokens are a protocol extension: what does this server do?
        tokens = "token" in probe.login("dave", USERS["dave"])
    finally:
        probe.close()
    alice = people()
    alice.sign_in("alice", "#/room/keep", keep=True)
    expect(alice.page.locator("#title")).to_have_text("#keep")
    saved = alice.saved()
    assert saved is not None and saved["user"] == "alice" and saved["rooms"] == ["keep"]
    assert alice.page.evaluate("sessionStorage.getItem('securechat')") is None  # kept: local
    assert USERS["alice"] not in json.dumps(saved), "never the password"
    assert bool(saved["token"]) == tokens

    alice.page.reload()
    if tokens:  # signed in again by the token, into the same room
        expect(alice.page.locator("#title")).to_have_text("#keep")
        expect(alice.page.locator("#signin")).to_be_hidden()
    else:  # the password is asked again; the rooms come back
        expect(alice.page.get_by_label("User name")).to_have_value("alice")
        alice.page.get_by_label("Password").fill(USERS["alice"])
        alice.page.get_by_label("Password").press("Enter")
        expect(alice.page.locator("#title")).to_have_text("#keep")
        expect(alice.target("#keep")).to_be_visible()

    alice.page.get_by_role("button", name="Sign out").click()
    expect(alice.page.locator("#signin")).to_be_visible()
    assert alice.saved() is None
    if tokens:  # sign-out revoked it
        probe = ChatClient(site.address, certs.ca_cert)
        try:
            probe.expect("welcome")
            reply = probe.request(type="login", user="alice", token=saved["token"])
            assert reply["type"] == "error" and reply["code"] == "auth_failed", reply
        finally:
            probe.close()


def test_phone_screen(people: Any, site: Server) -> None:
    alice = people()
    alice.page.set_viewport_size({"width": 390, "height": 760})
    alice.sign_in("alice", "#/room/general")
    expect(alice.page.locator("#title")).to_have_text("#general")
    sidebar = alice.page.locator("#sidebar")
    expect(sidebar).to_be_hidden()  # a drawer, closed
    expect(alice.page.get_by_label("Message", exact=True)).to_be_visible()
    alice.page.get_by_role("button", name="Rooms").click()
    expect(sidebar).to_be_visible()
    alice.page.get_by_label("Join or create a room").fill("random")
    alice.page.get_by_label("Join or create a room").press("Enter")
    expect(sidebar).to_be_hidden()
    expect(alice.page.locator("#title")).to_have_text("#random")
    alice.say("small screen, " + "long words " * 40)
    expect(alice.page.locator("#messages li[data-id]")).to_have_count(1)
    width = alice.page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways: {width}px"
