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
    assert set(reports) == {"fantasyid", "mesh", "flame", "deca", "captioner"}
    assert not any(r["found"] for r in reports.values())
    assert reports["captioner"]["optional"] and "Qwen/Qwen2.5-VL-7B-Instruct" in reports["captioner"]["how_to_get"]
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


def test_missing_captioner_is_optional_and_found_when_present(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FANTASYID_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint = tmp_path / "ckpt"
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler", "face_encoder/models/antelopev2"):
        (checkpoint / part).mkdir(parents=True)
    for part in ("transformer/config.json", "vae/config.json", "text_encoder/config.json",
                 "scheduler/scheduler_config.json", "face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt",
                 "transformer/model.safetensors", "face_encoder/models/antelopev2/scrfd.onnx", "assets/transform.pkl"):
        (checkpoint / part).parent.mkdir(parents=True, exist_ok=True)
        (checkpoint / part).write_text("{}")
    (home / "deca").mkdir(parents=True)
    for name in ("generic_model.pkl", "deca_model.tar"):
        (home / "deca" / name).write_bytes(b"x")
    result = runner.invoke(app, ["models", "--model", str(checkpoint)])
    assert result.exit_code == 0, result.output  # everything to generate is there; the captioner is optional
    assert "no (optional)" in result.output
    (home / "Qwen2.5-VL-7B-Instruct").mkdir(parents=True)
    result = runner.invoke(app, ["models", "--model", str(checkpoint), "--json"])
    reports = {r["name"].strip(): r for r in json.loads(result.output)}
    assert reports["captioner"]["found"] and reports["captioner"]["where"] == str(home / "Qwen2.5-VL-7B-Instruct")
