"""Run ``securechat-server`` as a real process, the way an admin does."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
LISTENING = re.compile(r"listening on (\S+):(\d+)")


class ServerProcess:
    """A server subprocess on port 0; ``address`` is read from its log line."""

    def __init__(
        self,
        cert: Path,
        passwd: Path,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "securechat.server.cli", "--cert", str(cert), "--passwd",
             str(passwd), "--data-dir", str(data_dir), "--port", "0", *args],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        self.log: list[str] = []
        self._logged = threading.Condition()  # notified for each line appended to log
        self._eof = False  # the server closed its stderr: no more lines
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
            with self._logged:
                self.log.append(line)
                self._logged.notify_all()
            if match := LISTENING.search(line):
                self.address = (match.group(1), int(match.group(2)))
                self._ready.set()
        self._ready.set()  # exited before listening
        with self._logged:
            self._eof = True
            self._logged.notify_all()

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = 10) -> str:
        """The first log line from index ``since`` on that matches ``pattern`` (a regex).

        Take ``since = len(proc.log)`` before causing the line, so an earlier line of the
        same kind does not count.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._logged:
            while True:
                for line in self.log[since:]:
                    if regex.search(line):
                        return line
                since = len(self.log)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError(f"no log line matching {pattern!r}:\n" + "".join(self.log))
                self._logged.wait(remaining)

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
