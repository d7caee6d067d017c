"""File sharing over real TLS: uploads into rooms and DMs, downloads with ranges, and
every bad input of issue 15 (tokens, membership, names, hashes, lengths, cut
connections, the same bytes twice at once, quotas, the free-disk floor)."""

import contextlib
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from securechat.admin.certs import CertPaths
from securechat.server.cli import Limits, Server
from securechat.server.files import FileLimits
from securechat.server.web import StaticFiles, WebSite
from tests.chatclient import ChatClient
from tests.conftest import USERS, run_server, wait_until
from tests.server.web.conftest import web_context

LIMIT = 256 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def file_server(certs: CertPaths, passwd_path: Path, web_files: Path) -> Iterator[Server]:
    limits = FileLimits(max_file_size=LIMIT, quota=4 * LIMIT, upload_burst=1000,
                        uploads_at_once=4)  # fmt: skip
    site = WebSite(StaticFiles.from_folder(web_files))
    with run_server(certs, passwd_path, Limits(), web=site, files=limits) as server:
        yield server


class Chat:
    """A logged-in line client with its login token, in ``rooms``."""

    def __init__(self, server: Server, certs: CertPaths, user: str, *rooms: str) -> None:
        self.client = ChatClient(server.address, certs.ca_cert)
        reply = self.client.login(user, USERS[user])
        self.token: str = reply["token"]
        for room in rooms:
            assert self.client.request(type="join", room=room)["type"] == "joined"

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def chat(file_server, certs) -> Iterator:
    opened: list[Chat] = []

    def factory(user: str, *rooms: str) -> Chat:
        opened.append(Chat(file_server, certs, user, *rooms))
        return opened[-1]

    yield factory
    for each in opened:
        each.close()


def https(server: Server, certs: CertPaths) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("localhost", server.address[1],
                                       context=web_context(certs), timeout=10)  # fmt: skip


