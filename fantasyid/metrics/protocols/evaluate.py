"""``fantasyid eval --protocol consisid|opens2v-human``: another group's protocol over run folders, in the one-pass
design of :mod:`fantasyid.metrics.evaluate`.

Steps of :func:`evaluate_protocol_partial`: 1. check the arguments, import the scorers and check that every metric
of the protocol has one and that its weights are there (one line naming the model and how to get it, before anything
is decoded); 2. list and probe the videos of the shard; 3. find every reference (and prompt, where a metric reads it)
and detect each distinct reference's face once; 4. build the scorers (their models load here); 5. the pass: each
video decoded once into a :class:`~.scorer.VideoSample` whose faces are detected on demand at the protocol's
``det_size`` and cached, then every metric's scorer reads that sample; 6. a
:class:`~fantasyid.metrics.shards.Partial`. :func:`fantasyid.metrics.shards.finish` aggregates as the protocol does
(:mod:`.aggregate`), for one process and for merged shards alike.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid import __version__
from fantasyid.data.video import FrameReader, VideoReadError, probe
from fantasyid.errors import ConfigError, InputError, NoFaceError
from fantasyid.metrics.evaluate import (
    _collect_runs,
    _pack_provenance,
    _plan_runs,
    _Progress,
    check_reference_options,
    make_face_analyzer,
    resolve_reference,
)
from fantasyid.metrics.protocols.aggregate import table_keys
from fantasyid.metrics.protocols.definitions import Protocol, get_protocol
from fantasyid.metrics.protocols.scorer import (
    ProtocolScorer,
    ScorerOptions,
    VideoSample,
    build_scorer,
    load_scorers,
    scorer_key,
)
from fantasyid.metrics.protocols.weights import check_protocol_weights
from fantasyid.metrics.pose_split import faces_pose_split
from fantasyid.metrics.results import EvalSummary, VideoResult
from fantasyid.metrics.shards import Partial, check_shard, finish

#: ConsisID's and OpenS2V's retry when no face is found: the image padded by 25 % of its size on every side with
#: grey (128, 128, 128), landmarks shifted back (get_facesim_fid.py ``pad_np_bgr_image``, ``process_image``).
PAD_SCALE = 1.25
PAD_VALUE = 128


# ----------------------------------------------------------------------------------------------------------------
# Faces


def largest_face_padded(analyzer: Any, rgb: np.ndarray) -> tuple[Any | None, int]:
    """The largest face of ``rgb`` (a :class:`~fantasyid.face.analysis.Face`, coordinates in ``rgb``) and how many
    faces were found; when there is none, detection runs again on the grey-padded image (:data:`PAD_SCALE`)."""
    import cv2

    faces = analyzer.detect_frames([rgb])[0]
    if faces:
        return faces[0], len(faces)
    height, width = rgb.shape[:2]
    top, left = int(height * (PAD_SCALE - 1.0)), int(width * (PAD_SCALE - 1.0))
    padded = cv2.copyMakeBorder(np.ascontiguousarray(rgb), top, top, left, left, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE,) * 3)  # (H + 2 top, W + 2 left, 3)
    faces = analyzer.detect_frames([padded])[0]
    if not faces:
        return None, 0
    shift = np.array([left, top], dtype=np.float32)
    face = faces[0]
    return dataclasses.replace(face, bbox=face.bbox - np.tile(shift, 2), landmarks=face.landmarks - shift), len(faces)


class FaceLookup:
    """``face(i)`` of one video: the largest face of frame ``i``, detected on first use and cached (thread-safe);
    counts the frames looked up, those without a face and those with several."""

    def __init__(self, analyzer: Any, frames: Sequence[np.ndarray]):
        self.analyzer = analyzer
        self.frames = frames
        self.cache: dict[int, Any | None] = {}
        self.multiple = 0
        self._lock = threading.Lock()

    def __call__(self, index: int) -> Any | None:
        with self._lock:
            if index not in self.cache:
                face, count = largest_face_padded(self.analyzer, self.frames[index])
                self.cache[index] = face
                self.multiple += count > 1
            return self.cache[index]

    @property
    def without_face(self) -> int:
        return sum(face is None for face in self.cache.values())


@dataclasses.dataclass
class _Reference:
    key: str
    image: np.ndarray
    face: Any


def _load_reference(analyzer: Any, path: Path, video: Path) -> _Reference:
    from fantasyid.face.analysis import load_image

    image = load_image(path)
    face, _ = largest_face_padded(analyzer, image)
    if face is None:
        raise NoFaceError(
            f"no face found in the reference image {path} (reference of {video.name})",
            hint="use a reference photo where one face is clearly visible",
        )
    return _Reference(str(path.resolve()), image, face)


def resolve_prompt(video: Path) -> str | None:
    """The ``prompt`` of the JSON sidecar that ``fantasyid generate`` writes next to a video, if there is one."""
    for sidecar in (video.with_suffix(".json"), video.with_name(video.name + ".json")):
        if sidecar.is_file():
            try:
                data = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"cannot read the sidecar {sidecar}: {exc}") from exc
            prompt = data.get("prompt") if isinstance(data, dict) else None
            if isinstance(prompt, str) and prompt.strip():
                return prompt
    return None


# ----------------------------------------------------------------------------------------------------------------
# Scorers


def check_scorers(protocol: Protocol, weights: dict[str, str] | None = None) -> None:
    """Every metric of ``protocol`` has a registered scorer and its weights are found: else one line naming the
    model and how to get it (cheap: nothing is loaded)."""
    from fantasyid.metrics.protocols.weights import EVAL_WEIGHTS

    registry = load_scorers()
    for spec in protocol.metrics:
        if scorer_key(spec) not in registry:
            raise ConfigError(
                f"--protocol {protocol.name}: no scorer for {spec.title} (model {scorer_key(spec)!r}) in this version",
                hint=f"available: {', '.join(sorted(registry)) or 'none'}",
            )
    unknown = sorted(set(weights or {}) - set(EVAL_WEIGHTS))
    if unknown:
        raise ConfigError(f"--weights {', '.join(unknown)}: not a model of any protocol",
                          hint=f"known models: {', '.join(EVAL_WEIGHTS)}")
    check_protocol_weights(protocol, weights)


def build_scorers(protocol: Protocol, options: ScorerOptions) -> dict[str, ProtocolScorer]:
    """One scorer per model key of ``protocol`` (a model serving two metrics is loaded once)."""
    return {key: build_scorer(key, options) for key in dict.fromkeys(scorer_key(m) for m in protocol.metrics)}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _score_video(result: VideoResult, protocol: Protocol, scorers: dict[str, ProtocolScorer], analyzer: Any,
                 reference: _Reference | None, prompt: str) -> None:
    """Decode one video once, then every metric of the protocol reads the same sample; fills ``result``."""
    fps = probe(result.path).fps or 0.0
    reader = FrameReader(result.path)
    frames = [frame for _, frame in reader]  # every frame, RGB uint8 (H, W, 3)
    if not frames:
        result.status = "unreadable" if reader.error else "empty"
        result.message = reader.error or "the video has no frames"
        return
    if reader.error:
        result.status, result.message = "partial", reader.error
    lookup = FaceLookup(analyzer, frames)
    sample = VideoSample(
        name=result.path.name, frames=frames, fps=fps, prompt=prompt,
        reference=reference.image if reference is not None else np.zeros((0, 0, 3), np.uint8),
        face=lookup, reference_face=reference.face if reference is not None else None,
        reference_key=reference.key if reference is not None else "",
    )
    for spec in protocol.metrics:
        value = scorers[scorer_key(spec)].score(spec, protocol, sample)
        result.scores[spec.key] = _finite(value)
        if value is not None and result.scores[spec.key] is None:
            result.message = result.message or f"{spec.key} came out as {value}; reported as missing"
    faces = [lookup.cache[i] for i in sorted(lookup.cache)]  # the frames the face metrics read
    result.pose = faces_pose_split(faces, reference.face.embedding if reference is not None else None)
    result.frames = len(lookup.cache) if lookup.cache else len(frames)
    result.frames_without_face = lookup.without_face
    result.frames_multiple_faces = lookup.multiple
    if lookup.cache and result.frames_without_face == result.frames and result.status == "ok":
        result.status, result.message = "no_face", "no face in any frame a metric read"


# ----------------------------------------------------------------------------------------------------------------
# The evaluation


def evaluate_protocol_partial(
    run_dirs: Sequence[str | os.PathLike[str]],
    protocol: str | Protocol,
    *,
    ref: str | os.PathLike[str] | None = None,
    refs_dir: str | os.PathLike[str] | None = None,
    face_pack: str = "buffalo_sc",
    face_root: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    names: Sequence[str] | None = None,
    progress: Any | None = None,
    shard: int | None = None,
    num_shards: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    weights: dict[str, str] | None = None,
) -> Partial:
    """Steps 1 to 6 (see the module docstring) for shard ``shard`` of ``num_shards`` (all videos when both are None).

    ``weights`` maps model keys to explicit weight paths (``--weights curricularface=PATH``); the others are found
    by :mod:`.weights`. The other arguments are those of :func:`fantasyid.metrics.evaluate.evaluate_partial`; the
    face detector runs at the protocol's ``det_size`` and frames are sampled as each metric of the protocol says.
    """
    from fantasyid.metrics.parallel import ordered_map, plan_execution, thread_budget

    # 1. arguments, scorers and weights: before anything slow
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if protocol.name == "fantasyid":
        raise ConfigError("the fantasyid protocol is fantasyid.metrics.evaluate", hint="use evaluate_runs")
    weights = dict(weights or {})
    shard_index, shard_count = check_shard(shard, num_shards)
    ref_path, refs_path = check_reference_options(ref, refs_dir)
    check_scorers(protocol, weights)
    registry = load_scorers()
    needs_reference = any(registry[scorer_key(m)].needs_reference for m in protocol.metrics)
    needs_prompt = [m.title for m in protocol.metrics if registry[scorer_key(m)].needs_prompt]
    execution = plan_execution(device, workers, threads=threads)

    # 2. the shard's videos
    runs = _collect_runs(run_dirs, names)
    results, plans = _plan_runs(runs, None, shard_index, shard_count)
    execution = plan_execution(execution.device, workers, sum(len(plan) for plan in plans), threads)

    # 3. references and prompts, then each distinct reference's face once
    prompts: dict[Path, str] = {}
    reference_paths: dict[Path, Path] = {}
    for plan in plans:
        for result, _, _ in plan:
            if needs_reference:
                result.reference = resolve_reference(result.path, ref_path, refs_path)
                reference_paths[result.path] = result.reference
            prompt = resolve_prompt(result.path)
            if needs_prompt and prompt is None:
                raise InputError(
                    f"no prompt for {result.path}: --protocol {protocol.name} scores {', '.join(needs_prompt)} "
                    "against the prompt",
                    hint=f"give each video a JSON sidecar {result.path.stem}.json with a 'prompt' key "
                    "(fantasyid generate writes one)",
                )
            prompts[result.path] = prompt or ""
    analyzer, notes = make_face_analyzer(face_pack, face_root, recognition=True, det_size=protocol.det_size,
                                         providers=execution.providers, threads=execution.threads)
    references: dict[str, _Reference] = {}
    video_reference: dict[Path, _Reference] = {}
    for video, path in reference_paths.items():
        key = str(path.resolve())
        if key not in references:
            references[key] = _load_reference(analyzer, path, video)
        video_reference[video] = references[key]

    # 4. the scorers' models
    scorers = build_scorers(protocol, ScorerOptions(weights=weights, device=execution.device,
                                                    threads=execution.threads))

    # 5. the pass: whole videos, `execution.workers` at a time
    jobs = [(index, result) for index, plan in enumerate(plans) for result, _, _ in plan]
    bars = [_Progress(progress) for _ in results]
    for row, plan, bar in zip(results, plans, bars):
        bar.start(f"{row.name} ({protocol.name})", len(plan))

    def score_one(job: tuple[int, VideoResult]) -> None:
        index, result = job
        bars[index].describe(f"{results[index].name}: {result.path.name}")
        try:
            _score_video(result, protocol, scorers, analyzer, video_reference.get(result.path),
                         prompts.get(result.path, ""))
        except VideoReadError as exc:
            result.status, result.message = "unreadable", exc.reason
        bars[index].advance(1)

    with thread_budget(execution.threads):
        for _ in ordered_map(score_one, jobs, execution.workers):
            pass
    for bar in bars:
        bar.finish()

    # 6. the partial
    pack = _pack_provenance(analyzer, True)
    models = {key: scorer.provenance() for key, scorer in scorers.items()}
    settings = {
        "protocol": protocol.name,
        "protocol_title": protocol.title,
        "det_size": protocol.det_size,
        "aggregation": protocol.aggregation,
        "metrics": {m.key: {"title": m.title, "frames": m.frames, "count": m.count, "model": m.model,
                            "source": m.source} for m in protocol.metrics},
        "face_lookup": "largest face per frame (insightface detector at det_size); when none, again on the image "
        f"padded to {PAD_SCALE}× with grey, as the protocol's code does",
    }
    if protocol.total_weights:
        settings["total_weights"] = dict(protocol.total_weights)
        settings["bounds"] = {k: list(v) for k, v in protocol.bounds.items()}
    provenance: dict[str, Any] = {
        "fantasyid_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "face_pack": pack,
        "scorers": models,
        "execution": execution.describe(),
    }
    config = {
        "protocol": protocol.name,
        "metrics": list(table_keys(protocol)),
        "settings": settings,
        "models": {"face_pack": {k: v for k, v in pack.items() if k != "pack_dir"}, "scorers": models},
        "runs": [{"name": run.name, "path": str(run.path), "videos": [str(v) for v in run.videos]} for run in runs],
    }
    return Partial(
        shard=shard_index,
        num_shards=shard_count,
        config=json.loads(json.dumps(config)),
        provenance=json.loads(json.dumps(provenance)),
        notes=notes,
        videos=[video for row in results for video in row.videos],
        reference_of={str(v): ref.key for v, ref in video_reference.items()},
    )


def evaluate_protocol(
    run_dirs: Sequence[str | os.PathLike[str]],
    protocol: str | Protocol,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> EvalSummary:
    """Evaluate run folders under ``protocol`` in one process; write the tables into ``out_dir`` when given.
    ``options``: the keywords of :func:`evaluate_protocol_partial` but the shard."""
    if "shard" in options or "num_shards" in options:
        raise TypeError("evaluate_protocol evaluates every video: use evaluate_protocol_shard for one shard")
    summary = finish([evaluate_protocol_partial(run_dirs, protocol, **options)])
    if out_dir is not None:
        from fantasyid.metrics.tables import write_outputs

        summary.files = write_outputs(summary, Path(out_dir))
    return summary


def evaluate_protocol_shard(
    run_dirs: Sequence[str | os.PathLike[str]],
    protocol: str | Protocol,
    *,
    shard: int,
    num_shards: int,
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> Path:
    """Shard ``shard`` of ``num_shards`` under ``protocol``: its partial file in ``out_dir`` (merge with
    :func:`fantasyid.metrics.shards.merge_partials`)."""
    return evaluate_protocol_partial(run_dirs, protocol, shard=shard, num_shards=num_shards, **options).save(out_dir)
