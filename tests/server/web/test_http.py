"""HTTP on the chat port over real TLS: ALPN picks the protocol, the web client's files
with their security headers, nothing else reachable, keep-alive, --no-web."""

import contextlib
import json
import re
import socket
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.server.cli import Limits, make_server_context
from securechat.server.web import StaticFiles, WebSite
from tests.chatclient import ChatClient
from tests.conftest import run_server
from tests.server.web.conftest import PAGE, SCRIPT, STYLE, https, web_context
from tests.server.web.test_edge import request_bytes

SECURITY = {
    "content-security-policy": "default-src 'self'; connect-src 'self'; img-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def headers_of(response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.getheaders()}


def test_get_slash_is_the_page_with_the_security_headers(web_server, certs):
    connection = https(web_server, certs)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == PAGE
    headers = headers_of(response)
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["etag"].startswith('"') and len(headers["etag"]) == 34
    for name, value in SECURITY.items():
        assert headers[name] == value
    assert connection.sock.selected_alpn_protocol() == "http/1.1"
    connection.close()


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/index.html", PAGE, "text/html; charset=utf-8"),
        ("/app.js", SCRIPT, "text/javascript; charset=utf-8"),
        ("/style.css?v=2", STYLE, "text/css; charset=utf-8"),
        ("/icons/chat.svg", None, "image/svg+xml"),
    ],
)
def test_each_file_has_its_content_type(web_server, certs, path, body, content_type):
    connection = https(web_server, certs)
    connection.request("GET", path)
    response = connection.getresponse()
    data = response.read()
    assert response.status == 200
    assert body is None or data == body
    assert headers_of(response)["content-type"] == content_type
    connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/",
        "/%2e%2e/pyproject.toml",
        "/static/../..",
        "/static/index.html",
        "/..%2fpyproject.toml",
        "/icons%2fchat.svg",
        "//etc/passwd",
        "/.hidden",
        "/app.js/",
        "/APP.JS",
        "/icons",
        "/nope",
    ],
)
def test_traversal_and_unknown_paths_are_404(web_server, certs, path):
    connection = https(web_server, certs)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 404
    assert response.read() == b"not found\n"
    assert headers_of(response)["x-content-type-options"] == "nosniff"
    connection.close()


def test_head_has_the_headers_and_no_body(web_server, certs):
    connection = https(web_server, certs)
    connection.request("HEAD", "/app.js")
    response = connection.getresponse()
    assert response.status == 200
    assert int(headers_of(response)["content-length"]) == len(SCRIPT)
    assert response.read() == b""
    connection.request("GET", "/app.js")  # the same connection goes on
    assert connection.getresponse().read() == SCRIPT
    connection.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_are_405(web_server, certs, method):
    connection = https(web_server, certs)
    connection.request(method, "/", body=b"x" * 100)
    response = connection.getresponse()
    assert response.status == 405
    assert headers_of(response)["allow"] == "GET, HEAD"
    response.read()
    connection.close()


def test_keep_alive_serves_several_requests_on_one_connection(web_server, certs):
    connection = https(web_server, certs)
    connection.request("GET", "/")
    first = connection.getresponse()
    etag = headers_of(first)["etag"]
    assert first.read() == PAGE
    sock = connection.sock
    connection.request("GET", "/style.css")
    assert connection.getresponse().read() == STYLE
    connection.request("GET", "/", headers={"If-None-Match": etag})
    revalidated = connection.getresponse()
    assert revalidated.status == 304
    assert revalidated.read() == b""
    assert connection.sock is sock  # one TLS connection throughout
    connection.close()


def test_pipelined_requests_are_answered_in_order(web_server, certs):
    with (
        socket.create_connection(web_server.address, timeout=10) as raw,
        web_context(certs).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        request = b"GET /%s HTTP/1.1\r\nHost: localhost\r\n\r\n"
        tls.sendall(b"".join(request % name for name in (b"app.js", b"nope", b"style.css")))
        data = b""
        while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(STYLE):
            data += tls.recv(65536)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"404", b"200"]
    assert data.index(SCRIPT) < data.index(b"not found") < data.index(STYLE)


