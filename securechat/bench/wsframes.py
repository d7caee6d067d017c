"""The bench's client side of a WebSocket (RFC 6455): the upgrade, masked frames out, frames in.

Why by hand here: the load generator is one Python process that is already the
bottleneck in fanout (about 92 % of a core), and ``--transport ws`` must not make it
slower than the line protocol's clients, or the comparison measures the bench. A
client's frames are few (the senders' messages, each masked as RFC 6455 section 5.3
requires), and a server's frames are read in traffic by scanning the byte stream for
message marks, not frame by frame (see :class:`~securechat.bench.cli.WsConn`). What is
left is small enough to be written out and checked against ``wsproto`` in the tests
(``tests/bench/test_wsframes.py``). The server's framing is ``wsproto``'s, never this.

What this understands is what a client needs: a ``101`` answer with the right
``Sec-WebSocket-Accept``; unmasked server frames with 7-, 16- and 64-bit lengths, text
messages in one or more fragments, ping, pong and close. It sends text frames, pongs and
a close, each masked with a fresh key from :func:`os.urandom`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

__all__ = [
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "FrameReader",
    "HandshakeError",
    "UpgradeReader",
    "accept_key",
    "mask_frame",
    "text_frames",
    "upgrade_request",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_RESPONSE_HEAD = 16 * 1024


class HandshakeError(Exception):
    """The server did not accept the upgrade (or answered nonsense); one line."""


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for the ``Sec-WebSocket-Key`` ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())  # noqa: S324 - the RFC's hash


def upgrade_request(host: str, port: int, path: str = "/ws") -> tuple[bytes, bytes]:
    """The ``GET`` that asks to upgrade to a WebSocket, and the key it carries.

    ``Origin`` is the server's own (``https://host:port``), as a page it served would
    send; the server refuses other origins.
    """
    key = base64.b64encode(os.urandom(16))
    authority = f"{host}:{port}"
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: https://{authority}\r\n\r\n"
    )
    return head.encode(), key


class UpgradeReader:
    """Reads the answer to :func:`upgrade_request` until its head is complete."""

    def __init__(self, key: bytes) -> None:
        self._expected = accept_key(key)
        self._buffer = b""

    def feed(self, data: bytes) -> bytes | None:
        """None while the head is incomplete; then the bytes after it (the first frames).

        Raises :exc:`HandshakeError` unless it is a ``101`` with the right accept key.
        """
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_RESPONSE_HEAD:
                raise HandshakeError("the answer to the upgrade has no end of head")
            return None
        head, rest = self._buffer[:end], self._buffer[end + 4 :]
        status, *fields = head.decode("latin-1").split("\r\n")
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            raise HandshakeError(f"upgrade refused: {status}")
        headers = {}
        for line in fields:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            raise HandshakeError("101 without Upgrade: websocket")
        if headers.get("sec-websocket-accept", "").encode() != self._expected:
            raise HandshakeError("101 with a wrong Sec-WebSocket-Accept")
        return rest


def mask_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final frame of ``opcode``, masked with the 4-byte ``key`` (RFC 6455 5.2, 5.3).

    The XOR is done on two big integers (one C loop each way) rather than byte by byte.
    """
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    if n:
        mask = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + payload


def text_frames(lines: bytes) -> bytes:
    """Each ``\\n``-ended line of ``lines`` as one masked text frame (without the newline).

    One :func:`os.urandom` call gives the keys of all of them.
    """
    parts = lines.split(b"\n")
    if parts[-1]:
        raise ValueError("every frame line must end with a newline")
    del parts[-1]
    keys = os.urandom(4 * len(parts))
    return b"".join(mask_frame(TEXT, p, keys[4 * i : 4 * i + 4]) for i, p in enumerate(parts))


class FrameReader:
    """Unmasked frames from a server, as ``(opcode, payload)``; fragments joined.

    A text message comes out as ``(TEXT, bytes)`` (its UTF-8, undecoded) once its last
    fragment is in; control frames come out as they arrive, even between fragments.
    Raises :exc:`ValueError` for what a server must not send (a masked frame, reserved
    bits, an unknown opcode, a fragmented control frame).
    """

    def __init__(self) -> None:
        self.buffer = b""
        self._opcode: int | None = None  # of the message whose fragments are held
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buffer + data if self.buffer else data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 & 0x80:
                raise ValueError("a server frame must not be masked")
            if b0 & 0x70:
                raise ValueError("reserved bits set (no extension was agreed)")
            fin, opcode, n, head = b0 & 0x80, b0 & 0x0F, b1 & 0x7F, 2
            if n == 126:
                if end - pos < 4:
                    break
                n, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if end - pos < head + n:
                break
            payload = buf[pos + head : pos + head + n]
            pos += head + n
            if opcode in (CLOSE, PING, PONG):
                if not fin:
                    raise ValueError("a fragmented control frame")
                out.append((opcode, payload))
            elif opcode in (TEXT, BINARY, CONTINUATION):
                if (opcode == CONTINUATION) != (self._opcode is not None):
                    raise ValueError("a fragment out of place")
                if self._opcode is None:
                    self._opcode = opcode
                self._parts.append(payload)
                if fin:
                    out.append((self._opcode, b"".join(self._parts)))
                    self._opcode, self._parts = None, []
            else:
                raise ValueError(f"unknown opcode {opcode:#x}")
        self.buffer = buf[pos:]
        return out
