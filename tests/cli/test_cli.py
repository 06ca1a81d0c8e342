"""The command-line shell: help, version, commands not yet available, error handling."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fantasyid import __version__
from fantasyid.errors import InputError
from fantasyid_cli import main as cli_main

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(cli_main.app, ["--help"])
    assert result.exit_code == 0
    for name in ("prep", "train", "generate", "edit-shape", "eval"):
        assert name in result.output


def test_version():
    result = runner.invoke(cli_main.app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("name", ["train"])
def test_pending_command_exits_2_with_one_line(name):
    result = runner.invoke(cli_main.app, [name, "--anything", "x"])
    assert result.exit_code == 2
    assert "not available yet" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_help_does_not_import_torch():
    code = "import sys; from fantasyid_cli.main import main; sys.argv=['fantasyid','--help']\n" \
           "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_library_error_becomes_one_line_and_exit_1(monkeypatch, capsys):
    monkeypatch.delenv("FANTASYID_DEBUG", raising=False)

    def boom(*args, **kwargs):
        raise InputError("the image 'x.png' does not exist", hint="check the path")

    monkeypatch.setattr(cli_main, "app", boom)
    with pytest.raises(SystemExit) as exc:
        cli_main.main([])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "error: the image 'x.png' does not exist" in err
    assert "hint: check the path" in err
    assert "Traceback" not in err


def test_debug_shows_traceback(monkeypatch):
    monkeypatch.setenv("FANTASYID_DEBUG", "1")

    def boom(*args, **kwargs):
        raise InputError("bad")

    monkeypatch.setattr(cli_main, "app", boom)
    with pytest.raises(InputError):
        cli_main.main([])


def test_console_script_runs():
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-m", "fantasyid_cli", "--version"], capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert __version__ in result.stdout
