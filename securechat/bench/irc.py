"""The servers under test for ``securechat-bench``: dialects, processes, and the IRC peers.

Why IRC: the servers people would pick instead of securechat speak IRC, so the same
scenarios run against them over IRC/TLS and the numbers sit side by side. This module is
sans-I/O where it can be: a *dialect* (:class:`SecurechatDialect`, :class:`IrcDialect`)
turns lines into replies and decisions while the bench's asyncio connections do the I/O;
:func:`prepare_peer` only writes a config file and returns the command line; and
:class:`ServerProcess` starts any server (securechat too, in a :class:`Workspace` with
certificates and users), waits for its "listening" log line, reads its CPU, memory,
threads and descriptors from ``/proc``, and stops it with SIGTERM.

Each peer is configured so that flood protection does not throttle the bench (otherwise
we would measure the throttle, not the server): ngircd gets ``MaxPenaltyTime = 0`` and
user mode ``F`` by default (relaxed flood protection: 10 commands a loop, never
throttled); InspIRCd gets huge ``threshold``/``commandrate`` with fakelag off and large
send queues; miniircd has no flood control. None of them does DNS or ident lookups.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from securechat import __version__
from securechat.admin.certs import make_certs
from securechat.server.passwd import hash_password, read_users, set_password

CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 60.0
PASSWORD = "bench-password-1"  # noqa: S105 - the throwaway users of a temporary server
ROOT = Path(__file__).resolve().parent.parent

PEERS = ("ngircd", "inspircd", "miniircd")
# securechat's columns, by the transport its clients use (``--transport``): the line
# protocol over TLS, or WebSocket text messages over TLS (ALPN http/1.1, upgrade to /ws);
# ``base``: the line protocol to the server of another checkout (``--baseline DIR``), for
# a before/after comparison within one run.
TRANSPORTS = {"line": "securechat", "ws": "securechat-ws", "irc": "securechat-irc",
              "base": "securechat-base"}  # fmt: skip
ALPN_HTTP = "http/1.1"
APT_PACKAGES = {"ngircd": "ngircd", "inspircd": "inspircd"}
INSTALL_TIMEOUT = 900.0


# -- dialects: how the bench speaks to each kind of server


@dataclass(frozen=True)
class IrcLine:
    """One parsed IRC line (RFC 1459 section 2.3.1): ``[:prefix] COMMAND params [:trailing]``."""

    prefix: str
    command: str
    params: tuple[str, ...]


def parse_irc_line(line: bytes | str) -> IrcLine:
    """Parse one line (with or without its CR LF); the trailing parameter is the last param.

    Bytes are decoded as UTF-8 with replacement: the bench only needs commands, numerics
    and channel names, never exact bytes of other people's text.
    """
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.rstrip("\r\n")
    prefix = ""
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
    text = text.lstrip(" ")
    head, sep, trailing = text.partition(" :")
    if not sep and text.startswith(":"):
        head, trailing, sep = "", text[1:], ":"
    words = head.split()
    command = words[0].upper() if words else ""
    params = tuple(words[1:]) + ((trailing,) if sep else ())
    return IrcLine(prefix, command, params)


class IrcDialect:
    """How the bench talks IRC: registration, JOIN, PRIVMSG and PING, as bytes in and out.

    The :class:`Dialect` interface, as :class:`SecurechatDialect` has it: ``hello``
    is sent on connect, ``handshake`` reads lines until registered, ``join_frame`` and
    ``joined`` enter a channel, ``send_affixes`` frame a message text, and
    ``control`` answers what may come in the middle of traffic (PING, errors).
    """

    name = "irc"
    #: IRC servers do not send a channel message back to its sender.
    echo = False
    #: Substrings that may mean a control line is in a block of traffic.
    control_markers = (b"PING", b"ERROR", b" 404 ")

    def hello(self, user: str, password: str) -> bytes:
        """Register at once (no password: the peers run without one)."""
        del password
        return f"NICK {user}\r\nUSER {user} 0 * :securechat bench\r\n".encode()

    def handshake(self, line: bytes, user: str, password: str) -> tuple[bytes, str | None, bool]:
        """``(reply, error, done)`` for one line received before registration completed."""
        del user, password
        msg = parse_irc_line(line)
        if msg.command == "PING":
            return self._pong(msg), None, False
        if msg.command == "001":
            return b"", None, True
        if msg.command in ("432", "433", "436", "465", "ERROR"):
            return b"", f"registration refused: {line.decode('utf-8', 'replace').strip()}", False
        return b"", None, False

    def join_frame(self, room: str) -> bytes:
        return f"JOIN #{room}\r\n".encode()

    def joined(self, line: bytes, room: str) -> str | None:
        """``"ok"`` at the end of the NAMES list of ``#room``, an error text, or None."""
        msg = parse_irc_line(line)
        if msg.command == "366" and len(msg.params) > 1 and msg.params[1].lower() == f"#{room}":
            return "ok"
        if msg.command in ("403", "405", "471", "473", "474", "475", "ERROR"):
            return f"join refused: {line.decode('utf-8', 'replace').strip()}"
        return None

    def send_affixes(self, room: str) -> tuple[bytes, bytes]:
        """A message is ``prefix + text + suffix``; computed once per sender."""
        return f"PRIVMSG #{room} :".encode(), b"\r\n"

    def control(self, line: bytes) -> tuple[bytes, str | None]:
        """``(reply, event)`` for a line seen during traffic.

        Events: ``"refused"`` (the server did not take a message of ours) and
        ``"closed: reason"`` (the server is dropping us).
        """
        msg = parse_irc_line(line)
        if msg.command == "PING":
            return self._pong(msg), None
        if msg.command == "404":
            return b"", "refused"
        if msg.command == "ERROR":
            return b"", f"closed: {' '.join(msg.params)}"
        return b"", None

    @staticmethod
    def _pong(msg: IrcLine) -> bytes:
        token = msg.params[-1] if msg.params else ""
        return f"PONG :{token}\r\n".encode()


