"""The protocol document: prose by hand, frame tables generated from the models."""

import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from securechat.protocol.frames import ErrorCode
from securechat.protocol.schema import BEGIN, END, main, markdown, render

ROOT = Path(__file__).parents[2]


def test_protocol_doc_tables_are_generated_from_the_models():
    committed = (ROOT / "docs" / "protocol.md").read_text()
    assert committed.count(BEGIN) == 1 and committed.count(END) == 1
    assert render(committed) == committed, "run: securechat-schema --update docs/protocol.md"


def test_protocol_doc_is_complete_on_its_own():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    prose = doc.split(BEGIN)[0]
    for heading in ("## Transport", "## Session", "## Requests", "## Events", "## Order",
                    "## Errors", "## Flow control", "## Extensions"):  # fmt: skip
        assert heading in prose
    for code in get_args(ErrorCode):  # every code the server may send is explained
        assert f"| `{code}` |" in prose
    assert "shared/" not in doc and "PROTOCOL.md" not in doc


def test_update_keeps_the_prose_and_replaces_the_tables(tmp_path):
    doc = tmp_path / "protocol.md"
    doc.write_text(f"# Prose\n\nkept\n\n{BEGIN}\nstale tables\n{END}\ntrailer\n")
    assert main(["--update", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Prose\n\nkept\n\n") and text.endswith("trailer\n")
    assert "stale tables" not in text and markdown() in text
    doc.write_text("# Prose only\n")
    main(["--update", str(doc)])
    assert doc.read_text() == "# Prose only\n\n" + markdown()


def test_update_refuses_a_document_with_a_broken_marker(tmp_path, capsys):
    doc = tmp_path / "protocol.md"
    doc.write_text(f"# Prose\n{BEGIN}\nno end marker\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--update", str(doc)])
    assert exit_.value.code == 1
    assert "missing" in capsys.readouterr().err
    assert doc.read_text() == f"# Prose\n{BEGIN}\nno end marker\n"


def test_schema_command_prints_both_directions():
    result = subprocess.run(
        [sys.executable, "-m", "securechat.protocol.schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    schema = json.loads(result.stdout)
    assert set(schema) == {"client", "server"}
    tags = set(schema["client"]["discriminator"]["mapping"])
    assert {"login", "join", "send", "history", "logout"} <= tags