def upload(
    server: Server,
    certs: CertPaths,
    token: str | None,
    body: bytes,
    *,
    room: str | None = "general",
    to: str | None = None,
    name: str | None = "notes.txt",
    headers: dict[str, str] | None = None,
    text: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    query = [f"room={room}"] if room is not None else [f"to={to}"]
    if name is not None:
        query.append("name=" + quote(name, safe=""))
    if text is not None:
        query.append("text=" + quote(text, safe=""))
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    connection = https(server, certs)
    connection.request("POST", "/api/files?" + "&".join(query), body=body, headers=sent)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def download(
    server: Server, certs: CertPaths, token: str | None, file_id: str, method: str = "GET",
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    connection = https(server, certs)
    connection.request(method, f"/api/files/{file_id}", headers=sent)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def data_dir(server: Server) -> Path:
    files = server.hub.files
    assert files is not None
    return files.blobs.parent


def stored_blobs(server: Server) -> list[Path]:
    return sorted((data_dir(server) / "files").glob("*/*"))


def unfinished(server: Server) -> list[Path]:
    return list((data_dir(server) / "uploads.tmp").iterdir())


def history(client: ChatClient, room: str = "general") -> list[dict]:
    return client.request(type="history", room=room)["messages"]


# ---------------------------------------------------------------- the happy paths


def test_an_upload_is_posted_to_the_room_and_downloaded_by_a_member(file_server, certs, chat):
    alice, bob = chat("alice", "general"), chat("bob", "general")
    body = os.urandom(100_000)
    digest = hashlib.sha256(body).hexdigest()
    status, headers, answer = upload(file_server, certs, alice.token, body, text="the notes",
                                     headers={"X-Content-SHA256": digest.upper()})  # fmt: skip
    assert status == 201, answer
    assert headers["content-type"] == "application/json"
    frame = json.loads(answer)
    file = frame["file"]
    assert frame["type"] == "message" and frame["text"] == "the notes"
    assert (file["name"], file["size"], file["sha256"]) == ("notes.txt", len(body), digest)
    assert file["mime"] == "application/octet-stream"
    # Every member (the uploader's chat connection too) gets the same frame, in order.
    assert bob.client.expect("message") == frame
    assert alice.client.expect("message") == frame
    assert history(bob.client)[-1]["file"] == file
    joined = chat("carol").client.request(type="join", room="general")
    assert joined["history"][-1]["file"] == file
    status, headers, got = download(file_server, certs, bob.token, file["id"])
    assert status == 200 and got == body
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == (
        "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt"
    )
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["etag"] == f'"{digest}"'
    assert headers["accept-ranges"] == "bytes"
    assert [p.name for p in stored_blobs(file_server)] == [digest[2:]]


def test_a_file_in_a_direct_message_is_for_its_two_parties(file_server, certs, chat):
    alice, bob, carol = chat("alice"), chat("bob"), chat("carol")
    status, _, answer = upload(file_server, certs, alice.token, b"for bob", room=None, to="bob")
    assert status == 201, answer
    frame = json.loads(answer)
    assert frame["type"] == "dm" and frame["to"] == "bob" and frame["text"] == ""
    assert bob.client.expect("dm") == frame
    assert alice.client.expect("dm") == frame
    file_id = frame["file"]["id"]
    assert download(file_server, certs, bob.token, file_id)[::2] == (200, b"for bob")
    assert download(file_server, certs, alice.token, file_id)[::2] == (200, b"for bob")
    assert download(file_server, certs, carol.token, file_id)[0] == 403
    page = bob.client.request(type="dm_history", **{"with": "alice"})
    assert page["messages"][-1]["file"] == frame["file"]
    assert upload(file_server, certs, alice.token, b"x", room=None, to="nobody")[0] == 404


def test_a_safe_image_keeps_its_type_whatever_was_declared(file_server, certs, chat):
    alice = chat("alice", "general")
    status, _, answer = upload(file_server, certs, alice.token, PNG, name="cat.png",
                               headers={"Content-Type": "text/html"})  # fmt: skip
    file = json.loads(answer)["file"]
    assert status == 201 and file["mime"] == "image/png"
    assert download(file_server, certs, alice.token, file["id"])[1]["content-type"] == "image/png"
    html = b"<html><script>alert(1)</script>"
    status, _, answer = upload(file_server, certs, alice.token, html, name="cat.png",
                               headers={"Content-Type": "image/png"})  # fmt: skip
    file = json.loads(answer)["file"]
    assert file["mime"] == "application/octet-stream"
    headers = download(file_server, certs, alice.token, file["id"])[1]
    assert headers["content-type"] == "application/octet-stream"


def test_the_name_may_come_in_content_disposition(file_server, certs, chat):
    alice = chat("alice", "general")
    disposition = "attachment; filename=\"fallback.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    status, _, answer = upload(file_server, certs, alice.token, b"cv", name=None,
                               headers={"Content-Disposition": disposition})  # fmt: skip
    assert status == 201 and json.loads(answer)["file"]["name"] == "r\u00e9sum\u00e9.txt"
    status, _, answer = upload(file_server, certs, alice.token, b"x", name=None)
    assert status == 400 and b"name" in answer


def test_an_empty_file_may_be_shared(file_server, certs, chat):
    alice = chat("alice", "general")
    status, _, answer = upload(file_server, certs, alice.token, b"", name="empty")
    file = json.loads(answer)["file"]
    assert status == 201 and file["size"] == 0
    assert download(file_server, certs, alice.token, file["id"])[::2] == (200, b"")


# ---------------------------------------------------------------- downloads: ranges


def test_byte_ranges_resume_a_download(file_server, certs, chat):
    alice = chat("alice", "general")
    body = bytes(range(256)) * 40
    file_id = json.loads(upload(file_server, certs, alice.token, body)[2])["file"]["id"]
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    cases = [
        ("bytes=2-5", 206, body[2:6], f"bytes 2-5/{len(body)}"),
        ("bytes=10000-", 206, body[10000:], f"bytes 10000-10239/{len(body)}"),
        ("bytes=-3", 206, body[-3:], f"bytes 10237-10239/{len(body)}"),
        ("bytes=0-999999", 206, body, f"bytes 0-10239/{len(body)}"),
        ("bytes=0-1,5-6", 200, body, None),  # several ranges: the whole file
        ("items=0-1", 200, body, None),
        ("bytes=10240-", 416, b"", f"bytes */{len(body)}"),
    ]
    for header, status, expected, content_range in cases:
        got_status, headers, got = download(file_server, certs, alice.token, file_id,
                                            Range=header)  # fmt: skip
        assert (got_status, got) == (status, expected), header
        assert headers.get("content-range") == content_range, header
    # If-Range with another validator: the bytes changed for the client, send them all.
    status, _, got = download(file_server, certs, alice.token, file_id, Range="bytes=0-0",
                              If_Range='"other"')  # fmt: skip
    assert (status, got) == (200, body)
    status, _, got = download(file_server, certs, alice.token, file_id, Range="bytes=0-0",
                              If_Range=etag)  # fmt: skip
    assert (status, got) == (206, body[:1])
    assert download(file_server, certs, alice.token, file_id, If_None_Match=etag)[0] == 304
    status, headers, got = download(file_server, certs, alice.token, file_id, method="HEAD")
    assert (status, got, headers["content-length"]) == (200, b"", str(len(body)))


def test_a_large_download_streams_over_keep_alive(file_server, certs, chat):
    """Several downloads of a file larger than the output budget on one connection."""
    alice = chat("alice", "general")
    body = os.urandom(LIMIT)
    file_id = json.loads(upload(file_server, certs, alice.token, body)[2])["file"]["id"]
    connection = https(file_server, certs)
    for _ in range(3):
        connection.request("GET", f"/api/files/{file_id}",
                           headers={"Authorization": f"Bearer {alice.token}"})  # fmt: skip
        response = connection.getresponse()
        assert response.status == 200 and response.read() == body
    connection.request("GET", "/")
    assert connection.getresponse().read().startswith(b"<!doctype html>")
    connection.close()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("token", [None, "not-a-token", "x" * 300])
def test_no_or_a_wrong_token_is_401_and_stores_nothing(file_server, certs, chat, token):
    alice = chat("alice", "general")
    status, headers, _ = upload(file_server, certs, token, b"secret")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert stored_blobs(file_server) == [] and unfinished(file_server) == []
    file_id = json.loads(upload(file_server, certs, alice.token, b"mine")[2])["file"]["id"]
    assert download(file_server, certs, token, file_id)[0] == 401
    assert history(alice.client)[-1]["file"]["id"] == file_id  # (only that one)
    assert len(history(alice.client)) == 1


def test_a_revoked_token_is_401(file_server, certs, chat):
    alice = chat("alice", "general")
    other = ChatClient(file_server.address, certs.ca_cert)
    token = other.login("alice", USERS["alice"])["token"]
    assert other.request(type="logout")["type"] == "bye"
    other.close()
    assert upload(file_server, certs, token, b"x")[0] == 401
    assert upload(file_server, certs, alice.token, b"x")[0] == 201


def test_not_a_member_is_403(file_server, certs, chat):
    alice, bob = chat("alice", "general"), chat("bob", "random")
    assert upload(file_server, certs, bob.token, b"x")[0] == 403
    file_id = json.loads(upload(file_server, certs, alice.token, b"x")[2])["file"]["id"]
    assert download(file_server, certs, bob.token, file_id)[0] == 403
    # Access follows membership now: bob joins and may; alice leaves and may not.
    assert bob.client.request(type="join", room="general")["type"] == "joined"
    assert download(file_server, certs, bob.token, file_id)[0] == 200
    assert alice.client.request(type="leave", room="general")["type"] == "left"
    assert download(file_server, certs, alice.token, file_id)[0] == 403
    assert stored_blobs(file_server) != []  # (bob's upload failed; alice's is there)


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("../../etc/passwd", "_.._etc_passwd"),
        ("dir/sub/file.txt", "dir_sub_file.txt"),
        ("bell\x07\x1b]0;title\x07.txt", "bell]0;title.txt"),
        ("x" * 1000 + ".txt", "x" * 251 + ".txt"),
        ("\u202eexe.txt", "exe.txt"),
    ],
)
def test_bad_names_are_sanitised(file_server, certs, chat, name, clean):
    alice = chat("alice", "general")
    status, _, answer = upload(file_server, certs, alice.token, b"x", name=name)
    assert status == 201, answer
    file = json.loads(answer)["file"]
    assert file["name"] == clean
    headers = download(file_server, certs, alice.token, file["id"])[1]
    disposition = headers["content-disposition"]
    assert disposition.startswith('attachment; filename="') and "/" not in disposition
    assert quote(clean, safe="!#$&+-.^_`|~") in disposition
    assert [p.parent.parent.name for p in stored_blobs(file_server)] == ["files"]