class GatewayDialect(IrcDialect):
    """IRC to securechat's own IRC gateway (``--irc-port``): the same, with a login.

    ``PASS user:password`` before NICK and USER (one ``login`` frame behind the gateway).
    """

    def hello(self, user: str, password: str) -> bytes:
        return f"PASS {user}:{password}\r\n".encode() + super().hello(user, password)


class Dialect(Protocol):
    """How the bench speaks to one kind of server; see :class:`IrcDialect` for each method."""

    name: str
    echo: bool
    control_markers: tuple[bytes, ...]

    def hello(self, user: str, password: str) -> bytes: ...
    def handshake(
        self, line: bytes, user: str, password: str
    ) -> tuple[bytes, str | None, bool]: ...
    def join_frame(self, room: str) -> bytes: ...
    def joined(self, line: bytes, room: str) -> str | None: ...
    def send_affixes(self, room: str) -> tuple[bytes, bytes]: ...
    def control(self, line: bytes) -> tuple[bytes, str | None]: ...


def _frame(**fields: Any) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def _loads(line: bytes) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        frame = json.loads(line)
        if isinstance(frame, dict):
            return frame
    return {}


class SecurechatDialect:
    """securechat's protocol (PROTOCOL.md) as the bench needs it; see IrcDialect for the API."""

    name = "securechat"
    echo = True  # the sender gets its own message back: it counts as a delivery
    control_markers = (b'"type":"error"', b'"type":"ping"')

    def hello(self, user: str, password: str) -> bytes:
        return b""  # the server speaks first (welcome)

    def handshake(self, line: bytes, user: str, password: str) -> tuple[bytes, str | None, bool]:
        frame = _loads(line)
        kind = frame.get("type")
        if kind == "welcome":
            return _frame(type="login", user=user, password=password), None, False
        if kind == "login_ok":
            return b"", None, True
        if kind == "ping":
            return _frame(type="pong"), None, False
        if kind == "error":
            return b"", f"{frame.get('code')}: {frame.get('message')}", False
        return b"", None, False

    def join_frame(self, room: str) -> bytes:
        return _frame(type="join", room=room)

    def joined(self, line: bytes, room: str) -> str | None:
        frame = _loads(line)
        if frame.get("type") == "joined" and frame.get("room") == room:
            return "ok"
        if frame.get("type") == "error":
            return f"join refused: {frame.get('code')}"
        return None

    def send_affixes(self, room: str) -> tuple[bytes, bytes]:
        return b'{"type":"send","room":"%s","text":"' % room.encode(), b'"}\n'

    def control(self, line: bytes) -> tuple[bytes, str | None]:
        frame = _loads(line)
        if frame.get("type") == "ping":
            return _frame(type="pong"), None
        if frame.get("type") == "error":
            code = frame.get("code")
            if code == "rate_limited":
                return b"", "refused"
            if code in ("slow_consumer", "shutting_down", "server_busy"):
                return b"", f"closed: {code}"
            return b"", f"error: {code}"
        return b"", None


