"""Run ``securechat-server`` as a real process, the way an admin does."""

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).parents[1]
LISTENING = re.compile(r"listening on (\S+):(\d+)")


class ServerProcess:
    """A server subprocess on port 0; ``address`` is read from its log line."""

    def __init__(self, cert: Path, passwd: Path, data_dir: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "securechat.server.cli", "--cert", str(cert), "--passwd",
             str(passwd), "--data-dir", str(data_dir), "--port", "0", *args],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        self.log: list[str] = []
        self._ready = threading.Event()
        self.address: tuple[str, int] = ("", 0)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ready.wait(30) or not self.address[1]:
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            if match := LISTENING.search(line):
                self.address = (match.group(1), int(match.group(2)))
                self._ready.set()
        self._ready.set()  # exited before listening

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM, then the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
