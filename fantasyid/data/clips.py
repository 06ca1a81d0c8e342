"""From a source video to clip records: probe, cut into windows (fixed or shot boundaries), decode sampled frames.

A clip is a window of source frames that holds ``clip_frames`` training frames at ``fps`` (49 at 8 fps by default):
``round(clip_frames * source_fps / fps)`` source frames. Its training frames are ``start + round(i * source_fps /
fps)``. Only the frames the stages look at are decoded (face/views, OCR, caption), in one pass over the file.

A source that cannot be used (missing, empty, corrupt, audio only, too large, shorter than one clip) becomes one
rejected record with the reason; so does a shot shorter than one clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fantasyid.data.manifest import clip_id, new_row
from fantasyid.data.sources import VideoSource, shard_of
from fantasyid.data.video import FrameReader, VideoInfo, VideoReadError, evenly_spaced, probe


@dataclass
class ClipRecord:
    """One clip in flight: its manifest row (filled stage by stage) and the decoded frames the stages need."""

    row: dict[str, Any]
    face_indices: list[int] = field(default_factory=list)  #: source frames sampled for detection and views
    pose_indices: list[int] = field(default_factory=list)  #: the denser grid whose head poses the views come from
    ocr_indices: list[int] = field(default_factory=list)  #: source frames sampled for OCR
    caption_index: int = -1  #: source frame shown to the captioning model
    frames: dict[int, np.ndarray] = field(default_factory=dict)  #: source index → (H, W, 3) uint8 RGB
    faces: list[dict[str, Any]] = field(default_factory=list)  #: main face of each face frame (face stage)
    times: dict[str, tuple[float, float]] = field(default_factory=dict)  #: stage → (wall, CPU) seconds

    @property
    def id(self) -> str:
        return self.row["clip_id"]

    @property
    def keep(self) -> bool:
        return bool(self.row["keep"])

    def reject(self, reason: str) -> None:
        self.row["keep"] = False
        self.row["reject_reason"] = reason

    def ran(self, stage: str) -> None:
        self.row["stages"] = [*self.row["stages"], stage]

    def release(self) -> None:
        """Drop decoded frames and faces once the row is final (they are not part of the manifest); store the
        stage timings in the row, in the order of its ``stages``."""
        self.frames = {}
        self.faces = []
        self.row["stage_wall"] = [float(self.times.get(s, (0.0, 0.0))[0]) for s in self.row["stages"]]
        self.row["stage_cpu"] = [float(self.times.get(s, (0.0, 0.0))[1]) for s in self.row["stages"]]


def clip_length(source_fps: float, clip_frames: int, fps: float) -> int:
    """Source frames spanned by one clip of ``clip_frames`` training frames at ``fps``."""
    return max(1, int(round(clip_frames * source_fps / fps)))


def training_indices(start: int, source_fps: float, clip_frames: int, fps: float, end: int) -> list[int]:
    """The ``clip_frames`` source frames of a clip starting at ``start`` (resampled to ``fps``; never past ``end``)."""
    step = source_fps / fps
    return [min(end - 1, start + int(round(i * step))) for i in range(clip_frames)]


def fixed_windows(total: int, length: int) -> list[tuple[int, int]]:
    """Back-to-back windows of ``length`` frames from frame 0; the remainder shorter than a window is dropped."""
    return [(start, start + length) for start in range(0, total - length + 1, length)]


def scene_windows(path: str, total: int, threshold: float) -> list[tuple[int, int]]:
    """Shots found by PySceneDetect's content detector, as ``(start, end)`` source frames (whole video if none)."""
    from fantasyid.errors import require

    scenedetect = require("scenedetect", "prep", "shot detection (--clips scenes)")
    scenes = scenedetect.detect(path, scenedetect.ContentDetector(threshold=threshold))
    windows = [(int(a.frame_num), min(total, int(b.frame_num))) for a, b in scenes]
    return [(a, b) for a, b in windows if b > a] or [(0, total)]


def _base_row(source: VideoSource, num_shards: int, digest: str, **values: Any) -> dict[str, Any]:
    return new_row(
        source_path=source.path,
        source_sha256=digest,
        source_key=source.key,
        shard=shard_of(source.path, num_shards),
        caption=source.caption,
        caption_source=source.caption_source,
        **values,
    )


def _digest(path: str) -> str:
    """sha256 of a source file; empty when it cannot be read."""
    from fantasyid.io import sha256_file

    try:
        return sha256_file(path)
    except OSError:
        return ""


