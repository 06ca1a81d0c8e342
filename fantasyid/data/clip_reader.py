"""Frame-accurate random access into training clips: decord's ``VideoReader.get_batch``, PyAV as the fallback.

Training samples ``frames`` frames at ``fps`` from clips recorded at other rates, so it needs given frame indices,
not a front-to-back pass. decord seeks to the nearest key frame and decodes only up to each wanted frame; where
decord is not installed or cannot open a file, PyAV does the same (seek to the first wanted frame's time, decode
forward), after one warning. Both return ``(N, H, W, 3)`` uint8 RGB in the order of the indices asked (repeats
allowed). Failures become :class:`~fantasyid.data.video.VideoReadError` so the dataset can count and skip the clip.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fantasyid.errors import InputError

from .video import VideoReadError, _av, _reason

__all__ = ["BACKENDS", "read_frames", "sample_indices", "decord_available"]

BACKENDS = ("auto", "decord", "pyav")
#: PyAV decoding threads per reader (1, like decord's: DataLoader workers give the parallelism)
_PYAV_THREADS = 1
logger = logging.getLogger(__name__)
_warned: set[str] = set()


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


def sample_indices(
    clip_start: int, clip_end: int, source_fps: float, fps: float, frames: int, offset: float = 0.0
) -> list[int]:
    """Source frame indices of ``frames`` frames at ``fps`` in ``[clip_start, clip_end)`` recorded at ``source_fps``.

    ``offset`` in [0, 1] places the window: 0 at the clip start, 1 as late as the clip allows (the dataset draws it
    at random). Raises :class:`InputError` when the clip is shorter than ``frames`` frames at ``fps``.
    """
    if source_fps <= 0 or fps <= 0:
        raise InputError(f"frame rates must be positive, got source {source_fps} and target {fps}")
    step = source_fps / fps  # source frames per sampled frame
    span = (frames - 1) * step  # source frames from the first to the last sample
    length = clip_end - clip_start
    if length <= 0 or span > length - 1 + 1e-6:
        raise InputError(
            f"clip of {length} frames at {source_fps:g} fps is shorter than {frames} frames at {fps:g} fps "
            f"({span + 1:.0f} source frames)"
        )
    start = clip_start + min(max(offset, 0.0), 1.0) * (length - 1 - span)
    return [min(clip_end - 1, int(math.floor(start + i * step + 1e-6))) for i in range(frames)]


def _read_decord(path: Path, indices: Sequence[int]) -> np.ndarray:
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        if max(indices) >= len(reader):
            raise VideoReadError(path, f"frame {max(indices)} asked, the video has {len(reader)}")
        return reader.get_batch(list(indices)).asnumpy()  # (N, H, W, 3) uint8 RGB
    except (decord.DECORDError, RuntimeError) as exc:  # decord raises RuntimeError when it cannot open a file
        raise VideoReadError(path, f"decord cannot read it: {str(exc).splitlines()[0][:160]}") from exc


def _read_pyav(path: Path, indices: Sequence[int]) -> np.ndarray:
    """Seek to the first wanted frame (nearest key frame before it), then decode forward to the last one."""
    av = _av()
    wanted = sorted(set(indices))
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = _PYAV_THREADS
            rate = float(stream.average_rate or stream.base_rate or 0)
            base = float(stream.time_base)
            start_pts = stream.start_time or 0
            first = wanted[0]
            if first > 0 and rate > 0:
                container.seek(int(start_pts + first / rate / base), stream=stream, backward=True, any_frame=False)
            last = wanted[-1]
            for frame in container.decode(stream):
                if frame.pts is None or rate <= 0:
                    raise VideoReadError(path, "frames carry no timestamps: cannot seek", hint="re-encode the clip")
                index = int(round((frame.pts - start_pts) * base * rate))
                if index in wanted and index not in found:
                    found[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
    except av.error.FFmpegError as exc:
        raise VideoReadError(path, f"cannot decode: {_reason(exc)}") from exc
    missing = [i for i in wanted if i not in found]
    if missing:
        raise VideoReadError(path, f"frames {missing[:3]} not found (the video ends before them or is damaged)")
    return np.stack([found[i] for i in indices])  # (N, H, W, 3) uint8 RGB


def read_frames(path: str | Path, indices: Sequence[int], backend: str = "auto") -> np.ndarray:
    """Frames ``indices`` of the video at ``path`` as ``(N, H, W, 3)`` uint8 RGB.

    ``backend``: ``"auto"`` (decord when installed and able to open the file, else PyAV with one warning),
    ``"decord"`` or ``"pyav"``.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown clip reader {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
    path = Path(path)
    if not indices:
        raise InputError("no frame indices asked")
    if not path.is_file():
        raise VideoReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "empty file (0 bytes)")
    if backend == "pyav":
        return _read_pyav(path, indices)
    if not decord_available():
        if backend == "decord":
            from fantasyid.errors import MissingDependencyError

            raise MissingDependencyError("decord", "train", "reading training clips with decord")
        _warn_once("missing", "decord is not installed: training clips are read with PyAV (pip install decord)")
        return _read_pyav(path, indices)
    try:
        return _read_decord(path, indices)
    except VideoReadError as exc:
        if backend == "decord":
            raise
        _warn_once(f"open:{path}", f"decord cannot read {path.name} ({exc.reason}); reading it with PyAV")
        return _read_pyav(path, indices)
