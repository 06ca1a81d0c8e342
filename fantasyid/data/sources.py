"""What ``fantasyid prep`` reads: video discovery, per-video captions and the deterministic split into shards.

Inputs are folders (walked recursively for video files), list files (``.txt`` one path per line, ``.csv`` with a
``path`` column, ``.parquet`` with a ``path`` column; relative paths are relative to the list file), single video
files, or several of these. Captions come from a CSV (``path,caption``) or JSONL (``{"path": …, "caption": …}``)
file, else from a ``.txt`` beside the video (``clip.mp4`` → ``clip.txt``).

Every video lands in exactly one shard: ``sha256(path) mod num_shards``, so a Slurm array or a Kubernetes indexed job
splits the same input the same way on every node.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fantasyid.data.video import VIDEO_EXTENSIONS
from fantasyid.errors import ConfigError, InputError

#: Extensions read as lists of video paths (anything else that is a file is taken as a video).
LIST_EXTENSIONS = (".txt", ".csv", ".parquet", ".lst")


@dataclass(frozen=True)
class VideoSource:
    """One input video and the caption that comes with it (if any)."""

    path: str  #: resolved absolute path (POSIX form); the manifest stores it as is
    caption: str = ""
    caption_source: str = "none"  #: 'file', 'sidecar' or 'none'
    key: str = ""  #: :func:`fantasyid.data.provenance.source_key` (set by the runner for the shards it runs)


def shard_of(path: str, num_shards: int) -> int:
    """The shard of a source path: the first 8 bytes of its sha256, mod ``num_shards`` (stable across machines)."""
    digest = hashlib.sha256(Path(path).as_posix().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def _walk(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                found.append(Path(dirpath, name).as_posix())
    return found


def _read_table_paths(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        from fantasyid.errors import require

        pq = require("pyarrow.parquet", "data", "reading Parquet lists")
        table = pq.read_table(path)
        if "path" not in table.column_names:
            raise InputError(f"list file '{path}' has no 'path' column", hint="name the column of video paths 'path'")
        values = [str(v) for v in table.column("path").to_pylist() if v]
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise InputError(f"list file '{path}' has no 'path' column", hint="start the CSV with a header: path")
            values = [row["path"].strip() for row in reader if (row.get("path") or "").strip()]
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        values = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    base = path.parent
    return [(Path(v) if Path(v).is_absolute() else base / v).as_posix() for v in values]


def list_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Every video path named by ``inputs`` (folders, list files, videos), sorted, without duplicates.

    A missing input is an error (before any work starts); a listed video that does not exist is not: it is
    recorded as rejected ("file not found") like any other unreadable video.
    """
    if not inputs:
        raise ConfigError("no input given",
                          hint="pass folders of videos, video files or list files (.txt/.csv/.parquet)")
    paths: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            paths.extend(_walk(path))
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            paths.extend(_read_table_paths(path))
        elif path.is_file():
            paths.append(path.as_posix())
        else:
            raise InputError(f"input '{item}' does not exist", hint="pass folders of videos, video files or list files")
    if not paths:  # nothing to do is an error, as in `fantasyid eval`
        raise InputError(f"no videos in {', '.join(str(i) for i in inputs)}",
                         hint=f"prep reads video files ({', '.join(VIDEO_EXTENSIONS[:5])}, …); images are not videos")
    return sorted({resolved(p) for p in paths})


def resolved(path: str | os.PathLike[str]) -> str:
    """A source path as the manifest stores it: absolute, symlinks resolved, POSIX form (so the rows are found from
    any working folder, and the same video named two ways is one source)."""
    return Path(path).expanduser().resolve().as_posix()


def read_captions(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{video path: caption}`` from a CSV (``path,caption``) or JSONL file; relative paths are resolved against
    the caption file's folder."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"caption file '{path}' does not exist")
    pairs: list[tuple[str, str]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(item, dict) or "path" not in item or "caption" not in item:
                raise InputError(f"{path}:{number}: expected an object with 'path' and 'caption'")
            pairs.append((str(item["path"]), str(item["caption"])))
    else:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"path", "caption"} <= set(reader.fieldnames):
                raise InputError(f"caption file '{path}' needs the columns path,caption", hint="header: path,caption")
            pairs = [(row["path"], row["caption"] or "") for row in reader if row.get("path")]
    base = path.parent
    out = {}
    for video, caption in pairs:
        out[resolved(Path(video) if Path(video).is_absolute() else base / video)] = caption.strip()
    return out


def discover(
    inputs: Sequence[str | os.PathLike[str]], captions: str | os.PathLike[str] | None = None
) -> list[VideoSource]:
    """Videos of ``inputs`` with their captions (caption file first, then ``.txt`` sidecars), sorted by path."""
    table = read_captions(captions) if captions else {}
    sources = []
    for video in list_inputs(inputs):
        key = resolved(video)
        sidecar = Path(video).with_suffix(".txt")
        if key in table:
            sources.append(VideoSource(video, table[key], "file"))
        elif sidecar.is_file():
            sources.append(VideoSource(video, sidecar.read_text(encoding="utf-8").strip(), "sidecar"))
        else:
            sources.append(VideoSource(video))
    return sources


def select_shard(sources: Iterable[VideoSource], shard: int, num_shards: int) -> list[VideoSource]:
    """The sources of one shard, in path order."""
    return [s for s in sources if shard_of(s.path, num_shards) == shard]


def shard_from_environment(shard: int | None, num_shards: int | None) -> tuple[int, int]:
    """``(shard, num_shards)``: explicit values, else ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``, else
    ``RANK``/``WORLD_SIZE`` (Kubernetes indexed jobs, torchrun), else one shard."""
    env = os.environ
    if num_shards is None:
        for key in ("SLURM_ARRAY_TASK_COUNT", "WORLD_SIZE"):
            if env.get(key, "").strip():
                num_shards = int(env[key])
                break
    if shard is None:
        for key in ("SLURM_ARRAY_TASK_ID", "RANK", "JOB_COMPLETION_INDEX"):
            if env.get(key, "").strip():
                shard = int(env[key])
                break
    num_shards = 1 if num_shards is None else num_shards
    if num_shards < 1:
        raise ConfigError(f"--num-shards must be at least 1, got {num_shards}")
    if shard is not None and not 0 <= shard < num_shards:
        raise ConfigError(
            f"--shard {shard} is outside 0..{num_shards - 1}",
            hint="shards are numbered from 0; a Slurm array needs --array=0-(N-1) with SLURM_ARRAY_TASK_COUNT=N",
        )
    return (shard if shard is not None else -1), num_shards
