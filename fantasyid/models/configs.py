"""Named configurations: ``released`` (the authors' checkpoint), ``paper`` (the paper's text), ``tiny`` (CPU tests).

Each is a plain dict of constructor keys, so a configuration is data: ``FantasyIDTransformer3DModel(**
transformer_config("tiny"))``. See METHOD.md for where every number comes from.
"""

from __future__ import annotations

import copy

from ..errors import ConfigError

CONFIG_NAMES = ("released", "paper", "tiny")

#: What a model brings to ``fantasyid generate`` when an option is not given: the release's sampling settings, and
#: the tiny model's. A saved model records its own (``model_index.json``: ``fantasyid.generation_defaults``).
GENERATION_DEFAULTS = {
    "released": {"steps": 50, "guidance": 6.0, "frames": 49, "height": 480, "width": 720, "fps": 8},
    "tiny": {"steps": 4, "guidance": 6.0, "frames": 9, "height": 64, "width": 64, "fps": 8},
}

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
    # The paper: identity tokens as wide as the DiT (METHOD.md "Identity width (pinned)": 48 heads × 64 = 3072),
    # the release's 16 × 128 injection, followed by F_l (conv over the token grid + zero-gain norm).
    "paper": {
        **_COGVIDEOX_5B_I2V,
        "identity_dim": 3072,
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

# The release's identity branch (FaceAbstractor, VertexSpiralNet, Conv1DReducer4 of the authors' code).
_IDENTITY_RELEASED = {
    "variant": "released",
    "clip_hidden_dim": 1024,
    "num_clip_layers": 5,
    "clip_grid_size": 24,
    "abstractor_dim": 1024,
    "abstractor_hidden_dim": 256,
    "abstractor_pool_size": 6,
    "abstractor_stage_depth": 3,
    "abstractor_readout_depth": 2,
    "abstractor_ffn_mult": 4,
    "face_abstractor_depth": 10,
    "face_token_dim": 2048,
    "num_latent_queries": 144,
    "id_embedding_dim": 1280,
    "num_id_embedding_tokens": 5,
    "vertex_dim": 128,
    "face_to_vertex_dims": [1024, 512, 256, 128],
    "fusion_num_layers": 6,
    "fusion_num_heads": 4,
    "fusion_head_dim": 32,
    "fusion_mlp_dim": 256,
    "mesh_num_vertices": [5023, 1256, 314],
    "spiral_length": 9,
    "vertex_encoder_channels": None,
    "depth_temperature": 10000.0,
    "reducer_channels": [256, 512, 1024, 2048],
    "reducer_kernel_sizes": [5, 5, 3, 3],
    "reducer_strides": [4, 4, 2, 2],
    "reducer_num_groups": 8,
    "identity_dim": 2048,
}

# What the paper variant changes: one C-Abstractor per EVA depth, a SpiralNet++ encoder of the vertices
# (3 → 64 → 128 over 5023 → 1256 → 314), stride-1 ResConv1D keeping the 314 vertex tokens and lifting C′ = 128 to
# the DiT's hidden size, 3072 (METHOD.md "Identity width (pinned)"; the release's first three widths, then 3072).
_IDENTITY_PAPER_CHANGES = {
    "variant": "paper",
    "face_abstractor_depth": 5,
    "vertex_encoder_channels": [64, 128],
    "reducer_channels": [256, 512, 1024, 3072],
    "reducer_kernel_sizes": [3, 3, 3, 3],
    "reducer_strides": [1, 1, 1, 1],
    "identity_dim": 3072,
}

# A few channels everywhere; 2 EVA depths on a 4×4 grid; the mesh of tiny_mesh_hierarchy(); identity width 16 like
# the tiny transformer.
_IDENTITY_TINY = {
    **_IDENTITY_RELEASED,
    "clip_hidden_dim": 32,
    "num_clip_layers": 2,
    "clip_grid_size": 4,
    "abstractor_dim": 32,
    "abstractor_hidden_dim": 16,
    "abstractor_pool_size": 2,
    "abstractor_stage_depth": 2,
    "abstractor_ffn_mult": 2,
    "face_abstractor_depth": 4,
    "face_token_dim": 16,
    "num_latent_queries": 4,
    "id_embedding_dim": 8,
    "num_id_embedding_tokens": 2,
    "vertex_dim": 16,
    "face_to_vertex_dims": [24, 16],
    "fusion_num_layers": 2,
    "fusion_num_heads": 2,
    "fusion_head_dim": 8,
    "fusion_mlp_dim": 32,
    "mesh_num_vertices": [642, 161, 41],
    "reducer_channels": [8, 8, 16, 16],
    "reducer_num_groups": 4,
    "identity_dim": 16,
}
# The tiny paper variant lifts to the tiny DiT's hidden size (2 heads × 16 = 32), as the full-size one does.
_IDENTITY_TINY_PAPER_CHANGES = {
    "variant": "paper",
    "face_abstractor_depth": 2,
    "vertex_encoder_channels": [8, 16],
    "reducer_channels": [8, 8, 16, 32],
    "reducer_kernel_sizes": [3, 3, 3, 3],
    "reducer_strides": [1, 1, 1, 1],
    "identity_dim": 32,
}

# Subdivisions and decimation factors of the tiny mesh (icosphere: 642 vertices).
TINY_MESH_SUBDIVISIONS = 3
TINY_MESH_FACTORS = (4, 4)


def identity_encoder_config(name: str, variant: str | None = None) -> dict:
    """Constructor keys of :class:`~fantasyid.models.identity_encoder.FantasyIDIdentityEncoder`.

    ``"released"`` and ``"paper"`` are full size (``variant``, if given, must agree with the name); ``"tiny"`` is a
    few channels wide, for either ``variant`` (default ``"released"``), on the mesh of :func:`tiny_mesh_hierarchy`.
    """
    _check_name(name)
    if name == "tiny":
        variant = variant or "released"
        if variant not in ("released", "paper"):
            raise ConfigError(f"unknown identity encoder variant {variant!r}", hint="use 'released' or 'paper'")
        config = {**_IDENTITY_TINY, **(_IDENTITY_TINY_PAPER_CHANGES if variant == "paper" else {})}
    else:
        if variant not in (None, name):
            raise ConfigError(f"the {name!r} configuration is the {name!r} variant, not {variant!r}")
        config = {**_IDENTITY_RELEASED, **(_IDENTITY_PAPER_CHANGES if name == "paper" else {})}
    return copy.deepcopy(config)


def tiny_mesh_hierarchy():
    """The mesh hierarchy the tiny identity encoder is built for: an icosphere decimated by 4, twice."""
    from .mesh import build_mesh_hierarchy, icosphere

    return build_mesh_hierarchy(*icosphere(TINY_MESH_SUBDIVISIONS), factors=TINY_MESH_FACTORS)