# -- processes and /proc


def parse_proc_stat(text: str) -> float:
    """User+system CPU seconds from ``/proc/<pid>/stat`` (all threads of the process).

    The command name (field 2) may hold spaces and parentheses, so fields are counted
    after its last ``)``: utime and stime are fields 14 and 15, in clock ticks.
    """
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def parse_proc_status(text: str) -> dict[str, int]:
    """``VmRSS``/``VmHWM`` (KiB) and ``Threads`` from ``/proc/<pid>/status``."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class ProcSample:
    cpu_s: float
    rss_kib: int
    threads: int
    fds: int
    at: float


def sample_process(pid: int | None) -> ProcSample | None:
    """One reading of a process from /proc; None if there is none (or it is gone)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2 :].startswith("Z"):
            return None  # exited, not yet reaped: nothing left to measure
        cpu = parse_proc_stat(stat)
        status = parse_proc_status(Path(f"/proc/{pid}/status").read_text())
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return None
    return ProcSample(cpu, status.get("VmRSS", 0), status.get("Threads", 0), fds, time.monotonic())


def raise_nofile() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; servers we start inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    """A loopback port free now, for a peer that cannot listen on port 0 and tell us."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the server under test, as a subprocess


class StartError(Exception):
    """A server did not come up; the message is one line."""


class ServerProcess:
    """A server in a subprocess: started, waited for (its log line), measured, stopped.

    Its stdout and stderr go through one pipe that a thread copies to a log file, so the
    server never blocks on a full pipe and readiness is an event, not a polling loop.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        ready: re.Pattern[str],
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.argv, self.ready, self.log_path = name, argv, ready, log
        self.env = {**os.environ, **(env or {})}
        self.match: re.Match[str] | None = None
        self.tail: deque[str] = deque(maxlen=5)
        self._ready = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.version = ""
        self.connect_limit = 10**6

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.log_path.parent,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True).start()
        if not self._ready.wait(timeout) or self.match is None:
            self.stop()
            last = self.tail[-1].strip() if self.tail else "no output"
            raise StartError(f"{self.name} did not start within {timeout:.0f} s: {last}")

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                self.tail.append(line)
                if self.match is None and (m := self.ready.search(line)):
                    self.match = m
                    log.flush()
                    self._ready.set()
        self._ready.set()  # EOF: wake a waiter even if it never became ready

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it would not go; the exit code (None if killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return None
        return self.proc.returncode


# -- peers


@dataclass
class LaunchSpec:
    """How to start one peer: argv, environment, and the log line that says it listens."""

    name: str
    argv: list[str]
    ready: re.Pattern[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    version: str = ""
    connect_limit: int = 10**6  # TLS connects in flight that the server can take


def split_pem(pem: Path, directory: Path) -> tuple[Path, Path]:
    """Write the certificates and the key of ``pem`` to two files (peers want them apart)."""
    text = pem.read_text()
    blocks = re.findall(r"(-----BEGIN ([A-Z ]+)-----.*?-----END \2-----\n?)", text, re.S)
    chain = directory / "chain.pem"
    key = directory / "key.pem"
    chain.write_text("".join(b for b, kind in blocks if kind == "CERTIFICATE"))
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(b for b, kind in blocks if kind.endswith("PRIVATE KEY")))
    return chain, key


def peer_command(name: str) -> list[str] | None:
    """The command that runs ``name`` here, or None if it is not installed."""
    if name == "miniircd":
        return [sys.executable, "-m", "miniircd"] if importlib.util.find_spec("miniircd") else None
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None
    )
    return [path] if path else None


