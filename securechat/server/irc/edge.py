"""One IRC connection's edge: IRC lines in, protocol frames out, and back (sans-I/O).

Why this shape: the session behind it speaks the JSON protocol and nothing else
("translate at the edge: the hub never learns IRC"). :class:`IrcEdge` is the
connection's :class:`~securechat.server.connection.Edge`: :meth:`IrcEdge.receive` turns
what the client sent into frame lines for the session (a ``JOIN #a,#b`` is two ``join``
frames) and answers what needs no frame itself (CAP, PING, MODE, ...); :meth:`IrcEdge.wire`
turns the frames the session sends into IRC lines.

Replies keep the order of commands. Every frame the edge sends carries a ``ref`` of its
own; the frame that answers it (the reply, or an ``error``) comes back with that ``ref``
and is handed to the command's handler. A command's lines (its :class:`Reply`) go out
once all its frames are answered and every command before it has gone out; events
(other people's messages, presence) go out as they come. With ``labeled-response`` a
command's lines carry its label: one line, a ``labeled-response`` batch, or ``ACK``.

Registration: NICK, USER, and a login. The login is SASL PLAIN (or EXTERNAL with a
client certificate naming a user), ``PASS password`` for the user named by NICK, or
``PASS user:password``; CAP negotiation holds registration until ``CAP END``. Each
login is one ``login`` frame, so the session's checks and the login throttle apply as
to any client. The nick is the user name: the welcome names the client by it.

Flood: IRC clients expect fake lag, not refusals. Each line takes a token from the
connection's allowance (``--frame-rate``, ``--frame-burst``); a line with none waits, and
the connection reads nothing more meanwhile (:attr:`IrcEdge.backlogged`,
:attr:`IrcEdge.resume_at`). A client that has :data:`EXCESS_FLOOD` lines waiting is
flooding far past its allowance: ``ERROR :Excess Flood``, closed. Lines that come while a
login is being checked wait for its answer the same way.
"""

import base64
import binascii
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from securechat.exceptions import ProtocolError
from securechat.protocol.names import is_valid_name
from securechat.server.irc import numerics as N
from securechat.server.irc.parse import (
    TOO_LONG,
    InvalidUtf8,
    LineSplitter,
    Message,
    TooLong,
    format_line,
    parse,
    strip_formatting,
)
from securechat.server.irc.render import (
    View,
    add_tags,
    deleted_lines,
    dm_lines,
    edited_lines,
    join_line,
    message_lines,
    source,
)
from securechat.server.limits import TokenBucket
from securechat.server.mailbox import Mailbox
from securechat.server.session import Line

if TYPE_CHECKING:
    from securechat.server.irc.gateway import IrcGateway

__all__ = ["CAPABILITIES", "EXCESS_FLOOD", "IrcEdge", "Reply", "quiet"]

EXCESS_FLOOD = 100  # lines waiting for the allowance before the client is dropped
SASL_LIMIT = 4096  # bytes of one SASL response (base64), in 400-byte chunks
CAPABILITIES = (
    "account-tag", "away-notify", "batch", "draft/chathistory", "draft/message-redaction",
    "echo-message", "extended-join", "labeled-response", "message-tags", "sasl",
    "server-time",
)  # fmt: skip
PRE_REGISTRATION = frozenset(("CAP", "AUTHENTICATE", "PASS", "NICK", "USER", "PING",
                              "PONG", "QUIT"))  # fmt: skip
Frame = dict[str, Any]
Handler = Callable[[Frame], None]


@dataclass(eq=False, slots=True)
class Reply:
    """The lines answering one command, sent once its frames are all answered."""

    command: str
    label: str | None = None
    waiting: int = 0  # frames sent for it, not answered yet
    lines: list[str] = field(default_factory=list)
    welcome: bool = False  # holds the welcome burst: events held until then follow it
    target: bytes = b""  # a PRIVMSG's channel, as typed (for the numeric if it is refused)


