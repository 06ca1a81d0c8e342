"""FantasyIDTransformer3DModel at tiny size: CogVideoX equivalence, identity effect, gradients, cache, round trip."""

from __future__ import annotations

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel

from fantasyid.errors import ConfigError
from fantasyid.models.configs import transformer_config
from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel, IdentityKVCache

IDENTITY_KEYS = ("identity_dim", "identity_num_heads", "identity_head_dim", "identity_interval", "identity_refiner")


def _base_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("identity_")}


def _inputs(config: dict, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = (config["sample_frames"] - 1) // config["temporal_compression_ratio"] + 1
    latents = torch.randn(batch, frames, config["in_channels"], config["sample_height"], config["sample_width"], generator=g)
    text = torch.randn(batch, config["max_text_seq_length"], config["text_embed_dim"], generator=g)
    timestep = torch.tensor([999, 10][:batch] + [500] * max(0, batch - 2))
    return latents, text, timestep


def _rope(model, latents):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    cfg = model.config
    _, frames, _, height, width = latents.shape
    gh, gw = height // cfg.patch_size, width // cfg.patch_size
    return get_3d_rotary_pos_embed(
        embed_dim=cfg.attention_head_dim,
        crops_coords=((0, 0), (gh, gw)),
        grid_size=(gh, gw),
        temporal_size=frames,
    )


def _randomise(module: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.fixture(scope="module")
def base_and_config():
    config = transformer_config("tiny")
    torch.manual_seed(0)
    base = CogVideoXTransformer3DModel(**_base_config(config)).eval()
    return base, config


def _fantasy(base, config, **overrides):
    identity = {k: config[k] for k in IDENTITY_KEYS}
    identity.update(overrides)
    return FantasyIDTransformer3DModel.from_cogvideox(base, **identity).eval()


def test_without_identity_equals_cogvideox(base_and_config):
    base, config = base_and_config
    model = _fantasy(base, config)
    latents, text, timestep = _inputs(config)
    rope = _rope(model, latents)
    with torch.no_grad():
        expected = base(latents, text, timestep, image_rotary_emb=rope).sample
        got = model(latents, text, timestep, image_rotary_emb=rope).sample
    assert got.shape == expected.shape == (2, 3, config["out_channels"], 8, 8)
    assert (got - expected).abs().max().item() <= 1e-5


def test_fresh_paper_variant_equals_cogvideox_with_identity(base_and_config):
    base, config = base_and_config
    model = _fantasy(base, config, identity_refiner="conv")
    latents, text, timestep = _inputs(config)
    identity = torch.randn(1, 5, config["identity_dim"])
    with torch.no_grad():
        expected = base(latents, text, timestep).sample
        got = model(latents, text, timestep, identity_tokens=identity).sample
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("refiner", [None, "conv"])
def test_identity_changes_output_and_gradients_reach_identity_parameters(base_and_config, refiner):
    base, config = base_and_config
    model = _fantasy(base, config, identity_refiner=refiner)
    for layer in model.identity_attention:
        _randomise(layer)
    latents, text, timestep = _inputs(config)
    identity = torch.randn(2, 5, config["identity_dim"], requires_grad=True)
    with torch.no_grad():
        plain = model(latents, text, timestep).sample
    out = model(latents, text, timestep, identity_tokens=identity).sample
    assert (out.detach() - plain).abs().max().item() > 1e-3
    out.square().mean().backward()
    names = [n for n, _ in model.named_parameters() if n.startswith("identity_attention.")]
    assert len(names) == sum(1 for _ in model.identity_parameters())
    for name, p in model.named_parameters():
        if name.startswith("identity_attention."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert identity.grad is not None and identity.grad.abs().sum() > 0


def test_cache_equals_tokens_and_broadcasts_one_identity(base_and_config):
    base, config = base_and_config
    model = _fantasy(base, config)
    for layer in model.identity_attention:
        _randomise(layer)
    latents, text, timestep = _inputs(config)
    identity = torch.randn(1, 7, config["identity_dim"])
    with torch.no_grad():
        cache = model.prepare_identity(identity)
        assert isinstance(cache, IdentityKVCache) and len(cache) == config["num_layers"]
        k, v = cache.kv[0]
        assert k.shape == v.shape == (1, config["identity_num_heads"], 7, config["identity_head_dim"])
        by_cache = model(latents, text, timestep, identity_cache=cache).sample
        by_tokens = model(latents, text, timestep, identity_tokens=identity.expand(2, -1, -1)).sample
    assert torch.allclose(by_cache, by_tokens, atol=1e-6)
    with pytest.raises(ValueError):
        model(latents, text, timestep, identity_tokens=identity, identity_cache=cache)


def test_interval_sets_number_of_injections(base_and_config):
    base, config = base_and_config
    model = _fantasy(base, config, identity_interval=2)
    assert model.num_identity_layers == 1
    with pytest.raises(ConfigError):
        _fantasy(base, config, identity_interval=0)
    with pytest.raises(ConfigError):
        FantasyIDTransformer3DModel.from_cogvideox(base, num_layers=3)


def test_save_and_load_round_trip_is_exact(tmp_path, base_and_config):
    base, config = base_and_config
    model = _fantasy(base, config, identity_refiner="conv")
    _randomise(model.identity_attention)
    model.save_pretrained(tmp_path / "transformer")
    loaded = FantasyIDTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    assert loaded.config.identity_refiner == "conv"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    latents, text, timestep = _inputs(config)
    identity = torch.randn(1, 3, config["identity_dim"])
    with torch.no_grad():
        assert torch.equal(
            model(latents, text, timestep, identity_tokens=identity).sample,
            loaded(latents, text, timestep, identity_tokens=identity).sample,
        )


def test_base_keys_keep_diffusers_names(base_and_config):
    base, config = base_and_config
    model = _fantasy(base, config)
    ours = {k for k in model.state_dict() if not k.startswith("identity_attention.")}
    assert ours == set(base.state_dict())
    per_layer = {k.split(".", 2)[2] for k in model.state_dict() if k.startswith("identity_attention.0.")}
    assert per_layer == {
        "norm_kv.weight", "norm_kv.bias", "norm_hidden.weight", "norm_hidden.bias",
        "to_q.weight", "to_kv.weight", "to_out.weight",
    }
