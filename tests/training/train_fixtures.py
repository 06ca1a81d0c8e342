"""Helpers of the training tests: tiny-model configs."""

from __future__ import annotations

from pathlib import Path

from fantasyid.training.config import config_from_dict


def tiny_dict(manifest: Path, output_dir: Path, **sections) -> dict:
    """A tiny-model config dict (fast: 5 frames of 64×64, the tiny model's size), with per-section overrides."""
    data = {
        "output_dir": str(output_dir),
        "model": {"init": "tiny", "variant": "released", "trainable": "full", "gradient_checkpointing": False},
        "data": {"manifest": str(manifest), "frames": 5, "height": 64, "width": 64, "fps": 8, "num_workers": 0},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "scheduler": "constant", "max_grad_norm": 1.0},
        "train": {"global_batch": 2, "micro_batch": 1, "max_steps": 4, "seed": 7, "mixed_precision": "no"},
        "checkpoint": {"every": 2, "total_limit": 0, "export": False},
        "log": {"tensorboard": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return data


def tiny_config(manifest: Path, output_dir: Path, **sections):
    return config_from_dict(tiny_dict(manifest, output_dir, **sections)).validate()


def keep_components(monkeypatch) -> dict:
    """Make ``build_components`` also store what it built in the returned dict (key ``components``)."""
    from fantasyid.training import model as model_module

    captured = {}
    original = model_module.build_components

    def keep(*args, **kwargs):
        captured["components"] = original(*args, **kwargs)
        return captured["components"]

    monkeypatch.setattr(model_module, "build_components", keep)
    return captured


def generate_with(model: Path, tmp_path: Path) -> Path:
    """``fantasyid generate --model MODEL`` on the astronaut photo (the real CLI); the video it wrote."""
    import PIL.Image
    from skimage import data
    from typer.testing import CliRunner

    from fantasyid_cli.main import app

    PIL.Image.fromarray(data.astronaut()).save(tmp_path / "me.png")
    run = CliRunner().invoke(app, ["generate", "--model", str(model), "--ref", str(tmp_path / "me.png"),
                                   "--prompt", "a woman smiles", "--out", str(tmp_path / "videos")])
    assert run.exit_code == 0, (run.output, run.exception)
    (video,) = (tmp_path / "videos").glob("*.mp4")
    assert video.stat().st_size > 0
    return video
