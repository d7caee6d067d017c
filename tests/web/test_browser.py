"""The web client in a real browser: headless Chromium against a real server.

Browser pages (each person, or each device, in its own browser context), our terminal
client (``python -m securechat.client`` in pipe mode) and line-protocol test clients
(tests/chatclient.py) share rooms over real TLS on 127.0.0.1: messages each way, edit,
delete, a refused delete, direct messages, presence, unread counts and read markers
that agree across devices, scrolling back through history, a message of HTML shown as
text, login tokens kept or forgotten, a lost connection and a restarted server (a
real server process) caught up from. No page may log an error or a warning, throw, or
open a dialog (tests/web/pages.py collects them). Every wait is on something the page
shows (Playwright's ``expect`` polls the DOM), a console line, or a frame or line a
client reads; no sleeps.

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
from tests.client.test_client_cli import CLOCK, LiveClient, client_argv
from tests.conftest import UNMETERED, USERS, run_server
from tests.serverprocess import ServerProcess
from tests.web.pages import CHROMIUM, PHONE, Person, launch
from tests.web.screenshots import stage

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
expect = sync_api.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install -y chromium)"
)
expect.set_options(timeout=10_000)  # a shared two-core machine: be patient, not slow


def unread(count: int) -> re.Pattern[str]:
    """A badge's text: the count, and " unread" for screen readers."""
    return re.compile(rf"^\s*{count} unread$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module (before any server, so its threads are not leaks)."""
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright)
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


class CuttablePerson(Person):
    """A page whose WebSocket goes through a Playwright route that the test can cut
    (:meth:`cut`) and keep cut until :meth:`mend`, to see the page lose the connection
    and come back while the server stays up.

    Playwright's Python client relays each frame of a routed WebSocket itself, and the
    sync API only does so while the test is inside a Playwright call: wait on the page
    (``expect``) before blocking on the line client.
    """

    def __init__(self, chromium: Any, address: tuple[str, int], **options: Any) -> None:
        super().__init__(chromium, address, **options)
        self._blocked = False
        self._sockets: list[Any] = []
        self.page.route_web_socket("**/ws", self._route)

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


@pytest.fixture
def people(browser: Any, site: Server) -> Iterator[Any]:
    """A factory of browser pages (on ``site`` unless given an ``address``); at the
    end, none may have had a problem (console error or warning, exception, dialog).
    The pages close before ``site`` stops (else they would try to reconnect)."""
    opened: list[Person] = []

    def open_page(kind: type[Person] = Person, address: Any = None, **options: Any) -> Person:
        page = kind(browser, address or site.address, **options)
        opened.append(page)
        return page

    yield open_page
    problems = {index: page.problems for index, page in enumerate(opened)}
    for page in opened:
        page.close()
    assert all(not p for p in problems.values()), problems


def line_client(address: tuple[str, int], certs: CertPaths, user: str) -> ChatClient:
    client = ChatClient(address, certs.ca_cert)
    assert client.login(user, USERS[user])["type"] == "login_ok"
    return client


def test_two_pages_and_a_line_client(people: Any, site: Server, certs: CertPaths) -> None:
    alice, bob = people(), people()
    alice.sign_in("alice", "#/room/general")  # a shared link: joined after signing in
    expect(alice.page.locator("#title")).to_have_text("#general")
    expect(alice.page.get_by_label("Message", exact=True)).to_be_focused()
    bob.sign_in("bob", "#/room/general")
    carol = line_client(site.address, certs, "carol")
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
        expect(alice.badge("@carol")).to_have_text(unread(1))
        alice.target("@carol").click()
        expect(alice.page.locator("#title")).to_have_text("@carol")
        expect(alice.message("psst alice")).to_be_visible()
        expect(alice.badge("@carol")).to_have_count(0)
        assert alice.page.url.endswith("#/dm/carol")
        alice.say("hi carol")
        carol.expect("dm", **{"from": "alice", "to": "carol", "text": "hi carol"})

        # unread in a room not in view; opening it reads it
        carol.request(type="send", room="general", text="while alice looks elsewhere")
        expect(alice.badge("#general")).to_have_text(unread(1))
        expect(alice.page).to_have_title(re.compile(r"^\(1\) "))
        alice.target("#general").click()
        expect(alice.message("while alice looks elsewhere")).to_be_visible()
        expect(alice.badge("#general")).to_have_count(0)

        # carol leaves: presence reaches the pages
        carol.request(type="leave", room="general")
        expect(alice.page.locator("#member-list")).not_to_contain_text("carol")
        expect(bob.page.locator("#member-list")).not_to_contain_text("carol")
    finally:
        carol.close()


