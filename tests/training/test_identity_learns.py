"""The identity path really learns, with the I2V frame-0 condition kept (the realistic case: the drawn view's crop is
also frame 0's condition, so the face reaches the model twice). Each identity's clip has its own colours and stripes;
after a short training the loss with the right reference is clearly below the loss with a swapped one (over all clips,
and for at least two of the three identities: after 300 tiny steps the model may not yet tell every pair apart). As
only the identity inputs (EVA-CLIP pixels, vertices) are swapped while frame 0 keeps the right face, the gap shows
that the identity tokens are used although frame 0 already carries the face.

The control: with the identity tokens zeroed (a forward hook on the identity branch), swapping the reference must
change nothing. It fails if the reference reached the model any other way than through the identity tokens; and
zeroing the tokens must cost loss (the trained model relies on them).

Timesteps are drawn near the end of the schedule (``train.timestep_range``), where the noisy latents carry almost
nothing of the clip, so the conditions are the main source of the video. The tiny VAE's random posterior is sharpened
(as a trained VAE's is), so that the target is the clip rather than posterior noise.
"""

from __future__ import annotations

import pytest
import torch
from train_fixtures import tiny_config

from fantasyid.data.dataset import ClipDataset, collate_items
from fantasyid.training import model as model_module
from fantasyid.training.loop import train
from fantasyid.training.step import compute_loss, prepare_inputs

TIMESTEPS = [990, 1000]
STEPS, LR, GAP = 300, 3e-3, 1.3


def _clip_losses(components, config, dataset, swap: bool, zero_tokens: bool = False,
                 positions=range(1000, 1004)) -> list[float]:
    """Mean loss of each clip at fixed positions (fixed noise and timesteps), right or swapped reference; with
    ``zero_tokens`` the identity branch's output is replaced by zeros."""
    module = components.module.eval()
    n = len(dataset)
    values = []
    hook = module.identity.register_forward_hook(lambda m, i, out: torch.zeros_like(out)) if zero_tokens else None
    with torch.no_grad():
        for row in range(n):
            values.append(0.0)
            for position in positions:
                item = dataset.load(dataset.rows[row], position)
                if swap:  # the next identity's reference (EVA-CLIP input and vertices); same clip, same noise
                    other = dataset.load(dataset.rows[(row + 1) % n], position)
                    item = {**item, "clip_pixels": other["clip_pixels"], "vertices": other["vertices"]}
                batch = collate_items([{**item, "skipped": []}])
                inputs = prepare_inputs(components, batch, config.data, config.train.seed, torch.device("cpu"),
                                        timestep_range=tuple(TIMESTEPS))
                values[-1] += compute_loss(module, components, inputs).item() / len(positions)
    if hook is not None:
        hook.remove()
    return values


def _train(manifest, folder, monkeypatch, steps: int):
    config = tiny_config(
        manifest, folder, model={"identity": True, "variant": "paper"},
        data={"frames": 1, "image_dropout": 0.0, "text_dropout": 0.0, "views": 6},  # frame 0 always kept
        optim={"lr": LR},
        train={"global_batch": 3, "micro_batch": 3, "max_steps": steps, "timestep_range": TIMESTEPS},
        checkpoint={"every": 0, "total_limit": 1},
    )
    captured = {}
    original = model_module.build_components

    def build_sharp(*args, **kwargs):
        components = original(*args, **kwargs)
        conv = components.pipe.vae.encoder.conv_out.conv  # the posterior's log-variance channels → −20
        half = conv.out_channels // 2
        with torch.no_grad():
            conv.weight[half:] = 0.0
            conv.bias[half:] = -20.0
        captured["components"] = components
        return components

    monkeypatch.setattr(model_module, "build_components", build_sharp)
    train(config)
    components = captured["components"]
    dataset = ClipDataset(manifest, frames=1, height=64, width=64, fps=8, views=6,
                          clip_image_size=components.image_encoder.config.image_size,
                          num_vertices=components.num_vertices, seed=config.train.seed)
    return components, config, dataset


@pytest.mark.slow
def test_right_reference_beats_swapped_with_frame_0_kept(identity_data, tmp_path, monkeypatch):
    components, config, dataset = _train(identity_data, tmp_path / "with", monkeypatch, steps=STEPS)
    right = _clip_losses(components, config, dataset, swap=False)
    swapped = _clip_losses(components, config, dataset, swap=True)
    print("right", right, "swapped", swapped)
    assert sum(swapped) > GAP * sum(right), (right, swapped)  # clearly lower with the right face,
    assert sum(s > 1.1 * r for r, s in zip(right, swapped)) >= 2, (right, swapped)  # for most identities

    # control: tokens zeroed, the swap changes nothing (no other path from the reference), and the tokens matter
    zeroed = _clip_losses(components, config, dataset, swap=False, zero_tokens=True)
    zeroed_swapped = _clip_losses(components, config, dataset, swap=True, zero_tokens=True)
    print("zeroed", zeroed, "zeroed swapped", zeroed_swapped)
    assert zeroed_swapped == pytest.approx(zeroed, rel=1e-6, abs=0), (zeroed, zeroed_swapped)
    assert sum(zeroed) > 1.15 * sum(right), (right, zeroed)
