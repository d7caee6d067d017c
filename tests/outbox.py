"""Recording stand-ins for a connection's mailbox, for the sans-I/O tests."""

import json

from securechat.server.mailbox import Mailbox


class Outbox(Mailbox):
    """A session's mailbox that records every frame taken from it, in order.

    ``raw`` and ``frames`` take whatever is waiting (queue and followed feeds) first,
    the way a connection's writer would, and check that each frame is one line.
    """

    def __init__(self) -> None:
        super().__init__(max_frames=1 << 30, max_bytes=1 << 40)  # tests read when they like
        self._raw: list[bytes] = []
        self._frames: list[dict] = []

    def _collect(self) -> None:
        while data := self.next_chunk(1 << 30):
            assert data.endswith(b"\n")
            for line in data.splitlines(keepends=True):
                self._raw.append(line)
                self._frames.append(json.loads(line))

    @property
    def raw(self) -> list[bytes]:
        self._collect()
        return self._raw

    @property
    def frames(self) -> list[dict]:
        self._collect()
        return self._frames

    def take(self) -> list[dict]:
        """The frames received since the last call."""
        self._collect()
        frames, self._frames = self._frames, []
        return frames

    def only(self, type_: str | None = None) -> dict:
        """The one frame received since the last call (of the given type)."""
        frames = self.take()
        assert len(frames) == 1, frames
        if type_ is not None:
            assert frames[0]["type"] == type_, frames[0]
        return frames[0]


class FakeMember(Outbox):
    """A logged-in connection as the hub sees it: its own mailbox; records what it gets."""

    def __init__(self, user: str) -> None:
        super().__init__()
        self.user = user
        self.rooms: set[str] = set()
        self.mailbox = self

    def __repr__(self) -> str:
        return f"<FakeMember {self.user} {sorted(self.rooms)}>"

    __hash__ = object.__hash__


def frames_of(data: bytes) -> list[bytes]:
    """Encoded frames as a mailbox hands them to an edge: each one line with its newline."""
    return [line + b"\n" for line in data.split(b"\n") if line]
