""":class:`WebSocketCodec` alone, against wsproto as the client: what its framing library
(websockets' sans-I/O core) and its encoded-frame cache must not change.

The edge's behaviour through HTTP is in ``test_edge.py``; these drive the codec directly
with the bytes a browser would send, cut anywhere.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, TextMessage
from wsproto.frame_protocol import CloseReason

from securechat.exceptions import FrameTooLarge
from securechat.server.web import websocket
from securechat.server.web.websocket import WebSocketCodec, text_frame
from tests.outbox import frames_of

LIMIT = 4096


def client() -> Connection:
    return Connection(ConnectionType.CLIENT)


def read(data: bytes) -> list:
    """What a wsproto client makes of the codec's bytes."""
    peer = client()
    peer.receive_data(data)
    return list(peer.events())


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(min_size=0, max_size=300), min_size=1, max_size=8),
    split=st.lists(st.booleans(), max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=97), max_size=12),
)
def test_messages_cut_anywhere_come_out_whole_and_in_order(texts, split, cuts):
    """Text messages (some in two fragments, a ping between them) in arbitrary reads."""
    peer = client()
    data = b""
    for i, text in enumerate(texts):
        if i < len(split) and split[i] and len(text) > 1:
            half = len(text) // 2
            data += peer.send(TextMessage(data=text[:half], message_finished=False))
            data += peer.send(Ping(payload=b"between"))
            data += peer.send(TextMessage(data=text[half:]))
        else:
            data += peer.send(TextMessage(data=text))
    codec = WebSocketCodec(None, LIMIT)
    lines, at = [], 0
    for cut in cuts:
        lines += codec.receive(data[at : at + cut])
        at += cut
    lines += codec.receive(data[at:])
    assert lines == [text.encode() for text in texts]
    assert not codec.partial and not codec.finished
    pongs = read(codec.wire([]))
    assert len(pongs) == sum(1 for i, t in enumerate(texts) if i < len(split) and split[i]
                             and len(t) > 1)  # fmt: skip


def test_a_message_in_fragments_counts_against_the_limit_as_a_whole():
    peer, codec = client(), WebSocketCodec(None, LIMIT)
    codec.receive(peer.send(TextMessage(data="x" * (LIMIT // 2), message_finished=False)))
    assert codec.partial
    with pytest.raises(FrameTooLarge):
        codec.receive(peer.send(TextMessage(data="x" * (LIMIT // 2))))


def test_a_fragment_still_arriving_is_refused_once_over_the_limit():
    peer, codec = client(), WebSocketCodec(None, LIMIT)
    codec.receive(peer.send(TextMessage(data="x" * 100, message_finished=False)))
    data = peer.send(TextMessage(data="x" * (10 * LIMIT)))
    codec.receive(data[: LIMIT - 200])  # (the message is still within the limit)
    with pytest.raises(FrameTooLarge):
        codec.receive(data[LIMIT - 200 : LIMIT + 100])
    # What is answered then still goes out, before our close.
    events = read(
        codec.wire(frames_of(b'{"type":"error","code":"frame_too_large"}\n')) + codec.close()
    )
    assert events[0] == TextMessage(data='{"type":"error","code":"frame_too_large"}')
    assert isinstance(events[1], CloseConnection) and events[1].code == 1000


def test_an_unmasked_client_frame_fails_with_1002():
    server_side = Connection(ConnectionType.SERVER)  # (its frames are not masked)
    codec = WebSocketCodec(None, LIMIT)
    assert codec.receive(server_side.send(TextMessage(data="hi"))) == []
    assert codec.finished and not codec.plain
    [event] = read(codec.wire(frames_of(b'{"type":"late"}\n')))
    assert isinstance(event, CloseConnection) and event.code == CloseReason.PROTOCOL_ERROR


def test_messages_before_a_close_in_the_same_read_are_kept():
    peer, codec = client(), WebSocketCodec(None, LIMIT)
    data = peer.send(TextMessage(data='{"type":"ping"}')) + peer.send(CloseConnection(code=1001))
    assert codec.receive(data) == [b'{"type":"ping"}']
    assert codec.finished and codec.receive(b"more") == []
    [event] = read(codec.wire([]))
    assert isinstance(event, CloseConnection) and event.code == 1001


def test_plain_says_when_the_frames_may_be_shared():
    peer, codec = client(), WebSocketCodec(None, LIMIT)
    assert codec.plain
    codec.receive(peer.send(Ping(payload=b"p")))
    assert not codec.plain  # (our pong goes first)
    codec.wire([])
    assert codec.plain
    codec.close()
    assert not codec.plain


def test_each_frame_is_encoded_once_for_every_codec(monkeypatch):
    encoded: list[bytes] = []
    cache = websocket._EncodedFrames()
    real = cache.encode

    def counting(payload: bytes) -> bytes:
        encoded.append(payload)
        return real(payload)

    monkeypatch.setattr(cache, "encode", counting)
    monkeypatch.setattr(websocket, "_ENCODED", cache)
    frames = b'{"type":"message","text":"a"}\n{"type":"message","text":"\xc3\xa9"}\n'
    first, second = WebSocketCodec(None, LIMIT), WebSocketCodec(None, LIMIT)
    sent = [
        first.wire(frames_of(frames)),
        second.wire(frames_of(frames)),
        second.wire(frames_of(frames.split(b"\n")[1] + b"\n")),
    ]
    assert sent[0] == sent[1]
    assert len(encoded) == 2  # the same payload, any codec, any time: encoded once
    events = read(sent[0] + sent[2])
    assert [e.data for e in events] == ['{"type":"message","text":"a"}',
                                       '{"type":"message","text":"é"}',
                                       '{"type":"message","text":"é"}']  # fmt: skip
    assert all(isinstance(e, Message) and e.message_finished for e in events)


def test_the_cache_stays_small_and_large_frames_stay_out(monkeypatch):
    cache = websocket._EncodedFrames()
    monkeypatch.setattr(websocket, "_ENCODED", cache)
    monkeypatch.setattr(websocket, "CACHE_BYTES", 10_000)
    codec = WebSocketCodec(None, 1 << 20)
    frames = [b'{"text":"%d%s"}' % (i, b"x" * 100) for i in range(200)]
    big = b'{"text":"' + b"y" * (websocket.CACHE_FRAME + 1) + b'"}'
    data = codec.wire(frames_of(b"".join(f + b"\n" for f in [*frames, big])))
    assert cache.size <= 10_000 + 2 * 200 and big not in cache.frames
    assert [e.data.encode() for e in read(data)] == [*frames, big]


@given(st.one_of(st.integers(0, 300), st.integers(65_400, 65_700), st.just(200_000)))
def test_a_text_frame_is_what_the_library_would_serialize(size):
    """The one frame written by hand: every length class (7, 16 and 64 bits) and the
    lengths around each boundary give websockets' bytes, and wsproto reads it back."""
    payload = bytes(i % 251 % 128 for i in range(size))  # (ASCII: valid UTF-8)
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
    [event] = read(text_frame(payload))
    assert event.data.encode() == payload and event.message_finished
