"""Naming, requests and sidecars: the file stem of each item, what decides an item's video (its *request*: a
finished item counts as done only for the same request), and the JSON sidecar written beside each mp4."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError
from ..io import sha256_file
from .prompts import GenerationItem
from .settings import GenerateSettings

__all__ = ["SIDECAR_SUFFIX", "item_request", "item_seed", "model_key", "output_stem", "output_stems", "make_sidecar"]

SIDECAR_SUFFIX = ".json"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str, limit: int = 60) -> str:
    cleaned = _UNSAFE.sub("-", text).strip(".-_")[:limit]
    return cleaned or "video"


def output_stem(item: GenerationItem, seed: int, index: int) -> str:
    """A file stem that is safe on every file system and never a path: from ``name`` if given, else from the
    reference's stem, the item's number and the seed. The number is the row's own position in its prompt file
    (:attr:`GenerationItem.number`, bad rows counted), so fixing a bad row renames nothing; ``index`` (the position
    in ``items``) only for items made in code. Prompts never become file names."""
    if item.name:
        return _safe(item.name)
    number = item.number if item.number is not None else index
    return f"{number:04d}_{_safe(item.ref.stem, 40)}_s{seed}"


def item_seed(item: GenerationItem, settings: GenerateSettings) -> int:
    return settings.seed if item.seed is None else item.seed


def output_stems(items: Sequence[GenerationItem], settings: GenerateSettings) -> list[str]:
    """Every item's file stem; two items with the same stem are an error naming both (before anything runs)."""
    stems, first = [], {}
    for index, item in enumerate(items):
        stem = output_stem(item, item_seed(item, settings), index)
        key = stem.lower()  # case-insensitive file systems (macOS, Windows) would merge them too
        if key in first:
            other = first[key]
            raise InputError(
                f"{items[other].where(other)} and {item.where(index)} both write '{stem}.mp4'",
                hint="give the rows different names (the 'name' column), or leave 'name' empty for automatic names",
            )
        first[key] = index
        stems.append(stem)
    return stems


# ----------------------------------------------------------------------------------------------------- requests
def model_key(model: str, shape: str | Path | None = None, **others: Any) -> dict[str, Any]:
    """What identifies the model a video is made with, known before loading it: the ``--model`` given, the hash of
    the ``--shape`` file, and any other option that changes the video (``None`` values left out)."""
    key: dict[str, Any] = {"model": str(model), "shape_sha256": sha256_file(shape) if shape is not None else None}
    key.update({name: value for name, value in others.items() if value is not None})
    return key


def item_request(item: GenerationItem, seed: int, settings: GenerateSettings, model: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides an item's video; a finished item counts as done only for the same request."""
    return {
        "prompt": item.prompt,
        "negative_prompt": settings.negative_prompt,
        "seed": seed,
        "ref_sha256": sha256_file(item.ref),
        "model": model,
        "settings": settings.request(),
    }


def default_model_key(model_info: dict[str, Any]) -> dict[str, Any]:
    return {"model": str(model_info.get("model")), "shape_sha256": model_info.get("shape_sha256")}



def make_sidecar(item, seed, settings, model_info, extra, video: Path, seconds: float, request) -> dict[str, Any]:
    return {
        "status": "done",
        "video": video.name,
        "prompt": item.prompt,
        "negative_prompt": settings.negative_prompt,
        "seed": seed,
        "ref": str(item.ref.resolve()),
        "ref_sha256": request["ref_sha256"],
        "model": model_info,
        "settings": asdict(settings),
        "request": request,
        "identity": {k: v for k, v in extra.items() if k not in ("acceleration", "memory")},
        "acceleration": extra.get("acceleration"),  # cache/compile settings and what the cache skipped
        "memory": extra.get("memory"),  # the memory plan, its predicted peak (and the measured one on a GPU)
        "seconds": round(seconds, 3),
        "fantasyid_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

