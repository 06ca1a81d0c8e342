"""FantasyID models: the transformer with identity injection, the identity encoder, mesh utilities.

Submodules import torch and diffusers; import them directly (``from fantasyid.models.transformer_fantasyid import
FantasyIDTransformer3DModel``) or through the lazy names below.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "FantasyIDTransformer3DModel": "transformer_fantasyid",
    "IdentityAttention": "transformer_fantasyid",
    "IdentityKVCache": "transformer_fantasyid",
    "FantasyIDIdentityEncoder": "identity_encoder",
    "convert_released_state_dict": "convert",
    "identity_encoder_config": "configs",
    "transformer_config": "configs",
}

__all__ = tuple(sorted(_LAZY))
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
