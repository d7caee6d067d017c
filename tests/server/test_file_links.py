"""Signed, expiring links to shared files (FileLinks), their key file, --public-url and
--file-link-days: pure tests, no sockets (the links over TLS are tested in
tests/server/irc/test_file_links.py)."""

import os
import random
import stat
import string

import pytest

from securechat.exceptions import StoreError
from securechat.server import cli
from securechat.server.files import (
    LINK_KEY,
    FileLinks,
    FileStore,
    default_public_url,
    parse_public_url,
)
from securechat.server.store import SqliteStore

KEY = bytes(range(32))
NOW = 1_800_000_000  # (2027-01-15)
FILE = "Ab3_-x9ZqRstUvWxYz0123"  # the shape of new_file_id()


@pytest.fixture
def links() -> FileLinks:
    return FileLinks(KEY, days=7, public_url="https://chat.example:7443")


# ---------------------------------------------------------------- signing and checking


def test_a_signed_link_checks_until_it_expires(links):
    value = links.sign(FILE, NOW + 60)
    expires, _, mac = value.partition(".")
    assert expires == str(NOW + 60) and len(mac) == 32 and int(mac, 16) >= 0
    assert links.check(FILE, value, NOW) and links.verdict(FILE, value, NOW) == "valid"
    assert links.verdict(FILE, value, NOW + 59.9) == "valid"
    assert links.verdict(FILE, value, NOW + 60) == "expired"
    assert not links.check(FILE, value, NOW + 61)


def test_a_link_is_for_one_file_under_one_key(links):
    value = links.sign(FILE, NOW + 60)
    assert links.verdict("another-file", value, NOW) == "invalid"
    other_key = FileLinks(bytes(32))
    assert other_key.verdict(FILE, value, NOW) == "invalid"
    assert other_key.sign(FILE, NOW + 60) != value


def test_a_tampered_expiry_or_signature_is_invalid_not_expired(links):
    value = links.sign(FILE, NOW - 60)  # expired already
    assert links.verdict(FILE, value, NOW) == "expired"
    expires, _, mac = value.partition(".")
    stretched = f"{NOW + 10**6}.{mac}"
    assert links.verdict(FILE, stretched, NOW) == "invalid"
    for index in range(len(mac)):  # every digit of the MAC matters
        flipped = mac[:index] + ("0" if mac[index] != "0" else "1") + mac[index + 1 :]
        assert links.verdict(FILE, f"{expires}.{flipped}", NOW - 100) == "invalid"
    # Other spellings of the same link are refused: one link, one string.
    good = links.sign(FILE, NOW + 60)
    for variant in ("0" + good, good.upper(), good + " ", " " + good, good + "\n",
                    good.replace(".", ":"), good[:-1], good + "0", "+" + good):  # fmt: skip
        assert links.verdict(FILE, variant, NOW) == "invalid", variant


def test_garbage_never_raises(links):
    good = links.sign(FILE, NOW + 60)
    rng = random.Random(15)
    alphabet = string.printable + "٣０\x00\udcff.é"
    samples = ["", ".", "..", "1.", ".1", "1e9." + "a" * 32, "-1." + "a" * 32,
               "9" * 40 + "." + "a" * 32, "١٢٣." + "a" * 32, None, 123, b"1.ab"]  # fmt: skip
    for _ in range(400):
        size = rng.randrange(0, 60)
        samples.append("".join(rng.choice(alphabet) for _ in range(size)))
        mutated = list(good)
        mutated[rng.randrange(len(mutated))] = rng.choice(alphabet)
        samples.append("".join(mutated))
    for value in samples:
        assert links.verdict(FILE, value, NOW) in ("invalid", "valid")  # type: ignore[arg-type]
        assert links.verdict(value, good, NOW) == "invalid" or value == FILE  # type: ignore[arg-type]
    assert links.check(FILE, good, NOW)


def test_the_key_must_be_32_bytes():
    with pytest.raises(ValueError, match="32 bytes"):
        FileLinks(b"short")


# ---------------------------------------------------------------- making links


def test_a_link_expires_days_after_the_message_or_after_now(links):
    ts = "2027-01-15T08:00:00.250Z"
    sent = NOW + 0.25
    assert links.expires(ts) == int(sent + 7 * 86400)
    assert links.expires(ts, now=NOW) == NOW + 7 * 86400  # (a replay: from now)
    assert links.expires("not a time", now=NOW) == NOW + 7 * 86400
    url = links.url(FILE, ts)
    value = links.sign(FILE, int(sent + 7 * 86400))
    assert url == f"https://chat.example:7443/api/files/{FILE}?link={value}"
    assert links.url(FILE, ts) == url  # (a function of the frame: the same every time)


