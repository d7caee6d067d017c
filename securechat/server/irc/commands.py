"""One function per IRC command, as Ergo's ``handlers.go`` has it.

Each takes the connection's :class:`~securechat.server.irc.edge.IrcEdge` and the parsed
:class:`~securechat.server.irc.parse.Message`, and either answers at once
(:meth:`~IrcEdge.say`, :meth:`~IrcEdge.numeric`) or sends frames to the session
(:meth:`~IrcEdge.request`) with a handler for each answer. :data:`COMMANDS` maps a
command to the parameters it needs (fewer: 461) and its function; a command not in it
is 421, and one that needs registration is 451 before it (the edge checks both).

What maps to what: JOIN/PART are ``join``/``leave`` (one frame a channel); PRIVMSG and
NOTICE to ``#room`` are ``send``, to a nick ``dm``; NAMES and WHO are ``members``; LIST is
``rooms``; REDACT is ``delete``; QUIT is ``logout``. TOPIC, MODE, WHOIS, ISON, USERHOST,
AWAY, LUSERS, MOTD and VERSION are answered here (from the gateway where they need to
know who is online); CHATHISTORY is :mod:`securechat.server.irc.history`'s.
"""

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from securechat.protocol.names import is_valid_name
from securechat.server.irc import numerics as N
from securechat.server.irc.edge import quiet
from securechat.server.irc.history import chathistory
from securechat.server.irc.parse import MAX_LINE, Message, format_line, strip_formatting
from securechat.server.irc.render import HOST, dm_lines, join_line, message_lines, source

if TYPE_CHECKING:
    from securechat.server.irc.edge import Frame, IrcEdge

__all__ = ["COMMANDS", "room_of"]

MAX_TARGETS = 4  # PRIVMSG and NOTICE (TARGMAX)


def room_of(channel: str) -> str | None:
    """The room a channel name stands for (``#General`` is room ``general``), or None."""
    if not channel.startswith("#"):
        return None
    room = channel[1:].lower()
    return room if is_valid_name(room) else None


# -- registration


