"""Video files in, RGB frames out: listing a run folder, counting frames, decoding once, and saying why not.

Decoding uses PyAV (FFmpeg). Every failure to open or decode a file becomes a :class:`VideoReadError` carrying a
short reason, so that the evaluation can report the file, count it and go on with the others.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fantasyid.errors import InputError, require

#: File name endings recognised as videos in a run folder (lower case).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


class VideoReadError(InputError):
    """A video file cannot be opened or decoded (missing, empty, corrupt, no video stream).

    The message names the file; :attr:`reason` is the same without the file name (for per-video reports).
    """

    def __init__(self, path: Path, reason: str, hint: str | None = None):
        super().__init__(f"{Path(path).name}: {reason}", hint)
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream, before decoding it."""

    path: Path
    frames: int  #: number of frames (from the stream header, else counted from packets)
    width: int
    height: int
    fps: float | None


def is_video_file(path: Path) -> bool:
    """True for a regular file whose name ends in one of :data:`VIDEO_EXTENSIONS`."""
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def list_videos(folder: Path) -> list[Path]:
    """The videos directly inside ``folder``, sorted by name (hidden files skipped)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and is_video_file(p))


def evenly_spaced(total: int, count: int | None) -> list[int]:
    """``count`` frame indices spread evenly over ``0 … total-1`` (first and last included); all if ``count`` is None
    or not smaller than ``total``."""
    if total <= 0:
        return []
    if count is None or count >= total:
        return list(range(total))
    if count < 1:
        raise InputError(f"the number of frames to evaluate must be at least 1, got {count}")
    if count == 1:
        return [0]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def _av():
    return require("av", "video", "decoding videos")


def _reason(exc: BaseException) -> str:
    # FFmpeg errors carry errno, strerror and the file name; strerror alone reads best ("Invalid data found …")
    text = str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def probe(path: Path) -> VideoInfo:
    """Open a video and read its stream header; counts packets when the header has no frame count.

    Raises :class:`VideoReadError` for a missing, empty or corrupt file and for a file without a video stream.
    """
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(path, "file not found")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            frames = int(stream.frames or 0)
            if frames <= 0:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            rate = stream.average_rate or stream.base_rate
            return VideoInfo(
                path=path,
                frames=frames,
                width=int(stream.codec_context.width or 0),
                height=int(stream.codec_context.height or 0),
                fps=float(rate) if rate else None,
            )
    except av.error.FFmpegError as exc:
        raise VideoReadError(path, f"cannot open video: {_reason(exc)}") from exc


class FrameReader:
    """Decode a video once, front to back, yielding ``(index, frame)`` with ``frame`` an ``(H, W, 3)`` uint8 RGB array.

    ``keep`` limits the frames converted to RGB (others are decoded, as codecs require, then dropped). After the
    iteration, :attr:`decoded` is the number of frames the file produced and :attr:`error` says why decoding stopped
    early (``None`` when the file was read to its end). Opening failures raise :class:`VideoReadError` at once.
    """

    def __init__(self, path: Path, keep: Collection[int] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.keep = None if keep is None else frozenset(keep)
        self.threads = threads  #: FFmpeg decoding threads (None: FFmpeg's choice, one per core)
        self.decoded = 0
        self.error: str | None = None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        av = _av()
        if not self.path.is_file():
            raise VideoReadError(self.path, "file not found")
        if self.path.stat().st_size == 0:
            raise VideoReadError(self.path, "empty file (0 bytes)")
        try:
            container = av.open(str(self.path))
        except av.error.FFmpegError as exc:
            raise VideoReadError(self.path, f"cannot open video: {_reason(exc)}") from exc
        with container:
            if not container.streams.video:
                raise VideoReadError(self.path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads inside FFmpeg
            if self.threads:
                stream.codec_context.thread_count = self.threads
            last_wanted = max(self.keep) if self.keep else None
            index = 0
            try:
                for frame in container.decode(stream):
                    if self.keep is None or index in self.keep:
                        yield index, frame.to_ndarray(format="rgb24")
                    index += 1
                    if last_wanted is not None and index > last_wanted:
                        break  # nothing later is needed: stop decoding
            except av.error.FFmpegError as exc:
                self.error = f"decoding stopped after {index} frames: {_reason(exc)}"
            finally:
                self.decoded = index
