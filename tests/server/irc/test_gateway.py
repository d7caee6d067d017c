"""The IRC gateway over real TLS: raw IRC clients beside line-protocol clients."""

import time
from pathlib import Path

import pytest

from securechat.server.irc.parse import MAX_LINE
from tests.conftest import UNMETERED, USERS
from tests.server.irc.conftest import sasl_plain


def test_the_listener_speaks_irc_over_tls_only_and_registration_works_with_pass(
    server, irc
) -> None:
    client = irc()
    client.send("PASS " + USERS["bob"], "NICK Bob", "USER bob 0 * :Bob B")
    welcome = client.expect("001")
    assert welcome.params[0] == "bob" and welcome.source == "irc.securechat"
    tokens = " ".join(client.expect("005").params + client.expect("005").params)
    for token in ("CASEMAPPING=ascii", "CHANTYPES=#", "NICKLEN=32", "CHANNELLEN=33", "UTF8ONLY",
                  "CHATHISTORY=200", "MSGREFTYPES=msgid"):  # fmt: skip
        assert token in tokens
    client.expect("251")
    client.expect("376")
    # A plain-text client on the IRC port gets nothing it can read, and is closed.
    import socket

    with socket.create_connection(server.irc_address, timeout=5) as raw:
        raw.sendall(b"NICK x\r\nUSER x 0 * :x\r\n")
        try:
            answer = raw.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert b"001" not in answer


def test_a_registration_that_does_not_log_in_is_refused_and_closed(irc) -> None:
    client = irc()
    client.send("CAP LS 302", "NICK alice", "USER alice 0 * :A", "CAP REQ :sasl")
    client.send("AUTHENTICATE PLAIN", f"AUTHENTICATE {sasl_plain('alice', 'wrong')}")
    assert "authentication failed" in client.expect("904").params[-1]
    client.send("CAP END")
    assert client.expect("464")
    lines = client.wait_closed()
    assert lines[-1].startswith("ERROR :Closing link")
    wrong = irc()
    wrong.send("PASS nope", "NICK alice", "USER alice 0 * :A")
    assert wrong.expect("464")
    assert wrong.wait_closed()[-1].startswith("ERROR")


