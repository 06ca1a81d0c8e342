"""Named configurations: ``released`` (the authors' checkpoint), ``paper`` (the paper's text), ``tiny`` (CPU tests).

Each is a plain dict of constructor keys, so a configuration is data: ``FantasyIDTransformer3DModel(**
transformer_config("tiny"))``. See METHOD.md for where every number comes from.
"""

from __future__ import annotations

import copy

from ..errors import ConfigError

CONFIG_NAMES = ("released", "paper", "tiny")

# CogVideoX-5B image-to-video (THUDM/CogVideoX-5b-I2V transformer/config.json).
_COGVIDEOX_5B_I2V = {
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 32,
    "max_text_seq_length": 226,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-5,
    "num_attention_heads": 48,
    "num_layers": 42,
    "out_channels": 16,
    "patch_size": 2,
    "sample_frames": 49,
    "sample_height": 60,
    "sample_width": 90,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_learned_positional_embeddings": True,
    "use_rotary_positional_embeddings": True,
}

_TRANSFORMER_CONFIGS = {
    # The release: 42 identity cross-attentions (16 heads × 128) on 2048-wide identity tokens, no F_l.
    "released": {
        **_COGVIDEOX_5B_I2V,
        "identity_dim": 2048,
        "identity_num_heads": 16,
        "identity_head_dim": 128,
        "identity_interval": 1,
        "identity_refiner": None,
    },
    # The paper: the same injection followed by F_l (conv over the token grid + zero-gain norm).
    "paper": {
        **_COGVIDEOX_5B_I2V,
        "identity_dim": 2048,
        "identity_num_heads": 16,
        "identity_head_dim": 128,
        "identity_interval": 1,
        "identity_refiner": "conv",
        "identity_refiner_kernel_size": 3,
    },
    # Two blocks of width 32 (head_dim 16: the 3-D RoPE splits it 4:6:6); 8 latent channels = 4 noise + 4 image channels (I2V), 9 frames → 3 latent frames.
    "tiny": {
        **_COGVIDEOX_5B_I2V,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "in_channels": 8,
        "out_channels": 4,
        "num_layers": 2,
        "time_embed_dim": 8,
        "text_embed_dim": 16,
        "max_text_seq_length": 8,
        "sample_frames": 9,
        "sample_height": 8,
        "sample_width": 8,
        "identity_dim": 16,
        "identity_num_heads": 2,
        "identity_head_dim": 4,
        "identity_interval": 1,
        "identity_refiner": None,
    },
}


def _check_name(name: str) -> None:
    if name not in CONFIG_NAMES:
        raise ConfigError(f"unknown configuration {name!r}", hint=f"choose one of: {', '.join(CONFIG_NAMES)}")


def transformer_config(name: str) -> dict:
    """Constructor keys of :class:`~fantasyid.models.transformer_fantasyid.FantasyIDTransformer3DModel`."""
    _check_name(name)
    return copy.deepcopy(_TRANSFORMER_CONFIGS[name])


# ---------------------------------------------------------------------------------------------------------------
# Identity encoder configurations (identity_encoder_config, tiny mesh) follow below.
