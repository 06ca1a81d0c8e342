"""``fantasyid prep merge OUT``: every finished shard → ``OUT/manifest.parquet`` + ``OUT/report.md`` + PNG plots.

The report's tables are pandas DataFrames (written with ``DataFrame.to_markdown``): clips and videos kept and
rejected, rejections per reason (numbers stripped, so that "face score 0.52 < 0.9" and "face score 0.61 < 0.9"
count together), the stage numbers of kept and rejected clips, and the pose coverage of the chosen views. Plots:
face score, text fraction, yaw/pitch of the chosen views.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.data.caption import missing_captions_warning
from fantasyid.data.dedup import mark_duplicates
from fantasyid.data.manifest import frame_to_rows, read_manifest, read_manifest_metadata, write_manifest
from fantasyid.errors import InputError, require
from fantasyid.io import atomic_path, write_text

#: Reason patterns → the category the report counts them under (first match wins).
REASON_CATEGORIES = (
    (r"^no face in any", "no face"),
    (r"^no face in", "face missing in too many frames"),
    (r"^several faces", "several faces"),
    (r"^another person", "another person"),
    (r"^face score", "face score below threshold"),
    (r"^face size", "face too small"),
    (r"^text in", "text / subtitles"),
    (r"^static face", "static face (no motion)"),
    (r"^duplicate of", "duplicate of another clip"),
    (r"^only \d+ face views", "too few views"),
    (r"^no caption", "no caption"),
    (r"shorter than one clip", "too short"),
    (r"^resolution", "resolution too large"),
    (r"^(file not found|empty file|no video stream|cannot open|no frames|decoding stopped|unknown frame rate)",
     "unreadable / not a video"),
)  # fmt: skip


#: The option that loosens each filter (named in the warning when a filter rejects every clip).
FILTER_OPTIONS = {
    "face score below threshold": "--min-face-score", "face too small": "--min-face-size",
    "face missing in too many frames": "--max-no-face", "several faces": "--max-multi-face",
    "another person": "--min-same-person", "text / subtitles": "--max-text", "too short": "--frames/--fps",
    "no caption": "--captioner or a caption file", "resolution too large": "--max-side",
}  # fmt: skip


def rejected_everything(reasons: Mapping[str, int], rejected: int, total: int) -> str:
    """The warning when no clip was kept (``''`` otherwise): every filter that rejected clips, with its count and
    the option that loosens it, most clips first."""
    if total == 0 or rejected < total:
        return ""
    counts: Counter[str] = Counter()
    for reason, clips in reasons.items():
        counts[reason_category(reason)] += clips
    parts = [f"{name} {clips}" + (f" ({FILTER_OPTIONS[name]})" if name in FILTER_OPTIONS else "")
             for name, clips in counts.most_common()]  # fmt: skip
    return f"every clip was rejected (0 of {total} kept): " + ", ".join(parts)


@dataclass
class MergeResult:
    manifest: Path
    report: Path
    plots: list[Path] = field(default_factory=list)
    clips: int = 0
    kept: int = 0
    warnings: list[str] = field(default_factory=list)


def reason_category(reason: str) -> str:
    """The report's category of a reject reason ('' for kept clips)."""
    if not reason:
        return ""
    for pattern, name in REASON_CATEGORIES:
        if re.search(pattern, reason):
            return name
    return re.sub(r"[\d.]+", "N", reason)