def test_two_pages_and_the_terminal_client(
    people: Any, site: Server, certs: CertPaths, tmp_path: Path
) -> None:
    """Our own terminal client, as a person runs it, in one room with two pages."""
    alice, bob = people(), people()
    alice.sign_in("alice", "#/room/general")
    bob.sign_in("bob", "#/room/general")
    expect(alice.page.locator("#member-list")).to_contain_text("bob")
    argv = client_argv(site.address, certs.ca_cert, "carol", "/join", "general")
    carol = LiveClient(argv, tmp_path, USERS["carol"])
    try:
        carol.wait_for(r"^\* joined #general \(3 members: alice, bob, carol\)$")
        for page in (alice, bob):  # presence
            expect(page.page.locator("#member-list")).to_contain_text("carol")

        # the terminal to the pages: the same id on every screen
        carol.send("hello from the terminal")
        line = carol.wait_for(rf"^{CLOCK} #general \[\d+\] carol: hello from the terminal$")
        id_ = int(re.search(r"\[(\d+)\]", line)[1])
        for page in (alice, bob):
            expect(page.page.locator(f'#messages li[data-id="{id_}"]')).to_have_text(
                re.compile("carol.*hello from the terminal")
            )

        # the pages to the terminal: a message, its edit, its deletion
        alice.say("hello from the browser")
        line = carol.wait_for(rf"^{CLOCK} #general \[\d+\] alice: hello from the browser$")
        mine = int(re.search(r"\[(\d+)\]", line)[1])
        bob.say("and from bob's page")
        carol.wait_for(rf"^{CLOCK} #general \[{mine + 1}\] bob: and from bob's page$")
        own = alice.page.locator(f'#messages li[data-id="{mine}"]')
        own.hover()
        own.get_by_role("button", name=f"Edit message {mine}").click()
        alice.page.locator(".edit-box").fill("hello again, edited")
        alice.page.locator(".edit-box").press("Enter")
        carol.wait_for(rf"^{CLOCK} #general \[{mine}\] alice \(edited\): hello again, edited$")
        expect(bob.message("hello again, edited").locator(".edited")).to_be_visible()
        own.hover()
        own.get_by_role("button", name=f"Delete message {mine}").click()
        alice.page.locator("#messages .actions.confirm button.danger").click()
        carol.wait_for(rf"^{CLOCK} #general \[{mine}\] deleted by alice$")
        expect(bob.message("hello again, edited")).to_have_count(0)

        # direct messages each way
        carol.send("/msg alice a word in private")
        expect(alice.badge("@carol")).to_have_text(unread(1))
        alice.pick("@carol")
        expect(alice.message("a word in private")).to_be_visible()
        alice.say("private answer")
        carol.wait_for(rf"^{CLOCK} \[dm \d+\] alice -> carol: private answer$")
        expect(bob.page.locator("#dm-list")).not_to_contain_text("carol")  # not bob's

        # the terminal leaves: the pages see it
        carol.send("/leave general")
        carol.wait_for(r"^\* left #general$")
        expect(bob.page.locator("#member-list")).not_to_contain_text("carol")
        assert carol.finish() == (0, "")
    finally:
        carol.kill()


def test_read_markers_agree_across_two_pages(people: Any, site: Server, certs: CertPaths) -> None:
    """Alice on a laptop and a phone (two pages of one user): what she reads on one is
    read on the other, and a reloaded page counts unread from the server's marker."""
    laptop, phone = people(), people(viewport=PHONE)
    for page in (laptop, phone):
        page.sign_in("alice", "#/room/general")
        page.open("room", "side")  # both look at #side, #general in the list
        expect(page.page.locator("#title")).to_have_text("#side")
    carol = line_client(site.address, certs, "carol")
    try:
        carol.request(type="join", room="general")
        for n in range(1, 4):
            carol.request(type="send", room="general", text=f"first {n}")
        for page in (laptop, phone):
            expect(page.badge("#general")).to_have_text(unread(3))

        laptop.pick("#general")  # read on the laptop ...
        expect(laptop.message("first 3")).to_be_visible()
        expect(laptop.badge("#general")).to_have_count(0)
        phone.sidebar()  # ... is read on the phone, which never showed them
        expect(phone.badge("#general")).to_have_count(0)
        expect(phone.page.locator("#title")).to_have_text("#side")

        laptop.pick("#side")
        for n in range(1, 3):
            carol.request(type="send", room="general", text=f"then {n}")
        expect(laptop.badge("#general")).to_have_text(unread(2))
        expect(phone.badge("#general")).to_have_text(unread(2))
        phone.page.reload()  # the count comes back from joined.read_id, not from memory
        expect(phone.page.locator("#title")).to_have_text("#side")
        phone.sidebar()
        expect(phone.badge("#general")).to_have_text(unread(2))

        # a conversation has its marker too
        carol.request(type="dm", to="alice", text="one for you")
        expect(laptop.badge("@carol")).to_have_text(unread(1))
        expect(phone.badge("@carol")).to_have_text(unread(1))
        laptop.pick("@carol")
        expect(laptop.message("one for you")).to_be_visible()
        expect(phone.badge("@carol")).to_have_count(0)
        expect(phone.badge("#general")).to_have_text(unread(2))  # still unread there
    finally:
        carol.close()