def test_join_talk_both_ways_presence_and_part(irc, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    alice = irc("alice")
    alice.send("JOIN #General,#random")
    assert alice.expect("JOIN", "#general").source == "alice!alice@securechat"
    assert alice.expect("353", "alice", "=", "#general").params[-1].split() == ["alice", "bob"]
    alice.expect("366", "alice", "#general")
    alice.expect("366", "alice", "#random")
    assert bob.expect("presence", user="alice", event="join", room="general")

    alice.send("PRIVMSG #general :hello \x02bob\x02", "PRIVMSG bob :psst")
    message = bob.expect("message", user="alice")
    assert (message["room"], message["text"]) == ("general", "hello bob")
    echo = alice.expect("PRIVMSG", "#general")  # echo-message
    assert echo.tags["msgid"] == f"general/{message['id']}"
    assert echo.tags["account"] == "alice" and echo.tags["time"] == message["ts"]
    dm = bob.expect("dm", **{"from": "alice"})
    assert alice.expect("PRIVMSG", "bob").tags["msgid"] == f"dm/{dm['id']}"

    sent = bob.request(type="send", room="general", text="two\nlines")
    first = alice.expect("PRIVMSG", "#general", "two")
    assert first.source == "bob!bob@securechat" and first.tags["msgid"] == f"general/{sent['id']}"
    assert "msgid" not in alice.expect("PRIVMSG", "#general", "lines").tags
    bob.request(type="dm", to="alice", text="back at you")
    assert alice.expect("PRIVMSG", "alice", "back at you").source == "bob!bob@securechat"

    bob.request(type="edit", room="general", id=sent["id"], text="two, edited")
    notice = alice.expect("NOTICE", "#general")
    assert notice.params[1] == f"[edited general/{sent['id']}] two, edited"
    bob.request(type="delete", room="general", id=sent["id"])
    assert alice.expect("REDACT", "#general", f"general/{sent['id']}").source.startswith("bob!")

    alice.send("PART #general :bye")
    assert alice.expect("PART", "#general").params == ["#general", "bye"]
    assert bob.expect("presence", user="alice", event="leave")
    bob.request(type="leave", room="general")
    alice.send("JOIN #general")
    alice.expect("366", "alice", "#general")
    bob.request(type="join", room="general")
    alice.expect("JOIN", "#general", "bob", "bob")  # extended-join: account, real name
    bob.close()
    assert alice.expect("QUIT").source == "bob!bob@securechat"


def test_a_long_text_arrives_in_lines_of_at_most_512_bytes(irc, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    alice = irc("alice", caps=())
    alice.send("JOIN #general")
    alice.expect("366")
    text = ("ünïcödé " * 400).strip()[:3990]
    bob.request(type="send", room="general", text=text)
    got = ""
    while len(got) < len(text):
        message = alice.expect("PRIVMSG", "#general")
        got += message.params[1]
    assert got == text
    assert all(len(line.encode()) + 2 <= MAX_LINE for line in alice.seen)


def test_names_who_whois_list_topic_mode_away_ison_userhost(irc, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    alice, carol = irc("alice"), irc("carol")
    for client in (alice, carol):
        client.send("JOIN #general")
        client.expect("366")
    carol.send("AWAY :lunch")
    carol.expect("306")
    assert alice.expect("AWAY").params == ["lunch"]  # away-notify
    alice.backlog.clear()
    alice.send("NAMES #general")
    assert alice.expect("353").params[-1].split() == ["alice", "bob", "carol"]
    alice.send("WHO #general")
    who = [alice.expect("352") for _ in range(3)]
    assert [(m.params[5], m.params[6]) for m in who] == [("alice", "H"), ("bob", "H"),
                                                         ("carol", "G")]  # fmt: skip
    alice.expect("315")
    alice.send("WHOIS carol")
    assert alice.expect("311").params[1:4] == ["carol", "carol", "securechat"]
    assert alice.expect("319").params[-1] == "#general"
    assert alice.expect("301").params[-1] == "lunch"
    assert alice.expect("330").params[1:3] == ["carol", "carol"]
    alice.expect("318")
    alice.send("WHOIS nobody")
    alice.expect("401")
    alice.send("LIST")
    assert alice.expect("322").params[1:3] == ["#general", "3"]
    alice.expect("323")
    alice.send("TOPIC #general", "TOPIC #general :new", "MODE #general", "MODE #general +b",
               "MODE #general +o bob", "MODE alice", "MODE bob")  # fmt: skip
    for code in ("331", "482", "324", "368", "482", "221", "502"):
        alice.expect(code)
    alice.send("ISON carol dave bob", "USERHOST carol bob")
    assert alice.expect("303").params[-1] == "carol bob"
    assert alice.expect("302").params[-1] == "carol=-carol@securechat bob=+bob@securechat"
    carol.send("AWAY")
    carol.expect("305")
    assert alice.expect("AWAY").params == []


def test_chathistory_pages_with_msgids(irc, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    ids = [bob.request(type="send", room="general", text=f"m{n}")["id"] for n in range(12)]
    alice = irc("alice")
    alice.send("JOIN #general")
    alice.expect("366")

    def page(*params: str) -> list[str]:
        alice.send("CHATHISTORY " + " ".join(params))
        batch = alice.expect("BATCH").params[0][1:]
        lines = alice.lines_until("BATCH", f"-{batch}")
        return [m.params[1] for m in lines if m.tags.get("batch") == batch]

    assert page("LATEST", "#general", "*", "5") == [f"m{n}" for n in range(7, 12)]
    assert page("BEFORE", "#general", f"msgid=general/{ids[7]}", "3") == ["m4", "m5", "m6"]
    assert page("AFTER", "#general", f"msgid=general/{ids[1]}", "2") == ["m2", "m3"]
    assert page("AROUND", "#general", f"msgid=general/{ids[5]}", "4") == ["m4", "m5", "m6", "m7"]
    assert page("BETWEEN", "#general", f"msgid=general/{ids[2]}", f"msgid=general/{ids[6]}",
                "10") == ["m3", "m4", "m5"]  # fmt: skip
    assert page("BETWEEN", "#general", f"msgid=general/{ids[9]}", f"msgid=general/{ids[2]}",
                "2") == ["m7", "m8"]  # fmt: skip
    assert page("LATEST", "#general", f"msgid=general/{ids[9]}", "50") == ["m10", "m11"]
    # Every page is a batch; every message in it has its time and msgid.
    alice.send("CHATHISTORY LATEST #general * 1")
    start = alice.expect("BATCH")
    assert start.params[1:] == ["chathistory", "#general"]
    line = alice.expect("PRIVMSG")
    assert line.tags["batch"] == start.params[0][1:] and line.tags["msgid"] == f"general/{ids[-1]}"
    alice.expect("BATCH", "-" + start.params[0][1:])

    for n in range(3):
        bob.request(type="dm", to="alice", text=f"d{n}")
    assert page("LATEST", "bob", "*", "2") == ["d1", "d2"]
    alice.send("CHATHISTORY LATEST #nowhere * 5", "CHATHISTORY BEFORE #general msgid=dm/1 5",
               "CHATHISTORY NOPE x")  # fmt: skip
    assert alice.expect("FAIL").params[:2] == ["CHATHISTORY", "INVALID_TARGET"]
    assert alice.expect("FAIL").params[:2] == ["CHATHISTORY", "INVALID_PARAMS"]
    assert alice.expect("FAIL").params[:2] == ["CHATHISTORY", "UNKNOWN_COMMAND"]
    alice.send("CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z "
               "timestamp=2100-01-01T00:00:00.000Z 10")  # fmt: skip
    targets = alice.lines_until("BATCH", f"-{alice.expect('BATCH').params[0][1:]}")
    assert [m.params[1] for m in targets if m.command == "CHATHISTORY"] == ["#general", "bob"]


def test_redact_deletes_with_the_same_rights(irc, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    theirs = bob.request(type="send", room="general", text="bob's")["id"]
    alice = irc("alice")
    alice.send("JOIN #general", "PRIVMSG #general :mine")
    mine = alice.expect("PRIVMSG", "#general").tags["msgid"]
    alice.send(f"REDACT #general general/{theirs}")
    assert alice.expect("FAIL").params[:2] == ["REDACT", "REDACT_FORBIDDEN"]
    alice.send(f"REDACT #general {mine} :oops")
    assert alice.expect("REDACT", "#general", mine)
    assert bob.expect("deleted", by="alice")["id"] == int(mine.split("/")[1])
    alice.send(f"REDACT #general {mine}", "REDACT #general random/1")
    assert alice.expect("FAIL").params[:2] == ["REDACT", "UNKNOWN_MSGID"]
    assert alice.expect("FAIL").params[:2] == ["REDACT", "UNKNOWN_MSGID"]


def test_a_json_client_and_an_irc_client_see_one_order_of_ids(irc, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    alice = irc("alice")
    alice.send("JOIN #general")
    alice.expect("366")
    for n in range(10):
        bob.send(type="send", room="general", text=f"json {n}")
        alice.send(f"PRIVMSG #general :irc {n}")
    seen_json = [bob.expect("message")["id"] for _ in range(20)]
    seen_irc = [int(alice.expect("PRIVMSG").tags["msgid"].split("/")[1]) for _ in range(20)]
    assert seen_json == seen_irc == sorted(seen_irc)


def test_bad_input_gets_numerics_and_the_connection_goes_on(irc) -> None:
    client = irc()
    client.send("JOIN #general")
    assert client.expect("451").params[0] == "*"
    client.send("NICK bob!", "FROB x", "USER bob")
    assert client.expect("432")
    assert client.expect("421").params[1] == "FROB"
    assert client.expect("461").params[1] == "USER"
    alice = irc("alice")
    alice.send("PRIVMSG #x :" + "y" * 600)
    alice.expect("417")
    alice.send("@" + "t" * 8000 + " PING fits")
    alice.expect("PONG", "irc.securechat", "fits")
    alice.send_raw(b"PRIVMSG #x :\xff\xfe\r\n")
    assert alice.expect("FAIL").params[:2] == ["PRIVMSG", "INVALID_UTF8"]
    alice.send_raw(b"x" * 1_000_000 + b"\r\nPING after\r\n")
    alice.expect("417")
    alice.expect("PONG", "irc.securechat", "after")


@pytest.mark.limits(frame_rate=20, frame_burst=5)
def test_fake_lag_delays_a_flood_and_excess_flood_closes(irc) -> None:
    alice = irc("alice")
    time.sleep(0.5)  # (a full allowance again after registering: 5 tokens at 20 a second)
    started = time.monotonic()
    alice.send(*(f"PING {n}" for n in range(25)))
    for n in range(25):
        alice.expect("PONG", "irc.securechat", str(n))
    assert time.monotonic() - started >= 0.9  # 20 lines over the burst, at 20 a second
    flooder = irc("bob")
    flooder.send_raw(b"PING x\r\n" * 2000)
    lines = flooder.wait_closed()
    assert lines[-1] == "ERROR :Excess Flood"
    assert sum(line.endswith("PONG irc.securechat x") for line in lines) < 200


@pytest.mark.limits(**UNMETERED)
def test_quit_logs_out_and_says_error(irc, connect) -> None:
    bob = connect("bob")
    bob.request(type="join", room="general")
    alice = irc("alice")
    alice.send("JOIN #general")
    bob.expect("presence", user="alice", event="join")
    alice.send("QUIT :see you")
    assert alice.wait_closed()[-1] == "ERROR :Closing link: irc.securechat (Quit: see you)"
    assert bob.expect("presence", user="alice", event="leave")


@pytest.mark.limits(idle_ping=0.3, idle_drop=60)
def test_the_server_pings_an_idle_irc_client(irc) -> None:
    alice = irc("alice")
    ping = alice.expect("PING", timeout=5)
    assert ping.params == ["irc.securechat"]
    alice.send("PONG :irc.securechat")


def test_sasl_external_with_a_client_certificate(certs, passwd_path, tmp_path) -> None:
    import tempfile

    from securechat.server.cli import Limits, Server, durable_hub, make_server_context
    from securechat.server.passwd import PasswordFile
    from tests.server.irc.ircclient import IrcClient
    from tests.server.test_abuse import make_client_cert

    alice_cert = make_client_cert(certs, tmp_path / "alice.pem", "alice")
    context = make_server_context(certs.server, client_ca=certs.ca_cert)
    with (
        tempfile.TemporaryDirectory() as tmp,
        durable_hub(Path(tmp) / "data", PasswordFile(passwd_path)) as hub,
    ):
        server = Server(context, hub, PasswordFile(passwd_path).verify, "127.0.0.1", 0,
                        Limits(), irc_port=0)  # fmt: skip
        server.start()
        try:
            client = IrcClient(server.irc_address, certs.ca_cert, cert=alice_cert)
            client.send("CAP LS 302", "NICK alice", "USER alice 0 * :A")
            ls = client.wait_for(lambda m: m.command == "CAP" and m.params[1] == "LS")
            assert "sasl=PLAIN,EXTERNAL" in ls.params[-1].split()
            client.send("CAP REQ sasl", "AUTHENTICATE EXTERNAL")
            client.expect("AUTHENTICATE", "+")
            client.send("AUTHENTICATE +")
            assert client.expect("900").params[2] == "alice"
            client.expect("903")
            client.send("CAP END")
            client.expect("001", "alice")
            client.close()
            plain = IrcClient(server.irc_address, certs.ca_cert)  # no certificate: no EXTERNAL
            plain.send("CAP LS 302")
            assert "sasl=PLAIN" in plain.expect("CAP").params[-1].split()
            plain.close()
        finally:
            server.shutdown()
