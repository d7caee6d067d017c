"""The protocol document is generated from the models and must be up to date."""

import json
import subprocess
import sys
from pathlib import Path

from securechat.schema import markdown

ROOT = Path(__file__).parents[1]


def test_protocol_doc_is_generated_from_the_models():
    committed = (ROOT / "docs" / "protocol.md").read_text()
    assert committed == markdown(), "run: securechat-schema --markdown > docs/protocol.md"


def test_schema_command_prints_both_directions():
    result = subprocess.run(
        [sys.executable, "-m", "securechat.schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    schema = json.loads(result.stdout)
    assert set(schema) == {"client", "server"}
    tags = set(schema["client"]["discriminator"]["mapping"])
    assert {"login", "join", "send", "history", "logout"} <= tags
