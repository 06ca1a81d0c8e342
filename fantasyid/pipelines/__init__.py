"""Pipelines: :class:`FantasyIDPipeline` (identity-preserving image-to-video on CogVideoX)."""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "FantasyIDPipeline": "pipeline_fantasyid",
    "FantasyIDPipelineOutput": "pipeline_fantasyid",
    "IdentityInputs": "pipeline_fantasyid",
}

__all__ = tuple(sorted(_LAZY))
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
