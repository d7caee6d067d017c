"""The file API's pure parts: what an upload request asks, byte ranges, the
Content-Disposition of a download (no sockets, no threads)."""

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from securechat.exceptions import FileRefused
from securechat.server.web.files import (
    content_disposition,
    filename_of,
    parse_range,
    parse_upload,
)


def post(target: str, **headers: str) -> h11.Request:
    pairs = [("host", "x"), *((k.replace("_", "-"), v) for k, v in headers.items())]
    return h11.Request(method="POST", target=target, headers=pairs)


TOKEN = "Bearer abc-DEF_123"


def test_an_upload_request_is_read_whole():
    ask = parse_upload(post("/api/files?room=general&name=a%20b.txt&text=hi%21",
                            authorization=TOKEN, content_length="12",
                            x_content_sha256="AB" * 32), 100)  # fmt: skip
    assert (ask.token, ask.room, ask.to) == ("abc-DEF_123", "general", None)
    assert (ask.name, ask.text) == ("a b.txt", "hi!")
    assert (ask.declared, ask.expected) == (12, "ab" * 32)
    dm = parse_upload(post("/api/files?to=bob&name=x", authorization=TOKEN,
                           transfer_encoding="chunked"), 100)  # fmt: skip
    assert (dm.room, dm.to, dm.declared, dm.text) == (None, "bob", None, "")


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (post("/api/files?room=general&name=a"), 401),
        (post("/api/files?room=general&name=a", authorization="Basic abc"), 401),
        (post("/api/files?room=general&name=a", authorization="Bearer a b"), 401),
        (post("/api/files?name=a", authorization=TOKEN), 400),
        (post("/api/files?room=a&to=b&name=a", authorization=TOKEN), 400),
        (post("/api/files?room=../x&name=a", authorization=TOKEN), 400),
        (post("/api/files?room=general", authorization=TOKEN), 400),
        (post("/api/files?room=general&name=..", authorization=TOKEN), 400),
        (post("/api/files?room=general&name=a&text=%1b", authorization=TOKEN), 400),
        (post("/api/files?room=general&name=a&text=" + "x" * 4001, authorization=TOKEN), 400),
        (post("/api/files?room=general&name=a", authorization=TOKEN, x_content_sha256="ab"), 400),
        (post("/api/files?room=general&name=a", authorization=TOKEN, content_length="101"), 413),
    ],
)
def test_bad_upload_requests(request_, status):
    with pytest.raises(FileRefused) as refused:
        parse_upload(request_, 100)
    assert refused.value.status == status


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="plain.txt"', "plain.txt"),
        ("attachment; filename=bare.txt", "bare.txt"),
        ("attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf", "\u20ac rates.pdf"),
        ("attachment; filename=\"a.txt\"; filename*=utf-8''b.txt", "b.txt"),
        ('attachment; filename="semi;colon \\"q\\".txt"', 'semi;colon "q".txt'),
        ("attachment", None),
        ("inline; filename*=ISO-8859-1''x.txt", None),
    ],
)
def test_names_from_content_disposition(header, name):
    assert filename_of(header) == name


def test_content_disposition_has_an_ascii_fallback_and_the_exact_name():
    assert content_disposition('r\u00e9sum\u00e9 "final".pdf') == (
        b'attachment; filename="r_sum_ _final_.pdf"; '
        b"filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
    )


@given(st.text(min_size=1, max_size=300))
def test_content_disposition_is_one_safe_header_line(name):
    value = content_disposition(name)
    assert value.isascii() and b"\r" not in value and b"\n" not in value
    h11.Response(status_code=200, headers=[("content-disposition", value)])  # valid for h11


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        (None, 10, None),
        (b"bytes=0-0", 10, (0, 0)),
        (b"bytes=2-5", 10, (2, 5)),
        (b"bytes=5-", 10, (5, 9)),
        (b"bytes=-3", 10, (7, 9)),
        (b"bytes=-30", 10, (0, 9)),
        (b"bytes=3-100", 10, (3, 9)),
        (b"bytes=10-", 10, False),
        (b"bytes=-0", 10, False),
        (b"bytes=0-", 0, False),
        (b"bytes=5-2", 10, None),
        (b"bytes=1-2,4-5", 10, None),
        (b"bytes=x-1", 10, None),
        (b"lines=1-2", 10, None),
        (b"bytes=-", 10, None),
    ],
)
def test_ranges(header, size, span):
    assert parse_range(header, size) == span
