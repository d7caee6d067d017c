"""The rules of the house: the import contracts in pyproject.toml hold, and they bite.

``lint-imports`` reads the contracts from ``pyproject.toml`` in its working directory;
the second test runs it on a copy of the package with one forbidden import added, so a
contract that no longer catches anything fails here.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_tree_keeps_its_contracts():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("protocol/frames.py", "securechat.server.hub"),  # the protocol imports nothing else
        ("client/console.py", "securechat.server.session"),  # the client never the server
        ("server/hub.py", "securechat.client.console"),  # the server never the client
        ("admin/certs.py", "securechat.bench.report"),  # only the bench imports the bench
        ("server/hub.py", "securechat.server.transport"),  # the core never its I/O edge
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, forbidden):
    shutil.copytree(ROOT / "securechat", tmp_path / "securechat",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "securechat" / module).open("a") as source:
        source.write(f"\nimport {forbidden}  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout and forbidden in done.stdout