def merge_shards(out_dir: str | os.PathLike[str]) -> MergeResult:
    """Concatenate the shards of ``out_dir`` (all must be finished) into ``manifest.parquet`` and write the report."""
    pd = require("pandas", "data", "merging manifests")
    out_dir = Path(out_dir)
    info_path = out_dir / "prep.json"
    if not info_path.is_file():
        raise InputError(f"'{out_dir}' holds no prep output (no prep.json)",
                         hint="run `fantasyid prep VIDEOS --out DIR` first")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    num_shards = int(info["num_shards"])
    missing = [i for i in range(num_shards) if not (out_dir / "shards" / f"{i:05d}.done").is_file()]
    if missing:
        listed = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise InputError(
            f"{len(missing)} of {num_shards} shards are not finished ({listed})",
            hint=f"run `fantasyid prep … --out {out_dir} --num-shards {num_shards} --shard I` for each, then merge",
        )
    frames, environments = [], []
    for index in range(num_shards):
        path = out_dir / "shards" / f"{index:05d}.parquet"
        meta = read_manifest_metadata(path)
        if meta["settings"].get("fingerprint") != info["fingerprint"]:
            raise InputError(f"shard {path.name} was made with other settings than {info_path.name} records")
        frames.append(read_manifest(path))
        environments.append(meta["settings"].get("environment") or {})
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.sort_values(["source_path", "clip_start", "clip_end", "clip_id"], kind="stable", ignore_index=True)
    settings = {**info["settings"], "fingerprint": info["fingerprint"], "num_shards": num_shards,
                "environment": environments[0]}  # fmt: skip
    rows = frame_to_rows(frame)
    mark_duplicates(rows, out_dir)  # copies of one footage under other names (other shards): one is kept
    frame["keep"], frame["reject_reason"] = [r["keep"] for r in rows], [r["reject_reason"] for r in rows]
    manifest = write_manifest(rows, out_dir / "manifest.parquet", settings=settings)
    plots = write_plots(frame, out_dir, info["settings"])
    report = write_text(out_dir / "report.md",
                        report_markdown(frame, info["settings"], plots, out_dir, environments))  # fmt: skip
    warnings = [w for w in (caption_warning(frame),) if w]
    return MergeResult(manifest, report, plots, clips=len(frame), kept=int(frame["keep"].sum()), warnings=warnings)


# ----------------------------------------------------------------------------------------------------------------
# Tables (pandas)


def summary_table(frame):
    """Clips and videos: total, kept, rejected."""
    pd = require("pandas", "data", "prep reports")
    videos = frame.groupby("source_path")["keep"].any()
    return pd.DataFrame(
        {"total": [len(frame), len(videos)], "kept": [int(frame["keep"].sum()), int(videos.sum())]},
        index=pd.Index(["clips", "videos with a kept clip"], name=""),
    ).assign(
        rejected=lambda t: t["total"] - t["kept"],
        kept_share=lambda t: (t["kept"] / t["total"].clip(lower=1)).round(3),
    )


def reasons_table(frame):
    """Rejected clips per reason category, most frequent first, with an example reason."""
    rejected = frame.loc[~frame["keep"], ["reject_reason"]]
    rejected = rejected.assign(category=rejected["reject_reason"].map(reason_category))
    if rejected.empty:
        return rejected.assign(clips=[]).set_index("category")[["clips"]]
    table = rejected.groupby("category").agg(clips=("reject_reason", "size"), example=("reject_reason", "first"))
    table["share"] = (table["clips"] / len(frame)).round(3)
    return table.sort_values(["clips"], ascending=False, kind="stable")


def stage_table(frame):
    """Median stage numbers of kept and rejected clips (over clips where the stage ran)."""
    columns = ["face_score_mean", "face_score_min", "face_size_min", "face_frames_none", "face_frames_multi",
               "face_frames_other", "text_fraction", "text_area"]  # fmt: skip
    ran = frame[frame["face_frames"] > 0]
    table = ran.groupby(ran["keep"].map({True: "kept", False: "rejected"}))[columns].median().T
    table.index.name = "median of"
    return table.round(3)


