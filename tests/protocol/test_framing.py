"""Unit tests of LineReader: newline framing with a size limit (no sockets)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.exceptions import FrameTooLarge, ProtocolError
from securechat.protocol.framing import DEFAULT_FRAME_LIMIT, MIN_FRAME_LIMIT, LineReader

LIMIT = MIN_FRAME_LIMIT


def feed_all(reader: LineReader, chunks: list[bytes]) -> list[bytes]:
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(reader.feed(chunk))
    return lines


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks, start = [], 0
    for point in points:
        chunks.append(data[start:point])
        start = point
    chunks.append(data[start:])
    return chunks


# --- basics -----------------------------------------------------------------------------


def test_defaults() -> None:
    assert DEFAULT_FRAME_LIMIT == 65536
    assert MIN_FRAME_LIMIT == 16384
    assert LineReader().limit == DEFAULT_FRAME_LIMIT


def test_single_and_multiple_lines() -> None:
    reader = LineReader()
    assert reader.feed(b'{"type":"ping"}\n') == [b'{"type":"ping"}']
    assert reader.feed(b"a\nb\nc\n") == [b"a", b"b", b"c"]
    assert reader.pending == 0


def test_no_complete_line_yet() -> None:
    reader = LineReader()
    assert reader.feed(b"") == []
    assert reader.feed(b"abc") == []
    assert reader.pending == 3
    assert reader.feed(b"def") == []
    assert reader.pending == 6
    assert reader.feed(b"\nxy") == [b"abcdef"]
    assert reader.pending == 2


def test_empty_lines_are_returned_empty() -> None:
    assert LineReader().feed(b"\n\r\n\n") == [b"", b"", b""]


def test_byte_at_a_time() -> None:
    reader = LineReader()
    data = b"one\r\ntwo\nthree\r\n"
    lines = feed_all(reader, [data[i : i + 1] for i in range(len(data))])
    assert lines == [b"one", b"two", b"three"]
    assert reader.pending == 0


# --- \r\n -------------------------------------------------------------------------------


def test_crlf_removed() -> None:
    assert LineReader().feed(b"a\r\nb\r\n") == [b"a", b"b"]


def test_crlf_split_between_chunks() -> None:
    reader = LineReader()
    assert reader.feed(b"abc\r") == []
    assert reader.pending == 4
    assert reader.feed(b"\n") == [b"abc"]


def test_only_one_cr_before_newline_removed() -> None:
    assert LineReader().feed(b"a\r\r\n") == [b"a\r"]


def test_cr_elsewhere_is_kept() -> None:
    assert LineReader().feed(b"a\rb\n\rc\n") == [b"a\rb", b"\rc"]


def test_trailing_cr_without_newline_is_pending() -> None:
    reader = LineReader()
    assert reader.feed(b"abc\r") == []
    assert reader.feed(b"def\n") == [b"abc\rdef"]


# --- the size limit ---------------------------------------------------------------------


@pytest.mark.parametrize("limit", [LIMIT, DEFAULT_FRAME_LIMIT])
def test_line_of_exactly_limit_bytes_with_newline_accepted(limit: int) -> None:
    reader = LineReader(limit)
    body = b"x" * (limit - 1)
    assert reader.feed(body + b"\n") == [body]
    assert reader.feed(b"next\n") == [b"next"]


def test_line_of_exactly_limit_bytes_with_crlf_accepted() -> None:
    body = b"x" * (LIMIT - 2)
    assert LineReader(LIMIT).feed(body + b"\r\n") == [body]


@pytest.mark.parametrize("limit", [LIMIT, DEFAULT_FRAME_LIMIT])
def test_line_of_limit_plus_one_refused(limit: int) -> None:
    reader = LineReader(limit)
    with pytest.raises(FrameTooLarge) as info:
        reader.feed(b"x" * limit + b"\n")
    error = info.value
    assert isinstance(error, ProtocolError)
    assert error.code == "frame_too_large"
    assert error.fatal
    assert str(limit) in error.message


def test_crlf_counts_towards_the_limit() -> None:
    with pytest.raises(FrameTooLarge):
        LineReader(LIMIT).feed(b"x" * (LIMIT - 1) + b"\r\n")


def test_limit_plus_one_refused_when_newline_arrives_later() -> None:
    reader = LineReader(LIMIT)
    assert reader.feed(b"x" * LIMIT) == []  # exactly the limit, no newline yet: still fine
    assert reader.pending == LIMIT
    with pytest.raises(FrameTooLarge):
        reader.feed(b"\n")


def test_partial_line_refused_as_soon_as_larger_than_limit() -> None:
    reader = LineReader(LIMIT)
    assert reader.feed(b"x" * (LIMIT - 10)) == []
    assert reader.feed(b"x" * 10) == []
    with pytest.raises(FrameTooLarge):
        reader.feed(b"x")  # LIMIT + 1 bytes, no newline anywhere


def test_huge_chunk_without_newline_refused_at_once() -> None:
    with pytest.raises(FrameTooLarge):
        LineReader(LIMIT).feed(b"x" * (10 * LIMIT))


def test_partial_line_after_complete_lines_refused_when_too_large() -> None:
    reader = LineReader(LIMIT)
    with pytest.raises(FrameTooLarge):
        reader.feed(b"ok\n" + b"y" * (LIMIT + 1))


def test_limit_applies_to_each_line_not_to_the_chunk() -> None:
    reader = LineReader(LIMIT)
    line = b"z" * (LIMIT - 1)
    chunk = (line + b"\n") * 5
    assert reader.feed(chunk) == [line] * 5
    assert reader.pending == 0


def test_oversized_line_in_the_middle_of_a_chunk_refused() -> None:
    reader = LineReader(LIMIT)
    with pytest.raises(FrameTooLarge):
        reader.feed(b"a\n" + b"b" * LIMIT + b"\nc\n")


@pytest.mark.parametrize("limit", [0, 1, 1024, MIN_FRAME_LIMIT - 1, -5])
def test_limit_below_minimum_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="16384"):
        LineReader(limit)


@pytest.mark.parametrize("limit", [MIN_FRAME_LIMIT, MIN_FRAME_LIMIT + 1, 1 << 20])
def test_limit_at_or_above_minimum_accepted(limit: int) -> None:
    assert LineReader(limit).limit == limit


# --- pending ----------------------------------------------------------------------------


def test_pending_counts_bytes_of_the_incomplete_line() -> None:
    reader = LineReader()
    assert reader.pending == 0
    reader.feed(b"first\nsec")
    assert reader.pending == 3
    reader.feed(b"ond\r")
    assert reader.pending == 7
    assert reader.feed(b"\nthird") == [b"second"]
    assert reader.pending == 5
    assert reader.feed(b"\n") == [b"third"]
    assert reader.pending == 0


# --- property: chunk boundaries do not matter ------------------------------------------

line_bodies = st.lists(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(
    line_bodies,
    st.lists(st.booleans(), min_size=20, max_size=20),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
)
def test_any_split_gives_the_same_lines(
    bodies: list[bytes], crlf: list[bool], cuts: list[int], tail: bytes
) -> None:
    data = b"".join(
        body + (b"\r\n" if use_crlf else b"\n")
        for body, use_crlf in zip(bodies, crlf, strict=False)
    )
    reader = LineReader(LIMIT)
    assert feed_all(reader, split_at(data + tail, cuts)) == bodies
    assert reader.pending == len(tail)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=LIMIT - 1), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=6 * LIMIT), max_size=8),
)
def test_any_split_of_large_lines_within_the_limit(sizes: list[int], cuts: list[int]) -> None:
    bodies = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]
    data = b"".join(body + b"\n" for body in bodies)
    assert feed_all(LineReader(LIMIT), split_at(data, cuts)) == bodies


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=LIMIT + 1, max_value=LIMIT + 100),
    st.lists(st.integers(min_value=0, max_value=LIMIT + 100), max_size=6),
    st.booleans(),
)
def test_any_split_of_an_oversized_line_is_refused(size: int, cuts: list[int], nl: bool) -> None:
    data = b"q" * (size - 1 if nl else size) + (b"\n" if nl else b"")
    reader = LineReader(LIMIT)
    with pytest.raises(FrameTooLarge):
        feed_all(reader, split_at(data, cuts))
