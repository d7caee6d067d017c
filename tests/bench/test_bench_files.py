"""securechat-bench's ``files`` scenario: a small file up and down while a room chats."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_files_scenario_moves_a_file_and_times_the_chat(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    numbers = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "securechat.bench", "--scenario", "files", "--file-mib", "4",
         "--json", str(numbers)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "### files: a file of 4 MiB up, then down, over HTTPS" in done.stdout
    assert "| download intact (size, SHA-256) | yes |" in done.stdout
    assert "| lost | 0 |" in done.stdout
    result = json.loads(numbers.read_text())["results"]["files"]["securechat"]
    assert "error" not in result, result
    assert result["file_mib"] == 4 and result["download_intact"] is True
    assert result["upload_mb_s"] > 0 and result["download_mb_s"] > 0
    assert result["rss_growth_mib"] < 20
    assert result["lat_p99_ms"] is not None
