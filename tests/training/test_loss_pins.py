"""The training objective pinned against hand computations: the loss's target and CogVideoX's 1/(1−ᾱ) weighting
(diffusers' CogVideoX training scripts: weights = 1 / (1 − ᾱ_t) on (x̂0 − x0)²), and text dropout."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from fantasyid.pipelines.tiny import cogvideox_scheduler
from fantasyid.training.step import StepInputs, compute_loss


def test_weighted_x0_loss_equals_the_v_mse_by_hand():
    scheduler = cogvideox_scheduler()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 3, 3, generator=g)  # (B, F', C, h, w)
    noise = torch.randn(x0.shape, generator=g)
    v_hat = torch.randn(x0.shape, generator=g)
    t = torch.tensor([20, 500, 990])  # very different ᾱ: a wrong weighting changes the mean
    abar = scheduler.alphas_cumprod[t].double()[:, None, None, None, None]
    noisy = (abar.sqrt() * x0 + (1 - abar).sqrt() * noise).float()  # x_t by hand
    v = abar.sqrt() * noise - (1 - abar).sqrt() * x0  # the v-prediction target by hand
    expected = ((v_hat.double() - v) ** 2).flatten(1).mean(1).mean()  # w_t (x̂0 − x0)² = (v̂ − v)²

    inputs = StepInputs(model_input=noisy, latents=x0, noisy=noisy, timesteps=t, text_states=torch.zeros(3, 1, 1),
                        clip_hidden_states=None, vertices=None, rotary=None, ofs=None)
    components = SimpleNamespace(pipe=SimpleNamespace(scheduler=scheduler))
    loss = compute_loss(lambda *args: v_hat, components, inputs)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-4, atol=0)
    # and the weight matters: the plain x0 MSE is far from it
    plain = ((abar.sqrt() * noisy - (1 - abar).sqrt() * v_hat - x0) ** 2).mean()
    assert abs(float(plain) - float(expected)) > 0.05 * float(expected)


def test_about_a_tenth_of_the_captions_become_the_empty_prompt(identity_data):
    from fantasyid.data.dataset import ClipDataset, collate_items
    from fantasyid.training.config import DataConfig, ModelConfig
    from fantasyid.training.model import build_components
    from fantasyid.training.step import encode_text, prepare_inputs

    data = DataConfig(frames=5, height=64, width=64)
    assert data.text_dropout == 0.1  # METHOD.md: text dropped with probability 0.1 for CFG
    components = build_components(ModelConfig(init="tiny", gradient_checkpointing=False))
    dataset = ClipDataset(identity_data, frames=5, height=64, width=64, fps=8.0, views=6,
                          clip_image_size=components.image_encoder.config.image_size,
                          num_vertices=components.num_vertices)
    count = 60
    batch = collate_items([dataset[(0, 0)]] * count)
    batch["position"] = list(range(count))  # 60 samples of the stream, each with its own draws
    batch["caption"] = ["a person talks to the camera"] * count
    cpu = torch.device("cpu")
    states = prepare_inputs(components, batch, data, seed=3, device=cpu).text_states  # (B, L, D)
    empty, caption = encode_text(components.pipe, ["", batch["caption"][0]], cpu, torch.float32)
    dropped = [bool(torch.allclose(s, empty, atol=1e-5)) for s in states]
    kept = [bool(torch.allclose(s, caption, atol=1e-5)) for s in states]
    assert all(d != k for d, k in zip(dropped, kept))  # each sample has one of the two, never anything else
    assert 2 <= sum(dropped) <= 13  # Binomial(60, 0.1): mean 6, outside [2, 13] with probability < 1%
