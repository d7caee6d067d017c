"""CHATHISTORY (IRCv3 ``draft/chathistory``) from the protocol's ``history`` and ``dm_history``.

Why here and how: history lives in the store behind the session, which pages it with
``history {room, before | after, limit}`` (a room) and ``dm_history {with, before, limit}``
(a conversation). Each subcommand becomes one or two such frames; the messages come
back as one ``chathistory`` batch, oldest first, each with its ``msgid`` and ``time``.
References are msgids only (``MSGREFTYPES=msgid``): ``msgid=general/42`` in a channel,
``msgid=dm/17`` with a nick; ``*`` for LATEST. A limit is at most 200 (``CHATHISTORY=200``).

What is exact and what is approximated:

- Channels: LATEST, BEFORE, AFTER, AROUND (half before, the message itself among them,
  half after) and BETWEEN are exact (the channel must be joined, as for ``history``).
- Direct messages: ``dm_history`` only pages backwards, so LATEST and BEFORE are exact,
  and AFTER, the later half of AROUND and BETWEEN from older to newer look at the
  conversation's newest 200 messages only.
- TARGETS (which takes timestamps) lists the joined channels and the nicks this
  connection has exchanged direct messages with since it logged in, each with the time
  of its latest message; the protocol cannot list every conversation a user ever had.

A replayed message's file gets a link that lasts from now (``--file-link-days``), not
from when the message was sent: asking for history is asking for the files again.
"""

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from securechat.protocol.names import is_valid_name
from securechat.server.irc.parse import Message
from securechat.server.irc.render import add_tags, dm_lines, message_lines

if TYPE_CHECKING:
    from securechat.server.irc.edge import Frame, IrcEdge

__all__ = ["MAX_LIMIT", "chathistory"]

MAX_LIMIT = 200  # what history and dm_history give at most (CHATHISTORY=200)
DM_WINDOW = 200  # the newest direct messages searched where dm_history cannot page forwards
SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "TARGETS")

Query = tuple[dict[str, Any], Callable[[list["Frame"]], list["Frame"]]]


class _Gather:
    """Answers of several frames, handed over together once the last has come."""

    def __init__(self, count: int, done: Callable[[list[list["Frame"]]], None]) -> None:
        self._parts: list[list[Frame] | None] = [None] * count
        self._done = done

    def part(self, index: int, items: list["Frame"]) -> None:
        self._parts[index] = items
        if all(part is not None for part in self._parts):
            self._done([part or [] for part in self._parts])


def chathistory(edge: "IrcEdge", msg: Message) -> None:
    params = msg.params
    sub = params[0].upper()
    if sub not in SUBCOMMANDS:
        edge.fail("CHATHISTORY", "UNKNOWN_COMMAND", sub, "Unknown CHATHISTORY subcommand")
        return
    needed = 5 if sub == "BETWEEN" else 4
    if len(params) < needed:
        edge.fail("CHATHISTORY", "INVALID_PARAMS", sub, "Not enough parameters")
        return
    limit = _limit(params[needed - 1])
    if limit is None:
        edge.fail("CHATHISTORY", "INVALID_PARAMS", sub, "The limit must be a number from 1")
        return
    if sub == "TARGETS":
        _targets(edge, params[1], params[2], limit)
        return
    target = params[1]
    room = target[1:].lower() if target.startswith("#") else None
    if room is not None:
        if room not in edge.channels:
            edge.fail("CHATHISTORY", "INVALID_TARGET", sub, target, "Join the channel first")
            return
        prefix = room
    else:
        if not is_valid_name(target.lower()):
            edge.fail("CHATHISTORY", "INVALID_TARGET", sub, target, "No such nick")
            return
        prefix = "dm"
    refs = []
    for given in params[2 : needed - 1]:
        ref = _reference(given, prefix, allow_star=sub == "LATEST")
        if ref is None:
            edge.fail("CHATHISTORY", "INVALID_PARAMS", sub, given, "References are "
                      f"msgid={prefix}/N" + (" or *" if sub == "LATEST" else ""))  # fmt: skip
            return
        refs.append(ref)
    if room is not None:
        queries = _room_queries(sub, room, refs, limit)
    else:
        queries = _dm_queries(sub, target.lower(), refs, limit)
    _run(edge, target, queries, limit)


def _limit(given: str) -> int | None:
    if not given.isdigit() or int(given) < 1:
        return None
    return min(int(given), MAX_LIMIT)


def _reference(given: str, prefix: str, *, allow_star: bool) -> int | None:
    """The id in ``msgid=PREFIX/N`` (0 for ``*`` where allowed), or None."""
    if given == "*" and allow_star:
        return 0
    key, _, value = given.partition("=")
    owner, _, number = value.partition("/")
    if key != "msgid" or owner != prefix or not number.isdigit():
        return None
    number_id = int(number)
    return number_id if 1 <= number_id < 2**63 - 1 else None


def _newer(after: int, limit: int | None = None) -> Callable[[list["Frame"]], list["Frame"]]:
    def keep(items: list["Frame"]) -> list["Frame"]:
        kept = [item for item in items if item["id"] > after]
        return kept[:limit] if limit is not None else kept

    return keep