def install_peer(name: str) -> str | None:
    """Install a missing peer (apt-get or pip); None on success, else a one-line reason."""
    if name == "miniircd":
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "miniircd"]
        return _run_install(argv)
    if os.geteuid() != 0:
        return f"installing {name} needs root (apt-get install -y {APT_PACKAGES[name]})"
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    argv = ["apt-get", "install", "-y", "--no-install-recommends", APT_PACKAGES[name]]
    if _run_install(argv) is None:
        return None
    if (error := _run_install(["apt-get", "update"])) is not None:  # a stale package list
        return error
    return _run_install(argv)


def _run_install(argv: list[str]) -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(argv)}: {exc}"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        return f"{' '.join(argv)} failed: {last[-1] if last else done.returncode}"
    return None


def peer_version(command: list[str]) -> str:
    """The first line of ``--version``, for the report (best effort)."""
    try:
        done = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def prepare_peer(
    name: str, command: list[str], workdir: Path, chain: Path, key: Path, port: int
) -> LaunchSpec:
    """Write ``name``'s configuration under ``workdir`` for a TLS listener on 127.0.0.1:port."""
    workdir.mkdir(parents=True, exist_ok=True)
    version = peer_version(command)
    if name == "ngircd":
        conf = workdir / "ngircd.conf"
        conf.write_text(NGIRCD_CONF.format(chain=chain, key=key, port=port))
        return LaunchSpec(
            name,
            [*command, "-n", "-f", str(conf)],
            re.compile(r"Server .* ready"),
            port,
            version=version,
        )
    if name == "inspircd":
        (workdir / "motd.txt").write_text("securechat bench\n")
        conf = workdir / "inspircd.conf"
        conf.write_text(INSPIRCD_CONF.format(chain=chain, key=key, port=port, dir=workdir))
        argv = [*command, "--config", str(conf), "--nofork", "--nopid"]
        if os.geteuid() == 0:
            argv.append("--runasroot")
        return LaunchSpec(name, argv, re.compile(r"now running as"), port, version=version)
    if name == "miniircd":
        argv = [
            *command,
            "--listen",
            "127.0.0.1",
            "--ports",
            str(port),
            "--verbose",
            "--ssl-cert-file",
            str(chain),
            "--ssl-key-file",
            str(key),
        ]
        if os.geteuid() == 0:  # it refuses to run as root without --setuid
            argv += ["--setuid", "nobody"]
        return LaunchSpec(
            name,
            argv,
            re.compile(r"Listening on port \d+"),
            port,
            env={"PYTHONUNBUFFERED": "1"},
            version=version,
            connect_limit=4,  # listen(5), and TLS handshakes block its only loop
        )
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


def start_peer(name: str, command: list[str], workdir: Path, pem: Path) -> ServerProcess:
    """Configure ``name`` under ``workdir`` on a free loopback port and start it.

    Raises :class:`StartError` (one line) if it does not log that it listens.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    chain, key = split_pem(pem, workdir)
    spec = prepare_peer(name, command, workdir, chain, key, free_port())
    server = ServerProcess(name, spec.argv, spec.ready, workdir / f"{name}.log", spec.env)
    server.port, server.version = spec.port, spec.version
    server.connect_limit = spec.connect_limit
    server.start()
    return server


# -- the bench workspace and securechat itself


def web_context(cafile: str) -> ssl.SSLContext:
    """A client context that asks for ALPN ``http/1.1``: what puts a connection on the web edge."""
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols([ALPN_HTTP])
    return context


def transport_of(name: str) -> str | None:
    """The transport of a securechat column (``"line"``, ``"ws"``); None for a peer."""
    return next((t for t, label in TRANSPORTS.items() if label == name), None)


class Workspace:
    """The temporary directory of one bench run: certificates, users, server logs."""

    def __init__(self, keep: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="securechat-bench-"))
        self.keep = keep
        self.certs = make_certs(self.dir / "certs")
        self.passwd = self.dir / "users.passwd"
        self.context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        self.web_context = web_context(str(self.certs.ca_cert))

    def make_users(self, count: int, logins: int, login_cost: int) -> None:
        """``u0..`` at bcrypt cost 4 and ``l0..`` at ``login_cost``, all with PASSWORD.

        One hash per cost serves every user (each login still runs a full bcrypt
        check), so 10,000 users cost one hash instead of ten seconds of hashing.
        """
        set_password(self.passwd, "u0", PASSWORD, rounds=4)
        cheap = read_users(self.passwd)["u0"]
        lines = [f"u{i}:{cheap}\n" for i in range(1, count)]
        if logins:
            costly = hash_password(PASSWORD, login_cost)
            lines += [f"l{i}:{costly}\n" for i in range(logins)]
        with open(self.passwd, "a") as f:
            f.writelines(lines)

    def close(self) -> None:
        if self.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


_T0 = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr, with the seconds since the bench started."""
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def add_users(path: Path, count: int) -> None:
    """Add the bench users ``u0..`` missing from a running server's password file (cost 4).

    Through :func:`set_password`, under the file's lock: the server reloads it live.
    """
    have = read_users(path)
    for i in range(count):
        if f"u{i}" not in have:
            set_password(path, f"u{i}", PASSWORD, rounds=4)


