"""A saved model brings its own generation defaults (steps, guidance, fps; its size from its configs); options given
win. Read from the folder's JSON files only, as `fantasyid generate` does before loading anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fantasyid.errors import InputError
from fantasyid.generation import GenerateSettings
from fantasyid.generation.settings import model_defaults


def _saved_model(folder: Path, block: dict) -> Path:
    """The JSON files of a checkpoint in our format: its index, a 9-frame 32×48 transformer, a 3-level VAE (×4)."""
    (folder / "transformer").mkdir(parents=True)
    (folder / "vae").mkdir()
    index = {"_class_name": "FantasyIDPipeline", "fantasyid": {"format_version": 1, "variant": "released", **block}}
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "transformer" / "config.json").write_text(json.dumps(
        {"sample_frames": 9, "sample_height": 8, "sample_width": 12}))  # fmt: skip
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [8, 8, 8]}))
    return folder


def test_a_saved_model_generates_with_its_own_defaults(tmp_path):
    recorded = _saved_model(tmp_path / "a", {"init": "released", "generation_defaults": {"steps": 7, "guidance": 3.5,
                                                                                           "fps": 12}})  # fmt: skip
    settings = GenerateSettings.for_model(str(recorded))
    assert (settings.steps, settings.guidance, settings.fps) == (7, 3.5, 12)
    assert (settings.frames, settings.height, settings.width) == (9, 32, 48)  # from its configs
    explicit = GenerateSettings.for_model(str(recorded), steps=3, guidance=1.0, fps=24, frames=17)
    assert (explicit.steps, explicit.guidance, explicit.fps, explicit.frames) == (3, 1.0, 24, 17)

    # an export of a tiny run written before the defaults were recorded: the tiny model's 4 steps, not the release's 50
    older = _saved_model(tmp_path / "b", {"init": "tiny"})
    assert GenerateSettings.for_model(str(older)).steps == 4
    assert GenerateSettings.for_model(str(_saved_model(tmp_path / "c", {"init": "cogvideox:x"}))).steps == 50
    assert model_defaults("tiny")["steps"] == 4 and model_defaults("released")["steps"] == 50
    assert model_defaults(str(tmp_path / "not-there"))["steps"] == 50


def test_a_bad_recorded_default_is_one_line(tmp_path):
    folder = _saved_model(tmp_path / "a", {"generation_defaults": {"steps": "many"}})
    with pytest.raises(InputError, match="generation_defaults has steps='many'"):
        GenerateSettings.for_model(str(folder))


def test_the_commands_leave_the_defaults_to_the_model():
    """generate/edit-shape/app pass None for what the user did not give, so the model's defaults apply."""
    import inspect

    from fantasyid_cli.commands.app_cmd import app_command
    from fantasyid_cli.commands.edit_shape_cmd import edit_shape
    from fantasyid_cli.commands.generate_cmd import generate

    for command, names in ((generate, ("steps", "guidance", "fps", "frames", "height", "width")),
                           (edit_shape, ("steps", "guidance", "fps")), (app_command, ("fps", "frames"))):  # fmt: skip
        parameters = inspect.signature(command).parameters
        assert {name: parameters[name].default for name in names} == dict.fromkeys(names), command.__name__
