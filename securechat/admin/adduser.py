"""``securechat-adduser``: add a user or change a password, delete a user, list users.

Passwords never come from the command line, where ``ps`` and shell history would show
them: they are asked twice on the terminal, or read as one line from stdin with
``--password-stdin``. Errors are one line on stderr and exit status 1.
"""

import argparse
import getpass
import sys
from pathlib import Path

from securechat.exceptions import PasswordFileError, PasswordTooLong
from securechat.server import passwd

PROG = "securechat-adduser"
DEFAULT_FILE = "securechat.passwd"


def _rounds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 4 <= value <= 31:
        raise argparse.ArgumentTypeError(f"must be between 4 and 31, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Add a user or change their password (the default), delete a user, "
        "or list the users of the securechat password file.",
    )
    parser.add_argument(
        "--passwd",
        type=Path,
        default=Path(DEFAULT_FILE),
        metavar="FILE",
        help=f"password file (default: {DEFAULT_FILE})",
    )
    parser.add_argument(
        "--rounds",
        type=_rounds,
        metavar="N",
        help=f"bcrypt cost, 4-31 (default: {passwd.DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from stdin instead of asking",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--delete", action="store_true", help="delete user NAME")
    action.add_argument("--list", action="store_true", help="list the users, one a line")
    parser.add_argument("name", nargs="?", metavar="NAME", help="user name")
    return parser


def _read_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        if sys.stdin is None:
            raise ValueError("--password-stdin given but there is no stdin")
        raw = sys.stdin.buffer.readline()
        raw = raw.removesuffix(b"\n").removesuffix(b"\r") if raw.endswith(b"\n") else raw
        try:
            password = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the password on stdin is not UTF-8") from None
    elif sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass(f"Password for {name}: ")
        passwd.check_password(password)  # refuse before asking again
        if getpass.getpass("Repeat password: ") != password:
            raise ValueError("passwords do not match")
    else:
        raise ValueError("stdin is not a terminal; use --password-stdin to read the password")
    passwd.check_password(password)
    return password


def _run(args: argparse.Namespace) -> int:
    path: Path = args.passwd
    if args.list:
        for name in passwd.list_users(path):
            print(name)
        return 0
    name: str = args.name
    passwd.check_user_name(name)
    if args.delete:
        if not passwd.delete_user(path, name):
            return _fail(f"no user {name} in {path}")
        print(f"deleted user {name}")
        return 0
    passwd.read_users(path)  # a broken file fails now, not after the password prompts
    password = _read_password(name, args.password_stdin)
    rounds = passwd.DEFAULT_ROUNDS if args.rounds is None else args.rounds
    added = passwd.set_password(path, name, password, rounds)
    print(f"added user {name}" if added else f"changed password of {name}")
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (argparse exits 2 on usage errors)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        if args.name is not None:
            parser.error("--list takes no NAME")
        if args.password_stdin or args.rounds is not None:
            parser.error("--list takes no --password-stdin or --rounds")
    elif args.name is None:
        parser.error("NAME is required (or --list)")
    elif args.delete and (args.password_stdin or args.rounds is not None):
        parser.error("--delete takes no --password-stdin or --rounds")
    try:
        status = _run(args)
    except (PasswordFileError, PasswordTooLong, ValueError, OSError) as e:
        return _fail(str(e))
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)  # end the prompt line
        return _fail("cancelled")
    warning = passwd.permission_warning(args.passwd)
    if status == 0 and warning:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