def views_table(frame):
    """Pose coverage of the chosen views of kept clips: per-clip yaw and pitch span, averaged; views per clip."""
    pd = require("pandas", "data", "prep reports")
    kept = frame[frame["keep"]]
    records = []
    for views in kept["views"]:
        if len(views):
            yaws = [v["yaw"] for v in views]
            pitches = [v["pitch"] for v in views]
            records.append({"views": len(views), "yaw span": max(yaws) - min(yaws),
                            "pitch span": max(pitches) - min(pitches), "yaw min": min(yaws), "yaw max": max(yaws)})
    if not records:
        return pd.DataFrame()
    return pd.DataFrame(records).agg(["mean", "min", "max"]).T.round(1)


def caption_warning(frame) -> str | None:
    """The warning when kept clips have no caption (training on them would be unconditional), else ``None``."""
    kept = frame[frame["keep"]]
    return missing_captions_warning(int((kept["caption"] == "").sum()), len(kept))


def view_pose_table(frame, limit: int = 20):
    """Each chosen view's head pose (yaw/pitch/roll in degrees, selection order) of the first ``limit`` kept
    clips: the manifest's ``views`` column has them all."""
    pd = require("pandas", "data", "prep reports")
    kept = frame[frame["keep"]].head(limit)
    records = {}
    for clip, path, views in zip(kept["clip_id"], kept["source_path"], kept["views"]):
        poses = {f"view {k}": f"{v['yaw']:+.0f}/{v['pitch']:+.0f}/{v['roll']:+.0f}" for k, v in enumerate(views)}
        records[f"{Path(path).name} {clip[:8]}"] = poses
    table = pd.DataFrame.from_dict(records, orient="index")
    table.index.name = "clip (yaw/pitch/roll °)"
    return table


def caption_table(frame):
    """Kept clips by caption source, and by whether the 3D stage ran."""
    kept = frame[frame["keep"]]
    sources = kept["caption_source"].value_counts().rename("kept clips").to_frame()
    sources.index.name = "caption source"
    return sources


def shape_table(frame):
    kept = frame[frame["keep"]]
    status = kept["shape_status"].replace("", "not requested").value_counts().rename("kept clips").to_frame()
    status.index.name = "3D stage"
    return status


def timing_table(frame):
    """Per stage: clips it ran on, mean wall and CPU seconds per clip, and the totals (from ``stage_wall`` and
    ``stage_cpu``; ``probe`` is probing and decoding, shared among a video's clips)."""
    pd = require("pandas", "data", "prep reports")
    records = [{"stage": stage, "wall": float(wall), "cpu": float(cpu)}
               for stages, walls, cpus in zip(frame["stages"], frame["stage_wall"], frame["stage_cpu"])
               if len(walls) == len(stages) for stage, wall, cpu in zip(stages, walls, cpus)]  # fmt: skip
    if not records:
        return pd.DataFrame()
    times = pd.DataFrame(records)
    table = times.groupby("stage", sort=False).agg(clips=("wall", "size"), wall_per_clip_s=("wall", "mean"),
                                                   cpu_per_clip_s=("cpu", "mean"), wall_total_s=("wall", "sum"),
                                                   cpu_total_s=("cpu", "sum"))  # fmt: skip
    table.loc["all stages"] = [len(frame), *(table.iloc[:, 1:].sum().tolist())]
    table["clips"] = table["clips"].astype(int)
    return table.round(3)


def environment_table(environments: list[dict[str, Any]]):
    """Model files (sha256, first 16 hex digits) and package versions the rows were made with; a column per
    distinct environment when shards differ."""
    pd = require("pandas", "data", "prep reports")
    distinct = [e for i, e in enumerate(environments) if e not in environments[:i]]
    columns = {}
    for number, env in enumerate(distinct):
        values = {f"model {k}": v[:16] for k, v in env.get("models", {}).items()}
        values |= {f"package {k}": v for k, v in env.get("packages", {}).items()}
        columns["version" if len(distinct) == 1 else f"shards set {number + 1}"] = values
    table = pd.DataFrame(columns).fillna("—")
    table.index.name = "model / package"
    return table


