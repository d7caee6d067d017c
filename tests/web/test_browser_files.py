"""File sharing in a real browser: the attach button, drag and drop, the progress, the
preview of a safe image and the download link (headless Chromium, real TLS server).

Needs Playwright and Debian's chromium, like tests/web/test_browser.py; skipped otherwise.
"""

import base64
import hashlib
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
from tests.server.web.test_files import upload
from tests.web.pages import CHROMIUM, Person, launch

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
expect = sync_api.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install -y chromium)"
)
expect.set_options(timeout=10_000)

# A 1x1 PNG (red), and something that only claims to be an image.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def site(certs: CertPaths, passwd_path: Path) -> Iterator[Server]:
    with run_server(certs, passwd_path, Limits(**UNMETERED), web=WebSite()) as server:
        yield server


@pytest.fixture
def bob(site: Server, certs: CertPaths) -> Iterator[ChatClient]:
    client = ChatClient(site.address, certs.ca_cert)
    reply = client.login("bob", USERS["bob"])
    assert reply["type"] == "login_ok"
    client.token = reply["token"]  # type: ignore[attr-defined]  # (for bob's uploads)
    assert client.request(type="join", room="general")["type"] == "joined"
    yield client
    client.close()


def test_attach_drop_preview_and_download(browser: Any, site: Server, certs, bob, tmp_path):
    alice = Person(browser, site.address)
    try:
        page = alice.page
        alice.sign_in("alice", "#/room/general")
        expect(page.locator("#attach")).to_be_enabled()

        # The attach button: a picture, previewed inline from the file's bytes.
        (tmp_path / "cat.png").write_bytes(PNG)
        page.locator("#attach-input").set_input_files(str(tmp_path / "cat.png"))
        frame = bob.expect("message")
        assert frame["user"] == "alice" and frame["file"]["mime"] == "image/png"
        assert frame["file"]["sha256"] == hashlib.sha256(PNG).hexdigest()
        shown = page.locator("#messages li.msg", has_text="cat.png (")
        expect(shown.locator("button.file-link")).to_have_text(f"cat.png ({len(PNG)} bytes)")
        preview = shown.locator("img.preview")
        expect(preview).to_be_visible()
        assert preview.get_attribute("src").startswith("blob:")
        assert preview.evaluate("img => img.naturalWidth") == 1
        expect(page.locator("#uploads li")).to_have_count(0)  # (the progress is gone)

        # Drag and drop: a file dropped on the conversation is shared there.
        page.locator("#conversation").dispatch_event("drop", {"dataTransfer": page.evaluate_handle(
            """() => { const data = new DataTransfer();
                       data.items.add(new File(["dropped text"], "notes.txt",
                                               {type: "text/plain"}));
                       return data; }"""
        )})  # fmt: skip
        dropped = bob.expect("message")
        assert dropped["file"]["name"] == "notes.txt" and dropped["file"]["size"] == 12
        assert dropped["file"]["mime"] == "application/octet-stream"
        text_item = page.locator("#messages li.msg", has_text="notes.txt (12 bytes)")
        expect(text_item).to_be_visible()
        expect(text_item.locator("img")).to_have_count(0)  # (not an image: no preview)

        # bob shares a file (HTML pretending to be a PNG): a link, never a preview or a page.
        html = b"<script>alert(1)</script>"
        status, _, answer = upload(site, certs, bob.token, html, name="evil.png")
        assert status == 201, answer
        evil = page.locator("#messages li.msg", has_text="evil.png (")
        expect(evil.locator("button.file-link")).to_be_visible()
        expect(evil.locator("img")).to_have_count(0)

        # The download link saves the bytes under the file's name.
        with page.expect_download() as info:
            text_item.locator("button.file-link").click()
        download = info.value
        assert download.suggested_filename == "notes.txt"
        assert Path(download.path()).read_bytes() == b"dropped text"
        with page.expect_download() as info:
            evil.locator("button.file-link").click()
        assert Path(info.value.path()).read_bytes() == html
        assert alice.problems == [], alice.problems
    finally:
        alice.close()


def test_an_upload_the_server_refuses_is_a_notice(browser: Any, site: Server, tmp_path):
    site.hub.files.free_space = lambda _path: 0  # the disk is full: 507
    alice = Person(browser, site.address)
    try:
        page = alice.page
        alice.sign_in("alice", "#/room/general")
        alice.tolerate(r"status of 507")  # (the browser logs the refused request itself)
        (tmp_path / "big.bin").write_bytes(b"x" * 1000)
        page.locator("#attach-input").set_input_files(str(tmp_path / "big.bin"))
        expect(page.locator("#notices")).to_contain_text(
            re.compile(r"big\.bin was not shared: the server has no space")
        )
        expect(page.locator("#uploads li")).to_have_count(0)
        assert alice.problems == [], alice.problems
        assert alice.tolerated
    finally:
        alice.close()
