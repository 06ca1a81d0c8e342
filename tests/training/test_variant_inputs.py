"""Inputs a variant cannot use are refused before training: paper-mode vertices for the released variant (a
train/inference mismatch), and a CogVideoX 1.5 folder (patch_size_t) at model.init=cogvideox:PATH."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_fixtures import tiny_config

from fantasyid.data.dataset import ClipDataset
from fantasyid.data.manifest import read_manifest
from fantasyid.errors import ConfigError
from fantasyid.training.config import ModelConfig
from fantasyid.training.loop import train
from fantasyid.training.model import build_components


def _record_mode(manifest, mode: str) -> None:
    """Write ``mode`` into every shape file of the data set, as prep does (it writes paper-mode vertices)."""
    for row in read_manifest(manifest).to_dict("records"):
        path = manifest.parent / row["shape_file"]
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        np.savez(path, **arrays, mode=np.array(mode))


def test_released_training_refuses_paper_mode_vertices(data_copy, tmp_path):
    _record_mode(data_copy, "paper")
    config = tiny_config(data_copy, tmp_path / "run")
    assert config.model.variant == "released"
    with pytest.raises(ConfigError, match="paper-mode vertices; model.variant=released"):
        train(config)
    assert not (tmp_path / "run" / "checkpoints").exists()
    # the paper variant takes them, and files that record no mode (older data) are not refused
    item = ClipDataset(data_copy, frames=5, height=64, width=64, fps=8.0, views=6, clip_image_size=32,
                       num_vertices=None, shape_mode="paper")[(0, 0)]
    assert item["vertices"].shape[-1] == 3


def test_cogvideox_1_5_init_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "CogVideoX1.5-5B-I2V"
    (folder / "transformer").mkdir(parents=True)
    (folder / "transformer" / "config.json").write_text(json.dumps({"_class_name": "CogVideoXTransformer3DModel",
                                                                    "patch_size": 2, "patch_size_t": 2}))
    with pytest.raises(ConfigError, match="CogVideoX 1.5") as info:
        build_components(ModelConfig(init=f"cogvideox:{folder}"))
    assert "\n" not in str(info.value)