def cap(edge: "IrcEdge", msg: Message) -> None:
    sub = msg.params[0].upper()
    nick = edge.nick or "*"
    if sub == "LS":
        if not edge.registered:
            edge.hold_registration(True)
        v302 = len(msg.params) > 1 and msg.params[1].isdigit() and int(msg.params[1]) >= 302
        mechanisms = "PLAIN,EXTERNAL" if edge.cert_user else "PLAIN"
        names = [f"sasl={mechanisms}" if name == "sasl" and v302 else name
                 for name in edge.capabilities]  # fmt: skip
        edge.say(format_line("CAP", nick, "LS", " ".join(names), source=edge.server))
    elif sub == "LIST":
        edge.say(format_line("CAP", nick, "LIST", " ".join(sorted(edge.caps)), source=edge.server))
    elif sub == "REQ":
        if len(msg.params) < 2:
            edge.numeric(N.ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
            return
        if not edge.registered:
            edge.hold_registration(True)
        asked = msg.params[1].split()
        added = {name for name in asked if not name.startswith("-")}
        removed = {name[1:] for name in asked if name.startswith("-")}
        if not asked or not (added | removed) <= set(edge.capabilities) or "sasl" in removed:
            edge.say(format_line("CAP", nick, "NAK", msg.params[1], source=edge.server))
            return
        edge.set_caps(added, removed)
        edge.say(format_line("CAP", nick, "ACK", msg.params[1], source=edge.server))
    elif sub == "END":
        if not edge.registered:
            edge.hold_registration(False)
    else:
        edge.numeric(N.ERR_INVALIDCAPCMD, sub, "Invalid CAP command")


def authenticate(edge: "IrcEdge", msg: Message) -> None:
    arg = msg.params[0]
    if edge.user:
        edge.numeric(N.ERR_SASLALREADY, "You have already authenticated using SASL")
        return
    if arg == "*":
        edge.abort_sasl()
        edge.numeric(N.ERR_SASLABORTED, "SASL authentication aborted")
        return
    if edge.sasl is not None:
        edge.sasl_step(arg)
        return
    mechanism = arg.upper()
    if mechanism == "PLAIN" or (mechanism == "EXTERNAL" and edge.cert_user):
        edge.start_sasl(mechanism)
        edge.say("AUTHENTICATE +")
        return
    mechanisms = "PLAIN,EXTERNAL" if edge.cert_user else "PLAIN"
    edge.numeric(N.RPL_SASLMECHS, mechanisms, "are available SASL mechanisms")
    edge.numeric(N.ERR_SASLFAIL, "SASL authentication failed")


def pass_(edge: "IrcEdge", msg: Message) -> None:
    if edge.registered:
        edge.numeric(N.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    given = msg.params[0]
    user, colon, password = given.partition(":")
    if colon and is_valid_name(user.lower()):
        edge.give_password(user.lower(), password)  # user:password, as bouncers send it
    else:
        edge.give_password(None, given)


def nick(edge: "IrcEdge", msg: Message) -> None:
    if not msg.params or not msg.params[0]:
        edge.numeric(N.ERR_NONICKNAMEGIVEN, "No nickname given")
        return
    given = msg.params[0]
    name = given.lower()
    if edge.registered:
        if name != edge.nick:
            edge.numeric(N.ERR_ERRONEUSNICKNAME, given, "Nick changes are not possible here: "
                         "your nick is your user name")  # fmt: skip
        return
    if not is_valid_name(name):
        edge.numeric(N.ERR_ERRONEUSNICKNAME, given, "Erroneous nickname: your nick is your "
                     "user name (1-32 of a-z 0-9 _ -)")  # fmt: skip
        return
    edge.nick = name
    edge.try_register()


def user(edge: "IrcEdge", msg: Message) -> None:
    if edge.registered:
        edge.numeric(N.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    edge.give_user(strip_formatting(msg.params[3])[:64])


def ping(edge: "IrcEdge", msg: Message) -> None:
    edge.say(format_line("PONG", edge.server, msg.params[0], source=edge.server))


def pong(edge: "IrcEdge", msg: Message) -> None:
    """(The client is there: hearing it was enough.)"""


def quit_(edge: "IrcEdge", msg: Message) -> None:
    edge.quit(strip_formatting(msg.params[0])[:200] if msg.params else "")


# -- channels


def join(edge: "IrcEdge", msg: Message) -> None:
    """``join`` each channel not joined yet.

    A channel counts as joined from the request on (its members come with ``joined``),
    and as left from a PART's request on, so the commands after them are checked as the
    session will check them.
    """
    if msg.params[0] == "0":  # JOIN 0: leave every channel
        for room in sorted(edge.channels):
            _leave(edge, room, "")
        return
    for channel in msg.params[0].split(","):
        room = room_of(channel)
        if room is None:
            edge.numeric(N.ERR_NOSUCHCHANNEL, channel, "No such channel: a channel is # and "
                         "1-32 of a-z 0-9 _ -")  # fmt: skip
        elif room not in edge.channels:
            edge.channels[room] = set()

            def refused(frame: "Frame", room: str = room) -> None:
                edge.channels.pop(room, None)
                edge.fail("JOIN", frame["code"].upper(), f"#{room}", frame["message"])

            edge.request({"type": "join", "room": room}, partial(_joined, edge), refused)


def _joined(edge: "IrcEdge", frame: "Frame") -> None:
    room = frame["room"]
    edge.channels[room] = set(frame["members"])
    line = join_line(edge.view, edge.nick, room)
    if edge.view.extended_join:  # (our own real name, as USER gave it)
        line = line.rpartition(" :")[0] + " :" + (edge.realname or edge.nick)
    edge.say(line)
    _names(edge, room, frame["members"])


def _names(edge: "IrcEdge", room: str, members: list[str]) -> None:
    head = f":{edge.server} {N.RPL_NAMREPLY} {edge.nick} = #{room} :"
    budget = MAX_LINE - 2 - len(head)
    line: list[str] = []
    size = 0
    for member in members:
        if line and size + 1 + len(member) > budget:
            edge.say(head + " ".join(line))
            line, size = [], 0
        size += len(member) + (1 if line else 0)
        line.append(member)
    if line:
        edge.say(head + " ".join(line))
    edge.numeric(N.RPL_ENDOFNAMES, f"#{room}", "End of /NAMES list")


def part(edge: "IrcEdge", msg: Message) -> None:
    reason = strip_formatting(msg.params[1])[:200] if len(msg.params) > 1 else ""
    for channel in msg.params[0].split(","):
        room = room_of(channel)
        if room is None or room not in edge.channels:
            edge.numeric(N.ERR_NOTONCHANNEL, channel, "You're not on that channel")
            continue
        _leave(edge, room, reason)


def _leave(edge: "IrcEdge", room: str, reason: str) -> None:
    edge.channels.pop(room, None)
    edge.request({"type": "leave", "room": room}, partial(_left, edge, reason))


def _left(edge: "IrcEdge", reason: str, frame: "Frame") -> None:
    room = frame["room"]
    edge.say(format_line("PART", f"#{room}", *([reason] if reason else []),
                         source=source(edge.nick)))  # fmt: skip


def names(edge: "IrcEdge", msg: Message) -> None:
    if not msg.params:
        edge.numeric(N.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        return
    for channel in msg.params[0].split(","):
        room = room_of(channel)
        if room is not None and room in edge.channels:
            edge.request({"type": "members", "room": room}, partial(_members_names, edge))
        else:
            edge.numeric(N.RPL_ENDOFNAMES, channel, "End of /NAMES list")


def _members_names(edge: "IrcEdge", frame: "Frame") -> None:
    edge.channels[frame["room"]] = set(frame["members"])
    _names(edge, frame["room"], frame["members"])


def topic(edge: "IrcEdge", msg: Message) -> None:
    channel = msg.params[0]
    room = room_of(channel)
    if len(msg.params) > 1:
        edge.numeric(N.ERR_CHANOPRIVSNEEDED, channel, "Topics are not supported here")
    elif room is not None and room in edge.channels:
        edge.numeric(N.RPL_NOTOPIC, channel, "No topic is set")
    else:
        edge.numeric(N.ERR_NOTONCHANNEL, channel, "You're not on that channel")


def mode(edge: "IrcEdge", msg: Message) -> None:
    """A minimal, honest MODE: channels are +nt (members only; no topic to set), nobody
    has a mode or may set one, and ban lists are empty."""
    target = msg.params[0]
    if target.startswith("#"):
        if room_of(target) is None:
            edge.numeric(N.ERR_NOSUCHCHANNEL, target, "No such channel")
        elif len(msg.params) == 1:
            edge.numeric(N.RPL_CHANNELMODEIS, target, "+nt")
        elif msg.params[1].lstrip("+") in ("b", "e", "I") and len(msg.params) == 2:
            code = {"b": N.RPL_ENDOFBANLIST, "e": N.RPL_ENDOFEXCEPTLIST,
                    "I": N.RPL_ENDOFINVITELIST}[msg.params[1].lstrip("+")]  # fmt: skip
            edge.numeric(code, target, "End of list")
        else:
            edge.numeric(N.ERR_CHANOPRIVSNEEDED, target, "Channel modes cannot be changed here")
    elif target.lower() != edge.nick:
        edge.numeric(N.ERR_USERSDONTMATCH, "Can't view or change modes of other users")
    elif len(msg.params) == 1:
        edge.numeric(N.RPL_UMODEIS, "+")
    elif set(msg.params[1]) - set("+-iw"):
        edge.numeric(N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
    # (+i and +w, which clients set by themselves, change nothing: everyone is alike here)


def list_(edge: "IrcEdge", msg: Message) -> None:
    wanted = {room_of(channel) for channel in msg.params[0].split(",")} if msg.params else None
    edge.request({"type": "rooms"}, partial(_rooms, edge, wanted))


def _rooms(edge: "IrcEdge", wanted: set[str | None] | None, frame: "Frame") -> None:
    edge.numeric(N.RPL_LISTSTART, "Channel", "Users  Name")
    for room in frame["rooms"]:
        if wanted is None or room["name"] in wanted:
            edge.numeric(N.RPL_LIST, f"#{room['name']}", str(room["members"]), "")
    edge.numeric(N.RPL_LISTEND, "End of /LIST")


# -- messages


def privmsg(edge: "IrcEdge", msg: Message) -> None:
    """PRIVMSG and NOTICE: ``send`` to a channel, ``dm`` to a nick.

    IRC formatting is stripped; a CTCP ACTION (``/me``) is sent as a text starting with
    ``/me ``; other CTCP requests and replies are not relayed. NOTICE gets no error
    numerics (as IRC has it), only ``FAIL`` when the message could not be stored.
    """
    command, notice = msg.command, msg.command == "NOTICE"
    if len(msg.params) < 2 or not msg.params[1]:
        if not notice:
            edge.numeric(N.ERR_NOTEXTTOSEND, "No text to send")
        return
    text = msg.params[1]
    if text.startswith("\x01"):
        body = text.strip("\x01")
        if not body.upper().startswith("ACTION "):
            return  # CTCP other than ACTION: not relayed
        text = "/me " + body[7:]
    text = strip_formatting(text).strip()
    if not text or text == "/me":
        if not notice:
            edge.numeric(N.ERR_NOTEXTTOSEND, "No text to send")
        return
    targets = msg.params[0].split(",")
    if len(targets) > MAX_TARGETS:
        if not notice:
            edge.numeric(N.ERR_TOOMANYTARGETS, msg.params[0], "Too many targets")
        return
    echo = "echo-message" in edge.caps
    for target in targets:
        on_error = partial(not_sent, edge, command, target)
        if target.startswith("#"):
            room = room_of(target)
            if room is None or room not in edge.channels:
                if not notice:
                    edge.numeric(N.ERR_CANNOTSENDTOCHAN, target, "Cannot send to channel: "
                                 "join it first")  # fmt: skip
                continue
            frame = {"type": "send", "room": room, "text": text}
            edge.request(frame, partial(_echo, edge, command, message_lines) if echo else quiet,
                         on_error)  # fmt: skip
        else:
            name = target.lower()
            if not is_valid_name(name):
                if not notice:
                    edge.numeric(N.ERR_NOSUCHNICK, target, "No such nick")
                continue
            frame = {"type": "dm", "to": name, "text": text}
            edge.dm_partners.add(name)
            edge.request(frame, partial(_echo, edge, command, dm_lines) if echo else quiet,
                         on_error)  # fmt: skip
            if not notice and (away := edge.gateway.away_of(name)):
                edge.numeric(N.RPL_AWAY, name, away)


def _echo(edge: "IrcEdge", command: str, render: Callable, frame: "Frame") -> None:
    """Our own message, stored, echoed (echo-message; without, nothing: labels get ACK)."""
    for line in render(edge.view, frame, command):
        edge.say(line)


def not_sent(edge: "IrcEdge", command: str, target: str, frame: "Frame") -> None:
    code, message = frame["code"], frame["message"]
    if code in ("unavailable", "internal"):
        edge.fail(command, code.upper(), target, message)
    elif command == "NOTICE":
        return
    elif code == "no_such_user":
        edge.numeric(N.ERR_NOSUCHNICK, target, "No such nick")
    elif code == "not_member":
        edge.numeric(N.ERR_CANNOTSENDTOCHAN, target, "Cannot send to channel: join it first")
    else:
        edge.fail(command, code.upper(), target, message)


def tagmsg(edge: "IrcEdge", msg: Message) -> None:
    """(Client-only tags, e.g. typing notifications: securechat has nowhere to put them.)"""


def redact(edge: "IrcEdge", msg: Message) -> None:
    """REDACT (draft/message-redaction) is ``delete``, with the same rights."""
    target, msgid = msg.params[0], msg.params[1]
    room = room_of(target)
    if room is None:
        edge.fail("REDACT", "REDACT_FORBIDDEN", target, msgid,
                  "Only messages in channels can be deleted")  # fmt: skip
        return
    owner, _, number = msgid.partition("/")
    if owner != room or not number.isdigit() or not 1 <= int(number) < 2**63:
        edge.fail("REDACT", "UNKNOWN_MSGID", target, msgid, "No such message in this channel")
        return
    if room not in edge.channels:
        edge.numeric(N.ERR_NOTONCHANNEL, target, "You're not on that channel")
        return

    def deleted(frame: "Frame") -> None:
        if edge.view.redaction and "echo-message" in edge.caps:
            edge.say(f":{source(edge.nick)} REDACT {target} {msgid}")

    def refused(frame: "Frame") -> None:
        code = {"forbidden": "REDACT_FORBIDDEN", "not_found": "UNKNOWN_MSGID"}.get(
            frame["code"], frame["code"].upper()
        )
        edge.fail("REDACT", code, target, msgid, frame["message"])

    edge.request({"type": "delete", "room": room, "id": int(number)}, deleted, refused)


# -- users


def who(edge: "IrcEdge", msg: Message) -> None:
    mask = msg.params[0]
    room = room_of(mask)
    if room is not None:
        if room in edge.channels:
            edge.request({"type": "members", "room": room}, partial(_who_members, edge, mask))
            return
    elif is_valid_name(mask.lower()) and edge.gateway.is_online(mask.lower()):
        _who_line(edge, "*", mask.lower())
    edge.numeric(N.RPL_ENDOFWHO, mask, "End of /WHO list")


def _who_members(edge: "IrcEdge", mask: str, frame: "Frame") -> None:
    edge.channels[frame["room"]] = set(frame["members"])
    for member in frame["members"]:
        _who_line(edge, mask, member)
    edge.numeric(N.RPL_ENDOFWHO, mask, "End of /WHO list")


def _who_line(edge: "IrcEdge", channel: str, name: str) -> None:
    flags = "G" if edge.gateway.away_of(name) else "H"
    edge.numeric(N.RPL_WHOREPLY, channel, name, HOST, edge.server, name, flags, f"0 {name}")


def whois(edge: "IrcEdge", msg: Message) -> None:
    given = msg.params[-1].split(",")[0]
    name = given.lower()
    if not is_valid_name(name) or not edge.gateway.is_online(name):
        edge.numeric(N.ERR_NOSUCHNICK, given, "No such nick")
        edge.numeric(N.RPL_ENDOFWHOIS, given, "End of /WHOIS list")
        return
    edge.numeric(N.RPL_WHOISUSER, name, name, HOST, "*", name)
    shared = [f"#{room}" for room, members in sorted(edge.channels.items()) if name in members]
    if shared:
        edge.numeric(N.RPL_WHOISCHANNELS, name, " ".join(shared))
    edge.numeric(N.RPL_WHOISSERVER, name, edge.server, "securechat")
    if away := edge.gateway.away_of(name):
        edge.numeric(N.RPL_AWAY, name, away)
    edge.numeric(N.RPL_WHOISACCOUNT, name, name, "is logged in as")
    edge.numeric(N.RPL_ENDOFWHOIS, name, "End of /WHOIS list")


def away(edge: "IrcEdge", msg: Message) -> None:
    message = strip_formatting(msg.params[0])[:390] if msg.params and msg.params[0] else None
    edge.gateway.set_away(edge, message)
    if message is None:
        edge.numeric(N.RPL_UNAWAY, "You are no longer marked as being away")
    else:
        edge.numeric(N.RPL_NOWAWAY, "You have been marked as being away")


def ison(edge: "IrcEdge", msg: Message) -> None:
    given = " ".join(msg.params).split()
    online = [name for name in given
              if is_valid_name(name.lower()) and edge.gateway.is_online(name.lower())]  # fmt: skip
    edge.numeric(N.RPL_ISON, " ".join(online))


def userhost(edge: "IrcEdge", msg: Message) -> None:
    replies = []
    for given in msg.params[:5]:
        name = given.lower()
        if is_valid_name(name) and edge.gateway.is_online(name):
            sign = "-" if edge.gateway.away_of(name) else "+"
            replies.append(f"{name}={sign}{name}@{HOST}")
    edge.numeric(N.RPL_USERHOST, " ".join(replies))


def lusers(edge: "IrcEdge", msg: Message) -> None:
    edge.lusers()


def motd(edge: "IrcEdge", msg: Message) -> None:
    edge.motd()


def version(edge: "IrcEdge", msg: Message) -> None:
    edge.numeric(N.RPL_VERSION, edge.gateway.version, edge.server, "securechat IRC gateway")


CommandFunction = Callable[["IrcEdge", Message], None]
COMMANDS: dict[str, tuple[int, CommandFunction]] = {
    "AUTHENTICATE": (1, authenticate),
    "AWAY": (0, away),
    "CAP": (1, cap),
    "CHATHISTORY": (1, chathistory),
    "ISON": (1, ison),
    "JOIN": (1, join),
    "LIST": (0, list_),
    "LUSERS": (0, lusers),
    "MODE": (1, mode),
    "MOTD": (0, motd),
    "NAMES": (0, names),
    "NICK": (0, nick),
    "NOTICE": (1, privmsg),
    "PART": (1, part),
    "PASS": (1, pass_),
    "PING": (1, ping),
    "PONG": (0, pong),
    "PRIVMSG": (1, privmsg),
    "QUIT": (0, quit_),
    "REDACT": (2, redact),
    "TAGMSG": (1, tagmsg),
    "TOPIC": (1, topic),
    "USER": (4, user),
    "USERHOST": (1, userhost),
    "VERSION": (0, version),
    "WHO": (1, who),
    "WHOIS": (1, whois),
}
