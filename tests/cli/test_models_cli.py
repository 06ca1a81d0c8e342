"""`fantasyid models`: what each configuration needs, found or not, and how to get it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from fantasyid_cli.main import app

runner = CliRunner()


def test_released_weights_missing_are_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 1
    reports = {r["name"]: r for r in json.loads(result.output)}
    assert set(reports) == {"fantasyid", "mesh", "flame", "deca"}
    assert not any(r["found"] for r in reports.values())
    assert "models fetch" in reports["fantasyid"]["how_to_get"]
    assert "flame.is.tue.mpg.de" in reports["flame"]["how_to_get"]
    assert str(tmp_path / "home") in reports["deca"]["where"]


def test_found_files_and_incomplete_checkpoint(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FANTASYID_HOME", str(home))
    (home / "deca").mkdir(parents=True)
    (home / "deca" / "generic_model.pkl").write_bytes(b"x")
    checkpoint = tmp_path / "ckpt"
    (checkpoint / "transformer").mkdir(parents=True)
    (checkpoint / "transformer" / "config.json").write_text("{}")
    result = runner.invoke(app, ["models", "--model", str(checkpoint), "--json"])
    reports = {r["name"].strip(): r for r in json.loads(result.output)}
    assert reports["flame"]["found"] is True
    assert reports["fantasyid"]["found"] is True
    assert reports["transformer/config.json"]["found"] is True
    assert reports["vae/config.json"]["found"] is False
    assert result.exit_code == 1


def test_tiny_needs_only_the_bundled_pack():
    result = runner.invoke(app, ["models", "--model", "tiny"])
    assert result.exit_code == 0
    assert "buffalo_sc" in result.output