@pytest.mark.parametrize("name", ["..", "\x00\x01", " . ", ""])
def test_a_name_with_nothing_left_is_400(file_server, certs, chat, name):
    alice = chat("alice", "general")
    assert upload(file_server, certs, alice.token, b"x", name=name)[0] == 400
    assert stored_blobs(file_server) == []


@pytest.mark.parametrize(
    "query",
    [
        "room=general&to=bob&name=a",
        "name=a",
        "room=General&name=a",
        "room=general&room=random&name=a",
        "room=general&name=a&text=%00",
    ],
)
def test_bad_targets_and_captions_are_400(file_server, certs, chat, query):
    alice = chat("alice", "general")
    connection = https(file_server, certs)
    connection.request("POST", f"/api/files?{query}", body=b"x",
                       headers={"Authorization": f"Bearer {alice.token}"})  # fmt: skip
    assert connection.getresponse().status == 400
    connection.close()


def test_a_hash_that_does_not_match_is_400_and_stores_nothing(file_server, certs, chat):
    alice = chat("alice", "general")
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    status, _, answer = upload(file_server, certs, alice.token, b"these bytes",
                               headers={"X-Content-SHA256": wrong})  # fmt: skip
    assert status == 400 and b"SHA-256" in answer
    assert (
        upload(file_server, certs, alice.token, b"x", headers={"X-Content-SHA256": "zz"})[0] == 400
    )
    assert stored_blobs(file_server) == [] and unfinished(file_server) == []
    assert history(alice.client) == []