def rejected_source(source: VideoSource, num_shards: int, reason: str, info: VideoInfo | None = None) -> ClipRecord:
    """The one row of a source that yields no clip."""
    values: dict[str, Any] = {}
    digest = _digest(source.path)
    if info is not None:
        values = dict(fps=float(info.fps or 0.0), width=info.width, height=info.height)
    row = _base_row(source, num_shards, digest, clip_id=clip_id(source.path, 0, 0), keep=False, reject_reason=reason,
                    stages=["probe"], **values)  # fmt: skip
    return ClipRecord(row)


def plan_clips(source: VideoSource, settings: Any, num_shards: int) -> list[ClipRecord]:
    """Probe a source and cut it into clip records (frames not decoded yet). Never raises for a bad file.

    ``settings`` is a :class:`fantasyid.data.runner.PrepSettings`.
    """
    try:
        info = probe(source.path)
    except VideoReadError as exc:
        return [rejected_source(source, num_shards, exc.reason)]
    if info.frames <= 0:
        return [rejected_source(source, num_shards, "no frames", info)]
    if info.width <= 0 or info.height <= 0:
        return [rejected_source(source, num_shards, "no picture size in the stream", info)]
    if max(info.width, info.height) > settings.max_side:
        reason = f"resolution {info.width}x{info.height} over the limit of {settings.max_side} px"
        return [rejected_source(source, num_shards, reason, info)]
    source_fps = float(info.fps or 0.0)
    if source_fps <= 0:
        return [rejected_source(source, num_shards, "unknown frame rate", info)]
    length = clip_length(source_fps, settings.clip_frames, settings.fps)
    if settings.clips == "scenes":
        try:
            shots = scene_windows(source.path, info.frames, settings.scene_threshold)
        except Exception as exc:  # PySceneDetect wraps decoder failures in several types
            return [rejected_source(source, num_shards, f"shot detection failed: {str(exc).splitlines()[0][:160]}",
                                    info)]  # fmt: skip
        windows: list[tuple[int, int, str]] = []
        for start, end in shots:
            inside = fixed_windows(end - start, length)
            if not inside:
                windows.append((start, end, f"shot of {end - start} frames shorter than one clip ({length} frames)"))
            windows.extend((start + a, start + b, "") for a, b in inside)
    else:
        windows = [(a, b, "") for a, b in fixed_windows(info.frames, length)]
        if not windows:
            reason = (f"video of {info.frames} frames shorter than one clip ({settings.clip_frames} frames at "
                      f"{settings.fps:g} fps = {length} source frames)")  # fmt: skip
            return [rejected_source(source, num_shards, reason, info)]
    records = []
    digest = _digest(source.path)
    for start, end, reason in windows:
        row = _base_row(
            source, num_shards, digest, clip_id=clip_id(source.path, start, end), clip_start=start, clip_end=end,
            start_sec=start / source_fps, end_sec=end / source_fps, fps=source_fps, width=info.width,
            height=info.height, keep=not reason, reject_reason=reason, stages=["probe"],
        )  # fmt: skip
        record = ClipRecord(row)
        if not reason:
            frames = training_indices(start, source_fps, settings.clip_frames, settings.fps, end)
            record.face_indices = [frames[i] for i in evenly_spaced(len(frames), settings.sample_frames)]
            record.ocr_indices = [frames[i] for i in evenly_spaced(len(frames), settings.ocr_frames)]
            record.pose_indices = [frames[i] for i in evenly_spaced(len(frames), settings.pose_frames)]
            record.caption_index = frames[len(frames) // 2]
        records.append(record)
    return records


def decode_records(path: str, records: list[ClipRecord]) -> None:
    """Decode, in one pass over ``path``, every frame the kept records need, into their ``frames``.

    A record whose frames could not all be decoded (a file truncated mid-way) is rejected with the decoder's reason.
    """
    wanted = {i for r in records if r.keep for i in (*r.face_indices, *r.pose_indices, *r.ocr_indices,
                                                     r.caption_index) if i >= 0}  # fmt: skip
    if not wanted:
        return
    frames: dict[int, np.ndarray] = {}
    reader = FrameReader(path, keep=wanted)
    try:
        for index, frame in reader:
            frames[index] = frame
    except VideoReadError as exc:
        for record in records:
            if record.keep:
                record.reject(exc.reason)
        return
    for record in records:
        if not record.keep:
            continue
        needed = {*record.face_indices, *record.pose_indices, *record.ocr_indices, record.caption_index}
        missing = sorted(needed - set(frames))
        if missing:
            record.reject(reader.error or f"frame {missing[0]} could not be decoded")
            continue
        record.frames = {i: frames[i] for i in needed}