def test_without_a_url_there_is_no_link_until_the_server_says_where_it_listens():
    links = FileLinks(KEY)
    assert links.base is None and links.url(FILE, now=NOW) is None
    ports = iter([7443])
    links.locate("127.0.0.1", lambda: next(ports))
    assert links.base == "https://127.0.0.1:7443"
    assert links.base == "https://127.0.0.1:7443"  # (found once: the port is not asked again)
    assert links.url(FILE, now=NOW).startswith("https://127.0.0.1:7443/api/files/")
    given = FileLinks(KEY, public_url="https://chat.example")
    given.locate("127.0.0.1", lambda: 1)
    assert given.base == "https://chat.example"


def test_the_default_url_is_the_host_given_and_the_port_bound(monkeypatch):
    monkeypatch.setattr("socket.getfqdn", lambda: "box.example.org")
    assert default_public_url("127.0.0.1", 7443) == "https://127.0.0.1:7443"
    assert default_public_url("chat.example", 443) == "https://chat.example"
    assert default_public_url("::1", 7443) == "https://[::1]:7443"
    assert default_public_url("0.0.0.0", 7443) == "https://box.example.org:7443"
    assert default_public_url("::", 7443) == "https://box.example.org:7443"


# ---------------------------------------------------------------- the key file


def test_the_key_is_made_once_private_and_kept(tmp_path):
    first = FileLinks.load(tmp_path / LINK_KEY)
    path = tmp_path / LINK_KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    value = first.sign(FILE, NOW + 60)
    again = FileLinks.load(path)  # (a restart)
    assert again.check(FILE, value, NOW)
    path.unlink()  # deleting the key revokes every link
    fresh = FileLinks.load(path)
    assert not fresh.check(FILE, value, NOW)


def test_the_file_store_keeps_its_key_beside_the_database_not_among_the_files(tmp_path):
    db = SqliteStore(tmp_path / "securechat.db")
    try:
        files = FileStore(tmp_path, db, link_days=2, public_url="https://chat.example")
        assert (tmp_path / LINK_KEY).is_file()
        assert list(files.blobs.iterdir()) == []  # (a backup copies files/ whole)
        assert files.links.days == 2 and files.links.base == "https://chat.example"
        value = files.links.sign(FILE, NOW + 60)
        assert FileStore(tmp_path, db).links.check(FILE, value, NOW)
    finally:
        db.close()


@pytest.mark.parametrize("content", [b"", b"x" * 31, b"x" * 33])
def test_a_damaged_key_stops_the_start_with_what_to_do(tmp_path, content):
    path = tmp_path / LINK_KEY
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(StoreError, match="delete it"):
        FileLinks.load(path)


def test_a_key_others_can_read_is_warned_about(tmp_path, caplog):
    path = tmp_path / LINK_KEY
    FileLinks.load(path)
    os.chmod(path, 0o644)
    FileLinks.load(path)
    assert "chmod 600" in caplog.text


# ---------------------------------------------------------------- the options


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://chat.example.org", "https://chat.example.org"),
        ("https://chat.example.org:7443/", "https://chat.example.org:7443"),
        ("HTTPS://Chat.Example.ORG", "https://chat.example.org"),
        ("https://[2001:db8::1]:7443", "https://[2001:db8::1]:7443"),
        ("https://192.0.2.7:8443", "https://192.0.2.7:8443"),
    ],
)
def test_a_public_url_is_an_https_origin(given, kept):
    assert parse_public_url(given) == kept


@pytest.mark.parametrize(
    "given",
    ["http://chat.example", "chat.example", "https://", "https://chat.example/chat",
     "https://chat.example/?x=1", "https://chat.example?", "https://chat.example#top",
     "https://user@chat.example", "https://chat.example:0", "https://chat.example:70000",
     "https://chat.example:https", "https://[nope]", "https://chat example",
     "https://chat.exa\tmple", "https://-chat.example", "ftp://chat.example"],
)  # fmt: skip
def test_a_bad_public_url_is_refused_with_a_reason(given):
    with pytest.raises(ValueError) as refused:
        parse_public_url(given)
    assert str(refused.value).startswith(repr(given) + " ")  # (it says which, and why)


def test_the_options_are_checked_at_start(capsys):
    args = cli._parse_args(["--cert", "x.pem"])
    assert args.public_url is None and args.file_link_days == 7
    args = cli._parse_args(["--cert", "x.pem", "--public-url", "https://Chat.Example:7443/",
                            "--file-link-days", "0.5"])  # fmt: skip
    assert args.public_url == "https://chat.example:7443" and args.file_link_days == 0.5
    for bad in (["--public-url", "http://chat.example"], ["--public-url", "https://x/chat"],
                ["--file-link-days", "0"], ["--file-link-days", "5000"]):  # fmt: skip
        with pytest.raises(SystemExit) as exited:
            cli._parse_args(["--cert", "x.pem", *bad])
        assert exited.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("securechat-server: error: " + bad[0]), error
