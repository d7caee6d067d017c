"""``/upload`` and ``/download`` of ``securechat-client`` end to end, over real TLS.

The client runs as a subprocess in pipe mode (and once in tmux, for the progress line)
against an in-process server with the web edge; it gets its token from ``login_ok``
and speaks HTTPS (ALPN http/1.1) to the same port, verified against the same CA.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.client import transfer
from securechat.server.cli import Server
from securechat.server.files import FileLimits
from securechat.server.web import StaticFiles, WebSite
from tests.chatclient import ChatClient
from tests.client.test_client_cli import CLOCK, run_client
from tests.client.test_client_tty import Pane
from tests.conftest import USERS, run_server

ROOT = Path(__file__).parents[2]


@pytest.fixture
def file_server(certs, passwd_path, tmp_path) -> Iterator[Server]:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_bytes(b"<!doctype html>")
    site = WebSite(StaticFiles.from_folder(static))
    with run_server(certs, passwd_path, web=site, files=FileLimits(max_file_size=8 << 20)) as srv:
        yield srv


@pytest.fixture
def bob(file_server, certs) -> Iterator[ChatClient]:
    client = ChatClient(file_server.address, certs.ca_cert)
    assert client.login("bob", USERS["bob"])["type"] == "login_ok"
    assert client.request(type="join", room="general")["type"] == "joined"
    yield client
    client.close()


def test_upload_then_download_with_the_hash_checked(file_server, certs, tmp_path, bob):
    data = os.urandom(300_000)
    (tmp_path / "report 2026.pdf").write_bytes(data)
    result = run_client(file_server, certs, tmp_path, "alice", "/join", "general",
                        input='/upload "report 2026.pdf" the report\n')  # fmt: skip
    assert result.returncode == 0, result.stderr
    line = (rf"{CLOCK} #general \[1\] alice: \[file\] report 2026\.pdf "
            r"\(293\.0 KiB, ([\w-]+)\) the report")  # fmt: skip
    match = re.search(line, result.stdout)
    assert match, result.stdout
    assert "* shared report 2026.pdf (293.0 KiB) in #general" in result.stdout
    file_id = match.group(1)
    frame = bob.expect("message")
    assert frame["file"]["id"] == file_id and frame["text"] == "the report"
    assert frame["file"]["sha256"] == hashlib.sha256(data).hexdigest()

    # bob's own terminal client fetches it into a folder: under its own name.
    out = tmp_path / "downloads"
    out.mkdir()
    result = run_client(file_server, certs, tmp_path, "bob", "/join", "general",
                        input=f"/download {file_id} downloads\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "report 2026.pdf").read_bytes() == data
    assert "* saved downloads/report 2026.pdf (293.0 KiB, SHA-256 checked)" in result.stdout
    # Again: a new name, never over the first.
    run_client(file_server, certs, tmp_path, "bob", "/join", "general",
               input=f"/download {file_id} downloads\n")  # fmt: skip
    assert (out / "report 2026 (1).pdf").read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == ["report 2026 (1).pdf", "report 2026.pdf"]


def test_upload_to_a_user_and_download_to_a_path(file_server, certs, tmp_path, bob):
    (tmp_path / "note.txt").write_bytes(b"just for bob")
    result = run_client(file_server, certs, tmp_path, "alice",
                        input="/upload @bob note.txt\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    frame = bob.expect("dm")
    assert frame["file"]["name"] == "note.txt" and frame["text"] == ""
    assert f"alice -> bob: [file] note.txt (12 bytes, {frame['file']['id']})" in result.stdout
    result = run_client(file_server, certs, tmp_path, "carol",
                        input=f"/download {frame['file']['id']} stolen.txt\n")  # fmt: skip
    assert result.returncode == 1 and "403" in result.stdout + result.stderr
    assert not (tmp_path / "stolen.txt").exists() and not (tmp_path / "stolen.txt.part").exists()
    result = run_client(file_server, certs, tmp_path, "bob",
                        input=f"/download {frame['file']['id']} mine.txt\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mine.txt").read_bytes() == b"just for bob"


def test_failures_are_one_line_each_and_the_exit_status_says_so(file_server, certs, tmp_path):
    (tmp_path / "big.bin").write_bytes(b"\0" * ((8 << 20) + 1))
    (tmp_path / "exists.txt").write_text("mine")
    result = run_client(file_server, certs, tmp_path, "alice", "/join", "general",
                        input="/upload missing.bin\n/upload big.bin\n"
                        "/download NoSuchFile123\n")  # fmt: skip
    assert result.returncode == 1
    assert "! upload of missing.bin failed: missing.bin: not a file" in result.stdout
    assert "! upload of big.bin failed: 413 " in result.stdout
    assert "! download of NoSuchFile123 failed: 404 " in result.stdout
    assert "3 file transfers failed" in result.stderr
    assert list((file_server.hub.files.blobs).iterdir()) == []


def test_a_file_whose_bytes_changed_on_the_server_is_not_kept(file_server, certs, tmp_path):
    """The download is hashed as it arrives: bytes that are not what was announced (a
    disk that rotted, say) leave nothing behind."""
    (tmp_path / "a.txt").write_bytes(b"original bytes")
    result = run_client(file_server, certs, tmp_path, "alice", "/join", "general",
                        input="/upload a.txt\n")  # fmt: skip
    file_id = re.search(r"\(14 bytes, ([\w-]+)\)", result.stdout).group(1)
    [blob] = file_server.hub.files.blobs.glob("*/*")
    blob.write_bytes(b"rotten bytes!!")  # (same size)
    result = run_client(file_server, certs, tmp_path, "alice", "/join", "general",
                        input=f"/download {file_id} out.txt\n")  # fmt: skip
    assert result.returncode == 1
    assert "its hash or size differs" in result.stdout
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "out.txt.part").exists()


def test_a_server_without_the_web_edge_says_so(server, certs, tmp_path):
    (tmp_path / "a.txt").write_bytes(b"x")
    result = run_client(server, certs, tmp_path, "alice", "/join", "general",
                        input="/upload a.txt\n")  # fmt: skip
    assert result.returncode == 1
    assert "the server does not share files" in result.stdout


def test_an_interrupted_download_resumes_from_its_part(file_server, certs, tmp_path):
    data = os.urandom(1 << 20)
    token_client = ChatClient(file_server.address, certs.ca_cert)
    token = token_client.login("alice", USERS["alice"])["token"]
    token_client.request(type="join", room="general")
    server = transfer.Server("localhost", file_server.address[1], str(certs.ca_cert), token)
    (tmp_path / "data.bin").write_bytes(data)
    frame = transfer.upload(server, str(tmp_path / "data.bin"), room="general")
    target = tmp_path / "copy.bin"
    (tmp_path / "copy.bin.part").write_bytes(data[:300_000])  # what a cut download left
    seen: list[tuple[int, int | None]] = []
    _, size, _ = transfer.download(
        server, frame["file"]["id"], lambda name: str(target),
        sha256=frame["file"]["sha256"], progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert target.read_bytes() == data and size == len(data)
    assert seen[0][0] > 300_000 and seen[-1] == (len(data), len(data))  # (only the rest came)
    # A part of other bytes (the If-Range does not hold them) is replaced, not trusted.
    (tmp_path / "again.bin.part").write_bytes(b"garbage" * 1000)
    transfer.download(server, frame["file"]["id"], lambda name: str(tmp_path / "again.bin"),
                      sha256=frame["file"]["sha256"])  # fmt: skip
    assert (tmp_path / "again.bin").read_bytes() == data
    token_client.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_terminal_shows_the_progress_while_the_chat_goes_on(file_server, certs, tmp_path, bob):
    """The upload runs in the background: a progress line above the prompt (bytes, rate,
    time left), messages still arrive, and the prompt takes input meanwhile."""
    files = file_server.hub.files
    release = threading.Event()

    def slow_disk_check(path):  # the server holds the upload until we say so
        release.wait(20)
        return 10**12

    files.free_space = slow_disk_check
    (tmp_path / "big.bin").write_bytes(os.urandom(6 << 20))
    host, port = file_server.address
    env = {key: value for key, value in os.environ.items() if not key.startswith("TMUX")}
    env.update(PYTHONPATH=str(ROOT), SECURECHAT_PASSWORD=USERS["alice"], TERM="xterm")
    client = shlex.join([sys.executable, "-m", "securechat.client.cli", "--user", "alice",
                         "--host", host, "--port", str(port), "--cafile", str(certs.ca_cert),
                         "/join", "general"])  # fmt: skip
    pane = Pane(tmp_path, f"cd {shlex.quote(str(tmp_path))} && {client}", env)
    try:
        pane.wait_for(lambda s: s[-1] == "#general>")
        pane.keys("/upload big.bin", literal=True)
        pane.keys("Enter")
        progress = re.compile(r"^up big\.bin \[[#.]{20}\] +\d+% .* of 6\.00 MiB .*/s ")
        pane.wait_for(lambda s: any(progress.match(line) for line in s) and s[-1] == "#general>")
        bob.request(type="send", room="general", text="meanwhile")
        pane.wait_for(lambda s: any(line.endswith("bob: meanwhile") for line in s))
        release.set()
        screen = pane.wait_for(lambda s: any("* shared big.bin (6.00 MiB)" in line for line in s))
        assert any(re.search(r"alice: \[file\] big\.bin \(6\.00 MiB, ", line) for line in screen)
        pane.wait_for(lambda s: not any(progress.match(line) for line in s))
        pane.keys("/quit", literal=True)
        pane.keys("Enter")
    finally:
        release.set()
        pane.close()
    assert json.loads(json.dumps(bob.expect("message", text="")["file"]))["size"] == 6 << 20
