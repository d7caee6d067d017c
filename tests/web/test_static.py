"""The web client's pure modules, tested by node's own runner, and the files themselves.

The page is plain ES modules with no build step; its logic that needs no DOM (the state
store, message lists, links, routes, backoff, storage) has unit tests in
``tests/web/*.test.mjs`` run by ``node --test``. This runs them from pytest, so
``scripts/test`` covers them, and skips with the reason where node is missing.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "securechat" / "server" / "web" / "static"
TESTS = Path(__file__).resolve().parent


def node_command() -> list[str]:
    """``node --test`` with what this node needs to load ``.js`` files as ES modules.

    The modules have no package.json saying ``"type": "module"`` (the folder is served
    as is); node finds them ES modules by their syntax, by default since 20.19 and 22.12,
    behind ``--experimental-detect-module`` from 20.10.
    """
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the web client's unit tests need node >= 20.10")
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    match = re.match(r"v(\d+)\.(\d+)", done.stdout.strip())
    version = (int(match[1]), int(match[2])) if match else (0, 0)
    if version < (20, 10):
        pytest.skip(f"node {done.stdout.strip()} is too old for the web tests (>= 20.10)")
    detects = (20, 19) <= version < (21, 0) or version >= (22, 12)
    return [node, *([] if detects else ["--experimental-detect-module"]), "--test"]


def test_node_unit_tests_pass():
    files = sorted(str(path) for path in TESTS.glob("*.test.mjs"))
    assert len(files) >= 6, files
    done = subprocess.run(
        [*node_command(), *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = "\n".join(line for line in done.stdout.splitlines() if line.startswith("# "))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(r"^# fail 0$", summary, re.M), summary
    assert int(re.search(r"^# pass (\d+)$", summary, re.M)[1]) >= 40, summary


def test_no_inline_script_or_style():
    """The server's Content-Security-Policy (default-src 'self') would block them."""
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline <script>"
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    for script in STATIC.glob("*.js"):
        source = script.read_text()
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source, script.name
        assert "eval(" not in source and "new Function" not in source, script.name


def test_nothing_is_fetched_from_elsewhere():
    """The page works on a LAN without internet: every URL is relative to the server."""
    for path in STATIC.iterdir():
        if path.suffix in {".html", ".css", ".js"}:
            text = path.read_text()
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path.name
            assert not re.search(r"""@import|url\(\s*["']?(https?:)?//""", text), path.name
            assert not re.search(r"""from\s+["'](https?:)?//""", text), path.name
