"""The identity path really learns: after a short training the loss with the right reference is clearly below the
loss with a swapped one; trained without the identity branch, the reference makes no difference."""

from __future__ import annotations

import pytest
import torch

from fantasyid.data.dataset import ClipDataset, collate_items
from fantasyid.training import model as model_module
from fantasyid.training.loop import train
from fantasyid.training.step import compute_loss, prepare_inputs

from train_fixtures import tiny_config


def _losses(components, module, config, dataset, swap: bool, positions=range(1000, 1012)) -> float:
    """Mean loss over every clip at fixed positions (fixed noise/timesteps), with the right or a swapped reference."""
    module.eval()
    n = len(dataset)
    values = []
    with torch.no_grad():
        for row in range(n):
            for position in positions:
                item = dataset.load(dataset.rows[row], position)
                if swap:  # reference (EVA-CLIP input and vertices) of the next identity, same video and noise
                    other = dataset.load(dataset.rows[(row + 1) % n], position)
                    item = {**item, "clip_pixels": other["clip_pixels"], "vertices": other["vertices"]}
                batch = collate_items([{**item, "skipped": []}])
                inputs = prepare_inputs(components, batch, config.data, config.train.seed, torch.device("cpu"))
                values.append(compute_loss(module, components, inputs).item())
    return sum(values) / len(values)


def _trained(identity_data, tmp_path, monkeypatch, identity: bool):
    config = tiny_config(
        identity_data, tmp_path / ("with" if identity else "without"),
        model={"identity": identity},
        # the I2V frame-0 condition is dropped, so the reference reaches the model through the identity path only
        data={"image_dropout": 1.0, "text_dropout": 0.0, "views": 6},
        optim={"lr": 3e-3},
        train={"global_batch": 3, "max_steps": 60},
        checkpoint={"every": 0, "total_limit": 1},
    )
    captured = {}
    original = model_module.build_components

    def keep(*args, **kwargs):  # the trained components, to evaluate them after the run
        captured["components"] = original(*args, **kwargs)
        return captured["components"]

    monkeypatch.setattr(model_module, "build_components", keep)
    train(config)
    components = captured["components"]
    dataset = ClipDataset(config.data.manifest, frames=5, height=64, width=64, fps=8, views=6,
                          clip_image_size=components.image_encoder.config.image_size,
                          num_vertices=components.num_vertices, seed=config.train.seed)
    return components, config, dataset


@pytest.mark.slow
def test_right_reference_beats_swapped_only_through_identity(identity_data, tmp_path, monkeypatch):
    components, config, dataset = _trained(identity_data, tmp_path, monkeypatch, identity=True)
    right = _losses(components, components.module, config, dataset, swap=False)
    swapped = _losses(components, components.module, config, dataset, swap=True)
    assert swapped > 1.3 * right, (right, swapped)

    components, config, dataset = _trained(identity_data, tmp_path, monkeypatch, identity=False)
    right = _losses(components, components.module, config, dataset, swap=False)
    swapped = _losses(components, components.module, config, dataset, swap=True)
    assert swapped == pytest.approx(right, rel=1e-6), (right, swapped)
