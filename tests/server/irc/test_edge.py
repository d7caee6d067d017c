"""The IRC edge without a socket: IRC lines in, frame lines out, frames in, IRC lines out."""

import json
import math
import random

import pytest

from securechat.exceptions import ProtocolError
from securechat.server.irc import IrcEdge, IrcGateway
from securechat.server.irc.edge import EXCESS_FLOOD
from securechat.server.limits import TokenBucket
from securechat.server.mailbox import Mailbox
from tests.outbox import frames_of
from tests.server.irc.conftest import sasl_plain


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """An edge, the frames it sent (by ref), and what it wrote (as lines)."""

    def __init__(self, *, rate: float = 1e9, burst: int = 10**9, online: set[str] = frozenset(),
                 cert_user: str | None = None) -> None:  # fmt: skip
        self.clock = Clock()
        self.online = set(online)
        gateway = IrcGateway(is_online=self.online.__contains__,
                             online_users=lambda: sorted(self.online),
                             user_exists=lambda name: True)  # fmt: skip
        self.edge = IrcEdge(gateway, busy=False, cert_user=cert_user,
                            bucket=TokenBucket(rate, burst, self.clock), mailbox=Mailbox(),
                            clock=self.clock)  # fmt: skip
        self.sent: list[dict] = []
        self.patient = True  # time passes until every line is handled (the fake lag waited)

    def send(self, *lines: str) -> list[str]:
        """Feed lines; the frames they made are kept; returns what is written at once."""
        got = self.edge.receive("".join(line + "\r\n" for line in lines).encode())
        self._keep(got)
        while self.patient and self.edge.backlogged and not math.isinf(self.edge.resume_at):
            self.clock.now += 100
            self._keep(self.edge.receive(b""))
        return self.written()

    def resume(self) -> list[str]:
        self._keep(self.edge.receive(b""))
        return self.written()

    def _keep(self, got: list) -> None:
        for item in got:
            self.sent.append(item if isinstance(item, ProtocolError) else json.loads(item))

    def answer(self, frame: dict, **fields: object) -> list[str]:
        """The session's answer to ``frame`` (its ref copied)."""
        return self.frames({**fields, "ref": frame["ref"]})

    def frames(self, *frames: dict) -> list[str]:
        data = b"".join(json.dumps(frame).encode() + b"\n" for frame in frames)
        return self.written(data)

    def written(self, data: bytes = b"") -> list[str]:
        out = self.edge.wire(frames_of(data)).decode()
        assert out == "" or out.endswith("\r\n")
        return out.split("\r\n")[:-1]

    def last(self, kind: str) -> dict:
        return [frame for frame in self.sent if frame.get("type") == kind][-1]

    def register(self, user: str = "alice", **caps: bool) -> list[str]:
        wanted = " ".join(["sasl", *(name.replace("_", "-") for name in caps)])
        self.send("CAP LS 302", f"NICK {user}", f"USER {user} 0 * :Real Name")
        self.send(f"CAP REQ :{wanted}", "AUTHENTICATE PLAIN")
        self.send(f"AUTHENTICATE {sasl_plain(user, 'pw')}")
        self.answer(self.last("login"), type="login_ok", user=user)
        return self.send("CAP END")


def numerics(lines: list[str]) -> list[str]:
    return [line.split(" ")[1] for line in lines if line.startswith(":irc.securechat ")]


@pytest.mark.parametrize(
    "order", [("PASS", "NICK", "USER"), ("PASS", "USER", "NICK"), ("USER", "PASS", "NICK")]
)
def test_pass_nick_user_in_any_order_log_in_the_nick(order: tuple[str, ...]) -> None:
    h = Harness()
    commands = {"PASS": "PASS :secret words", "NICK": "NICK Alice", "USER": "USER a 0 * :A"}
    for name in order[:-1]:
        assert h.send(commands[name]) == []
    h.send(commands[order[-1]])
    login = h.last("login")
    assert (login["user"], login["password"]) == ("alice", "secret words")
    lines = h.answer(login, type="login_ok", user="alice")
    assert numerics(lines)[:5] == ["001", "002", "003", "004", "005"]
    assert "376" in numerics(lines) and lines[0].split()[2] == "alice"


