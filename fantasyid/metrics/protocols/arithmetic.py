"""The protocols' arithmetic, as their authors' code defines it: frame sampling, per-video scores, aggregation over
videos, normalisation and the weights of a total score. Pure NumPy (OpenCV for the motion score); every rule cites
the file it comes from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from fantasyid.errors import ConfigError, require
from fantasyid.metrics.protocols.definitions import Protocol

# ----------------------------------------------------------------------------------------------------------------
# Frame sampling


def sample_indices(rule: str, total: int, count: int | None) -> list[int]:
    """The frame indices a protocol reads from a video of ``total`` frames, in order, repeats kept (a short video
    gives repeated indices, and the authors' loops then score those frames twice).

    * ``linspace_int``: ``np.linspace(0, total - 1, count, dtype=int)`` (ConsisID get_facesim_fid.py, OpenS2V
      get_facesim.py / get_aesscore.py / get_gmescore.py ``sample_video_frames``): truncation, not rounding;
    * ``floor_stride``: ``int(i * total / count)`` for ``i < count`` (ConsisID get_clipscore.py);
    * ``floor_interval``: ``i * max(total // count, 1)`` for ``i < count``, frames past the end dropped (OpenS2V
      get_naturalscore.py ``extract_frames``: ``cap.read`` fails there);
    * ``all``: every frame (OpenS2V get_motionscore.py, ``num_frames=None``).
    """
    if total <= 0:
        return []
    if rule == "all" or count is None:
        return list(range(total))
    if rule == "linspace_int":
        return [int(i) for i in np.linspace(0, total - 1, count, dtype=int)]
    if rule == "floor_stride":
        return [int(i * total / count) for i in range(count)]
    if rule == "floor_interval":
        step = max(total // count, 1)
        return [i * step for i in range(count) if i * step < total]
    raise ConfigError(f"unknown frame sampling rule {rule!r}")


# ----------------------------------------------------------------------------------------------------------------
# Face similarity


def clamped_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """``max(0, cos(a, b))``: both ConsisID and OpenS2V clamp each frame's similarity at zero
    (``max(0.0, batch_cosine_similarity(...))``)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return max(0.0, float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))


def video_facesim(similarities: Sequence[float | None], *, drop_zero: bool) -> float:
    """A video's FaceSim from its sampled frames' clamped similarities (None: no face in that frame).

    The frames without a face are left out; a video with none scores 0.0 (``np.mean(scores) if scores else 0.0``).
    OpenS2V also leaves out frames whose clamped similarity is exactly 0 (``if cur_score != 0.0``, get_facesim.py);
    ConsisID keeps them (``drop_zero=False``).
    """
    kept = [s for s in similarities if s is not None and not (drop_zero and s == 0.0)]
    return float(np.mean(kept)) if kept else 0.0


