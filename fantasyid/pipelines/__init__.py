"""Pipelines: :class:`FantasyIDPipeline` (identity-preserving image-to-video on CogVideoX)."""

from __future__ import annotations

import importlib

_LAZY = {
    "FantasyIDPipeline": "pipeline_fantasyid",
    "FantasyIDPipelineOutput": "pipeline_fantasyid",
    "IdentityInputs": "pipeline_fantasyid",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