def test_pass_after_nick_and_user_is_too_late_as_the_rfcs_say() -> None:
    h = Harness()
    lines = h.send("NICK alice", "USER a 0 * :a", "PASS pw")
    assert numerics(lines) == ["464"] and h.edge.finished
    assert lines[-1] == "ERROR :Closing link: irc.securechat (not logged in)"
    assert h.sent == []


def test_pass_user_colon_password_logs_in_that_user_whose_name_becomes_the_nick() -> None:
    h = Harness()
    h.send("PASS bob:pw:with:colons", "NICK someone", "USER x 0 * :x")
    login = h.last("login")
    assert (login["user"], login["password"]) == ("bob", "pw:with:colons")
    lines = h.answer(login, type="login_ok", user="bob")
    assert lines[0] == ":irc.securechat 001 bob :Welcome to the securechat IRC gateway, bob"
    assert any("Your nick is your user name here: bob, not someone" in line for line in lines)


def test_a_wrong_password_is_464_and_the_end() -> None:
    h = Harness()
    h.send("PASS nope", "NICK alice", "USER a 0 * :a")
    lines = h.answer(h.last("login"), type="error", code="auth_failed",
                     message="wrong user name or password")  # fmt: skip
    assert numerics(lines) == ["464"]
    assert lines[-1].startswith("ERROR :Closing link")
    assert h.edge.finished


def test_cap_negotiation_holds_registration_and_sasl_failures_are_904() -> None:
    h = Harness()
    assert h.send("CAP LS 302")[0].startswith(":irc.securechat CAP * LS :account-tag ")
    h.send("NICK alice", "USER alice 0 * :A", "CAP REQ :sasl server-time")
    assert not h.edge.registered
    h.send("AUTHENTICATE PLAIN", f"AUTHENTICATE {sasl_plain('alice', 'bad')}")
    lines = h.answer(h.last("login"), type="error", code="auth_failed", message="wrong")
    assert numerics(lines) == ["904"]
    assert numerics(h.send("AUTHENTICATE FOO")) == ["908", "904"]
    lines = h.send("CAP END")  # no login at all: 464, closed
    assert numerics(lines) == ["464"] and h.edge.finished


def test_sasl_external_needs_a_certificate_naming_a_user() -> None:
    assert "sasl=PLAIN " in Harness().send("CAP LS 302")[0]
    h = Harness(cert_user="carol")
    assert "sasl=PLAIN,EXTERNAL" in h.send("CAP LS 302")[0]
    h.send("NICK carol", "USER c 0 * :c", "CAP REQ sasl", "AUTHENTICATE EXTERNAL", "AUTHENTICATE +")
    assert h.last("login") == {"type": "login", "user": "carol", "ref": h.last("login")["ref"]}


def test_commands_before_registration_unknown_ones_and_missing_parameters() -> None:
    h = Harness()
    assert numerics(h.send("JOIN #general")) == ["451"]
    assert numerics(h.send("FOO bar")) == ["421"]
    assert numerics(h.send("USER alice")) == ["461"]
    h.register()
    assert numerics(h.send("JOIN")) == ["461"]
    assert numerics(h.send("PRIVMSG #general")) == ["412"]
    assert numerics(h.send("NICK bob")) == ["432"]
    assert h.send("NICK ALICE") == []  # (the same nick: nothing to say)
    assert numerics(h.send("USER a 0 * :b", "PASS x")) == ["462", "462"]


def test_lines_over_the_limit_are_417_and_non_utf8_is_refused() -> None:
    h = Harness()
    h.register()
    assert numerics(h.send("PRIVMSG #a :" + "x" * 600)) == ["417"]
    got = h.edge.receive(b"PRIVMSG #a :caf\xe9\r\n")
    assert got == []
    assert h.written() == [
        ":irc.securechat FAIL PRIVMSG INVALID_UTF8 :Message rejected: your IRC software must "
        "send UTF-8"
    ]