def test_too_large_is_413_as_soon_as_declared_or_streamed(file_server, certs, chat):
    alice = chat("alice", "general")
    # Declared: refused before a byte of the body is sent (the client waits for 100).
    raw = raw_connection(file_server, certs)
    raw.sendall(b"POST /api/files?room=general&name=big HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + alice.token.encode() + b"\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1))  # fmt: skip
    assert read_all(raw).startswith(b"HTTP/1.1 413 ")
    # Streamed (chunked, no length said): refused once past the limit.
    raw = raw_connection(file_server, certs)
    raw.sendall(b"POST /api/files?room=general&name=big HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + alice.token.encode() + b"\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    chunk = b"x" * 65536
    with contextlib.suppress(OSError):  # (the server may close once it has said 413)
        for _ in range(LIMIT // len(chunk) + 2):
            raw.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    answer = read_all(raw)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    wait_until(lambda: unfinished(file_server) == [])
    assert stored_blobs(file_server) == [] and history(alice.client) == []


def raw_connection(server: Server, certs: CertPaths) -> ssl.SSLSocket:
    sock = socket.create_connection(server.address, timeout=10)
    return web_context(certs).wrap_socket(sock, server_hostname="localhost")


def read_all(sock: ssl.SSLSocket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        pass
    sock.close()
    return data


def test_a_connection_cut_mid_upload_leaves_nothing(file_server, certs, chat):
    alice, bob = chat("alice", "general"), chat("bob", "general")
    raw = raw_connection(file_server, certs)
    raw.sendall(b"POST /api/files?room=general&name=half HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + alice.token.encode() + b"\r\n"
                b"Content-Length: 200000\r\n\r\n" + b"x" * 100_000)  # fmt: skip
    wait_until(lambda: len(unfinished(file_server)) == 1)  # (it is being received)
    raw.close()
    wait_until(lambda: unfinished(file_server) == [])
    assert stored_blobs(file_server) == []
    assert history(bob.client) == []
    # The quota and the uploads-at-once count of the cut upload are given back.
    assert upload(file_server, certs, alice.token, b"x" * 1000)[0] == 201
    assert bob.client.expect("message")["file"]["size"] == 1000


def test_a_declared_length_that_lies(file_server, certs, chat):
    alice, bob = chat("alice", "general"), chat("bob", "general")
    # Longer than what comes, then the client closes: nothing is posted.
    raw = raw_connection(file_server, certs)
    raw.sendall(b"POST /api/files?room=general&name=short HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + alice.token.encode() + b"\r\n"
                b"Content-Length: 1000\r\n\r\n" + b"y" * 10)  # fmt: skip
    wait_until(lambda: len(unfinished(file_server)) == 1)
    raw.close()
    wait_until(lambda: unfinished(file_server) == [])
    # Shorter than what comes, with the hash of all that comes: the body ends at the
    # declared length, whose hash is not the one announced (400); the rest is no request.
    body = b"z" * 100
    raw = raw_connection(file_server, certs)
    raw.sendall(b"POST /api/files?room=general&name=long HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + alice.token.encode() + b"\r\n"
                b"X-Content-SHA256: " + hashlib.sha256(body).hexdigest().encode() + b"\r\n"
                b"Content-Length: 10\r\n\r\n" + body + b"\r\n\r\n")  # fmt: skip
    answer = read_all(raw)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert answer.count(b"HTTP/1.1 400 ") == 2  # (the rest: no request, and a close)
    assert b"HTTP/1.1 201" not in answer
    assert stored_blobs(file_server) == [] and unfinished(file_server) == []
    assert history(bob.client) == []


def test_two_users_uploading_the_same_bytes_at_once_store_one_blob(file_server, certs, chat):
    alice, bob = chat("alice", "general"), chat("bob", "general")
    body = os.urandom(LIMIT)
    barrier = threading.Barrier(2)
    answers: dict[str, tuple] = {}

    def send(who: Chat, name: str) -> None:
        barrier.wait()
        answers[name] = upload(file_server, certs, who.token, body, name=name)

    threads = [threading.Thread(target=send, args=(who, name))
               for who, name in ((alice, "a.bin"), (bob, "b.bin"))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    files = [json.loads(answers[name][2])["file"] for name in ("a.bin", "b.bin")]
    assert [answers[name][0] for name in ("a.bin", "b.bin")] == [201, 201]
    assert files[0]["id"] != files[1]["id"] and files[0]["sha256"] == files[1]["sha256"]
    assert len(stored_blobs(file_server)) == 1
    for file in files:
        assert download(file_server, certs, bob.token, file["id"])[::2] == (200, body)


# ---------------------------------------------------------------- deletion, quota, disk


def test_deleting_the_message_revokes_access_and_removes_the_bytes(file_server, certs, chat):
    alice, bob = chat("alice", "general"), chat("bob", "general")
    first = json.loads(upload(file_server, certs, alice.token, b"twice")[2])
    second = json.loads(upload(file_server, certs, bob.token, b"twice")[2])
    reply = alice.client.request(type="delete", room="general", id=first["id"])
    assert reply["type"] == "deleted"
    assert download(file_server, certs, alice.token, first["file"]["id"])[0] == 404
    assert len(stored_blobs(file_server)) == 1  # bob's message carries the same bytes
    assert download(file_server, certs, alice.token, second["file"]["id"])[0] == 200
    assert bob.client.request(type="delete", room="general", id=second["id"])["type"] == "deleted"
    assert download(file_server, certs, bob.token, second["file"]["id"])[0] == 404
    assert stored_blobs(file_server) == []
    assert [m["id"] for m in history(bob.client)] == []


def test_the_quota_counts_what_a_user_shares(file_server, certs, chat):
    alice, bob = chat("alice", "general"), chat("bob", "general")
    posted = []
    for n in range(4):  # the quota is 4 files of the limit's size
        status, _, answer = upload(file_server, certs, alice.token, bytes([n]) * LIMIT)
        assert status == 201
        posted.append(json.loads(answer))
    status, _, answer = upload(file_server, certs, alice.token, b"one more")
    assert status == 507 and b"quota" in answer
    assert upload(file_server, certs, bob.token, b"bob has room")[0] == 201
    alice.client.request(type="delete", room="general", id=posted[0]["id"])
    assert upload(file_server, certs, alice.token, b"one more")[0] == 201


def test_below_the_free_disk_floor_uploads_are_507_while_chat_goes_on(file_server, certs, chat):
    alice, bob = chat("alice", "general"), chat("bob", "general")
    files = file_server.hub.files
    assert files is not None
    files.free_space = lambda _path: files.limits.min_free  # (a fake: the disk is nearly full)
    status, _, answer = upload(file_server, certs, alice.token, b"x")
    assert status == 507 and b"space" in answer
    assert unfinished(file_server) == [] and stored_blobs(file_server) == []
    reply = alice.client.request(type="send", room="general", text="still chatting")
    assert reply["type"] == "message"
    assert bob.client.expect("message")["text"] == "still chatting"
    files.free_space = lambda _path: 10**12
    assert upload(file_server, certs, alice.token, b"x")[0] == 201


def test_uploads_at_once_per_user_are_limited(file_server, certs, chat):
    alice = chat("alice", "general")
    started = []
    for _ in range(4):  # (uploads_at_once=4) each sends its headers and part of its body
        raw = raw_connection(file_server, certs)
        raw.sendall(b"POST /api/files?room=general&name=slow HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer " + alice.token.encode() + b"\r\n"
                    b"Content-Length: 100\r\n\r\nxx")  # fmt: skip
        started.append(raw)
    wait_until(lambda: len(unfinished(file_server)) == 4)
    status, headers, _ = upload(file_server, certs, alice.token, b"x")
    assert status == 429 and headers["retry-after"] == "1"
    for raw in started:
        raw.close()
    wait_until(lambda: unfinished(file_server) == [])
    assert upload(file_server, certs, alice.token, b"x")[0] == 201


def test_file_paths_that_are_not_ids_are_404(file_server, certs, chat):
    alice = chat("alice", "general")
    for path in ("../../securechat.db", "%2e%2e%2fsecurechat.db", "a/b", "x" * 100):
        assert download(file_server, certs, alice.token, path)[0] == 404, path
    connection = https(file_server, certs)
    connection.request("DELETE", "/api/files/abc", headers={"Authorization": "Bearer x"})
    assert connection.getresponse().status == 405
    connection.close()


def test_without_the_file_store_the_api_is_404(certs, passwd_path, web_files):
    """A server whose hub has no file store (e.g. a tool): nothing is reachable."""
    site = WebSite(StaticFiles.from_folder(web_files))
    with run_server(certs, passwd_path, web=site) as server:
        server.hub.files = None
        connection = https(server, certs)
        connection.request("GET", "/api/files/abc")
        assert connection.getresponse().status == 404
        connection.close()
