"""Headless Chromium driving the web client: shared by the browser tests and the
screenshot script (tests/web/screenshots.py).

Debian's ``chromium`` is driven by Playwright with ``executable_path`` (``playwright
install`` downloads are not available here). A :class:`Person` is one person's page in
its own browser context; it keeps every console message and page error, so a test can
assert that nothing went wrong on the page.
"""

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import USERS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 760}
EXPECT_TIMEOUT = 10_000  # ms; a shared two-core machine: be patient, not slow


def launch(playwright: Any) -> Any:
    """The system Chromium, headless."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def origin(address: tuple[str, int]) -> str:
    """The page's origin for a server on ``address`` (the certificate names localhost)."""
    return f"https://localhost:{address[1]}"


class Person:
    """One person's page in its own browser context, with what went wrong on it.

    ``problems`` collects console errors and warnings, uncaught exceptions and dialogs
    (an ``alert`` would mean an injection ran). A console line the browser itself writes
    and the page cannot prevent (a reconnect refused while the server is down) is kept
    out of it only if a test expects it by :meth:`tolerate`; such lines go to
    ``tolerated`` instead, so the test can also check they came.

    With ``clock``, the page runs on Playwright's fake clock (installed before the page
    loads, running at real speed): a test can pause the page's timers, e.g. to hold its
    reconnect back while the server is written to.
    """

    def __init__(
        self,
        chromium: Any,
        address: tuple[str, int],
        *,
        viewport: dict[str, int] | None = None,
        touch: bool = False,
        clock: bool = False,
    ) -> None:
        """``touch``: a phone's browser (touch screen, no pointer to hover with)."""
        self.context = chromium.new_context(
            ignore_https_errors=True,
            viewport=viewport or DESKTOP,
            is_mobile=touch,
            has_touch=touch,
            color_scheme="light",
            locale="en-GB",
            timezone_id="UTC",
        )
        self.origin = origin(address)
        self.problems: list[str] = []
        self.tolerated: list[str] = []
        self._tolerate: list[re.Pattern[str]] = []
        self.page = self.new_tab()
        if clock:
            self.page.clock.install()

    def new_tab(self) -> Any:
        """Another tab of this browser (same storage but its own sessionStorage),
        watched like the first."""
        page = self.context.new_page()
        page.set_default_timeout(EXPECT_TIMEOUT)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("dialog", self._dialog)
        return page

    def _console(self, message: Any) -> None:
        if message.type not in ("error", "warning"):
            return
        if any(pattern.search(message.text) for pattern in self._tolerate):
            self.tolerated.append(message.text)
        else:
            self.problems.append(f"console {message.type}: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.problems.append(f"dialog: {dialog.message}")  # e.g. alert(1) from an injection
        dialog.dismiss()

    def tolerate(self, pattern: str) -> None:
        """Console errors matching ``pattern`` are expected: not problems."""
        self._tolerate.append(re.compile(pattern))

    def sign_in(self, user: str, hash_: str = "", *, keep: bool = False) -> None:
        """Open the page (at ``hash_``, e.g. ``#/room/general``) and sign in."""
        from playwright.sync_api import expect

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

    def stored(self) -> dict[str, str | None]:
        """The raw saved entry of each storage, by name."""
        return self.page.evaluate(
            "({local: localStorage.getItem('securechat'),"
            " session: sessionStorage.getItem('securechat')})"
        )

    def message(self, text: str) -> Any:
        return self.page.locator("#messages li.msg", has_text=text)

    def target(self, label: str) -> Any:
        """A room (``#name``) or conversation (``@name``) in the sidebar."""
        return self.page.locator("#sidebar a.target", has_text=label)

    def badge(self, label: str) -> Any:
        return self.target(label).locator(".badge")

    def sidebar(self) -> None:
        """Make sure the sidebar shows (on a phone it is a drawer: open it)."""
        if not self.page.locator("#sidebar").is_visible():
            self.page.get_by_role("button", name="Rooms").click()

    def pick(self, label: str) -> None:
        """Click a room or conversation in the sidebar (which closes a drawer)."""
        self.sidebar()
        self.target(label).click()

    def open(self, kind: str, name: str) -> None:
        """Join a room or open a conversation with the sidebar's forms."""
        self.sidebar()
        field = "#join-room" if kind == "room" else "#dm-user"
        self.page.fill(field, name)
        self.page.press(field, "Enter")

    def say(self, text: str) -> None:
        self.page.get_by_label("Message", exact=True).fill(text)
        self.page.get_by_label("Message", exact=True).press("Enter")

    def ids(self) -> list[int]:
        return [int(i) for i in self.page.locator("#messages li[data-id]").evaluate_all(
            "items => items.map(li => li.dataset.id)")]  # fmt: skip

    def close(self) -> None:
        self.context.close()