class IrcEdge:
    """The IRC side of one connection (see the module's docstring)."""

    chatting = True  # (the session starts at the handshake)
    plain = True  # (a room's frames may come straight from its feed: wire sees them all)
    shared_wire = False  # (what is written depends on what this client negotiated)
    kind = "irc"  # (connections by kind, in the metrics)
    capabilities = CAPABILITIES

    def __init__(
        self,
        gateway: "IrcGateway",
        *,
        busy: bool,
        cert_user: str | None,
        bucket: TokenBucket,
        mailbox: Mailbox,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = gateway
        self.server = gateway.server_name
        self.mailbox = mailbox
        self.cert_user = cert_user if cert_user is not None and is_valid_name(cert_user) else None
        del busy  # (the session says server_busy, which closes with ERROR)
        self._bucket = bucket
        self._clock = clock
        self._splitter = LineSplitter()
        self._input: deque[bytes | TooLong] = deque()  # lines read, not handled yet
        self._frames: list[Line] = []  # frame lines for the session, from this receive
        self._out: list[str] = []  # IRC lines to send, in order
        self._replies: deque[Reply] = deque()
        self._reply = Reply("")  # the command being handled (or answered)
        self._run = self._reply  # the last fast-path PRIVMSG's (see _say)
        self._expect: dict[str, tuple[Reply, Handler, Handler | None]] = {}
        self._next_ref = 0
        self._next_batch = 0
        self._early: list[str] = []  # events before the welcome burst went out
        self._resume = 0.0
        # Registration
        self.caps: set[str] = set()
        self.view = View(links=gateway.links)
        self._renders = gateway.renders(self.view)  # (the view's rendered messages)
        self._blocks = gateway.blocks(self.view)  # (and blocks)
        self._talks = False  # registered, without echo-message: PRIVMSG has a fast path
        self.nick = ""  # as given by NICK until the welcome; the user name from then on
        self.user = ""  # the logged-in user name
        self.realname = ""
        self._user_given = False
        self._password: tuple[str | None, str] | None = None  # from PASS: (user, password)
        self._cap_hold = False
        self._sasl: str | None = None  # the mechanism being negotiated
        self._sasl_data = ""
        self._logging_in = False  # a login frame is out: hold the lines after it
        self.registered = False
        self._welcomed = False
        self._quitting = False
        self._error_sent = False
        self._finished = False
        # What the connection reads
        self.heard = False
        self.channels: dict[str, set[str]] = {}  # room -> members, as this client saw them
        self.dm_partners: set[str] = set()  # users DMs went to or came from (CHATHISTORY TARGETS)

    # -- the Edge interface

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def backlogged(self) -> bool:
        """Lines are waiting (for a token, or for a login's answer): read no more."""
        return bool(self._input)

    @property
    def resume_at(self) -> float:
        return math.inf if self._logging_in else self._resume

    @property
    def partial(self) -> bool:
        return self._splitter.partial

    @property
    def wants_away_notify(self) -> bool:
        return self.registered and "away-notify" in self.caps

    def shares_channel_with(self, user: str) -> bool:
        return any(user in members for members in list(self.channels.values()))

    def receive(self, data: bytes) -> list[Line]:
        """Handle the lines completed by ``data`` as far as the allowance lets."""
        self.heard = False
        if data:
            lines = self._splitter.feed(data)
            if lines:
                self.heard = True
                self._input.extend(lines)
        frames: list[Line] = []
        self._frames = frames
        held = self._input
        while held and not self._logging_in and not self._finished:
            if self._quitting:
                held.clear()
                break
            if wait := self._bucket.take():
                self._resume = self._clock() + wait
                break
            self._handle(held.popleft())
        if len(held) >= EXCESS_FLOOD:
            held.clear()
            frames.append(ProtocolError("rate_limited", "Excess Flood", fatal=True))
        return frames

    def wire(self, frames: list[bytes]) -> bytes:
        """Our lines waiting, then the IRC lines of ``frames`` (encoded frames, each ending
        in a newline)."""
        # The hot path: a room's messages, rendered once for all. Replies still waiting for
        # their frames' answers (a sender's own messages) are no reason to leave it: none
        # of them could go out before these events anyway.
        if frames and self._welcomed and not self._out:
            replies = self._replies
            if not replies or replies[0].waiting:
                hit = self._blocks.get(id(frames))  # (rendered by another member)
                if hit is not None and hit[0] is frames and hit[1] is not None:
                    return hit[1]
                if not replies:  # (a sender's block is its own: its answers are mixed in)
                    data = self.gateway.rendered(frames, self.view)
                    if data is not None:
                        return data
            data, done = self._wire_messages(frames)
            if done == len(frames) and not self._out:
                return data
            if data:  # (before the lines of replies its answers completed)
                self._out.insert(0, data[:-2].decode())
            frames = frames[done:]
        for raw in frames:
            if raw != b"\n":
                self._frame(raw)
        self._flush_replies()
        if not self._out:
            return b""
        out = "\r\n".join(self._out) + "\r\n"
        self._out = []
        return out.encode()

    def _wire_messages(self, frames: list[bytes]) -> tuple[bytes, int]:
        """A sender's hot path: room messages and the silent answers to its own, as bytes.

        The same as :meth:`_frame` for each (messages rendered once for all, answers with
        nothing to say counted), without making a string of each message. Gives the bytes
        made and how many frames they took: the rest need more (or come after an answer
        that completed a reply with lines of its own, now in :attr:`_out`) and take the
        general path, after those bytes. Only an answer changes what may go out (a reply
        it completes goes first), so the messages found rendered are taken in one C loop.
        """
        replies = self._replies
        if replies and not replies[0].waiting:
            return b"", 0
        parts: list[bytes | None] = list(map(self._renders.get, frames))
        at = 0
        for _ in range(parts.count(None)):
            index = parts.index(None, at)
            raw = frames[index]
            ref_at = raw.rfind(b',"ref":"')  # (from the end: a ref comes last)
            if ref_at == -1 and raw.startswith(b'{"type":"message"'):
                parts[index] = self.gateway.rendered_message(raw, self.view, self._renders)
            elif ref_at != -1 and self._quiet_answer(raw, ref_at):
                parts[index] = b""
                if replies and not replies[0].waiting:
                    self._flush_replies()
                    if self._out:  # (lines of replies answered: after the events so far)
                        return b"".join(parts[: index + 1]), index + 1  # type: ignore[arg-type]
            else:
                return b"".join(parts[:index]), index  # type: ignore[arg-type]
            at = index + 1  # (where the next one not found rendered is looked for)
        return b"".join(parts), len(frames)  # type: ignore[arg-type]

    def close(self) -> bytes:
        """``ERROR`` as the last line, unless one was sent."""
        if self._error_sent:
            return self.wire([])
        self._error_sent = True
        self._out.append(f"ERROR :Closing link: {self.server} (bye)")
        return self.wire([])

    # -- output

    def say(self, line: str) -> None:
        """A line answering the command being handled."""
        self._reply.lines.append(line)

    def numeric(self, code: str, *params: str) -> None:
        self.say(format_line(code, self.nick or "*", *params, source=self.server))

    def fail(self, command: str, code: str, *context: str) -> None:
        """A standard reply ``FAIL`` (the last of ``context`` is the description)."""
        self.say(format_line("FAIL", command, code, *context, source=self.server))

    def request(self, frame: Frame, handler: Handler, on_error: Handler | None = None) -> None:
        """Send ``frame`` to the session; ``handler`` gets its reply, ``on_error`` an error.

        Without ``on_error`` an error is answered ``FAIL <command> <CODE> :message``.
        """
        self._next_ref += 1
        ref = frame["ref"] = str(self._next_ref)
        self._expect[ref] = (self._reply, handler, on_error)
        self._reply.waiting += 1
        self._frames.append(to_json(frame))

    def batch_id(self) -> str:
        self._next_batch += 1
        return str(self._next_batch)

    def event(self, lines: list[str]) -> None:
        """Lines nobody asked for (events): now, or after the welcome once it has gone out.

        Replies whose frames are all answered go first: they came before.
        """
        if self._welcomed:
            if self._replies:
                self._flush_replies()
            self._out += lines
        else:
            self._early += lines

    def error(self, reason: str) -> None:
        """``ERROR`` as the last line; the connection closes after it."""
        if not self._error_sent:
            self._error_sent = True
            self.say(f"ERROR :Closing link: {self.server} ({reason})")

    def finish(self, reason: str) -> None:
        """End the connection from here (a registration that did not log in, QUIT)."""
        self.error(reason)
        self._finished = True
        self._input.clear()

    def _flush_replies(self) -> None:
        replies = self._replies
        while replies and not replies[0].waiting:
            reply = replies.popleft()
            lines = reply.lines
            if reply.label is not None:
                lines = self._labeled(reply.label, lines)
            self._out += lines
            if reply.welcome:
                self._welcomed = True
                self._out += self._early
                self._early = []

    def _labeled(self, label: str, lines: list[str]) -> list[str]:
        """A command's lines with its label (labeled-response): one line, a batch, or ACK."""
        if not lines:
            return [add_tags(f":{self.server} ACK", label=label)]
        if len(lines) == 1:
            return [add_tags(lines[0], label=label)]
        if "batch" not in self.caps:
            return lines
        ref = self.batch_id()
        inner = [line if _in_batch(line) else add_tags(line, batch=ref) for line in lines]
        return [
            add_tags(f":{self.server} BATCH +{ref} labeled-response", label=label),
            *inner,
            f":{self.server} BATCH -{ref}",
        ]

    # -- input

    def _handle(self, item: bytes | TooLong) -> None:
        """One line from the client: parse, dispatch, queue its reply."""
        if isinstance(item, bytes) and item.startswith(b"PRIVMSG #") and self._say(item):
            return
        reply = self._reply = Reply("*")
        if item is TOO_LONG:
            reply.command = "*"
            self.numeric(N.ERR_INPUTTOOLONG, "Input line was too long")
        else:
            assert isinstance(item, bytes)
            try:
                message = parse(item)
            except InvalidUtf8 as exc:
                self.fail(exc.command or "*", "INVALID_UTF8", "Message rejected: your IRC "
                          "software must send UTF-8")  # fmt: skip
                message = None
            if message is not None:
                reply.command = message.command
                if "labeled-response" in self.caps:
                    reply.label = message.tags.get("label")
                self._dispatch(message, _commands())
        if reply.lines or reply.waiting or reply.label is not None:
            self._replies.append(reply)

    def _say(self, line: bytes) -> bool:
        """The hot path of a sender: ``PRIVMSG #room :text`` to a joined channel, no tags.

        The ``send`` frame that :func:`~.commands.privmsg` would make, made without
        parsing the line in general; False (nothing done) for any other shape of line,
        which takes the general path (so do a CTCP, a NUL, a text that is not UTF-8 or
        that is left empty, and echo-message, whose echo the command's handler renders).
        The session validates the frame as any other.
        """
        at = line.find(b" :", 9)
        if at == -1 or not self._talks:
            return False
        target = line[9:at]
        if SPACE in target or COMMA in target or NUL in line or CTCP in line:
            return False
        room = target.decode("latin-1").lower()
        if room not in self.channels:
            return False
        try:
            text = line[at + 2 :].decode()
        except UnicodeDecodeError:
            return False
        if not text.isprintable():  # (else there is nothing to strip: all codes are not)
            text = strip_formatting(text)
        text = text.strip()
        if not text or text == "/me":
            return False
        # What request() makes of {"type": "send", "room": room, "text": text}, made here;
        # a run of them to one channel shares a Reply (none has lines unless refused).
        replies, reply = self._replies, self._run
        if replies and replies[-1] is reply and reply.waiting and reply.target == target:
            reply.waiting += 1
        else:
            reply = self._run = Reply("PRIVMSG", waiting=1, target=target)
            replies.append(reply)
        self._reply = reply
        self._next_ref = number = self._next_ref + 1
        self._expect[str(number)] = (reply, quiet, self._not_said)
        self._frames.append(SEND % (room.encode(), to_json(text), number))
        return True

    def _not_said(self, frame: Frame) -> None:
        """A PRIVMSG of the fast path refused (:meth:`_say`)."""
        _not_sent()(self, "PRIVMSG", "#" + self._reply.target.decode(), frame)

    def _dispatch(self, message: Message, commands: dict[str, tuple[int, Callable]]) -> None:
        command = message.command
        entry = commands.get(command)
        if entry is None:
            if command.isdigit():
                return  # (a numeric from a client: nothing to answer)
            self.numeric(N.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            return
        if not self.registered and command not in PRE_REGISTRATION:
            self.numeric(N.ERR_NOTREGISTERED, "You have not registered")
            return
        needed, handler = entry
        if len(message.params) < needed:
            self.numeric(N.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
            return
        handler(self, message)

    # -- frames from the session

    def _frame(self, raw: bytes) -> None:
        """One encoded frame (and its newline) from the session, said as IRC lines."""
        if raw[0] != 0x7B:  # "{": not a frame but a line the gateway sent (away-notify)
            if self._welcomed:
                self._out.append(raw.rstrip(b"\n").decode())
            return
        if self._welcomed and raw.startswith(b'{"type":"message"') and b'"ref":' not in raw:
            if self._replies:
                self._flush_replies()  # (what was answered before it)
            self._out.append(self.gateway.message(raw, self.view))  # (rendered once for all)
            return
        if self._quiet_answer(raw, raw.rfind(b',"ref":"')):
            return
        frame = json.loads(raw)
        ref = frame.get("ref")
        if ref is not None and (expected := self._expect.pop(ref, None)) is not None:
            reply, handler, on_error = expected
            self._reply = reply
            if frame.get("type") != "error":
                handler(frame)
            elif on_error is not None:
                on_error(frame)
            else:
                self.fail(reply.command, frame["code"].upper(), frame["message"])
            reply.waiting -= 1
            return
        self._event(frame)

    def _quiet_answer(self, raw: bytes, at: int) -> bool:
        """Our own message stored, without echo-message: nothing to say, no need to read
        it (its ref comes last: the hub adds it so; ``at`` is where ``,"ref":"`` is, or
        -1). Counted as answered: True."""
        if at != -1 and raw.endswith(b'"}\n') and raw.startswith(QUIET_REPLIES):
            ref = raw[at + 8 : -3].decode()
            expected = self._expect.get(ref)
            if expected is not None and expected[1] is quiet:
                del self._expect[ref]
                expected[0].waiting -= 1
                return True
        return False

    def _event(self, frame: Frame) -> None:
        kind = frame.get("type")
        view = self.view
        if kind == "message":  # (with a ref that is not ours: e.g. a retried request)
            self.event(message_lines(view, frame))
        elif kind == "dm":
            self.dm_partners.add(frame["to"] if frame["from"] == self.user else frame["from"])
            self.event(dm_lines(view, frame))
        elif kind == "edited":
            self.event(edited_lines(view, frame))
        elif kind == "deleted":
            self.event(deleted_lines(view, frame))
        elif kind == "presence":
            self._presence(frame)
        elif kind == "ping":
            self.event([f"PING :{self.server}"])
        elif kind == "error":
            self._error_event(frame)
        # (welcome, read markers and the rest have nothing to say to IRC)

    def _presence(self, frame: Frame) -> None:
        room, user = frame["room"], frame["user"]
        members = self.channels.get(room)
        if members is None:
            return
        if frame["event"] == "join":
            members.add(user)
            lines = [join_line(self.view, user, room, frame.get("ts"))]
            if "away-notify" in self.caps and (away := self.gateway.away_of(user)):
                lines.append(f":{source(user)} AWAY :{away}")
            self.event(lines)
            return
        if user not in members:
            return  # (its QUIT has been sent)
        tags, _ = self.view.tags(frame.get("ts"), None, user)
        if self.gateway.is_online(user):
            members.discard(user)
            self.event([f"{tags}:{source(user)} PART #{room}"])
            return
        for others in self.channels.values():  # gone altogether: one QUIT for all channels
            others.discard(user)
        self.event([f"{tags}:{source(user)} QUIT :Quit: disconnected"])

    def _error_event(self, frame: Frame) -> None:
        """An error that answers nothing of ours: one that ends the connection but two.

        (``server_busy``, ``shutting_down``, ``slow_consumer``, the login and partial-line
        timeouts, and ``Excess Flood`` from :meth:`receive`.)
        """
        code, message = frame.get("code"), frame.get("message", "")
        self._flush_replies()  # (what was answered before it)
        if code in ("internal", "unavailable"):
            self._out.append(format_line("NOTICE", self.nick or "*", f"*** {message}",
                                         source=self.server))  # fmt: skip
        elif not self._error_sent:
            self._error_sent = True
            self._out.append(f"ERROR :{message}" if code == "rate_limited" else
                             f"ERROR :Closing link: {self.server} ({message})")  # fmt: skip

    # -- registration (CAP, SASL, PASS, NICK, USER: see commands.py for the commands)

    def try_register(self) -> None:
        """Complete registration once NICK, USER and CAP END are in: log in, or welcome."""
        if self.registered or self._cap_hold or not self.nick or not self._user_given:
            return
        if self._logging_in:
            return
        if self.user:
            self._welcome()
            return
        if self._password is not None:
            named, password = self._password
            user = named or self.nick
            self._login({"type": "login", "user": user, "password": password}, self._pass_answer)
        elif self.cert_user is not None and self.cert_user == self.nick:
            self._login({"type": "login", "user": self.nick}, self._pass_answer)
        else:
            self.numeric(N.ERR_PASSWDMISMATCH, "Password required: log in with SASL or PASS")
            self.finish("not logged in")

    def _login(self, frame: Frame, handler: Handler) -> None:
        self._logging_in = True
        self.request(frame, handler, handler)

    def _pass_answer(self, frame: Frame) -> None:
        self._logging_in = False
        if frame["type"] == "login_ok":
            self.user = frame["user"]
            self._welcome()
            return
        self.numeric(N.ERR_PASSWDMISMATCH, _login_failure(frame))
        self.finish("login failed")

    def sasl_answer(self, frame: Frame) -> None:
        self._logging_in = False
        self._sasl = None
        if frame["type"] == "login_ok":
            self.user = user = frame["user"]
            self.numeric(N.RPL_LOGGEDIN, source(self.nick or user), user,
                         f"You are now logged in as {user}")  # fmt: skip
            self.numeric(N.RPL_SASLSUCCESS, "SASL authentication successful")
            self.try_register()
            return
        self.numeric(N.ERR_SASLFAIL, f"SASL authentication failed: {_login_failure(frame)}")

    def sasl_step(self, data: str) -> None:
        """One AUTHENTICATE line of the client's response (400-byte chunks, ``+``: empty)."""
        if data != "+":
            self._sasl_data += data
        if len(self._sasl_data) > SASL_LIMIT:
            self._sasl, self._sasl_data = None, ""
            self.numeric(N.ERR_SASLTOOLONG, "SASL message too long")
            return
        if len(data) == 400:
            return  # more to come
        payload, self._sasl_data = self._sasl_data, ""
        try:
            decoded = base64.b64decode(payload, validate=True) if payload else b""
            text = decoded.decode()
        except (binascii.Error, UnicodeDecodeError):
            self._sasl = None
            self.numeric(N.ERR_SASLFAIL, "SASL authentication failed: bad base64 or not UTF-8")
            return
        if self._sasl == "EXTERNAL":
            user = text.lower() or (self.cert_user or "")
            if not is_valid_name(user):
                self._sasl = None
                self.numeric(N.ERR_SASLFAIL, "SASL authentication failed: no such user")
                return
            self._login({"type": "login", "user": user}, self.sasl_answer)
            return
        parts = text.split("\0")
        if len(parts) != 3:
            self._sasl = None
            self.numeric(N.ERR_SASLFAIL, "SASL authentication failed: malformed PLAIN response")
            return
        authzid, authcid, password = parts
        user = authcid.lower()
        if not is_valid_name(user) or (authzid and authzid.lower() != user):
            self._sasl = None
            self.numeric(N.ERR_SASLFAIL, "SASL authentication failed: wrong user name or password")
            return
        self._login({"type": "login", "user": user, "password": password}, self.sasl_answer)

    def _welcome(self) -> None:
        """001-005, LUSERS, MOTD: the client is registered, as its user."""
        gateway = self.gateway
        given, self.nick = self.nick, self.user
        self.registered = True
        self._reply.welcome = True
        self._viewed()
        self.numeric(N.RPL_WELCOME, f"Welcome to the {gateway.network} IRC gateway, {self.nick}")
        self.numeric(N.RPL_YOURHOST, f"Your host is {self.server}, running version "
                     f"{gateway.version}")  # fmt: skip
        self.numeric(N.RPL_CREATED, "This server has rooms with ids, edits and history")
        self.numeric(N.RPL_MYINFO, self.server, gateway.version, "i", "nt")
        tokens = isupport(gateway.network)
        for start in range(0, len(tokens), 12):
            self.numeric(N.RPL_ISUPPORT, *tokens[start : start + 12],
                         "are supported by this server")  # fmt: skip
        self.lusers()
        self.motd()
        if given and given != self.nick:
            self.say(format_line("NOTICE", self.nick, f"*** Your nick is your user name here: "
                                 f"{self.nick}, not {given}", source=self.server))  # fmt: skip

    def lusers(self) -> None:
        online = len(self.gateway.online_users())
        self.numeric(N.RPL_LUSERCLIENT, f"There are {online} users and 0 invisible on 1 servers")
        self.numeric(N.RPL_LUSERME, f"I have {online} clients and 0 servers")

    def motd(self) -> None:
        self.numeric(N.RPL_MOTDSTART, f"- {self.server} Message of the day -")
        for line in MOTD:
            self.numeric(N.RPL_MOTD, f"- {line}")
        self.numeric(N.RPL_ENDOFMOTD, "End of /MOTD command")

    # -- what commands.py sets

    def set_caps(self, added: set[str], removed: set[str]) -> None:
        self.caps |= added
        self.caps -= removed
        if self.registered:
            self._viewed()

    def _viewed(self) -> None:
        """(Registered, or the capabilities changed since.) The view and its caches."""
        gateway = self.gateway
        self.view = View.of(self.caps, gateway.links)
        self._renders = gateway.renders(self.view)
        self._blocks = gateway.blocks(self.view)
        self._talks = "echo-message" not in self.caps

    def hold_registration(self, hold: bool) -> None:
        self._cap_hold = hold
        if not hold:
            self.try_register()

    def give_password(self, user: str | None, password: str) -> None:
        self._password = (user, password)

    def give_user(self, realname: str) -> None:
        self._user_given = True
        self.realname = realname
        self.try_register()

    def start_sasl(self, mechanism: str) -> None:
        self._sasl = mechanism
        self._sasl_data = ""

    @property
    def sasl(self) -> str | None:
        return self._sasl

    def abort_sasl(self) -> None:
        self._sasl, self._sasl_data = None, ""

    def quit(self, reason: str) -> None:
        """QUIT: log out (a ``bye`` ends the session) or, before the login, just close."""
        self._quitting = True
        if not self.user:
            self.finish(f"Quit: {reason}" if reason else "Quit")
            return

        def bye(frame: Frame) -> None:
            self.error(f"Quit: {reason}" if reason else "Quit")

        self.request({"type": "logout"}, bye)


MOTD = (
    "securechat's rooms are channels here: room general is #general.",
    "Messages carry their ids (msgid tag): general/42, dm/17 for direct messages.",
    "An edit comes as a NOTICE: [edited general/42] the new text.",
    "History: CHATHISTORY (draft/chathistory), e.g. /quote CHATHISTORY LATEST #general * 50",
)


def isupport(network: str) -> list[str]:
    """The ISUPPORT (005) tokens."""
    return [
        "AWAYLEN=390", "CASEMAPPING=ascii", "CHANLIMIT=#:", "CHANMODES=,,,nt",
        "CHANNELLEN=33", "CHANTYPES=#", "CHATHISTORY=200", "MODES=0",
        "MSGREFTYPES=msgid", f"NETWORK={network}", "NICKLEN=32", "PREFIX=()",
        "TARGMAX=JOIN:,PART:,PRIVMSG:4,NOTICE:4,NAMES:,WHOIS:1", "UTF8ONLY",
    ]  # fmt: skip


QUIET_REPLIES = (b'{"type":"message"', b'{"type":"dm"')
SPACE, COMMA, NUL, CTCP = b" ,\0\x01"  # (as ints: a byte's test in bytes is cheapest so)
SEND = b'{"type":"send","room":"%s","text":%s,"ref":"%d"}'  # (a room name needs no escape)


def quiet(frame: Frame) -> None:
    """The handler of a message of ours stored, for a client without echo-message."""


def _commands() -> dict[str, tuple[int, Callable]]:
    """The command table (:mod:`.commands` imports this module: looked up once, later)."""
    global _COMMANDS
    if _COMMANDS is None:
        from securechat.server.irc.commands import COMMANDS

        _COMMANDS = COMMANDS
    return _COMMANDS


_COMMANDS: dict[str, tuple[int, Callable]] | None = None


def _not_sent() -> Callable:
    """The handler of a ``send`` refused (:mod:`.commands`'s, looked up once, later)."""
    global _NOT_SENT
    if _NOT_SENT is None:
        from securechat.server.irc.commands import not_sent

        _NOT_SENT = not_sent
    return _NOT_SENT


_NOT_SENT: Callable | None = None


def _in_batch(line: str) -> bool:
    """The line has a ``batch`` tag already (it is inside a batch of its own)."""
    return line.startswith("@") and "batch=" in line[: line.find(" ")]


def _login_failure(frame: Frame) -> str:
    """Why a login failed, in the session's words (and how long to wait)."""
    if frame.get("type") != "error":
        return "unexpected answer"
    message = frame.get("message", "login failed")
    if frame.get("retry_after"):
        message += f" (retry after {frame['retry_after']:g} s)"
    return message