def _within(
    low: int, high: int, limit: int, *, newest: bool
) -> Callable[[list["Frame"]], list["Frame"]]:
    """Those strictly between ``low`` and ``high``: the oldest ``limit``, or the newest."""

    def keep(items: list["Frame"]) -> list["Frame"]:
        kept = [item for item in items if low < item["id"] < high]
        return kept[-limit:] if newest else kept[:limit]

    return keep


def _all(items: list["Frame"]) -> list["Frame"]:
    return items


def _room_queries(sub: str, room: str, refs: list[int], limit: int) -> list[Query]:
    frame: dict[str, Any] = {"type": "history", "room": room}
    if sub == "LATEST":
        return [({**frame, "limit": limit}, _newer(refs[0]) if refs[0] else _all)]
    if sub == "BEFORE":
        return [({**frame, "before": refs[0], "limit": limit}, _all)]
    if sub == "AFTER":
        return [({**frame, "after": refs[0], "limit": limit}, _all)]
    if sub == "AROUND":
        older, newer = limit - limit // 2, limit // 2
        queries: list[Query] = [({**frame, "before": refs[0] + 1, "limit": older}, _all)]
        if newer:
            queries.append(({**frame, "after": refs[0], "limit": newer}, _all))
        return queries
    start, end = refs  # BETWEEN: from start towards end, both left out
    if start < end:
        return [({**frame, "after": start, "limit": limit},
                 _within(start, end, limit, newest=False))]  # fmt: skip
    return [({**frame, "before": start, "limit": limit}, _within(end, start, limit, newest=True))]


def _dm_queries(sub: str, other: str, refs: list[int], limit: int) -> list[Query]:
    frame: dict[str, Any] = {"type": "dm_history", "with": other}
    window = {**frame, "limit": DM_WINDOW}
    if sub == "LATEST":
        return [({**frame, "limit": limit}, _newer(refs[0]) if refs[0] else _all)]
    if sub == "BEFORE":
        return [({**frame, "before": refs[0], "limit": limit}, _all)]
    if sub == "AFTER":
        return [(window, _newer(refs[0], limit))]
    if sub == "AROUND":
        older, newer = limit - limit // 2, limit // 2
        queries: list[Query] = [({**frame, "before": refs[0] + 1, "limit": older}, _all)]
        if newer:
            queries.append((window, _newer(refs[0], newer)))
        return queries
    start, end = refs
    if start < end:
        return [(window, _within(start, end, limit, newest=False))]
    return [({**frame, "before": start, "limit": limit}, _within(end, start, limit, newest=True))]


def _run(edge: "IrcEdge", target: str, queries: list[Query], limit: int) -> None:
    """Send the queries; one ``chathistory`` batch of what they found, oldest first."""

    def done(parts: list[list["Frame"]]) -> None:
        found = {item["id"]: item for part in parts for item in part}
        items = [found[key] for key in sorted(found)][-limit:]
        view, now = edge.view, time.time()
        batch = edge.batch_id()
        edge.say(f":{edge.server} BATCH +{batch} chathistory {target}")
        for item in items:
            render = dm_lines if "from" in item else message_lines
            lines = render(view, item, now=now)
            for line in lines:
                edge.say(add_tags(line, batch=batch))
        edge.say(f":{edge.server} BATCH -{batch}")

    gather = _Gather(len(queries), done)
    for index, (frame, keep) in enumerate(queries):

        def answered(reply: "Frame", index: int = index, keep: Callable = keep) -> None:
            gather.part(index, keep(reply["messages"]))

        def refused(error: "Frame") -> None:
            edge.fail("CHATHISTORY", "MESSAGE_ERROR", target, error["message"])

        edge.request(frame, answered, refused)


def _targets(edge: "IrcEdge", first: str, second: str, limit: int) -> None:
    """TARGETS: joined channels and this connection's DM partners, by latest message."""
    low, high = _timestamp(first), _timestamp(second)
    if low is None or high is None:
        edge.fail("CHATHISTORY", "INVALID_PARAMS", "TARGETS", "Timestamps are timestamp=...")
        return
    low, high = min(low, high), max(low, high)
    names = [f"#{room}" for room in sorted(edge.channels)] + sorted(edge.dm_partners)

    def done(parts: list[list["Frame"]]) -> None:
        latest = []
        for name, part in zip(names, parts, strict=True):
            when = _timestamp("timestamp=" + part[-1]["ts"]) if part else None
            if when is not None and low <= when <= high:
                latest.append((when, name, part[-1]["ts"]))
        batch = edge.batch_id()
        edge.say(f":{edge.server} BATCH +{batch} draft/chathistory-targets")
        for _, name, ts in sorted(latest)[:limit]:
            edge.say(f"@batch={batch} :{edge.server} CHATHISTORY TARGETS {name} {ts}")
        edge.say(f":{edge.server} BATCH -{batch}")

    gather = _Gather(len(names), done)
    if not names:
        done([])
        return
    for index, name in enumerate(names):
        if name.startswith("#"):
            frame = {"type": "history", "room": name[1:], "limit": 1}
        else:
            frame = {"type": "dm_history", "with": name, "limit": 1}

        def answered(reply: "Frame", index: int = index) -> None:
            gather.part(index, reply["messages"])

        def refused(error: "Frame", index: int = index) -> None:
            gather.part(index, [])

        edge.request(frame, answered, refused)


def _timestamp(given: str) -> datetime | None:
    key, _, value = given.partition("=")
    if key != "timestamp":
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
