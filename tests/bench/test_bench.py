"""securechat-bench: a real smoke run, and the pure helpers it relies on."""

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from securechat.admin.certs import make_certs
from securechat.bench.cli import (
    MARK_RE,
    Conn,
    RoomPlan,
    Run,
    Sender,
    latency_summary,
    parse_args,
    percentile,
    smoke_verdict,
)
from securechat.bench.irc import (
    IrcDialect,
    SecurechatDialect,
    parse_irc_line,
    parse_proc_stat,
    parse_proc_status,
    prepare_peer,
    sample_process,
    split_pem,
)
from securechat.bench.report import combine, fmt, table

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_passes_and_prints_the_table():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "securechat.bench", "--smoke", "--repeat", "2", "--duration", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fanout: round 2 of 2" in done.stderr
    assert "2 rounds, the servers interleaved" in done.stdout
    assert "| metric | securechat |" in done.stdout
    assert "| delivered msg/s |" in done.stdout
    assert "| lost | 0 |" in done.stdout
    assert "smoke: securechat: ok" in done.stdout


def test_smoke_run_over_websocket_loses_nothing():
    """``--transport ws``: the same room over WebSocket (ALPN http/1.1, /ws), no loss."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "securechat.bench", "--smoke", "--transport", "ws",
         "--duration", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "securechat-ws over WebSocket" in done.stdout  # the table says which transport
    assert "| metric | securechat-ws |" in done.stdout
    assert "| lost | 0 |" in done.stdout and "| duplicated | 0 |" in done.stdout
    assert "smoke: securechat-ws: ok" in done.stdout


# -- statistics


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([7], 50) == 7
    assert percentile([], 50) is None


def test_latency_summary_in_milliseconds():
    summary = latency_summary([3000, 1000, 2000, 10_000])
    assert summary == {
        "lat_p50_ms": 2.0, "lat_p90_ms": 10.0, "lat_p99_ms": 10.0, "lat_max_ms": 10.0,
    }  # fmt: skip
    assert latency_summary([], "login")["login_p50_ms"] is None


# -- /proc


def test_parse_proc_stat_counts_fields_after_the_last_parenthesis():
    rest = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "250", "50"] + ["0"] * 30
    line = "4242 (odd) name (x)) " + " ".join(rest)
    clk = os.sysconf("SC_CLK_TCK")
    assert parse_proc_stat(line) == pytest.approx(300 / clk)


def test_parse_proc_status_reads_rss_and_threads():
    text = "Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\nSigQ:\t0/1\n"
    assert parse_proc_status(text) == {"VmHWM": 2048, "VmRSS": 1024, "Threads": 7}


def test_sample_process_of_ourselves():
    sample = sample_process(os.getpid())
    assert sample is not None
    assert sample.cpu_s > 0 and sample.rss_kib > 0 and sample.threads >= 1 and sample.fds >= 3
    assert sample_process(None) is None
    assert sample_process(2**22 + 12345) is None  # above pid_max: no such process


# -- IRC


def test_parse_irc_line():
    msg = parse_irc_line(b":u1!~u1@127.0.0.1 PRIVMSG #bench :~1.2.3~ hello world\r\n")
    assert msg.prefix == "u1!~u1@127.0.0.1"
    assert msg.command == "PRIVMSG"
    assert msg.params == ("#bench", "~1.2.3~ hello world")
    assert parse_irc_line("PING :irc.local") == parse_irc_line(b"PING :irc.local\r\n")
    assert parse_irc_line("PING :irc.local").params == ("irc.local",)
    assert parse_irc_line(":srv 366 u1 #bench :End of NAMES list").params[1] == "#bench"
    assert parse_irc_line("ping x y").command == "PING"
    assert parse_irc_line("").command == ""
    assert parse_irc_line(":only-prefix").command == ""


def test_irc_dialect_registers_joins_and_answers_ping():
    irc = IrcDialect()
    assert irc.hello("u3", "pw") == b"NICK u3\r\nUSER u3 0 * :securechat bench\r\n"
    assert irc.handshake(b"PING :abc", "u3", "pw") == (b"PONG :abc\r\n", None, False)
    assert irc.handshake(b":srv NOTICE * :hi", "u3", "pw") == (b"", None, False)
    assert irc.handshake(b":srv 001 u3 :Welcome", "u3", "pw") == (b"", None, True)
    assert irc.handshake(b":srv 433 * u3 :Nickname is already in use", "u3", "pw")[1]
    assert irc.join_frame("r1") == b"JOIN #r1\r\n"
    assert irc.joined(b":srv 366 u3 #R1 :End of NAMES list", "r1") == "ok"
    assert irc.joined(b":srv 366 u3 #r2 :End of NAMES list", "r1") is None
    assert irc.joined(b":srv 474 u3 #r1 :Cannot join", "r1").startswith("join refused")
    assert irc.send_affixes("r1") == (b"PRIVMSG #r1 :", b"\r\n")
    assert irc.control(b"PING :x") == (b"PONG :x\r\n", None)
    assert irc.control(b":srv 404 u3 #r1 :Cannot send to channel") == (b"", "refused")
    assert irc.control(b"ERROR :Closing link")[1].startswith("closed")


def test_securechat_dialect():
    sc = SecurechatDialect()
    reply, error, done = sc.handshake(b'{"type":"welcome","protocol":1}', "u1", "pw")
    assert reply == b'{"type":"login","user":"u1","password":"pw"}\n' and not done
    assert error is None
    assert sc.handshake(b'{"type":"login_ok","user":"u1"}', "u1", "pw") == (b"", None, True)
    assert sc.handshake(b'{"type":"error","code":"auth_failed"}', "u1", "pw")[1]
    assert sc.joined(b'{"type":"joined","room":"r1","members":[]}', "r1") == "ok"
    assert sc.control(b'{"type":"ping"}') == (b'{"type":"pong"}\n', None)
    assert sc.control(b'{"type":"error","code":"rate_limited"}') == (b"", "refused")
    assert sc.control(b'{"type":"error","code":"slow_consumer"}')[1] == "closed: slow_consumer"
    assert sc.control(b"not json") == (b"", None)
    prefix, suffix = sc.send_affixes("r1")
    assert prefix + b"hi" + suffix == b'{"type":"send","room":"r1","text":"hi"}\n'


def test_peer_configs_are_written(tmp_path):
    certs = make_certs(tmp_path / "certs")
    chain, key = split_pem(certs.server, tmp_path)
    assert chain.read_text().count("BEGIN CERTIFICATE") == 2
    assert "PRIVATE KEY" in key.read_text() and "CERTIFICATE" not in key.read_text()
    assert key.stat().st_mode & 0o077 == 0
    ng = prepare_peer("ngircd", ["ngircd"], tmp_path / "ng", chain, key, 16697)
    conf = (tmp_path / "ng" / "ngircd.conf").read_text()
    assert "Ports = 16697" in conf and "MaxPenaltyTime = 0" in conf
    assert ng.ready.search('[1:5 0] Server "bench.local" (on "vm") ready.')
    mini = prepare_peer("miniircd", ["miniircd"], tmp_path / "mi", chain, key, 16699)
    assert "--ssl-cert-file" in mini.argv and mini.ready.search("Listening on port 16699.")
    with pytest.raises(ValueError):
        prepare_peer("nosuch", ["x"], tmp_path, chain, key, 1)


# -- the receiving fast path


def test_conn_counts_marks_across_chunks_and_finds_duplicates():
    async def scenario():
        run = Run()
        conn = Conn(run, IrcDialect(), 5, "u5", "pw")
        conn.go_fast()
        line = b":u1!u@h PRIVMSG #b :~1.%d.%d~ pad\r\n"
        data = b"".join(line % (seq, 0) for seq in (1, 2, 3)) + line % (2, 0)
        conn.data_received(data[:17])  # a line cut in two
        conn.data_received(data[17:] + b"PING :x")
        return run, conn

    run, conn = asyncio.run(scenario())
    assert conn.count == 4 and conn.dups == 1
    assert conn.last == {1: 3}
    assert run.delivered == 4 and len(run.lat) == 4
    assert conn.tail == b"PING :x"  # incomplete: waits for its newline


def test_marks_seen_during_setup_are_history_not_deliveries():
    async def scenario():
        run = Run()
        conn = Conn(run, IrcDialect(), 5, "u5", "pw")
        conn.data_received(b'{"type":"joined","history":[{"text":"~1.7.0~ pad"}]}\n')
        conn.go_fast()
        conn.data_received(b":u1!u@h PRIVMSG #b :~1.1.0~ pad\r\n")
        return run, conn

    run, conn = asyncio.run(scenario())
    assert conn.count == 1 and conn.dups == 0  # seq 1 after an old seq 7 is no duplicate
    assert run.delivered == 1 and conn.last == {1: 1}


def test_settle_counts_only_what_some_member_saw():
    async def scenario():
        run = Run()
        conns = [Conn(run, SecurechatDialect(), i, f"u{i}", "pw") for i in range(3)]
        room = RoomPlan("r", conns)
        sender = Sender(conns[0], "r", b"")
        room.senders = [sender]
        frames = sender.frames(5)
        assert MARK_RE.findall(frames)[4] == (b"0", b"5", MARK_RE.findall(frames)[4][2])
        conns[1].last = {0: 3}
        conns[2].last = {0: 4}
        assert room.expected_for(conns[1]) == 5  # before settling: everything sent
        sender.settle(conns)
        return room, sender, conns

    room, sender, conns = asyncio.run(scenario())
    assert sender.accepted == 4
    assert room.expected_for(conns[1]) == 4
    assert room.expected_for(conns[0]) == 4  # securechat echoes to the sender
    conns[0].dialect = IrcDialect()
    assert room.expected_for(conns[0]) == 0  # IRC does not


# -- report


def test_table_has_ratio_columns_and_notes():
    results = {
        "securechat": {"delivered_per_s": 1000.0, "lost": 0, "bench_bottleneck": False},
        "ngircd": {"delivered_per_s": 4000.0, "lost": 0, "bench_cpu_pct": 97.0,
                   "bench_bottleneck": True},
    }  # fmt: skip
    text = table("fanout: a heading", "fanout", results)
    assert text.startswith("### fanout: a heading\n")
    assert "| metric | securechat | ngircd | ngircd/securechat |" in text
    assert "| delivered msg/s | 1,000 | 4,000 | 4.00x |" in text
    assert "bottleneck" in text
    assert fmt("delivered_fraction", 0.999991) == "0.99999"
    assert fmt("x", None) == "n/a"


def test_combine_takes_medians_and_adds_up_failures():
    rounds = [
        {"delivered_per_s": 10.0, "lost": 0, "server_died": False, "events": {"ping": 1}},
        {"delivered_per_s": 30.0, "lost": 2, "server_died": False, "version": "a"},
        {"delivered_per_s": 20.0, "lost": 1, "server_died": True, "events": {"ping": 2}},
    ]
    out = combine(rounds)
    assert out["delivered_per_s"] == 20.0  # the median, not the mean
    assert out["lost"] == 3  # a loss in any round is a loss
    assert out["server_died"] is True
    assert out["events"] == {"ping": 3}
    assert out["version"] == "a"
    assert out["rounds"] == rounds
    assert combine(rounds[:1]) is rounds[0]  # one round: as measured
    assert combine([{"delivered": 3}, {"delivered": 4}])["delivered"] == 3  # a count
    failed = combine([{"error": "cannot start: x"}, {"delivered_per_s": 5.0}])
    assert failed["error"] == "round 1 of 2: cannot start: x"
    assert failed["delivered_per_s"] == 5.0


def test_table_compares_every_column_with_the_first():
    """``--transport ws`` alone: securechat-ws is the column the peers are compared with."""
    results = {
        "securechat-ws": {"cpu_ms_per_1000": 0.5, "lost": 0},
        "ngircd": {"cpu_ms_per_1000": 0.25, "lost": 0},
    }
    text = table("fanout", "fanout", results)
    assert "| metric | securechat-ws | ngircd | ngircd/securechat-ws |" in text
    assert "| server CPU ms per 1,000 delivered | 0.5 | 0.25 | 0.50x |" in text


def test_table_of_rounds_shows_ranges_and_median_of_round_ratios():
    ours = [{"cpu_ms_per_1000": c, "lost": 0} for c in (0.30, 0.20, 0.25)]
    theirs = [{"cpu_ms_per_1000": c, "lost": n} for c, n in ((0.15, 0), (0.40, 1), (0.50, 0))]
    results = {"securechat": combine(ours), "ngircd": combine(theirs)}
    text = table("fanout", "fanout", results)
    assert "3 rounds, the servers interleaved" in text
    # medians 0.25 and 0.40; the ratio is the median of 0.50x, 2.00x, 2.00x (same rounds)
    row = "| server CPU ms per 1,000 delivered | 0.25 (0.2-0.3) | 0.4 (0.15-0.5) |"
    assert row + " 2.00x (0.50x-2.00x) |" in text
    assert "| lost | 0 | 1 |  |" in text  # totals, and no range for them


def test_smoke_verdict():
    good = {"delivered": 10, "lost": 0, "duplicated": 0, "unseen": 0, "disconnects": 0}
    assert smoke_verdict(good) == 0
    assert smoke_verdict({**good, "lost": 1}) == 1
    assert smoke_verdict({**good, "server_died": True}) == 1
    assert smoke_verdict({**good, "delivered": 0}) == 1


def test_args():
    assert parse_args([]).mode == "closed"
    assert parse_args(["--rate", "5"]).mode == "paced"
    assert parse_args(["--rate=5", "--mode", "open"]).mode == "open"
    smoke = parse_args(["--smoke"])
    assert (smoke.members, smoke.senders, smoke.duration) == (10, 2, 2.0)
    with pytest.raises(SystemExit):
        parse_args(["--peers", "ircd-hybrid"])
    with pytest.raises(SystemExit):
        parse_args(["--members", "5", "--senders", "5"])
    assert parse_args([]).transports == ["line"]
    assert parse_args(["--transport", "ws"]).transports == ["ws"]
    assert parse_args(["--transport=line,ws,line"]).transports == ["line", "ws"]
    with pytest.raises(SystemExit):
        parse_args(["--transport", "sse"])
    assert isinstance(parse_args([]), argparse.Namespace)


def test_headings_say_which_transport_each_column_used():
    from securechat.bench.cli import describe

    both = describe("fanout", parse_args(["--transport", "line,ws"]))
    assert "securechat over the line protocol, securechat-ws over WebSocket" in both
    peers = describe("fanout", parse_args(["--transport", "ws", "--peers", "ngircd"]))
    assert "securechat-ws over WebSocket" in peers and "the IRC peers over IRC/TLS" in peers
    assert "IRC" not in describe("logins", parse_args(["--peers", "ngircd"]))  # (no peers)


def test_latency_summary_strides_past_the_sample_cap(monkeypatch):
    import securechat.bench.cli as bench

    monkeypatch.setattr(bench, "SAMPLES", 100)
    summary = bench.latency_summary(list(range(1000, 1_001_000, 1000)))  # 1 ms .. 1000 ms
    assert summary["lat_p50_ms"] == pytest.approx(500, abs=10)
    assert summary["lat_max_ms"] == 1000.0  # exact, not from the subset