def test_scrolling_back_through_history(people: Any, site: Server, certs: CertPaths) -> None:
    carol = line_client(site.address, certs, "carol")
    try:
        carol.request(type="join", room="archive")
        for n in range(1, 121):
            carol.send(type="send", room="archive", text=f"old {n}", ref=f"s{n}")
        carol.expect("message", ref="s120")
    finally:
        carol.close()
    alice = people()
    alice.sign_in("alice")
    alice.open("room", "archive")
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
    carol = line_client(site.address, certs, "carol")
    try:
        carol.request(type="join", room="general")
        carol.request(type="send", room="general", text="before")
        alice = people(CuttablePerson)
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


FAST = ("--frame-rate", "1000", "--frame-burst", "1000")  # carol writes quickly


def test_server_restart_the_page_reconnects_and_catches_up(
    people: Any, certs: CertPaths, passwd_path: Path, tmp_path: Path
) -> None:
    """A real server process stopped and started again on its port and data: the page
    notices, retries by itself, and once back shows what it missed, each once, in order.

    The page runs on Playwright's clock: once it has been refused while the server is
    down, its timers are paused, so the server can be restarted and written to before
    the page's reconnect is due (those messages can only reach it by the catch-up,
    ``history after=``); then the clock runs on and the page's own backoff fires.
    """
    data = tmp_path / "data"
    server = ServerProcess(certs.server, passwd_path, data, *FAST)
    carol: ChatClient | None = None
    try:
        port = server.address[1]
        alice = people(address=server.address, clock=True)
        # the browser's own line for a reconnect refused while the server is down
        refused = rf"^WebSocket connection to 'wss://localhost:{port}/ws' failed: .*REFUSED"
        alice.tolerate(refused)
        alice.sign_in("alice", "#/room/general")
        carol = line_client(server.address, certs, "carol")
        carol.request(type="join", room="general")
        carol.request(type="send", room="general", text="before the restart")
        expect(alice.message("before the restart")).to_be_visible()
        carol.close()

        with alice.page.expect_console_message(lambda m: re.search(refused, m.text) is not None):
            assert server.terminate() == 0
            status = alice.page.locator("#status")
            expect(status).to_contain_text("Offline. The server is shutting down.")
        alice.say("typed while the server was down")
        pending = alice.message("typed while the server was down")
        expect(pending).to_contain_text("waiting for the connection")
        alice.page.clock.pause_at(alice.page.evaluate("Date.now()") + 10)

        server = ServerProcess(certs.server, passwd_path, data, *FAST, "--port", str(port))
        carol = line_client(server.address, certs, "carol")
        carol.request(type="join", room="general")
        for n in range(1, 61):  # more than the 50 that joined brings back
            carol.send(type="send", room="general", text=f"missed {n}", ref=f"m{n}")
        carol.expect("message", ref="m60")
        carol.request(type="dm", to="alice", text="a DM while you were away")
        assert alice.page.locator("#status").is_visible(), "not back before its timer fired"

        alice.page.clock.run_for(30_000)  # the longest backoff: the reconnect is due
        alice.page.clock.resume()
        expect(alice.page.locator("#status")).to_be_hidden()
        expect(alice.message("missed 60")).to_be_visible()
        mine = carol.expect("message", room="general", text="typed while the server was down")
        expect(alice.page.locator(f'#messages li[data-id="{mine["id"]}"]')).to_be_visible()
        expect(pending).to_have_count(1)
        ids = alice.ids()
        assert ids == list(range(1, mine["id"] + 1)), ids  # each once, in order, no gap
        expect(alice.badge("@carol")).to_have_text(unread(1))
        history = carol.request(type="history", room="general", limit=200)
        texts = [m["text"] for m in history["messages"]]
        assert texts.count("typed while the server was down") == 1, "sent once"
        assert alice.tolerated, "the page tried while the server was down"
    finally:
        if carol is not None:
            carol.close()
        server.terminate()


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "this-tab"])
def test_a_token_keeps_the_session_and_sign_out_revokes_it(
    people: Any, site: Server, certs: CertPaths, keep: bool
) -> None:
    """ "Keep me signed in": the token in localStorage (every tab, after a restart of
    the browser); otherwise in sessionStorage (this tab, across reloads). Never the
    password. Signing out revokes the token on the server."""
    alice = people()
    alice.sign_in("alice", "#/room/keep", keep=keep)
    expect(alice.page.locator("#title")).to_have_text("#keep")
    stored = alice.stored()
    kept, other = ("local", "session") if keep else ("session", "local")
    assert stored[other] is None, stored
    saved = json.loads(stored[kept])
    assert saved["user"] == "alice" and saved["rooms"] == ["keep"], saved
    assert saved["token"], saved
    everything = alice.page.evaluate(
        "JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])"
    )
    assert USERS["alice"] not in everything, "never the password"
    probe = ChatClient(site.address, certs.ca_cert)
    try:  # the token is a real one: it logs in
        probe.expect("welcome")
        reply = probe.request(type="login", user="alice", token=saved["token"])
        assert reply["type"] == "login_ok", reply
    finally:
        probe.close()

    alice.page.reload()  # signed in again by the token, into the same room
    expect(alice.page.locator("#title")).to_have_text("#keep")
    expect(alice.page.locator("#signin")).to_be_hidden()
    assert alice.saved() == saved

    tab = alice.new_tab()  # another tab: signed in only if kept
    tab.goto(alice.origin + "/")
    expect(tab.locator("#chat" if keep else "#signin")).to_be_visible()
    if not keep:
        expect(tab.get_by_label("User name")).to_be_focused()
    tab.close()

    alice.page.get_by_role("button", name="Sign out").click()
    expect(alice.page.locator("#signin")).to_be_visible()
    expect(alice.page.get_by_label("Password")).to_have_value("")
    assert alice.stored() == {"local": None, "session": None}
    probe = ChatClient(site.address, certs.ca_cert)
    try:  # sign-out revoked it
        probe.expect("welcome")
        reply = probe.request(type="login", user="alice", token=saved["token"])
        assert reply["type"] == "error" and reply["code"] == "auth_failed", reply
    finally:
        probe.close()
    alice.page.reload()
    expect(alice.page.locator("#signin")).to_be_visible()  # and stays signed out


