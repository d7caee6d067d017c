"""Recording stand-ins for a connection's outgoing queue, for the sans-I/O tests."""

import json


class Outbox:
    """The ``send`` callable of a session: checks and records every frame it is given."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.frames: list[dict] = []

    def __call__(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        assert data.endswith(b"\n")
        assert data.count(b"\n") == 1
        self.raw.append(data)
        self.frames.append(json.loads(data))

    def take(self) -> list[dict]:
        """The frames received since the last call."""
        frames, self.frames = self.frames, []
        return frames

    def only(self, type_: str | None = None) -> dict:
        """The one frame received since the last call (of the given type)."""
        frames = self.take()
        assert len(frames) == 1, frames
        if type_ is not None:
            assert frames[0]["type"] == type_, frames[0]
        return frames[0]


class FakeMember(Outbox):
    """A logged-in connection as the hub sees it; records what it is given."""

    def __init__(self, user: str) -> None:
        super().__init__()
        self.user = user
        self.rooms: set[str] = set()

    def __repr__(self) -> str:
        return f"<FakeMember {self.user} {sorted(self.rooms)}>"

    def deliver(self, data: bytes) -> None:
        self(data)

    __hash__ = object.__hash__
