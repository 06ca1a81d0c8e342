"""The README's command table lists every command of the CLI exactly once."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from fantasyid_cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def test_command_table_lists_each_command_once():
    rows = re.findall(r"^\| `fantasyid ([a-z-]+)` \|", README.read_text(encoding="utf-8"), re.M)
    commands = set(typer.main.get_command(app).commands)
    assert sorted(rows) == sorted(set(rows)), f"listed twice: {sorted({r for r in rows if rows.count(r) > 1})}"
    assert set(rows) == commands
    assert "not available yet" not in README.read_text(encoding="utf-8")
