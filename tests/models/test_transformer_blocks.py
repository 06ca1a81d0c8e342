"""The block loop with the identity injection inside FantasyIDBlock computes exactly what the explicit loop computes."""

from __future__ import annotations

import torch
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock

from fantasyid.models.configs import transformer_config
from fantasyid.models.transformer_fantasyid import FantasyIDBlock, FantasyIDTransformer3DModel


def _model_and_inputs(interval: int = 1, refiner=None):
    config = transformer_config("tiny")
    config.update(num_layers=3, identity_interval=interval, identity_refiner=refiner)
    torch.manual_seed(0)
    model = FantasyIDTransformer3DModel(**config).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.identity_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    latents = torch.randn(2, 3, config["in_channels"], 8, 8, generator=g)
    text = torch.randn(2, config["max_text_seq_length"], config["text_embed_dim"], generator=g)
    tokens = torch.randn(1, 5, config["identity_dim"], generator=g)
    return model, latents, text, torch.tensor([900, 900]), tokens


def _explicit_blocks(model, latents, text, timestep, cache):
    """The forward as written before FantasyIDBlock: CogVideoX's block, then the identity attention, in the loop."""
    p = model.config.patch_size
    grid = (latents.shape[1], latents.shape[3] // p, latents.shape[4] // p)
    emb = model.time_embedding(model.time_proj(timestep).to(latents.dtype), None)
    hidden = model.patch_embed(text, latents)
    encoder, hidden = hidden[:, : text.shape[1]], hidden[:, text.shape[1]:]  # (B, L, D), (B, F·H·W, D)
    for i, block in enumerate(model.transformer_blocks):
        hidden, encoder = CogVideoXBlock.forward(block, hidden, encoder, emb)
        if i % model.config.identity_interval == 0:
            j = i // model.config.identity_interval
            hidden = hidden + model.identity_attention[j](hidden, cache.kv[j], grid)
    return hidden


def test_blocks_are_fantasyid_blocks_without_identity_weights():
    model, *_ = _model_and_inputs()
    assert all(type(block) is FantasyIDBlock for block in model.transformer_blocks)
    assert not any(key.startswith("transformer_blocks.") and "identity" in key for key in model.state_dict())


def test_block_loop_is_bit_identical_to_the_explicit_loop():
    for interval, refiner in [(1, None), (2, "conv")]:
        model, latents, text, timestep, tokens = _model_and_inputs(interval, refiner)
        cache = model.prepare_identity(tokens)
        captured = {}
        handle = model.norm_final.register_forward_hook(lambda m, args, out: captured.setdefault("in", args[0]))
        with torch.no_grad():
            model(latents, text, timestep, identity_cache=cache)
            expected = _explicit_blocks(model, latents, text, timestep, cache)
        handle.remove()
        assert torch.equal(captured["in"], expected)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model, latents, text, timestep, tokens = _model_and_inputs()
        model.train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        out = model(latents, text, timestep, identity_tokens=tokens).sample
        out.square().mean().backward()
        grads.append([p.grad.clone() for p in model.identity_parameters()])
    for a, b in zip(*grads):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b)