def test_phone_screen(browser: Any, site: Server, certs: CertPaths) -> None:
    """The README's scene on a phone (touch, no hover): drawers, buttons on tap, no
    sideways scrolling. Also keeps scripts/screenshot's scene working."""
    with stage(browser, site.address, certs, viewport=PHONE, touch=True) as alice:
        page = alice.page
        sidebar = page.locator("#sidebar")
        expect(sidebar).to_be_hidden()  # a drawer, closed; its button counts what is unread
        expect(page.get_by_role("button", name="Rooms")).to_have_text(re.compile(r"Rooms\s*3"))
        expect(page.get_by_label("Message", exact=True)).to_be_visible()

        # a message's buttons show once it is tapped, not on every message
        theirs = alice.message("book a table")
        expect(page.get_by_role("button", name=re.compile("^(Edit|Delete) message"))).to_have_count(
            0
        )
        theirs.tap()
        expect(theirs.get_by_role("button", name=re.compile("^Delete message"))).to_be_visible()
        own = alice.message("HDMI")
        own.tap()
        expect(own.get_by_role("button", name=re.compile("^Edit message"))).to_be_visible()
        expect(theirs.get_by_role("button", name=re.compile("^Delete message"))).to_be_hidden()

        # the drawer: a tap outside closes it; picking a room closes it too
        page.get_by_role("button", name="Rooms").tap()
        expect(sidebar).to_be_visible()
        expect(alice.badge("#random")).to_have_text(unread(2))
        page.locator("#log").tap(position={"x": 360, "y": 300})
        expect(sidebar).to_be_hidden()
        alice.open("room", "random")
        expect(sidebar).to_be_hidden()
        expect(page.locator("#title")).to_have_text("#random")
        alice.say("small screen, " + "long words " * 40)
        expect(page.locator("#messages li.msg", has_text="small screen")).to_have_attribute(
            "data-id", re.compile(r"^\d+$")
        )
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= PHONE["width"], f"the page scrolls sideways: {width}px"
        alice.pick("@carol")  # the last unread: the drawer's button says just "Rooms"
        expect(alice.message("read my notes")).to_be_visible()
        expect(page.get_by_role("button", name="Rooms")).to_have_text("Rooms")
        assert not alice.problems, alice.problems
