"""Training numerics: x_t and x̂0 are built with the same (fp32) ᾱ even when the frozen models run in bf16."""

from __future__ import annotations

import torch

from fantasyid.data.dataset import ClipDataset, collate_items
from fantasyid.training.config import DataConfig, ModelConfig
from fantasyid.training.model import build_components
from fantasyid.training.step import compute_loss, prepare_inputs


def test_bf16_inputs_keep_the_v_target_exact_at_small_timesteps(identity_data, monkeypatch):
    components = build_components(ModelConfig(init="tiny", gradient_checkpointing=False))
    pipe = components.pipe
    for frozen in (pipe.vae, pipe.text_encoder, components.image_encoder):
        frozen.to(torch.bfloat16)
    captured = {}
    original = pipe.prepare_latents

    def spy(*args, **kwargs):  # keeps the noise ε the step draws
        noise, image_latents = original(*args, **kwargs)
        captured["noise"] = noise
        return noise, image_latents

    monkeypatch.setattr(pipe, "prepare_latents", spy)
    dataset = ClipDataset(identity_data, frames=5, height=64, width=64, fps=8.0, views=6,
                          clip_image_size=components.image_encoder.config.image_size,
                          num_vertices=components.num_vertices)
    batch = collate_items([dataset[(0, 0)], dataset[(1, 1)]])
    data = DataConfig(frames=5, height=64, width=64, image_dropout=0.0, text_dropout=0.0)
    inputs = prepare_inputs(components, batch, data, seed=0, device=torch.device("cpu"), dtype=torch.bfloat16,
                            timestep_range=(0, 3))  # the smallest timesteps, where a bf16 ᾱ errs most
    assert inputs.latents.dtype == torch.bfloat16 and inputs.timesteps.max() < 3

    # the true v from x0 and ε, in fp64, independently of the code under test
    alphas = pipe.scheduler.alphas_cumprod.double()[inputs.timesteps][:, None, None, None, None]
    x0, noise = inputs.latents.double(), captured["noise"].double()
    v_true = alphas.sqrt() * noise - (1 - alphas).sqrt() * x0

    def oracle(*args):  # a perfect model: predicts the true v
        return v_true.float()

    loss = compute_loss(oracle, components, inputs).item()
    scale = compute_loss(lambda *args: torch.zeros_like(v_true).float(), components, inputs).item()
    assert scale > 0.1
    assert loss < 1e-6 * scale, (loss, scale)  # reverted (bf16 ᾱ in x_t only): loss ≈ 0.04 · scale