def per_reference_fid(reference: np.ndarray, frames: Sequence[np.ndarray | None]) -> float:
    """ConsisID's "FID" of a video: the mean over the sampled frames with a face of the Fréchet distance between the
    frame's face features and the reference's (get_facesim_fid.py ``calculate_fid`` per frame).

    Each side is one feature vector, repeated twice (``get_activations``: ``np.repeat(activations, 2, axis=0)``),
    so both covariances are zero and the distance reduces to the squared Euclidean distance ``‖f_frame − f_ref‖²``.
    A video without a face scores 0.0, as in the authors' code.
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    values = [float(np.sum((np.asarray(f, dtype=np.float64).ravel() - ref) ** 2)) for f in frames if f is not None]
    return float(np.mean(values)) if values else 0.0


def frechet_of_pairs(real: np.ndarray, fake: np.ndarray) -> float:
    """The Fréchet distance of two feature sets by its definition (means, covariances, matrix square root); used
    by the tests to check :func:`per_reference_fid` against the general formula on duplicated rows."""
    from scipy import linalg

    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean) if np.iscomplexobj(covmean) else covmean
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


# ----------------------------------------------------------------------------------------------------------------
# OpenS2V MotionScore


def motion_score(frames: Sequence[np.ndarray]) -> float:
    """OpenS2V's MotionScore of a video (get_motionscore.py ``process_video``, ``motion_fb``): Farneback flow between
    consecutive frames (pyr_scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, sigma 1.2); each flow map resized
    to 16 px wide (INTER_AREA, height ``int(h * 16 / w)``); the maps averaged over time; the mean over pixels and
    both flow components (signed); its absolute value. Frames are RGB and converted with ``COLOR_BGR2GRAY`` as in
    the authors' code (decord gives RGB; the channel weights are swapped, which we keep for comparable numbers).
    """
    cv2 = require("cv2", "metrics", "the OpenS2V motion score")
    if len(frames) < 2:
        return 0.0
    previous = cv2.cvtColor(np.ascontiguousarray(frames[0]), cv2.COLOR_BGR2GRAY)
    maps = []
    for frame in frames[1:]:
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGR2GRAY)
        flow = cv2.calcOpticalFlowFarneback(previous, grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # (H, W, 2)
        height, width = flow.shape[:2]
        maps.append(cv2.resize(flow, (16, int(height * (16 / width))), interpolation=cv2.INTER_AREA))  # (h16, 16, 2)
        previous = grey
    return abs(float(np.mean(np.mean(np.array(maps), axis=0))))


# ----------------------------------------------------------------------------------------------------------------
# NaturalScore answers

_SCORE = re.compile(r"(?<![\d.])([1-5])(?:\.0+)?(?![\d.])")


def parse_natural_score(answer: str) -> float | None:
    """The 1–5 score in a judge's answer: the first stand-alone digit 1–5 (``"4"``, ``"Score: 3"``,
    ``"**2 — Likely AI-Generated**"``); None when there is none (the authors store the raw string, and the merge's
    ``float()`` would fail on anything else)."""
    found = _SCORE.search(answer or "")
    return float(found.group(1)) if found else None


# ----------------------------------------------------------------------------------------------------------------
# Aggregation over videos


def mean_over_videos(values: Sequence[float | None]) -> float | None:
    """Plain mean of the videos' values (ConsisID eval_all_in_once.py ``statistics.mean``); None without any."""
    present = [float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else None


def opens2v_scores(protocol: Protocol, per_video: Mapping[str, Sequence[float | None]]) -> dict[str, float | None]:
    """OpenS2V's run scores from per-video values (merge_result.py ``process_scores``):

    1. clip each video's value: aesthetics to [4, 7]; motion to ``min(|m|, 1)``; FaceSim, GmeScore to at most 1;
       NaturalScore to [1, 5];
    2. mean over the videos that have the value;
    3. min-max normalise with the same bounds: ``(mean − low) / (high − low)``;
    4. the total: ``Σ weight × normalised`` (human domain: 0.15 aesthetics, 0.15 motion, 0.25 FaceSim, 0.15
       GmeScore, 0.30 NaturalScore). A metric with no value counts as 0 in the authors' code; here the total is
       None then, so a missing judge is never mistaken for a score.

    Returns the normalised metrics (fractions; tables show percentages) and ``total``.
    """
    out: dict[str, float | None] = {}
    for key, (low, high) in protocol.bounds.items():
        values = [v for v in per_video.get(key, ()) if v is not None]
        if key == "motion":
            clipped = [min(abs(v), high) for v in values]
        elif key in ("aesthetics", "naturalscore"):
            clipped = [max(min(v, high), low) for v in values]
        else:
            clipped = [min(v, high) for v in values]
        out[key] = (float(np.mean(clipped)) - low) / (high - low) if clipped else None
    parts = [(w, out.get(k)) for k, w in protocol.total_weights.items()]
    out["total"] = None if any(v is None for _, v in parts) else float(sum(w * v for w, v in parts))
    return out