def test_lines_after_a_login_wait_for_its_answer() -> None:
    h = Harness()
    h.send("PASS pw", "NICK alice", "USER a 0 * :a", "JOIN #general", "PING x")
    assert [frame["type"] for frame in h.sent] == ["login"]
    assert h.edge.backlogged and h.edge.resume_at == math.inf
    h.answer(h.last("login"), type="login_ok", user="alice")
    assert not math.isinf(h.edge.resume_at)
    h.resume()
    assert h.last("join")["room"] == "general"


def test_replies_keep_the_order_of_commands_and_events_do_not_wait() -> None:
    h = Harness()
    h.register()
    assert h.send("JOIN #general", "PING one") == []  # (PONG waits for the JOIN's lines)
    join = h.last("join")
    lines = h.frames(
        {"type": "joined", "room": "general", "members": ["alice", "bob"], "last_id": 0,
         "history": [], "ref": join["ref"]},
        {"type": "presence", "room": "general", "user": "carol", "event": "join",
         "ts": "2026-12-06T10:00:00.000Z"},
    )  # fmt: skip
    assert lines == [
        ":alice!alice@securechat JOIN #general",
        ":irc.securechat 353 alice = #general :alice bob",
        ":irc.securechat 366 alice #general :End of /NAMES list",
        ":irc.securechat PONG irc.securechat one",
        ":carol!carol@securechat JOIN #general",
    ]


def test_labeled_responses_one_line_a_batch_or_ack() -> None:
    h = Harness()
    h.register(labeled_response=True, batch=True)
    assert h.send("@label=p PING x") == ["@label=p :irc.securechat PONG irc.securechat x"]
    assert h.send("@label=q PONG x") == ["@label=q :irc.securechat ACK"]
    h.send("@label=j JOIN #general")
    lines = h.answer(h.last("join"), type="joined", room="general", members=["alice"],
                     last_id=0, history=[])  # fmt: skip
    assert lines[0] == "@label=j :irc.securechat BATCH +1 labeled-response"
    assert all(line.startswith("@batch=1 ") for line in lines[1:-1])
    assert lines[-1] == ":irc.securechat BATCH -1"


def test_own_messages_are_echoed_only_with_echo_message() -> None:
    message = {"type": "message", "room": "general", "id": 7, "user": "alice", "text": "hi",
               "ts": "2026-12-06T10:00:00.000Z"}  # fmt: skip
    for caps, echoed in (({}, []), ({"echo_message": True},
                                    [":alice!alice@securechat PRIVMSG #general :hi"])):  # fmt: skip
        h = Harness()
        h.register(**caps)
        h.send("JOIN #general")
        h.answer(h.last("join"), type="joined", room="general", members=["alice"], last_id=0,
                 history=[])  # fmt: skip
        h.send("PRIVMSG #general :\x02hi\x02")
        assert h.last("send")["text"] == "hi"
        assert h.answer(h.last("send"), **message) == echoed


def test_direct_messages_before_the_welcome_come_after_it() -> None:
    h = Harness()
    h.send("CAP LS 302", "NICK alice", "USER alice 0 * :A", "CAP REQ sasl", "AUTHENTICATE PLAIN")
    h.send(f"AUTHENTICATE {sasl_plain('alice', 'pw')}")
    dm = {"type": "dm", "id": 3, "from": "bob", "to": "alice", "text": "while you were out",
          "ts": "2026-12-06T10:00:00.000Z"}  # fmt: skip
    login = h.last("login")
    lines = h.frames({"type": "login_ok", "user": "alice", "ref": login["ref"]}, dm)
    assert numerics(lines) == ["900", "903"]
    lines = h.send("CAP END")
    assert numerics(lines)[0] == "001"
    assert lines[-1] == ":bob!bob@securechat PRIVMSG alice :while you were out"


def test_presence_is_join_part_or_one_quit() -> None:
    h = Harness(online={"alice", "bob"})
    h.register()
    h.send("JOIN #a,#b")
    joins = [frame for frame in h.sent if frame.get("type") == "join"]
    for join in joins:
        h.answer(join, type="joined", room=join["room"], members=["alice", "bob"], last_id=0,
                 history=[])  # fmt: skip
    ts = "2026-12-06T10:00:00.000Z"
    leave = {"type": "presence", "user": "bob", "event": "leave", "ts": ts}
    assert h.frames({**leave, "room": "a"}) == [":bob!bob@securechat PART #a"]
    h.online.discard("bob")
    h.frames({**leave, "room": "a", "event": "join"})
    assert h.frames({**leave, "room": "a"}, {**leave, "room": "b"}) == [
        ":bob!bob@securechat QUIT :Quit: disconnected"
    ]