def _git_version() -> str:
    """The checkout's commit (``-dirty`` if changed), or "" outside a git work tree."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def run_meta(
    opts: argparse.Namespace, nofile: list[int], skipped: dict[str, str]
) -> dict[str, Any]:
    """What a JSON report says about the run besides its numbers."""
    return {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rlimit_nofile": nofile,
        "load_average_at_start": os.getloadavg(),
        "git": _git_version(),
        "skipped_peers": skipped,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
    }


def start_securechat(
    ws: Workspace, extra: list[str], tag: str, irc: bool = False, root: Path | None = None
) -> ServerProcess:
    """securechat's server of this checkout, on a free loopback port, own data directory.

    The subprocess imports the same ``securechat`` package as the bench (PYTHONPATH),
    so a checkout benchmarks its own server, installed or not. ``irc``: with its IRC
    gateway on another free port, which is then the server's ``port``. ``root``: the
    directory holding the ``securechat`` package of another checkout to run instead.
    """
    first = str(root if root is not None else ROOT)
    path = os.pathsep.join(p for p in (first, os.environ.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "securechat.server.cli", "--cert", str(ws.certs.server),
            "--passwd", str(ws.passwd), "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(ws.dir / f"data-{tag}"), *extra]  # fmt: skip
    ready = re.compile(r"listening on \S+:(\d+)")
    if irc:  # (logged just after "listening on")
        argv += ["--irc-port", "0"]
        ready = re.compile(r"IRC gateway \(TLS\) on \S+:(\d+)")
    server = ServerProcess(
        "securechat", argv, ready, ws.dir / f"securechat-{tag}.log", {"PYTHONPATH": path}
    )
    server.start()
    assert server.match is not None
    server.port, server.version = int(server.match.group(1)), __version__
    return server


def resolve_peers(wanted: list[str], install: bool) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Peer commands found (or installed with --install-peers), and reasons for the others."""
    found: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for name in wanted:
        command = peer_command(name)
        if command is None and install:
            log(f"installing {name} ...")
            if (reason := install_peer(name)) is not None:
                skipped[name] = reason
                continue
            command = peer_command(name)
        if command is None:
            skipped[name] = "not installed (add --install-peers)"
        else:
            found[name] = command
    for name, reason in skipped.items():
        log(f"skipping {name}: {reason}")
    return found, skipped


@dataclass
class Target:
    """Where the clients connect, in which dialect, and the server's pid for /proc."""

    name: str
    dialect: Dialect
    host: str
    port: int
    context: ssl.SSLContext  # without ALPN: the line protocol (IRC for a peer)
    pid: int | None = None
    connect_limit: int = 10**6
    transport: str = "line"  # "ws": the chat clients speak WebSocket (cli.WsConn)
    web_context: ssl.SSLContext | None = None  # with ALPN http/1.1: what ws clients use


Scenario = Callable[[Target, argparse.Namespace], Awaitable[dict[str, Any]]]


