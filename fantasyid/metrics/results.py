"""What ``fantasyid eval`` measures, as plain data: per video, per run (one table row) and the whole summary.

Both the evaluation (:mod:`fantasyid.metrics.evaluate`, :mod:`fantasyid.metrics.shards`) and the writers
(:mod:`fantasyid.metrics.tables`) import these classes from here, so neither imports the other's module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid import __version__
from fantasyid.errors import ConfigError, InputError, NoFaceError

#: Metric names in the paper's column order (Tables 2 and 3).
METRIC_NAMES = ("fid", "rs", "ifs", "fm")


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """``"rs,ifs,fid,fm"`` (or a list) → the metric names in the paper's column order; unknown names are an error."""
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [str(item).strip().lower() for item in items if str(item).strip()]
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown metric name{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            hint="choose from rs,ifs,fid,fm, comma-separated",
        )
    if not names:
        raise ConfigError("no metric requested", hint="pass for example --metrics rs,ifs,fid,fm")
    return tuple(name for name in METRIC_NAMES if name in names)


def mean_over_videos(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are present (every video weighs the same); None when none is."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


@dataclass
class VideoResult:
    """Everything measured on one video."""

    run: str
    path: Path
    status: str = "ok"  #: ok · partial (decoding stopped early) · no_face · empty · unreadable
    message: str = ""  #: why a video is not ``ok``
    reference: Path | None = None
    frames: int = 0  #: frames evaluated
    frames_without_face: int = 0
    frames_multiple_faces: int = 0  #: frames with more than one face (the largest was used)
    rs: float | None = None
    ifs: float | None = None
    fm: float | None = None
    ifs_pairs: int = 0  #: pairs (t, t+1), t an evaluated frame, that both have a face
    fm_pairs: int = 0  #: the same pairs, measured by FM
    pairs_skipped: int = 0  #: pairs (t, t+1) left out of IFS and FM because one of the two frames has no face
    fid_crops: int = 0  #: generated face crops sent to FID
    #: another protocol's per-video values by metric key (``--protocol consisid``, …); empty for the paper's metrics
    scores: dict[str, float | None] = field(default_factory=dict)

    @property
    def readable(self) -> bool:
        """False for videos that produced no frame."""
        return self.status not in ("empty", "unreadable")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON and CSV."""
        return {
            "run": self.run,
            "video": str(self.path),
            "status": self.status,
            "message": self.message,
            "reference": None if self.reference is None else str(self.reference),
            "frames": self.frames,
            "frames_without_face": self.frames_without_face,
            "frames_multiple_faces": self.frames_multiple_faces,
            "rs": self.rs,
            "ifs": self.ifs,
            "fm": self.fm,
            "ifs_pairs": self.ifs_pairs,
            "fm_pairs": self.fm_pairs,
            "pairs_skipped": self.pairs_skipped,
            "fid_crops": self.fid_crops,
            **({"scores": dict(self.scores)} if self.scores else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoResult:
        """The inverse of :meth:`to_dict` (floats round-trip exactly through JSON)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["path"] = Path(data["video"])
        values["reference"] = None if data.get("reference") is None else Path(data["reference"])
        return cls(**values)


@dataclass
class RunResult:
    """One table row: a run folder (a method or an ablation) and its metrics."""

    name: str
    path: Path
    videos: list[VideoResult] = field(default_factory=list)
    rs: float | None = None
    ifs: float | None = None
    fid: float | None = None
    fm: float | None = None
    fid_reference_crops: int = 0
    fid_generated_crops: int = 0
    warnings: list[str] = field(default_factory=list)
    #: another protocol's run values by key (its metrics, and ``total`` where the protocol has one)
    scores: dict[str, float | None] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Frames evaluated over all videos."""
        return sum(v.frames for v in self.videos)

    @property
    def frames_without_face(self) -> int:
        """Evaluated frames in which no face was found."""
        return sum(v.frames_without_face for v in self.videos)

    @property
    def pairs_skipped(self) -> int:
        """Frame pairs left out of IFS and FM because a frame of the pair has no face."""
        return sum(v.pairs_skipped for v in self.videos)

    @property
    def videos_unreadable(self) -> int:
        """Videos that could not be read or had no frame."""
        return sum(not v.readable for v in self.videos)

    def to_dict(self, metrics: Sequence[str]) -> dict[str, Any]:
        """The run's entry in ``summary.json``."""
        out: dict[str, Any] = {"name": self.name, "path": str(self.path)}
        for name in METRIC_NAMES if set(metrics) & set(METRIC_NAMES) else ():
            out[name] = getattr(self, name) if name in metrics else None
        for name in metrics:  # another protocol's keys
            if name not in METRIC_NAMES:
                out[name] = self.scores.get(name)
        out.update(
            videos=len(self.videos),
            videos_unreadable=self.videos_unreadable,
            videos_partial=sum(v.status == "partial" for v in self.videos),
            videos_without_face=sum(v.status == "no_face" for v in self.videos),
            frames=self.frames,
            frames_without_face=self.frames_without_face,
            frames_multiple_faces=sum(v.frames_multiple_faces for v in self.videos),
            pairs_skipped=self.pairs_skipped,
        )
        if "fid" in metrics:
            out.update(fid_reference_crops=self.fid_reference_crops, fid_generated_crops=self.fid_generated_crops)
        out["warnings"] = list(self.warnings)
        return out

    def aggregate(self, metrics: Sequence[str]) -> None:
        """RS, IFS and FM of the run: the means over its videos of their own means. Adds the run's warnings about
        its videos, missing faces and skipped pairs (call once, after FID's own warnings). Another protocol's run
        values are set by :func:`fantasyid.metrics.protocols.evaluate.aggregate_run` before this call."""
        self.rs = mean_over_videos([v.rs for v in self.videos]) if "rs" in metrics else None
        self.ifs = mean_over_videos([v.ifs for v in self.videos]) if "ifs" in metrics else None
        self.fm = mean_over_videos([v.fm for v in self.videos]) if "fm" in metrics else None
        for video in self.videos:
            if video.status != "ok":
                self.warnings.append(f"{video.path.name}: {video.status}: {video.message}")
        if self.frames_without_face:
            self.warnings.append(f"{self.frames_without_face} of {self.frames} evaluated frames have no face")
        if self.pairs_skipped and ("ifs" in metrics or "fm" in metrics):
            self.warnings.append(
                f"{self.pairs_skipped} frame pairs (t, t+1) left out of IFS/FM: a frame of the pair has no face"
            )


@dataclass
class EvalSummary:
    """The result of an evaluation: one :class:`RunResult` per run folder plus how it was computed."""

    metrics: tuple[str, ...]
    runs: list[RunResult]
    provenance: dict[str, Any]
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  #: output files written, by kind
    protocol: str = "fantasyid"  #: the evaluation protocol (fantasyid.metrics.protocols.definitions)

    def to_dict(self) -> dict[str, Any]:
        """What ``summary.json`` holds."""
        return {
            "fantasyid_version": self.provenance.get("fantasyid_version", __version__),
            **({"protocol": self.protocol} if self.protocol != "fantasyid" else {}),
            "metrics": list(self.metrics),
            "runs": [run.to_dict(self.metrics) for run in self.runs],
            "settings": self.settings,
            "provenance": self.provenance,
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        """``summary.json`` as text."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)

    def check_measured(self, where: Path | None = None) -> None:
        """Raise a one-line error when nothing could be measured: no frame of any video read, or no face in any
        evaluated frame. (The outputs, when written, still say why for each video.)"""
        hint = f"see {where / 'per_video.csv'} for the reason of each video" if where is not None else None
        frames = sum(run.frames for run in self.runs)
        if frames == 0:
            raise InputError("no frame of any video could be read", hint=hint)
        if sum(run.frames_without_face for run in self.runs) == frames:
            raise NoFaceError(
                f"no face found in any of the {frames} evaluated frames: nothing to measure",
                hint=(hint + "; " if hint else "") + "check that the videos show a face",
            )
