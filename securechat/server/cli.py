"""The ``securechat-server`` command: TLS context, password file, store, transport.

The transport is :mod:`~securechat.server.transport` (I/O threads) and
:mod:`~securechat.server.connection` (one connection, its limits); the protocol is
:mod:`~securechat.server.session` and :mod:`~securechat.server.hub`. This module wires
them together and parses the command line.
"""

import argparse
import contextlib
import logging
import queue
import re
import signal
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cryptography import x509

from securechat.exceptions import CertificateError, PasswordFileError, StoreError
from securechat.protocol import DEFAULT_PORT
from securechat.protocol.framing import DEFAULT_FRAME_LIMIT, MIN_FRAME_LIMIT
from securechat.server import check, logformat, systemd
from securechat.server.connection import ALPN_HTTP, Connection, Limits
from securechat.server.files import DEFAULT_LINK_DAYS, FileLimits, FileStore, parse_public_url
from securechat.server.hub import Hub
from securechat.server.metrics import ServerMetrics
from securechat.server.passwd import PasswordFile, permission_warning
from securechat.server.store import GroupCommitter, SqliteStore
from securechat.server.tokens import DEFAULT_DAYS as DEFAULT_TOKEN_DAYS
from securechat.server.tokens import LoginTokens
from securechat.server.transport import Server
from securechat.server.web import WebSite, normalize_origin
from securechat.server.web.monitoring import DEFAULT_METRICS_ALLOW, parse_networks

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
    cert: str | Path,
    key: str | Path | None = None,
    client_ca: str | Path | None = None,
    *,
    web: bool = True,
) -> ssl.SSLContext:
    """A TLS 1.2+ server context with Mozilla intermediate ciphers.

    With ``client_ca``, clients may present a certificate signed by that CA; its
    common name then names a user who can log in without a password. With ``web``,
    ALPN offers ``http/1.1`` (never ``h2``): a client that asks for it (a browser) gets
    the web edge; one that asks for nothing, or only for protocols we do not speak,
    completes the handshake without ALPN and gets the line protocol.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    if web:
        context.set_alpn_protocols([ALPN_HTTP])
    context.load_cert_chain(str(cert), str(key) if key else None)
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def load_server_context(
    cert: str | Path,
    key: str | Path | None = None,
    client_ca: str | Path | None = None,
    *,
    web: bool = True,
) -> tuple[ssl.SSLContext, str]:
    """:func:`make_server_context` from the files as they are now, and which certificate it is.

    Used at start-up and on every SIGHUP, so a renewed certificate is loaded with exactly
    the options of the first. Returns the context and ``"SUBJECT, notAfter DATE"`` of the
    leaf certificate, for the log. Raises :exc:`CertificateError` with one line saying
    what is wrong (OpenSSL's own "PEM lib" says little), so that a bad renewal can be
    logged as one line while the old context stays in use.
    """
    cert, key = Path(cert), Path(key) if key is not None else None
    ca = Path(client_ca) if client_ca is not None else None
    try:
        cert_pem = cert.read_bytes()
        key_pem = key.read_bytes() if key is not None else cert_pem
        ca_pem = ca.read_bytes() if ca is not None else None
    except OSError as exc:
        raise CertificateError(f"cannot read {exc.filename}: {exc.strerror}") from None
    key_name = key or cert
    if b"ENCRYPTED PRIVATE KEY-----" in key_pem or b"Proc-Type: 4,ENCRYPTED" in key_pem:
        # OpenSSL would ask for the passphrase on the terminal, blocking the main loop
        raise CertificateError(f"{key_name}: the private key is encrypted; securechat needs "
                               "it unencrypted (readable only by the server's user)")  # fmt: skip
    try:
        context = make_server_context(cert, key, ca, web=web)
    except (OSError, ssl.SSLError) as exc:
        if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
            problem = f"{cert}: no PEM certificate"
        elif b"PRIVATE KEY-----" not in key_pem:
            problem = f"{key_name}: no PEM private key"
        elif ca_pem is not None and b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            problem = f"{ca}: no PEM certificate"
        elif getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            problem = f"the private key in {key_name} does not match the certificate in {cert}"
        else:
            names = ", ".join(str(path) for path in (cert, key, ca) if path is not None)
            problem = f"{names}: {exc}"
        raise CertificateError(problem) from None
    # OpenSSL read the files again; a file replaced in between is read whole either time
    # (renewals rename into place), so at worst this names the certificate of the moment.
    try:
        leaf = x509.load_pem_x509_certificates(cert_pem)[0]
        expires = f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        described = f"{leaf.subject.rfc4514_string()}, notAfter {expires}"
    except (ValueError, IndexError):
        described = f"from {cert}"
    return context, described


def reload_certificate(server: Server, load: Callable[[], tuple[ssl.SSLContext, str]]) -> bool:
    """Swap ``server.context`` for a freshly loaded one (SIGHUP); keep the old one on failure.

    Connections wrap their socket with ``server.context`` when their handshake starts, so
    new handshakes get the new certificate while established connections, which keep
    their own TLS objects, carry on untouched. A bad file is one ERROR line, no traceback:
    the server goes on with the certificate it has.
    """
    try:
        context, described = load()
    except CertificateError as exc:
        log.error("certificate not reloaded, still using the old one: %s", exc)
        return False
    server.context = context  # one attribute store: atomic for the I/O threads
    log.info("certificate reloaded: %s", described)
    return True


@contextlib.contextmanager
def durable_hub(
    data_dir: Path,
    passwords: PasswordFile,
    *,
    admins: Sequence[str] = (),
    fsync: bool = False,
    frame_limit: int = DEFAULT_FRAME_LIMIT,
    token_days: float = DEFAULT_TOKEN_DAYS,
    files: FileLimits | None = None,
    link_days: float = DEFAULT_LINK_DAYS,
    public_url: str | None = None,
) -> Iterator[Hub]:
    """A hub whose history lives in ``data_dir`` (created 0700), committed in groups.

    Its login tokens (:attr:`Hub.tokens`) live in the same database and last
    ``token_days``. With ``files`` (the web edge's file sharing), shared files live in
    ``data_dir/files`` (:attr:`Hub.files`, swept of what no message carries at start),
    and links to them (:attr:`FileStore.links`, given to IRC users) last ``link_days``,
    at ``public_url`` (else where the server listens), signed with ``data_dir/link.key``.

    On exit, everything submitted is committed and delivered before the store closes.
    Raises :exc:`StoreError` (one line saying why) when the directory or the database
    cannot be written: a server that cannot store a message should not start.
    """
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {data_dir}: {exc.strerror}") from None
    if data_dir.stat().st_mode & 0o077:
        log.warning("data directory %s is accessible by other users; chmod 700 it", data_dir)
    store = SqliteStore(data_dir / DATABASE_NAME, fsync=fsync)
    try:
        store.check_writable()
    except StoreError:
        store.close()
        raise
    metrics = ServerMetrics()  # (the server's: commits are counted from the start)
    committer = GroupCommitter(store, metrics=metrics)
    try:
        hub = Hub(user_exists=passwords.exists, admins=admins, store=store,
                  committer=committer, max_frame_bytes=frame_limit, metrics=metrics)  # fmt: skip
        hub.tokens = LoginTokens(store, committer, passwords.fingerprint, days=token_days)
        if files is not None:
            hub.files = FileStore(data_dir, store, files, link_days=link_days,
                                  public_url=public_url)  # fmt: skip
            hub.files.sweep()
        yield hub
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
    parser.add_argument("--token-days", type=float, default=DEFAULT_TOKEN_DAYS,
                        help="login tokens (what keeps a browser signed in) expire after "
                        "this many days (default %(default)g)")  # fmt: skip
    parser.add_argument("--frame-limit", type=int, default=DEFAULT_FRAME_LIMIT,
                        help=f"largest frame in bytes (at least {MIN_FRAME_LIMIT})")  # fmt: skip
    parser.add_argument("--no-web", action="store_true", help="no HTTP and WebSocket for "
                        "browsers: ALPN offers nothing, every client speaks the line "
                        "protocol")  # fmt: skip
    parser.add_argument("--irc-port", type=int, metavar="PORT",
                        help="also speak IRC (TLS, same certificate) on this port, for "
                        "irssi, WeeChat and bots; 6697 is usual (default: off)")  # fmt: skip
    parser.add_argument("--web-origin", action="append", default=[], metavar="URL",
                        help="another origin (https://host[:port]) whose pages may open "
                        "the WebSocket; the server's own always may (repeatable)")  # fmt: skip
    parser.add_argument("--metrics-allow", action="append", metavar="ADDRESSES",
                        help="addresses or networks (comma-separated, repeatable; 'none': "
                        "no address) that may read /metrics without an admin's token "
                        "(default: 127.0.0.1,::1)")  # fmt: skip
    limits = parser.add_argument_group("limits (defaults from the protocol)")
    defaults = Limits()
    limits.add_argument("--frame-rate", type=float, default=defaults.frame_rate,
                        help="frames a second per connection")  # fmt: skip
    limits.add_argument("--frame-burst", type=int, default=defaults.frame_burst,
                        help="frames a connection may send at once")  # fmt: skip
    limits.add_argument("--max-connections", type=int, default=defaults.max_connections)
    limits.add_argument("--max-per-address", type=int, default=defaults.max_per_address)
    limits.add_argument("--io-threads", type=int, default=defaults.io_threads,
                        help="threads doing TLS and socket I/O (default: half the cores, at "
                        "least one)")  # fmt: skip
    limits.add_argument("--flush-interval", type=float, default=defaults.flush_interval * 1000,
                        metavar="MS", help="write to the members of a busy room at most "
                        "once per MS milliseconds per I/O thread (0: at once; default "
                        "%(default)g)")  # fmt: skip
    shared = parser.add_argument_group("shared files (over HTTPS; not with --no-web)")
    file_defaults = FileLimits()
    shared.add_argument("--max-file-size", type=_byte_count, metavar="SIZE",
                        default=file_defaults.max_file_size,
                        help="largest file to share (default 25M; K, M, G: powers of "
                        "1024)")  # fmt: skip
    shared.add_argument("--file-quota", type=_byte_count, metavar="SIZE",
                        default=file_defaults.quota,
                        help="what each user's shared files may take (default "
                        "1G)")  # fmt: skip
    shared.add_argument("--min-free-disk", type=_byte_count, metavar="SIZE",
                        default=file_defaults.min_free,
                        help="refuse uploads (507) while the data directory's disk has less "
                        "free (default 256M); chat goes on")  # fmt: skip
    shared.add_argument("--file-link-days", type=float, default=DEFAULT_LINK_DAYS,
                        metavar="DAYS", help="the links to shared files that IRC users get "
                        "(no login needed) work this many days after the message (default "
                        "%(default)g); deleting DATA-DIR/link.key revokes them all")  # fmt: skip
    shared.add_argument("--public-url", metavar="URL",
                        help="https://host[:port] where users reach this server, for those "
                        "links (default: https://HOST:PORT from --host and --port; this "
                        "machine's name for 0.0.0.0 or ::)")  # fmt: skip
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text for people (default), or one JSON object a line")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="check the certificate, password "
                        "file, data directory and ports, print one line per problem, and "
                        "exit 0 (all good) or 1, without starting")  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.irc_port is not None and not 0 <= args.irc_port <= 65535:
        parser.error("--irc-port must be between 0 and 65535")
    if args.frame_limit < MIN_FRAME_LIMIT:
        parser.error(f"--frame-limit must be at least {MIN_FRAME_LIMIT}")
    if not 0 < args.token_days <= 3650:
        parser.error("--token-days must be more than 0 and at most 3650")
    if args.frame_rate <= 0 or args.frame_burst < 1:
        parser.error("--frame-rate must be positive and --frame-burst at least 1")
    if not 0 <= args.flush_interval <= 1000:
        parser.error("--flush-interval must be between 0 and 1000 (milliseconds)")
    if args.max_connections < 1 or args.max_per_address < 1 or args.io_threads < 1:
        parser.error("--max-connections, --max-per-address and --io-threads must be at least 1")
    if args.max_file_size < 1:
        parser.error("--max-file-size must be at least 1 byte")
    if not 0 < args.file_link_days <= 3650:
        parser.error("--file-link-days must be more than 0 and at most 3650")
    if args.public_url is not None:
        try:
            args.public_url = parse_public_url(args.public_url)
        except ValueError as exc:
            parser.error(f"--public-url: {exc}")
    for origin in args.web_origin:
        try:
            normalize_origin(origin)
        except ValueError as exc:
            parser.error(f"--web-origin: {exc}")
    if args.metrics_allow is None:
        args.metrics_allow = list(DEFAULT_METRICS_ALLOW)
    try:
        parse_networks(args.metrics_allow)
    except ValueError as exc:
        parser.error(f"--metrics-allow: {exc}")
    return args


def _byte_count(text: str) -> int:
    """``25M``, ``1G``, ``512K``, ``1048576`` (also ``25MiB``, ``25MB``): bytes, in powers
    of 1024."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 25M, 1G, 500K)")
    value = float(match.group(1)) * 1024 ** " kmgt".index(match.group(2) or " ")
    return int(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logformat.configure(args.log_level, args.log_format)

    def load() -> tuple[ssl.SSLContext, str]:
        return load_server_context(args.cert, args.key, args.client_ca, web=not args.no_web)

    if args.check:
        return _check(args, load)

    try:
        context, described = load()
    except CertificateError as exc:
        print(f"securechat-server: cannot load certificate: {exc}", file=sys.stderr)
        return 1
    log.info("certificate: %s", described)
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
    # Handlers first: a signal during start-up is acted on once the server runs. A handler
    # runs in the main thread between bytecodes, perhaps inside a lock the main thread
    # holds, so it only queues the signal (SimpleQueue.put is reentrant); the main loop
    # below does the work: stop, or reload the certificate (SIGHUP).
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda signum, _frame: signals.put(signum))
    admins = [name.strip() for name in args.admins.split(",") if name.strip()]
    web = None if args.no_web else WebSite(origins=args.web_origin,
                                           metrics_allow=args.metrics_allow)  # fmt: skip
    if web is not None and b"/" not in web.files.files:
        log.warning("the web client's files are missing (no index.html): browsers get 404")
    limits = Limits(
        frame_bytes=args.frame_limit, frame_rate=args.frame_rate, frame_burst=args.frame_burst,
        max_connections=args.max_connections, max_per_address=args.max_per_address,
        io_threads=args.io_threads, flush_interval=args.flush_interval / 1000,
    )  # fmt: skip
    try:
        files = None if args.no_web else FileLimits(
            max_file_size=args.max_file_size, quota=args.file_quota, min_free=args.min_free_disk
        )  # fmt: skip
        with durable_hub(Path(args.data_dir), passwords, admins=admins, fsync=args.fsync,
                         frame_limit=args.frame_limit, token_days=args.token_days,
                         files=files, link_days=args.file_link_days,
                         public_url=args.public_url) as hub:  # fmt: skip
            server = Server(context, hub, passwords.verify, args.host, args.port, limits, web,
                            irc_port=args.irc_port)  # fmt: skip
            try:
                server.start()
            except OSError as exc:
                print(f"securechat-server: cannot listen on {args.host}:{args.port}: {exc}",
                      file=sys.stderr)  # fmt: skip
                return 1
            if web is not None:
                host, port = server.address
                log.info("web client: https://%s:%d/", f"[{host}]" if ":" in host else host, port)
            if server.irc is not None and server.irc.links is not None:
                # (now: the default asks DNS for a wildcard --host, not an I/O thread later)
                log.info("IRC users get links to shared files at %s/api/files/...",
                         server.irc.links.base)  # fmt: skip
            host, port = server.address
            systemd.notify("READY=1", f"STATUS=listening on {host}:{port}")
            while signals.get() == signal.SIGHUP:
                systemd.reloading()
                reload_certificate(server, load)
                systemd.notify("READY=1", f"STATUS=listening on {host}:{port}")
            log.info("shutting down")
            systemd.notify("STOPPING=1", "STATUS=shutting down")
            server.shutdown()
    except (StoreError, OSError) as exc:
        print(f"securechat-server: {exc}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0


def _check(args: argparse.Namespace, load: Callable[[], object]) -> int:
    """``--check``: one line per finding on stdout; 0 if the server would start."""
    ports = {"port": args.port}
    if irc_port := getattr(args, "irc_port", None):
        ports["--irc-port"] = irc_port
    findings = check.run(
        cert=Path(args.cert), key=Path(args.key) if args.key else None,
        client_ca=Path(args.client_ca) if args.client_ca else None, load=load,
        passwd=Path(args.passwd), data_dir=Path(args.data_dir), database=DATABASE_NAME,
        host=args.host, ports=ports,
    )  # fmt: skip
    for finding in findings:
        print(f"securechat-server --check: {finding}")
    problems = sum(finding.problem for finding in findings)
    warnings = len(findings) - problems
    verdict = f"{problems} problem{'s' * (problems != 1)}" if problems else "ok"
    print(f"securechat-server --check: {verdict}, {warnings} warning{'s' * (warnings != 1)}")
    return 1 if problems else 0


__all__ = [
    "Connection",
    "Limits",
    "Server",
    "durable_hub",
    "load_server_context",
    "main",
    "make_server_context",
    "reload_certificate",
]

if __name__ == "__main__":
    raise SystemExit(main())