def run_one(
    scenario: str,
    play: Scenario,
    name: str,
    ws: Workspace,
    opts: argparse.Namespace,
    peers: dict[str, list[str]],
    round_no: int = 1,
) -> dict[str, Any]:
    """Start a fresh server, ``play`` the scenario's clients against it, stop it; never raises.

    A fresh server per run keeps the /proc deltas (CPU, RSS) about this scenario alone;
    each round gets its own directory (securechat: an empty store, no old history).
    """
    tag = scenario if round_no == 1 else f"{scenario}-{round_no}"
    log(f"{scenario}: {name}: starting")
    server: ServerProcess | None = None
    transport = transport_of(name)
    if transport is not None and opts.port:
        target = Target(name, SecurechatDialect(), opts.host, opts.port,
                        ssl.create_default_context(cafile=opts.cafile), opts.server_pid,
                        transport=transport, web_context=web_context(opts.cafile))  # fmt: skip
    else:
        try:
            if transport is not None:
                tag = tag if transport == "line" else f"{transport}-{tag}"
                base = Path(opts.baseline) if transport == "base" else None
                extra = opts.server_args + (opts.baseline_arg if base is not None else [])
                server = start_securechat(ws, extra, tag, irc=transport == "irc", root=base)
            else:
                server = start_peer(name, peers[name], ws.dir / f"{name}-{tag}", ws.certs.server)
        except (StartError, OSError) as exc:
            return {"error": f"cannot start: {exc}"}
        dialect: Dialect = (IrcDialect() if transport is None else GatewayDialect()
                            if transport == "irc" else SecurechatDialect())  # fmt: skip
        target = Target(name, dialect, "127.0.0.1", server.port, ws.context, server.pid,
                        server.connect_limit, transport or "line", ws.web_context)  # fmt: skip
    log(f"{scenario}: {name}: running")
    load = os.getloadavg()[0]  # other work on the machine skews every number: say how much
    try:
        result = asyncio.run(asyncio.wait_for(play(target, opts), opts.timeout))
    except Exception as exc:  # a scenario that fails is a result, not a crash of the bench
        result = {"error": f"{type(exc).__name__}: {exc}"}
    log(f"{scenario}: {name}: done")
    result["load_at_start"] = round(load, 2)
    if server is not None:
        result["server_died"] = not server.alive()
        result["server_exit"] = server.stop()
        result["server_version"] = server.version
        if result["server_died"]:
            last = server.tail[-1].strip() if server.tail else ""
            result.setdefault("error", f"the server died: {last}")
    return result


# ngircd 26: flood limits off (MaxPenaltyTime 0, user mode F), no per-IP or join limits,
# no DNS/ident/PAM, long ping timeouts so idle connections are not pinged mid-run.
NGIRCD_CONF = """\
[Global]
\tName = bench.local
\tInfo = securechat bench peer
\tAdminInfo1 = securechat bench
\tAdminInfo2 = localhost
\tAdminEMail = bench@localhost
\tListen = 127.0.0.1
\tPorts =
\tMotdPhrase = "securechat bench"
[Limits]
\tMaxConnections = 0
\tMaxConnectionsIP = 0
\tMaxJoins = 0
\tMaxNickLength = 30
\tMaxPenaltyTime = 0
\tPingTimeout = 600
\tPongTimeout = 600
[Options]
\tDNS = no
\tIdent = no
\tPAM = no
\tDefaultUserModes = F
[SSL]
\tCertFile = {chain}
\tKeyFile = {key}
\tPorts = {port}
"""

# InspIRCd 3: a TLS bind via ssl_gnutls, one connect class without flood or clone limits.
INSPIRCD_CONF = """\
<server name="bench.local" description="securechat bench peer" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<module name="ssl_gnutls">
<sslprofile name="bench" provider="gnutls" certfile="{chain}" keyfile="{key}"
            hash="sha256" requestclientcert="no">
<bind address="127.0.0.1" port="{port}" type="clients" sslprofile="bench">
<connect name="bench" allow="*" timeout="60" pingfreq="600" hardsendq="64M"
         softsendq="8M" recvq="8M" threshold="100000000" commandrate="100000000"
         fakelag="no" localmax="1000000" globalmax="1000000" maxchans="200"
         resolvehostnames="no" useident="no" limit="1000000" maxconnwarn="no">
<channels users="200" opers="200">
<dns server="127.0.0.1" timeout="1">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes"
         pingwarning="15" splitwhois="no" exemptchanops="">
<security hideserver="" userstats="Pu" customversion="" flatlinks="no" hidesplits="no"
          hideulines="no" hidebans="no" maxtargets="20">
<performance quietbursts="yes" softlimit="1000000" somaxconn="4096"
             netbuffersize="65536" clonesonconnect="no">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="11" maxhost="64" maxquit="255"
        maxtopic="307" maxkick="255" maxreal="128" maxgecos="128" maxaway="200">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default"
     target="{dir}/inspircd.log">
<files motd="{dir}/motd.txt">
"""
