"""Atomic file writes and mp4 export; output folders and server ports checked before anything slow.

Every file fantasyid writes appears whole or not at all: it is written next to its destination under a temporary
name and renamed into place (``os.replace`` is atomic on one file system). An interrupted run never leaves a
truncated mp4 or JSON that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, require

__all__ = [
    "atomic_path", "write_json", "write_text", "write_video", "sha256_file", "check_output_dir", "check_output_file",
    "check_port",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success rename it to ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: int = 8, quality: int = 8) -> Path:
    """Write ``frames`` (``(F, H, W, 3)``, uint8 or float in [0, 1]) as an H.264 mp4 (yuv420p), atomically.

    Uses the ffmpeg binary shipped by ``imageio-ffmpeg``. Odd sizes are padded by one pixel (yuv420p needs even).
    """
    imageio_ffmpeg = require("imageio_ffmpeg", "video", "writing mp4 files")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (F, H, W, 3) with F ≥ 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    height, width = frames.shape[1:3]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (frames.shape[2], frames.shape[1]),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=quality,
            macro_block_size=1,
            output_params=["-movflags", "+faststart"],
        )
        writer.send(None)  # start the generator
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    return Path(path)


# ----------------------------------------------------------------------------------------------------- output paths
def _writable_dir(folder: Path, option: str, what: str) -> None:
    """Raise a one-line :class:`InputError` unless a file can be created in the existing folder ``folder``."""
    try:  # try it: os.access is wrong for root, ACLs and read-only mounts
        fd, probe = tempfile.mkstemp(prefix=".fantasyid-write-check.", dir=folder)
    except OSError as exc:
        raise InputError(
            f"{option} '{what}': cannot write in '{folder}' ({exc.strerror or exc})",
            hint="choose a folder you can write to",
        ) from None
    os.close(fd)
    os.unlink(probe)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_dir(path: Path, option: str, shown: Path, create: bool) -> None:
    if path.exists() and not path.is_dir():
        if shown == path:
            raise InputError(f"{option} '{path}' is a file, not a folder", hint="give a folder (it is made if needed)")
        raise InputError(f"{option} '{shown}' cannot be created: '{path}' is a file", hint="give another path")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise InputError(f"{option} '{shown}' cannot be created: '{existing}' is a file", hint="give another path")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"{option} '{shown}' cannot be created ({exc.strerror or exc})", hint="give a path you can write to"
            ) from None
        existing = path
    _writable_dir(existing, option, str(shown))


def check_output_dir(path: str | os.PathLike[str], option: str = "--out", create: bool = True) -> Path:
    """Check, before any slow work, that ``path`` is (or can become) a folder this process can write in.

    ``create`` makes it (and its parents). One-line :class:`InputError` for a path that is a file, under a file,
    cannot be created or is not writable."""
    path = Path(path).expanduser()
    _check_dir(path, option, path, create)
    return path


def check_output_file(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Check, before any slow work, that the file ``path`` can be written (its folder is made if needed): one-line
    :class:`InputError` for a path that is a folder, or whose folder cannot be made or written in."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{option} '{path}' is a folder, not a file", hint="give a file name")
    _check_dir(path.parent, option, path, create=True)
    return path


def check_port(host: str, port: int) -> None:
    """Refuse, in one line naming ``--port``, a ``host:port`` a server could not listen on (taken by another
    process, or an address not of this machine): checked before a model loads and before any "serving on" line."""
    import errno
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r} is not an address: {exc.strerror}", hint="e.g. --host 127.0.0.1") from exc
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a closed port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"port {port} on {host} is in use (another server is listening there)",
                                 hint=f"pass another port, e.g. --port {port + 1 if port < 65535 else 8080}") from exc
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}",
                             hint="check --host (an address of this machine) and --port") from exc
