"""The ``securechat-server`` command: TLS context, password file, store, transport.

The transport is :mod:`~securechat.server.transport` (I/O threads) and
:mod:`~securechat.server.connection` (one connection, its limits); the protocol is
:mod:`~securechat.server.session` and :mod:`~securechat.server.hub`. This module wires
them together and parses the command line.
"""

import argparse
import contextlib
import logging
import signal
import ssl
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from securechat.exceptions import PasswordFileError, StoreError
from securechat.protocol import DEFAULT_PORT
from securechat.protocol.framing import DEFAULT_FRAME_LIMIT, MIN_FRAME_LIMIT
from securechat.server.connection import Connection, Limits
from securechat.server.hub import Hub
from securechat.server.passwd import PasswordFile, permission_warning
from securechat.server.store import GroupCommitter, SqliteStore
from securechat.server.transport import Server

log = logging.getLogger("securechat.server")

DATABASE_NAME = "securechat.db"

# Mozilla "intermediate" (TLS 1.2 part; TLS 1.3 suites are OpenSSL's defaults).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def make_server_context(
    cert: str | Path, key: str | Path | None = None, client_ca: str | Path | None = None
) -> ssl.SSLContext:
    """A TLS 1.2+ server context with Mozilla intermediate ciphers.

    With ``client_ca``, clients may present a certificate signed by that CA; its
    common name then names a user who can log in without a password.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(str(cert), str(key) if key else None)
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


@contextlib.contextmanager
def durable_hub(
    data_dir: Path,
    passwords: PasswordFile,
    *,
    admins: Sequence[str] = (),
    fsync: bool = False,
    frame_limit: int = DEFAULT_FRAME_LIMIT,
) -> Iterator[Hub]:
    """A hub whose history lives in ``data_dir`` (created 0700), committed in groups.

    On exit, everything submitted is committed and delivered before the store closes.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        log.warning("data directory %s is accessible by other users; chmod 700 it", data_dir)
    store = SqliteStore(data_dir / DATABASE_NAME, fsync=fsync)
    committer = GroupCommitter(store)
    try:
        yield Hub(user_exists=passwords.exists, admins=admins,
                  store=store, committer=committer, max_frame_bytes=frame_limit)  # fmt: skip
    finally:
        committer.close()
        store.close()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="securechat-server", description="Run a securechat server (TLS only)."
    )
    parser.add_argument("--cert", required=True, help="PEM certificate chain (may hold the key)")
    parser.add_argument("--key", help="PEM private key, if not in --cert")
    parser.add_argument("--client-ca", help="CA of client certificates; their CN logs in "
                        "as that user without a password")  # fmt: skip
    parser.add_argument("--passwd", default="securechat.passwd", help="password file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free)")
    parser.add_argument("--admins", default="", help="comma-separated admin user names")
    parser.add_argument("--data-dir", default="data", help="where history is stored")
    parser.add_argument("--fsync", action="store_true",
                        help="fsync every commit (survives power loss; slower)")  # fmt: skip
    parser.add_argument("--frame-limit", type=int, default=DEFAULT_FRAME_LIMIT,
                        help=f"largest frame in bytes (at least {MIN_FRAME_LIMIT})")  # fmt: skip
    limits = parser.add_argument_group("limits (defaults from the protocol)")
    defaults = Limits()
    limits.add_argument("--frame-rate", type=float, default=defaults.frame_rate,
                        help="frames a second per connection")  # fmt: skip
    limits.add_argument("--frame-burst", type=int, default=defaults.frame_burst,
                        help="frames a connection may send at once")  # fmt: skip
    limits.add_argument("--max-connections", type=int, default=defaults.max_connections)
    limits.add_argument("--max-per-address", type=int, default=defaults.max_per_address)
    limits.add_argument("--io-threads", type=int, default=defaults.io_threads,
                        help="threads doing TLS and socket I/O (default: one a core)")  # fmt: skip
    limits.add_argument("--flush-interval", type=float, default=defaults.flush_interval * 1000,
                        metavar="MS", help="write to the members of a busy room at most "
                        "once per MS milliseconds per I/O thread (0: at once; default "
                        "%(default)g)")  # fmt: skip
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.frame_limit < MIN_FRAME_LIMIT:
        parser.error(f"--frame-limit must be at least {MIN_FRAME_LIMIT}")
    if args.frame_rate <= 0 or args.frame_burst < 1:
        parser.error("--frame-rate must be positive and --frame-burst at least 1")
    if not 0 <= args.flush_interval <= 1000:
        parser.error("--flush-interval must be between 0 and 1000 (milliseconds)")
    if args.max_connections < 1 or args.max_per_address < 1 or args.io_threads < 1:
        parser.error("--max-connections, --max-per-address and --io-threads must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        context = make_server_context(args.cert, args.key, args.client_ca)
    except (OSError, ssl.SSLError) as exc:
        names = " or ".join(filter(None, [args.cert, args.key, args.client_ca]))
        print(f"securechat-server: cannot load certificate {names}: {exc}", file=sys.stderr)
        return 1
    passwd_path = Path(args.passwd)
    if not passwd_path.exists():
        log.warning("password file %s does not exist: nobody can log in until "
                    "you add a user with securechat-adduser", passwd_path)  # fmt: skip
    elif warning := permission_warning(passwd_path):
        log.warning("%s", warning)
    try:
        passwords = PasswordFile(passwd_path)
    except PasswordFileError as exc:
        print(f"securechat-server: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()  # handlers first: a signal during start-up still stops us
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    admins = [name.strip() for name in args.admins.split(",") if name.strip()]
    limits = Limits(
        frame_bytes=args.frame_limit, frame_rate=args.frame_rate, frame_burst=args.frame_burst,
        max_connections=args.max_connections, max_per_address=args.max_per_address,
        io_threads=args.io_threads, flush_interval=args.flush_interval / 1000,
    )  # fmt: skip
    try:
        with durable_hub(Path(args.data_dir), passwords, admins=admins, fsync=args.fsync,
                         frame_limit=args.frame_limit) as hub:  # fmt: skip
            server = Server(context, hub, passwords.verify, args.host, args.port, limits)
            try:
                server.start()
            except OSError as exc:
                print(f"securechat-server: cannot listen on {args.host}:{args.port}: {exc}",
                      file=sys.stderr)  # fmt: skip
                return 1
            stop.wait()
            log.info("shutting down")
            server.shutdown()
    except (StoreError, OSError) as exc:
        print(f"securechat-server: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


__all__ = ["Connection", "Limits", "Server", "durable_hub", "main", "make_server_context"]

if __name__ == "__main__":
    raise SystemExit(main())
