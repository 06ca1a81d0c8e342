"""What `fantasyid --help` shows a user: defaults for the size options, no `<bool>` after flags, no stray spaces,
examples everywhere; `python -m fantasyid` works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fantasyid_cli.main import app

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ([], ["generate"], ["eval"], ["edit-shape"], ["models"], ["models", "fetch"])


def _help(command: list[str]) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "240", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fantasyid")
def test_help_has_no_bool_metavar_and_no_stray_spaces(command):
    text = _help(command)
    assert "<bool>" not in text
    assert not re.search(r"\w \.(\s|$)", text), re.search(r".{30}\w \.(\s|$)", text)
    assert not re.search(r"\w ,", text)
    assert "Examples:" in text or command == ["models"] and "fantasyid models fetch" in text


def test_size_and_step_defaults_are_shown():
    text = " ".join(_help(["generate"]).split())
    for option, default in (("--steps", "50; tiny: 4; a saved model: its own"), ("--frames", "49; tiny: 9"),
                            ("--height", "480; tiny: 64"), ("--width", "720; tiny: 64"),
                            ("--fps", "8; a saved model: its own")):
        assert re.search(rf"{option} <int> [^│]*\[default: \({default}\)\]", text), option
    assert re.search(r"--guidance <float> [^│]*\[default: \(6; a saved model: its own\)\]", text)
    assert re.search(r"--offload --no-offload Model CPU offload", text)  # a flag: no type column


def test_models_fetch_has_examples_and_the_offline_way():
    text = " ".join(_help(["models", "fetch"]).split())
    assert "fantasyid models fetch --model acvlab/FantasyID" in text
    assert "hf download acvlab/FantasyID --local-dir FantasyID" in text


def test_python_dash_m_fantasyid():
    done = subprocess.run([sys.executable, "-m", "fantasyid", "--version"], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("fantasyid ")