def test_garbage_gets_400_and_a_close(web_server, certs):
    with (
        socket.create_connection(web_server.address, timeout=10) as raw,
        web_context(certs).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"\x00\x01 not http at all\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in data.lower()


def test_a_huge_request_head_is_431(web_server, certs):
    connection = https(web_server, certs)
    connection.request("GET", "/", headers={"X-Big": "x" * 40000})
    response = connection.getresponse()
    assert response.status == 431
    connection.close()


def test_get_ws_without_an_upgrade_is_refused(web_server, certs):
    connection = https(web_server, certs)
    connection.request(
        "GET", "/ws", headers={"Origin": f"https://localhost:{web_server.address[1]}"}
    )
    response = connection.getresponse()
    assert response.status in (400, 426)
    connection.close()


def test_a_client_offering_no_alpn_gets_the_welcome_line(web_server, certs):
    client = ChatClient(web_server.address, certs.ca_cert)  # (offers no ALPN)
    assert client.sock.selected_alpn_protocol() is None
    assert client.login("alice", "alice-secret-pw")["type"] == "login_ok"  # after welcome
    client.close()


def test_a_client_offering_only_h2_gets_the_line_protocol(web_server, certs):
    """We never speak h2: the handshake completes without ALPN and the line protocol
    starts (an h2 client sees a welcome line, not a preface, and gives up)."""
    with socket.create_connection(web_server.address, timeout=10) as raw:
        context = web_context(certs, alpn=["h2"])
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() is None
            line = tls.recv(65536)
    assert json.loads(line)["type"] == "welcome"


def test_a_client_offering_h2_and_http11_gets_http11(web_server, certs):
    connection = https(web_server, certs, alpn=["h2", "http/1.1"])
    connection.request("GET", "/app.js")
    assert connection.getresponse().read() == SCRIPT
    assert connection.sock.selected_alpn_protocol() == "http/1.1"
    connection.close()


def test_an_idle_keep_alive_connection_is_closed(certs, passwd_path, web_files):
    site = WebSite(StaticFiles.from_folder(web_files))
    with run_server(certs, passwd_path, Limits(login_timeout=0.3), web=site) as server:
        connection = https(server, certs)
        connection.request("GET", "/app.js")
        assert connection.getresponse().read() == SCRIPT
        connection.sock.settimeout(5)
        assert connection.sock.recv(1) == b""  # closed by the server, not timed out
        connection.close()


def test_over_the_connection_cap_files_get_503(certs, passwd_path, web_files):
    site = WebSite(StaticFiles.from_folder(web_files))
    with run_server(certs, passwd_path, Limits(max_per_address=1), web=site) as server:
        first = ChatClient(server.address, certs.ca_cert)
        first.expect("welcome")
        connection = https(server, certs)
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 503
        assert headers_of(response)["connection"] == "close"
        response.read()
        connection.close()
        first.close()


@pytest.mark.parametrize("web", [False, True])
def test_no_web_offers_no_alpn_and_speaks_the_line_protocol(certs, passwd_path, web):
    """--no-web: the context offers no ALPN (and a server without a web edge would
    ignore it anyway): a browser-like client gets the welcome line."""
    context = make_server_context(certs.server, web=web)
    with run_server(certs, passwd_path) as server:  # (Server.web is None)
        server.context = context
        with (
            socket.create_connection(server.address, timeout=10) as raw,
            web_context(certs).wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.selected_alpn_protocol() == ("http/1.1" if web else None)
            assert json.loads(tls.recv(65536))["type"] == "welcome"


def test_cli_no_web_and_web_origin(certs, passwd_path, tmp_path):
    from tests.serverprocess import ServerProcess

    process = ServerProcess(certs.server, passwd_path, tmp_path / "data", "--no-web")
    try:
        with (
            socket.create_connection(process.address, timeout=10) as raw,
            web_context(certs).wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.selected_alpn_protocol() is None
            assert json.loads(tls.recv(65536))["type"] == "welcome"
    finally:
        process.terminate()


def test_cli_refuses_a_web_origin_that_is_not_one(certs, passwd_path, tmp_path, capsys):
    from securechat.server.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--cert", str(certs.server), "--web-origin", "https://chat.example/path"])
    assert exited.value.code == 2
    assert "--web-origin" in capsys.readouterr().err


def test_fuzzed_requests_over_tls_get_an_answer_or_a_close(certs, passwd_path, web_files, caplog):
    """Random request bytes through the real connection handler: each connection gets
    HTTP answers (4xx for what is not understood) and is closed, never an internal
    error, and the server serves a normal request afterwards."""
    site = WebSite(StaticFiles.from_folder(web_files))
    limits = Limits(login_timeout=0.05, partial_timeout=0.05)  # (an unfinished request waits)
    with run_server(certs, passwd_path, limits, web=site) as server:

        @settings(max_examples=40, deadline=None)
        @given(data=st.one_of(request_bytes(), st.binary(min_size=1, max_size=200)))
        def check(data: bytes) -> None:
            with (
                socket.create_connection(server.address, timeout=10) as raw,
                web_context(certs).wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.sendall(data)
                answer = b""
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    while chunk := tls.recv(65536):
                        answer += chunk
            assert not answer or answer.startswith(b"HTTP/1.1 "), answer[:80]
            statuses = {int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)}
            assert statuses <= {101, 200, 304, 400, 403, 404, 405, 426, 431}, statuses

        check()
        connection = https(server, certs)
        connection.request("GET", "/app.js")
        assert connection.getresponse().read() == SCRIPT
        connection.close()
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


def test_a_certificate_reload_keeps_alpn(web_server, certs):
    """SIGHUP rebuilds the context with the same options: browsers still get HTTP."""
    from securechat.server.cli import load_server_context, reload_certificate

    assert reload_certificate(web_server, lambda: load_server_context(certs.server))
    connection = https(web_server, certs)
    connection.request("GET", "/app.js")
    assert connection.getresponse().read() == SCRIPT
    assert connection.sock.selected_alpn_protocol() == "http/1.1"
    connection.close()