def test_fake_lag_delays_lines_over_the_allowance() -> None:
    h = Harness(rate=2, burst=3)
    h.register()
    h.patient = False  # (the clock stands still: lines over the allowance wait)
    h.clock.now += 10
    assert len(h.send(*(f"PING {n}" for n in range(5)))) == 3  # the burst
    assert h.edge.backlogged
    assert h.edge.resume_at == pytest.approx(h.clock.now + 0.5)
    assert h.resume() == []  # no token yet
    h.clock.now += 0.5
    assert h.resume() == [":irc.securechat PONG irc.securechat 3"]


def test_flooding_far_past_the_allowance_is_excess_flood() -> None:
    h = Harness(rate=1, burst=1)
    got = h.edge.receive(b"PING x\r\n" * (EXCESS_FLOOD + 5))
    assert isinstance(got[-1], ProtocolError) and got[-1].fatal
    lines = h.written(b'{"type":"error","code":"rate_limited","message":"Excess Flood"}\n')
    assert lines[-1] == "ERROR :Excess Flood"
    assert h.edge.close() == b""  # (one ERROR)


def test_a_block_of_messages_is_rendered_once_and_presence_is_seen_by_each_edge() -> None:
    a, b = Harness(online={"bob"}), Harness(online={"bob"})
    b.edge.gateway = a.edge.gateway  # (two members of one server)
    for h in (a, b):
        h.register()
        h.send("JOIN #general")
        h.answer(h.last("join"), type="joined", room="general", members=["alice"], last_id=0,
                 history=[])  # fmt: skip
    ts = "2026-12-06T10:00:00.000Z"
    block = b"".join(
        json.dumps({"type": "message", "room": "general", "id": n, "user": "bob",
                    "text": f"m{n}", "ts": ts}, separators=(",", ":")).encode() + b"\n"
        for n in (1, 2)
    )  # fmt: skip
    shared = frames_of(block)  # (the list that members at one position are handed)
    first = a.edge.wire(shared)
    assert first == (b":bob!bob@securechat PRIVMSG #general :m1\r\n"
                     b":bob!bob@securechat PRIVMSG #general :m2\r\n")  # fmt: skip
    assert b.edge.wire(shared) is first  # (the same bytes: rendered once)
    presence = json.dumps({"type": "presence", "room": "general", "user": "bob", "event": "join",
                           "ts": ts}).encode() + b"\n"  # fmt: skip
    assert a.edge.gateway.rendered(frames_of(presence + block), a.edge.view) is None
    for h in (a, b):
        assert h.written(presence + block)[0] == ":bob!bob@securechat JOIN #general"
        assert h.edge.channels["general"] == {"alice", "bob"}


def _joined(h: Harness) -> None:
    h.register()
    h.send("JOIN #general")
    h.answer(h.last("join"), type="joined", room="general", members=["alice"], last_id=0,
             history=[])  # fmt: skip


PRIVMSG_LINES = [
    b"PRIVMSG #general :hi there",
    b"PRIVMSG #General :\x02bold\x02 and \x0304,01red\x03  ",
    b"PRIVMSG #general :caf\xc3\xa9 \xe2\x9c\x93",
    b"PRIVMSG #general :caf\xe9",  # (not UTF-8)
    b"PRIVMSG #general :\x01ACTION waves\x01",
    b"PRIVMSG #general :\x01VERSION\x01",
    b"PRIVMSG #general :",
    b"PRIVMSG #general :   ",
    b"PRIVMSG #general :/me",
    b"PRIVMSG #general :a \x00b",
    b"PRIVMSG #gen\x00eral :nul in the target",
    b"PRIVMSG #general extra :two middle parameters",
    b"PRIVMSG #general,#general :twice",
    b"PRIVMSG #other :not joined",
    b'PRIVMSG #general :quotes " and \\ and \t tab',
    b"PRIVMSG #general : :colon",
]


