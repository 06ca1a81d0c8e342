"""Identity split by head pose: RS (the cosine between the reference's and each frame's face embedding, the face
pack's ArcFace) per yaw bin, so a run's identity on profiles is seen apart from its identity on frontal faces.

Bins of ``|yaw|`` (the face stack's head pose, :attr:`fantasyid.face.analysis.Face.pose`, degrees from the five
landmarks; see :mod:`fantasyid.face.pose` for its accuracy):

* **frontal**: ``|yaw| < 30°``;
* **three-quarter**: ``30° ≤ |yaw| ≤ 60°``;
* **profile**: ``|yaw| > 60°``.

Per video: the mean RS of the frames in each bin (frames with a face only) and how many frames fell in it. Per run:
the mean over the videos that have frames in that bin of their bin means (the RS rule: every video weighs the
same), and the frames summed. These are extra columns: the protocols' own numbers are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: (name, low, high) of each yaw bin, in degrees of |yaw|; see the module docstring for the edges.
YAW_BINS: tuple[tuple[str, float, float], ...] = (
    ("frontal", 0.0, 30.0),
    ("three_quarter", 30.0, 60.0),
    ("profile", 60.0, math.inf),
)
BIN_TITLES = {"frontal": "frontal <30°", "three_quarter": "three-quarter 30–60°", "profile": "profile >60°"}
#: The keys a video and a run carry: ``rs_<bin>`` (mean, or None) and ``frames_<bin>`` (count).
POSE_KEYS: tuple[str, ...] = tuple(f"{kind}_{name}" for name, _, _ in YAW_BINS for kind in ("rs", "frames"))


def yaw_bin(yaw: float) -> str:
    """The bin of a head turned by ``yaw`` degrees (either side)."""
    turn = abs(float(yaw))
    if turn < 30.0:
        return "frontal"
    return "three_quarter" if turn <= 60.0 else "profile"


def video_pose_split(similarities: Sequence[float], yaws: Sequence[float]) -> dict[str, float | int | None]:
    """A video's RS per yaw bin from its frames' similarities and yaws (the frames with a face, in any order)."""
    if len(similarities) != len(yaws):
        raise ValueError(f"{len(similarities)} similarities but {len(yaws)} yaws")
    groups: dict[str, list[float]] = {name: [] for name, _, _ in YAW_BINS}
    for similarity, yaw in zip(similarities, yaws):
        groups[yaw_bin(yaw)].append(float(similarity))
    out: dict[str, float | int | None] = {}
    for name, values in groups.items():
        out[f"rs_{name}"] = float(np.mean(values)) if values else None
        out[f"frames_{name}"] = len(values)
    return out


def run_pose_split(videos: Iterable[Mapping[str, Any]]) -> dict[str, float | int | None]:
    """A run's RS per yaw bin: the mean over its videos' bin means (videos without frames in a bin left out)."""
    videos = [v for v in videos if v]
    if not videos:
        return {}
    out: dict[str, float | int | None] = {}
    for name, _, _ in YAW_BINS:
        means = [v[f"rs_{name}"] for v in videos if v.get(f"rs_{name}") is not None]
        out[f"rs_{name}"] = float(np.mean(means)) if means else None
        out[f"frames_{name}"] = int(sum(v.get(f"frames_{name}") or 0 for v in videos))
    return out


def faces_pose_split(faces: Iterable[Any], reference_embedding: np.ndarray | None) -> dict[str, float | int | None]:
    """:func:`video_pose_split` of detected faces (:class:`~fantasyid.face.analysis.Face`, None for no face)
    against the reference's embedding; empty without a reference."""
    from fantasyid.metrics.identity import cosine

    if reference_embedding is None:
        return {}
    present = [face for face in faces if face is not None and getattr(face, "embedding", None) is not None]
    return video_pose_split([cosine(reference_embedding, f.embedding) for f in present],
                            [float(f.pose.yaw) for f in present])


def markdown_section(runs: Sequence[Any]) -> list[str]:
    """Lines of the tables' "identity by head pose" section (runs with a pose split only); empty without one."""
    rows = [run for run in runs if getattr(run, "pose", None)]
    if not rows:
        return []
    header = "| Method | " + " | ".join(f"RS {BIN_TITLES[name]} (frames)" for name, _, _ in YAW_BINS) + " |"
    lines = ["", "## Identity by head pose (RS per yaw bin)", "",
             "RS (face pack ArcFace, cosine to the reference) over the frames whose |yaw| falls in each bin; mean over "
             "videos of their bin means. Bins: frontal |yaw| < 30°, three-quarter 30–60°, profile > 60° (head pose "
             "from the five landmarks).", "", header, "|:--" + "|:-:" * len(YAW_BINS) + "|"]
    for run in rows:
        cells = []
        for name, _, _ in YAW_BINS:
            value = run.pose.get(f"rs_{name}")
            cells.append(f"{'–' if value is None else f'{value:.3f}'} ({run.pose.get(f'frames_{name}', 0)})")
        lines.append(f"| {run.name} | " + " | ".join(cells) + " |")
    return lines


def write_pose_plot(runs: Sequence[Any], path: Path) -> Path | None:
    """A grouped bar chart of each run's RS per yaw bin (``pose_split.png``); None without matplotlib or data."""
    rows = [run for run in runs if getattr(run, "pose", None)]
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from fantasyid.io import atomic_path

    width = 0.8 / len(rows)
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    for offset, run in enumerate(rows):
        values = [run.pose.get(f"rs_{name}") for name, _, _ in YAW_BINS]
        positions = [i + (offset - (len(rows) - 1) / 2) * width for i in range(len(YAW_BINS))]
        bars = axes.bar(positions, [np.nan if v is None else v for v in values], width, label=run.name)
        counts = [f"n={run.pose.get(f'frames_{name}', 0)}" for name, _, _ in YAW_BINS]
        axes.bar_label(bars, counts, fontsize="x-small")  # frames per bin (n=0: no bar)
    axes.set_xticks(range(len(YAW_BINS)), [f"{BIN_TITLES[name]} (|yaw|)" for name, _, _ in YAW_BINS])
    axes.set_ylim(0.0, 1.1)
    axes.set_ylabel("RS (ArcFace cosine to the reference)")
    axes.set_title("Identity by head pose")
    axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
    return Path(path)