def report_markdown(frame, settings: dict[str, Any], plots: list[Path], out_dir: Path,
                    environments: list[dict[str, Any]] | None = None) -> str:  # fmt: skip
    require("tabulate", "prep", "writing the prep report's tables")
    parts = ["# fantasyid prep report", ""]
    rejected = frame.loc[~frame["keep"], "reject_reason"].value_counts().to_dict()
    warning = rejected_everything(rejected, int((~frame["keep"]).sum()), len(frame))
    if warning:
        parts += [f"> **WARNING: {warning}.** The manifest has nothing to train on.", ""]
    detector = "RetinaFace" if settings.get("face_detector") == "retinaface" else "the pack's"
    parts += [f"Face pack `{settings.get('face_pack')}` ({detector} detector), "
              f"clips of {settings.get('clip_frames')} frames at "
              f"{settings.get('fps')} fps ({settings.get('clips')}), face score ≥ {settings.get('min_face_score')}, "
              f"text in at most {settings.get('max_text_fraction')} of OCR frames, {settings.get('views')} views.", ""]
    warning = caption_warning(frame)
    if warning:
        parts += [f"> **Warning:** {warning}.", ""]
    sections = (("Clips", summary_table(frame)), ("Rejections by reason", reasons_table(frame)),
                ("Stage numbers", stage_table(frame)), ("Chosen views (kept clips)", views_table(frame)),
                ("View poses (first 20 kept clips)", view_pose_table(frame)),
                ("Captions", caption_table(frame)), ("3D shapes", shape_table(frame)),
                ("Stage timings (seconds)", timing_table(frame)),
                ("Models and packages", environment_table(environments or [{}])))  # fmt: skip
    for title, table in sections:
        parts += [f"## {title}", "", table.to_markdown() if len(table) else "(none)", ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in plots] + [""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# Plots (matplotlib)


def write_plots(frame, out_dir: Path, settings: dict[str, Any]) -> list[Path]:
    """Histograms of face score and text fraction, and yaw/pitch of the chosen views, as PNG files."""
    matplotlib = require("matplotlib", "prep", "prep report plots")
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    written = []
    ran = frame[frame["face_frames"] > 0]
    text = frame[frame["text_frames"] > 0]
    views = [(v["yaw"], v["pitch"]) for vs in frame.loc[frame["keep"], "views"] for v in vs]
    for name, values, label, threshold in (
        ("face_score", ran["face_score_mean"], "mean main-face score per clip", settings.get("min_face_score")),
        ("text_fraction", text["text_fraction"], "fraction of OCR frames with text", settings.get("max_text_fraction")),
    ):
        if not len(values):
            continue
        figure = Figure(figsize=(5, 3.2), dpi=120)
        ax = figure.add_subplot(1, 1, 1)
        ax.hist(values.to_numpy(dtype=float), bins=20, range=(0.0, 1.0), color="#4477aa")
        if threshold is not None:
            ax.axvline(float(threshold), color="#cc3311", linestyle="--", label="threshold")
            ax.legend(fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("clips")
        figure.tight_layout()
        written.append(_save(figure, out_dir / "plots" / f"{name}.png"))
    if views:
        yaw, pitch = np.asarray(views, dtype=float).T  # (2, N)
        figure = Figure(figsize=(7, 3.2), dpi=120)
        for k, (values, label) in enumerate(((yaw, "yaw (°)"), (pitch, "pitch (°)"))):
            ax = figure.add_subplot(1, 3, k + 1)
            ax.hist(values, bins=18, range=(-90, 90), color="#228833")
            ax.set_xlabel(label)
        ax = figure.add_subplot(1, 3, 3)
        ax.scatter(yaw, pitch, s=6, alpha=0.6)
        ax.set_xlabel("yaw (°)")
        ax.set_ylabel("pitch (°)")
        figure.suptitle("chosen views of kept clips", fontsize=9)
        figure.tight_layout()
        written.append(_save(figure, out_dir / "plots" / "view_pose.png"))
    return written


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
