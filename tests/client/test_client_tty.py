"""Terminal mode of ``securechat-client``, driven through tmux (skipped without tmux).

tmux gives the client a real terminal; ``capture-pane`` shows what a user would see.
Waiting is driven by the pane's output (``pipe-pane`` into a FIFO read by a thread):
after each burst of output the screen is captured again, until it shows what we wait
for or the timeout passes.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import USERS

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ROOT = Path(__file__).parents[2]
CLOCK = r"\d\d:\d\d:\d\d"


class Pane:
    """One tmux session on a private tmux server, running one command."""

    def __init__(self, directory: Path, command: str, env: dict[str, str]) -> None:
        self.socket = directory / "tmux.sock"
        self.env = env
        self._changes = 0
        self._changed = threading.Condition()
        conf = directory / "tmux.conf"
        conf.write_text("set -g remain-on-exit on\nset -g status off\n")
        fifo = directory / "pane.fifo"
        os.mkfifo(fifo)
        threading.Thread(target=self._watch, args=(fifo,), daemon=True).start()
        self.tmux(
            "-f", str(conf), "new-session", "-d", "-s", "chat", "-x", "100", "-y", "30", command
        )
        self.tmux("pipe-pane", "-t", "chat", f"cat > {fifo}")

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout

    def _watch(self, fifo: Path) -> None:
        with open(fifo, "rb", buffering=0) as output:
            while output.read(65536):
                with self._changed:
                    self._changes += 1
                    self._changed.notify_all()

    def screen(self) -> list[str]:
        """The visible lines, trailing blank lines dropped (at least one line)."""
        lines = self.tmux("capture-pane", "-p", "-t", "chat").rstrip("\n").split("\n")
        while len(lines) > 1 and not lines[-1].strip():
            lines.pop()
        return lines

    def wait_for(self, check: Callable[[list[str]], bool], timeout: float = 10) -> list[str]:
        """The screen once ``check`` accepts it; re-checked after each output of the pane."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._changes
            lines = self.screen()
            if check(lines):
                return lines
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("screen never matched:\n" + "\n".join(lines))
            with self._changed:
                # tmux may pipe output a moment before its own screen shows it: look
                # again after a short while even when nothing more is written.
                self._changed.wait_for(lambda seen=seen: self._changes != seen, min(remaining, 0.2))

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "chat", *(["-l"] if literal else []), *keys)

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-S", str(self.socket), "kill-server"],
            env=self.env,
            capture_output=True,
            timeout=10,
        )


@pytest.fixture
def pane(server, certs, tmp_path) -> Iterator[Pane]:
    host, port = server.address
    env = {key: value for key, value in os.environ.items() if not key.startswith("TMUX")}
    env.update(PYTHONPATH=str(ROOT), SECURECHAT_PASSWORD=USERS["alice"], TERM="xterm")
    client = shlex.join([sys.executable, "-m", "securechat.client.cli", "--user", "alice",
                         "--host", host, "--port", str(port), "--cafile", str(certs.ca_cert),
                         "/join", "general"])  # fmt: skip
    command = f'cd {shlex.quote(str(tmp_path))} && {client}; echo "[exit $?]"'
    pane = Pane(tmp_path, command, env)
    try:
        yield pane
    finally:
        pane.close()


def test_incoming_lines_do_not_clobber_the_input_line(pane: Pane, connect) -> None:
    pane.wait_for(lambda s: s[-1] == "#general>" and "* joined #general (1 member: alice)" in s)
    bob = connect("bob")
    bob.request(type="join", room="general")
    pane.wait_for(lambda s: "* bob joined #general" in s)

    pane.keys("half typed", literal=True)
    pane.wait_for(lambda s: s[-1] == "#general> half typed")
    bob.request(type="send", room="general", text="hello from bob")
    bob.request(type="send", room="general", text="two\nlines \u202e and bidi")
    # The incoming lines print above the prompt; what was typed is still there, once.
    # (Both in one check: output briefly erases the prompt before drawing it again.)
    screen = pane.wait_for(
        lambda s: len(s) > 1 and s[-2].endswith("and bidi") and s[-1] == "#general> half typed"
    )
    assert re.fullmatch(rf"{CLOCK} #general \[1\] bob: hello from bob", screen[-4])
    assert re.fullmatch(rf"{CLOCK} #general \[2\] bob: two", screen[-3])
    assert screen[-2] == "    lines \\u202e and bidi"
    assert sum("half typed" in line for line in screen) == 1

    pane.keys(" line", literal=True)
    pane.keys("Enter")
    assert bob.expect("message", user="alice")["text"] == "half typed line"
    pane.wait_for(
        lambda s: len(s) > 1 and "alice: half typed line" in s[-2] and s[-1] == "#general>"
    )

    pane.keys("/join Random", literal=True)
    pane.keys("Enter")
    pane.wait_for(lambda s: s[-1] == "#random>")
    pane.keys("C-d")
    pane.wait_for(lambda s: "[exit 0]" in s)
    assert bob.expect("presence", user="alice", event="leave")


def test_ctrl_c_clears_the_line_and_quit_exits(pane: Pane) -> None:
    # Type only once the output has settled: prompt_toolkit prints incoming lines in
    # the terminal's cooked mode, where a key pressed at that very moment is echoed.
    pane.wait_for(lambda s: s[-1] == "#general>" and "* joined #general (1 member: alice)" in s)
    pane.keys("never sent", literal=True)
    pane.wait_for(lambda s: s[-1] == "#general> never sent")
    pane.keys("C-c")
    pane.wait_for(lambda s: s[-1] == "#general>")
    pane.keys("/nope", literal=True)
    pane.keys("Enter")
    pane.wait_for(lambda s: "! unknown command /nope (try /help)" in s)
    pane.keys("/quit", literal=True)
    pane.keys("Enter")
    screen = pane.wait_for(lambda s: "[exit 0]" in s)
    assert not any("never sent" in line for line in screen)


def test_what_the_terminal_shows_in_the_current_room_is_marked_read(pane: Pane, connect) -> None:
    pane.wait_for(lambda s: s[-1] == "#general>" and "* joined #general (1 member: alice)" in s)
    phone = connect("alice")  # the same user on another device, in the same room
    assert phone.request(type="join", room="general")["read_id"] == 0
    bob = connect("bob")
    bob.request(type="join", room="general")
    bob.request(type="join", room="random")
    ids = [bob.request(type="send", room="general", text=f"g{n}")["id"] for n in range(3)]
    pane.wait_for(lambda s: any(line.endswith("bob: g2") for line in s))
    # The last message shown is marked, and alice's other device is told.
    assert phone.expect("read", room="general", id=ids[-1])
    # A room that is not current is not read until it is: /join makes random current.
    pane.keys("/join random", literal=True)
    pane.keys("Enter")
    pane.wait_for(lambda s: s[-1] == "#random>")
    phone.request(type="join", room="random")
    later = bob.request(type="send", room="general", text="while alice is in random")["id"]
    pane.wait_for(lambda s: any(line.endswith("while alice is in random") for line in s))
    random_id = bob.request(type="send", room="random", text="here")["id"]
    assert phone.expect("read", room="random")["id"] == random_id
    # (marks go out together: had general's been due, it would have come with random's)
    assert not [f for f in phone.backlog if f["type"] == "read" and f["id"] == later]
    pane.keys("/switch general", literal=True)
    pane.keys("Enter")
    assert phone.expect("read", room="general")["id"] == later
    pane.keys("C-d")
    pane.wait_for(lambda s: "[exit 0]" in s)
