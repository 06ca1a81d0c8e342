"""FantasyID models: the transformer with identity injection, the identity encoder, mesh utilities.

Submodules import torch and diffusers; import them directly (``from fantasyid.models.transformer_fantasyid import
FantasyIDTransformer3DModel``) or through the lazy names below.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "FantasyIDTransformer3DModel": "transformer_fantasyid",
    "IdentityAttention": "transformer_fantasyid",
    "IdentityKVCache": "transformer_fantasyid",
    "FantasyIDIdentityEncoder": "identity_encoder",
    "convert_released_state_dict": "convert",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
