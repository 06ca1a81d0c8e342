"""From a source video to clip records: probe, cut into windows (fixed or shot boundaries), decode sampled frames.

A clip is a window of source frames that holds ``clip_frames`` training frames at ``fps`` (49 at 8 fps by default):
``round(clip_frames * source_fps / fps)`` source frames. Its training frames are ``start + round(i * source_fps /
fps)``. Only the frames the stages look at are decoded (face/views, face motion, OCR, caption), in one pass over
the file, and each clip is handed on as soon as its last frame is decoded (:func:`stream_records`): memory holds the
frames of one clip at a time, whatever the video's length.

With ``--clips scenes`` (the default) windows are cut inside the shots PySceneDetect finds, with its minimum shot
length at one frame so that a short shot is split off too (and then dropped as shorter than a clip): no window
straddles a cut.

A source that cannot be used (missing, empty, corrupt, audio only, too large, shorter than one clip) becomes one
rejected record with the reason; so does a shot shorter than one clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
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
    motion_pairs: list[tuple[int, int]] = field(default_factory=list)  #: (face frame, next training frame) for FM
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

    def needed(self) -> set[int]:
        """Source frames the stages read."""
        pairs = [i for pair in self.motion_pairs for i in pair]
        return {i for i in (*self.face_indices, *self.pose_indices, *self.ocr_indices, *pairs, self.caption_index)
                if i >= 0}  # fmt: skip

    def ran(self, stage: str) -> None:
        self.row["stages"] = [*self.row["stages"], stage]

    def release(self) -> None:
        """Drop decoded frames and faces once the row is final (they are not part of the manifest); store the
        stage timings in the row, in the order of its ``stages``."""
        self.frames = {}
        self.faces = []
        self.row["stage_wall"] = [float(self.times.get(s, (0.0, 0.0))[0]) for s in self.row["stages"]]
        self.row["stage_cpu"] = [float(self.times.get(s, (0.0, 0.0))[1]) for s in self.row["stages"]]


def asset_dir(out_dir: str | Path, clip: str) -> Path:
    """Where a clip's view crops, shape and signature files live: ``OUT/assets/<2 hex>/<clip_id>/``."""
    return Path(out_dir) / "assets" / clip[:2] / clip


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


def scene_windows(path: str, total: int, threshold: float, threads: int | None = None) -> list[tuple[int, int]]:
    """Shots found by PySceneDetect's content detector, as ``(start, end)`` source frames (whole video if none).

    The detector's minimum shot length is one frame: with its default (15 frames) a cut closer than that to the
    previous one is merged away, and a window could straddle it. Frames are read with PyAV (FFmpeg's own threads, or
    one thread when ``threads`` is 1, as in a worker of a pool).
    """
    from fantasyid.errors import require

    scenedetect = require("scenedetect", "prep", "shot detection (--clips scenes)")
    video = scenedetect.open_video(path, backend="pyav", threading_mode=None if threads == 1 else "AUTO")
    manager = scenedetect.SceneManager()
    manager.add_detector(scenedetect.ContentDetector(threshold=threshold, min_scene_len=1))
    manager.detect_scenes(video)
    windows = [(int(a.frame_num), min(total, int(b.frame_num))) for a, b in manager.get_scene_list()]
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
            shots = scene_windows(source.path, info.frames, settings.scene_threshold, settings.threads)
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
            record.motion_pairs = motion_pairs(frames, settings.sample_frames, settings.motion_pairs)
            record.pose_indices = [frames[i] for i in evenly_spaced(len(frames), settings.pose_frames)]
            record.caption_index = frames[len(frames) // 2]
        records.append(record)
    return records


def motion_pairs(frames: list[int], sample_frames: int, count: int) -> list[tuple[int, int]]:
    """``count`` pairs of consecutive training frames ``(frames[p], frames[p + 1])``, ``p`` spread over the clip among
    the face-sampled positions (their face boxes place the flow window), as eval's FM pairs consecutive frames."""
    positions = [p for p in evenly_spaced(len(frames), sample_frames) if p + 1 < len(frames)]
    chosen = [positions[i] for i in evenly_spaced(len(positions), count)]
    return [(frames[p], frames[p + 1]) for p in chosen if frames[p + 1] != frames[p]]


def stream_records(path: str, records: list[ClipRecord], threads: int | None = None) -> Iterator[ClipRecord]:
    """Decode ``path`` once, front to back, and yield each record as soon as the frames it needs are decoded.

    Rejected records come first, as they are. Only the frames of the records not yet yielded are held, so with
    back-to-back windows memory holds one clip's frames, however long the video. A record whose frames could not
    all be decoded (a file truncated mid-way, a corrupt stream) is yielded rejected with the decoder's reason.
    ``threads``: FFmpeg decoding threads (None: one per core).
    """
    waiting = sorted((r for r in records if r.keep), key=lambda r: max(r.needed(), default=-1))
    yield from (r for r in records if not r.keep)
    if not waiting:
        return
    users: dict[int, list[ClipRecord]] = {}
    for record in waiting:
        for index in record.needed():
            users.setdefault(index, []).append(record)
    reader = FrameReader(path, keep=set(users), threads=threads)
    position = 0  # waiting[position] is the next record to complete
    try:
        for index, frame in reader:
            for record in users.pop(index, ()):
                record.frames[index] = frame
            while position < len(waiting) and max(waiting[position].needed()) <= index:
                yield waiting[position]
                position += 1
    except VideoReadError as exc:
        for record in waiting[position:]:
            record.frames = {}
            record.reject(exc.reason)
            yield record
        return
    for record in waiting[position:]:
        missing = sorted(record.needed() - set(record.frames))
        record.frames = {}
        record.reject(reader.error or f"frame {missing[0]} could not be decoded")
        yield record


def decode_records(path: str, records: list[ClipRecord]) -> None:
    """Decode every frame the kept records need into their ``frames`` (all at once: for tests and benchmarks of a
    few clips; prep itself streams with :func:`stream_records`)."""
    for _ in stream_records(path, records):
        pass
