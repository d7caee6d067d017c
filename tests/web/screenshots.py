"""The web client's picture for the README: ``scripts/screenshot`` (this module's ``main``).

It stages one scene on a throwaway server (fresh certificates, users and data in a
temporary directory, so it never touches ``certs/``, ``securechat.passwd`` or
``data/``): alice's page at a desktop size in ``#general`` with a few messages (one
edited, one with a link, one on two lines), ``#random`` behind an unread badge, an
unread conversation with carol and a read one with bob. Three line-protocol clients
play the others. Every step waits on what the page shows, so the picture is the same
scene each run (only the clock times differ). ``--phone PNG`` also takes the same
page at a phone's size, drawer closed and open, to look at.

The browser tests use :func:`stage` too, so the script cannot rot unnoticed.
"""

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

from securechat.admin.certs import CertPaths, make_certs
from securechat.server.passwd import set_password
from securechat.server.web import WebSite
from tests.chatclient import ChatClient
from tests.conftest import UNMETERED, USERS, run_server
from tests.web.pages import DESKTOP, PHONE, Person, launch

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "web-client.png"


def _client(address: tuple[str, int], certs: CertPaths, user: str) -> ChatClient:
    client = ChatClient(address, certs.ca_cert)
    reply = client.login(user, USERS[user])
    assert reply["type"] == "login_ok", reply
    return client


@contextmanager
def stage(
    chromium: Any, address: tuple[str, int], certs: CertPaths, **page: Any
) -> Iterator[Person]:
    """Alice's page in the scene described above, ready for its picture, while the
    others stay connected (they are members, and present).

    ``page``: options for :class:`Person` (e.g. ``viewport``). The server must be fresh
    (the scene counts on its rooms being new).
    """
    from playwright.sync_api import expect

    with ExitStack() as stack:
        bob, carol, dave = (
            stack.enter_context(closing(_client(address, certs, name)))
            for name in ("bob", "carol", "dave")
        )
        alice = Person(chromium, address, **page)
        stack.callback(alice.close)
        for client in (bob, carol, dave):
            client.request(type="join", room="general")
        bob.request(
            type="send", room="general", text="Morning! The projector in room 2 works again."
        )
        slides = "Thanks. Slides for Thursday: https://example.org/thursday-slides"
        carol.request(type="send", room="general", text=slides)
        alice.sign_in("alice", "#/room/random")  # a shared link: alice joins #random
        for client in (bob, dave):
            client.request(type="join", room="random")
        alice.open("room", "general")
        expect(alice.message("Slides for Thursday")).to_be_visible()
        alice.say("I'll bring the HDMI adapter.")
        expect(alice.page.locator("#messages li[data-id]", has_text="HDMI")).to_be_visible()
        asked = carol.request(type="send", room="general", text="Who is in for lunch?")
        carol.request(type="edit", room="general", id=asked["id"],
                      text="Who is in for lunch on Friday?")  # fmt: skip
        dave.request(type="send", room="general", text="Me!\nI'll book a table for five.")
        bob.request(type="send", room="random", text="Has anyone seen a blue umbrella?")
        dave.request(type="send", room="random", text="Cake in the kitchen, help yourselves.")
        bob.request(type="dm", to="alice", text="Running 5 minutes late.")
        carol.request(type="dm", to="alice", text="Could you read my notes before Thursday?")
        expect(alice.message("book a table")).to_be_visible()
        expect(alice.message("lunch on Friday").locator(".edited")).to_be_visible()
        expect(alice.badge("#random")).to_contain_text("2")
        expect(alice.badge("@carol")).to_contain_text("1")
        expect(alice.badge("@bob")).to_contain_text("1")
        alice.pick("@bob")  # read bob's, answer it: a conversation without a badge
        expect(alice.message("Running 5 minutes late")).to_be_visible()
        alice.say("No problem, see you there.")
        expect(
            alice.page.locator("#messages li[data-id]", has_text="see you there")
        ).to_be_visible()
        alice.pick("#general")
        expect(alice.message("book a table")).to_be_visible()
        expect(alice.badge("@bob")).to_have_count(0)
        expect(alice.badge("@carol")).to_contain_text("1")
        expect(alice.badge("#general")).to_have_count(0)  # in view: read once reported
        expect(alice.page.locator("#member-list")).to_contain_text("dave")
        alice.page.mouse.move(0, 0)  # no message hovered
        yield alice


@contextmanager
def throwaway_server(directory: Path) -> Iterator[tuple[tuple[str, int], CertPaths]]:
    """A server on 127.0.0.1 port 0 with the web client, its files all in ``directory``."""
    directory.mkdir()
    certs = make_certs(directory / "certs")
    passwd = directory / "securechat.passwd"
    for name, password in USERS.items():
        set_password(passwd, name, password, rounds=4)
    with run_server(certs, passwd, _unmetered(), data_dir=directory / "data", web=WebSite()) as srv:
        yield srv.address, certs


def _unmetered() -> Any:
    from securechat.server.cli import Limits

    return Limits(**UNMETERED)


def take(out: Path, phone: Path | None = None) -> None:
    """Stage the scene and write ``out`` (desktop) and, if given, ``phone`` pictures."""
    from playwright.sync_api import expect, sync_playwright

    pictures: dict[Path, bytes] = {}
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as scratch:
        chromium = launch(playwright)  # before the server: its threads are not the server's
        try:
            with (
                throwaway_server(Path(scratch) / "desktop") as (address, certs),
                stage(chromium, address, certs, viewport=DESKTOP) as alice,
            ):
                pictures[out] = alice.page.screenshot()  # bytes: writing is ours, no thread
            if phone is not None:
                drawer = phone.with_name(f"{phone.stem}-drawer{phone.suffix}")
                with (
                    throwaway_server(Path(scratch) / "phone") as (address, certs),
                    stage(chromium, address, certs, viewport=PHONE) as alice,
                ):
                    pictures[phone] = alice.page.screenshot()
                    alice.sidebar()
                    expect(alice.page.locator("#sidebar")).to_be_visible()
                    pictures[drawer] = alice.page.screenshot()
        finally:
            chromium.close()
    for path, png in pictures.items():
        path.write_bytes(png)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="scripts/screenshot", description="Take the web client's picture for the README."
    )
    parser.add_argument(
        "out", nargs="?", type=Path, default=DEFAULT_OUT,
        help="where to write the PNG (default: docs/web-client.png)",
    )  # fmt: skip
    parser.add_argument(
        "--phone", type=Path, metavar="PNG",
        help="also at a phone's size (and PNG-drawer.png, its drawer open)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    take(args.out, args.phone)
    print(f"wrote {args.out}" + (f" and {args.phone}" if args.phone else ""))


if __name__ == "__main__":
    main()