@pytest.mark.parametrize("line", PRIVMSG_LINES)
def test_the_privmsg_fast_path_does_what_the_general_path_does(
    line: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = Harness()
    _joined(fast)
    out_fast = fast.edge.receive(line + b"\r\n")
    written_fast = fast.written()
    monkeypatch.setattr(IrcEdge, "_say", lambda self, line: False)
    general = Harness()
    _joined(general)
    assert fast.edge.receive(b"") == []
    assert out_fast == general.edge.receive(line + b"\r\n")
    assert written_fast == general.written()
    for h in (fast, general):  # (a refusal is answered the same way too)
        h._keep(out_fast)
    if out_fast:
        refusal = {"type": "error", "code": "not_member", "message": "join it first"}
        assert fast.answer(fast.last("send"), **refusal) == general.answer(
            general.last("send"), **refusal
        )


def test_a_run_of_privmsgs_is_answered_as_the_general_path_answers_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fast-path PRIVMSGs to one channel share a reply: refusals still come in order,
    each naming its channel as typed, and a command between them keeps its place."""
    lines = [b"PRIVMSG #general :one", b"PRIVMSG #General :two", b"PING :between",
             b"PRIVMSG #general :three", b"PRIVMSG #other :four", b"PRIVMSG #OTHER :five",
             b"PRIVMSG #general :six"]  # fmt: skip
    refusals = {1: "not_member", 2: "rate_limited", 4: "no_such_room"}  # (by send)
    outputs = []
    for fast in (True, False):
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(IrcEdge, "_say", lambda self, line: False)
            h = Harness()
            _joined(h)
            h.send("JOIN #other")
            h.answer(h.last("join"), type="joined", room="other", members=["alice"],
                     last_id=0, history=[])  # fmt: skip
            h._keep(h.edge.receive(b"".join(line + b"\r\n" for line in lines)))
            sends = [frame for frame in h.sent if frame["type"] == "send"]
            written = []
            for n, send in enumerate(sends):
                if n in refusals:
                    got = h.answer(send, type="error", code=refusals[n], message="no")
                else:
                    got = h.answer(send, type="message", room=send["room"], id=n + 1,
                                   user="alice", text=send["text"],
                                   ts="2026-12-06T10:00:00.000Z")  # fmt: skip
                written.append(got)
            outputs.append(written)
    assert outputs[0] == outputs[1]
    assert any(":irc.securechat 404 alice #General " in line for line in outputs[0][1])


def test_a_sender_waiting_for_its_messages_answers_gets_the_shared_block() -> None:
    a, b = Harness(), Harness()
    b.edge.gateway = a.edge.gateway
    for h in (a, b):
        _joined(h)
    a.send("PRIVMSG #general :mine")  # (its answer has not come yet)
    block = json.dumps({"type": "message", "room": "general", "id": 1, "user": "bob",
                        "text": "m1", "ts": "2026-12-06T10:00:00.000Z"},
                       separators=(",", ":")).encode() + b"\n"  # fmt: skip
    shared = frames_of(block)
    first = b.edge.wire(shared)
    assert a.edge.wire(shared) is first
    stored = {"type": "message", "room": "general", "id": 2, "user": "alice", "text": "mine",
              "ts": "2026-12-06T10:00:00.000Z"}  # fmt: skip
    assert a.answer(a.last("send"), **stored) == []
    assert not a.edge._replies


def _compact(frame: dict) -> bytes:
    return json.dumps(frame, separators=(",", ":")).encode() + b"\n"


def _traffic(h: Harness, rng: random.Random) -> list[bytes]:
    """Commands sent (PRIVMSGs, a JOIN now and then), then blocks of frames as a busy room
    gives them: others' messages and presence, the answers to ours in order among them."""
    ts = "2026-12-06T10:00:00.000Z"
    before = len(h.sent)
    for n in range(rng.randint(0, 6)):
        if rng.random() < 0.2:
            h.send(f"JOIN #room{n}")
        elif rng.random() < 0.2:
            h.send(f"PING :p{n}")  # (answered at once, written after the replies before it)
        else:
            h.send(f"PRIVMSG #general :mine {n}")
    answers = []
    for frame in h.sent[before:]:
        if frame["type"] == "join":
            joined = {"type": "joined", "room": frame["room"], "members": ["alice"],
                      "last_id": 0, "history": [], "ref": frame["ref"]}  # fmt: skip
            answers.append(_compact(joined))
        elif frame["type"] == "send" and rng.random() < 0.15:
            answers.append(_compact({"type": "error", "code": "rate_limited", "retry_after": 1.0,
                                     "message": "slow down", "ref": frame["ref"]}))  # fmt: skip
        elif frame["type"] == "send":
            answers.append(_compact({"type": "message", "room": "general", "id": rng.randint(1, 99),
                                     "user": "alice", "text": frame["text"], "ts": ts,
                                     "ref": frame["ref"]}))  # fmt: skip
    stream = []
    for n in range(rng.randint(0, 30)):
        if answers and rng.random() < 0.3:
            stream.append(answers.pop(0))
        elif rng.random() < 0.05:
            stream.append(_compact({"type": "presence", "room": "general", "user": f"u{n}",
                                    "event": rng.choice(["join", "leave"]), "ts": ts}))  # fmt: skip
        else:
            stream.append(_compact({"type": "message", "room": "general", "id": 100 + n,
                                    "user": rng.choice(["bob", "carol"]), "text": f"m{n}",
                                    "ts": ts}))  # fmt: skip
    stream += answers
    blocks, at = [], 0
    while at < len(stream):
        size = rng.randint(1, 12)
        blocks.append(stream[at : at + size])
        at += size
    return blocks


@pytest.mark.parametrize("caps", [{}, {"echo_message": True}, {"server_time": True}])
def test_the_block_paths_write_what_frame_by_frame_writes(
    caps: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks (shared, rendered by another member before, a sender's mixed with its
    answers) give the same lines, in the same writes, as handling every frame alone."""

    for seed in range(60):
        outputs = []
        for general in (True, False):
            with monkeypatch.context() as patch:
                if general:
                    patch.setattr(IrcGateway, "rendered", lambda self, frames, view: None)
                    patch.setattr(IrcEdge, "_wire_messages", lambda self, frames: (b"", 0))
                rng = random.Random(seed)
                behind, h = Harness(), Harness()
                behind.edge.gateway = h.edge.gateway  # (another member, further behind)
                for member in (behind, h):
                    member.register(**caps)
                    member.send("JOIN #general")
                    member.answer(member.last("join"), type="joined", room="general",
                                  members=["alice"], last_id=0, history=[])  # fmt: skip
                blocks = _traffic(h, rng)
                if len(blocks) > 1:  # (another member was handed the same frames before)
                    behind.edge.wire([f for f in blocks[-1] if b'"ref"' not in f])
                written = []
                for n, block in enumerate(blocks):
                    if rng.random() < 0.2:  # (a command answered at once, not written yet)
                        h._keep(h.edge.receive(f"PING :between{n}\r\n".encode()))
                    written.append(_written(h, block))
                outputs.append([*written, h.written()])
        assert outputs[0] == outputs[1], seed


def _written(h: Harness, frames: list[bytes]) -> list[str]:
    out = h.edge.wire(frames).decode()
    return out.split("\r\n")[:-1]


def test_members_at_other_positions_find_each_message_rendered_once() -> None:
    a, b = Harness(), Harness()
    b.edge.gateway = gateway = a.edge.gateway
    for h in (a, b):
        _joined(h)
    frames = [_compact({"type": "message", "room": "general", "id": n, "user": "bob",
                        "text": f"m{n}", "ts": "2026-12-06T10:00:00.000Z"})
              for n in range(10)]  # fmt: skip
    lines = a.edge.wire(frames).split(b"\r\n")[:-1]
    gateway.rendered_message = None  # (nothing more may be rendered: each is found)
    for first, last in ((4, 10), (2, 8), (0, 5)):
        got = b.edge.wire(frames[first:last])
        assert got == b"".join(line + b"\r\n" for line in lines[first:last])
