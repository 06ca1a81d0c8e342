"""The training manifest: the one table ``fantasyid prep`` writes and ``fantasyid train`` reads.

One row per clip (kept or rejected), stored as Parquet. Both sides import this module, and both test against it:
prep builds rows with :func:`new_row` and writes them with :func:`write_manifest`; the training dataset opens the
table with :func:`read_manifest`, which checks the version and every column before anything is decoded.

Paths inside the manifest (view crops, 3D files) are relative to the folder that holds the manifest, so a prepared
data folder can be moved or copied to another machine as a whole. Source video paths are stored resolved (absolute),
so training reads them from any working folder.

Version history:

* 1: first version.
* 2: ``source_path`` resolved and absolute; ``source_key`` (what a rerun compares); ``stage_wall``/``stage_cpu``.
* 3: ``face_motion`` (the motion stage); ``motion`` in ``STAGES``; kept duplicates are rejected at merge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fantasyid.errors import FantasyIDError, require

__all__ = [
    "MANIFEST_VERSION",
    "MANIFEST_COLUMNS",
    "VIEW_FIELDS",
    "STAGES",
    "ManifestError",
    "clip_id",
    "new_row",
    "manifest_schema",
    "write_manifest",
    "read_manifest",
    "kept_clips",
    "manifest_sha256",
    "resolve_asset",
    "plain",
    "frame_to_rows",
]

#: Bumped whenever a column is added, removed, renamed or changes meaning. Readers refuse other versions.
MANIFEST_VERSION = 3

#: Key of the JSON blob in the Parquet file's metadata (``{"version": …, "settings": {…}}``).
METADATA_KEY = b"fantasyid.manifest"

#: The prep stages, in the order they run. ``STAGES`` values appear in the ``stages`` column of each row.
STAGES = ("probe", "face", "motion", "text", "views", "3d", "caption")

#: Fields of one entry of the ``views`` column: one chosen face view of the clip. The list is in selection order
#: (farthest-point selection in pose space): ``views[0]`` is the most frontal view ("w/o MFC" trains on it alone).
VIEW_FIELDS: dict[str, str] = {
    "frame": "int64",  #: frame index in the source video
    "crop": "string",  #: aligned 512-px FFHQ-template face crop, PNG, relative to the manifest folder
    "yaw": "float32",  #: head pose in degrees from the eyes and nose (fantasyid.face.pose.rigid_head_pose)
    "pitch": "float32",
    "roll": "float32",
    "score": "float32",  #: detector confidence of this face
    "landmarks": "list<float32>",  #: 5 landmarks in source-frame pixels, flattened x0, y0, …, x4, y4 (10 values)
}

#: Every column of the manifest, its Arrow type, and what it means. Numbers a filter depends on are stored raw, so
#: a filter can be re-thresholded from the manifest without decoding the videos again.
MANIFEST_COLUMNS: dict[str, tuple[str, str]] = {
    # identity of the clip
    "clip_id": ("string", "stable id: sha256 of source path + clip window, first 16 hex digits"),
    "source_path": ("string", "the source video, resolved to an absolute path"),
    "source_sha256": ("string", "sha256 of the source file (empty when it could not be read)"),
    "source_key": ("string", "size:mtime_ns:quick hash of the source when the row was made (a rerun compares it; "
                   "see fantasyid.data.provenance)"),
    "shard": ("int32", "shard of the source path (hash of the path mod num_shards)"),
    "clip_start": ("int64", "first source frame of the clip (inclusive)"),
    "clip_end": ("int64", "last source frame of the clip (exclusive)"),
    "start_sec": ("float64", "clip start in seconds"),
    "end_sec": ("float64", "clip end in seconds"),
    "fps": ("float64", "frame rate of the source video"),
    "width": ("int32", "source frame width in pixels"),
    "height": ("int32", "source frame height in pixels"),
    # decision
    "keep": ("bool", "true when the clip passed every filter and every requested stage finished"),
    "reject_reason": ("string", "empty when kept; else one short reason (e.g. 'face score 0.52 < 0.9')"),
    "stages": ("list<string>", "stages that ran on this clip, in order (values of STAGES)"),
    "stage_wall": ("list<float32>", "wall seconds of each stage in 'stages' for this clip (probe: probing and "
                   "decoding the video, shared among its clips)"),
    "stage_cpu": ("list<float32>", "CPU seconds (process time) of each stage in 'stages' for this clip"),
    # face stage
    "face_frames": ("int32", "frames sampled for detection"),
    "face_frames_none": ("int32", "sampled frames with no face"),
    "face_frames_multi": ("int32", "sampled frames with more than one face"),
    "face_frames_other": ("int32", "sampled frames whose main face is another person (dropped from the views)"),
    "face_score_min": ("float32", "lowest confidence of the main face over the sampled frames with a face"),
    "face_score_mean": ("float32", "mean confidence of the main face"),
    "face_size_min": ("float32", "smallest main-face box side, pixels (source resolution)"),
    # motion stage
    "face_motion": ("float32", "median face motion (eval's FM: flow in the face box, px of a 128-px crop per "
                    "training frame) over the clip's frame pairs; 0 when not measured"),
    # text stage
    "text_frames": ("int32", "frames sampled for OCR"),
    "text_fraction": ("float32", "fraction of OCR frames with text"),
    "text_area": ("float32", "mean fraction of the frame area covered by text boxes"),
    # views + 3D stages
    "views": ("list<view>", "chosen face views, see VIEW_FIELDS; views[0] is the most frontal"),
    "shape_file": ("string", "npz with FLAME 'shape' (V, 100) float32 and 'vertices' (V, 5023, 3) float16 per "
                   "view, relative to the manifest folder; empty when the 3D stage did not run"),
    "shape_status": ("string", "'done', or why the 3D stage was skipped (e.g. 'skipped: no DECA files')"),
    # caption stage
    "caption": ("string", "caption of the clip (empty when none)"),
    "caption_source": ("string", "'file', 'sidecar', 'model:<name>' or 'none'"),
}


class ManifestError(FantasyIDError):
    """A manifest is missing, of another version, or lacks columns."""


def _pa():
    return require("pyarrow", "data", "reading and writing manifests")


def _arrow_type(name: str):
    pa = _pa()
    simple = {
        "string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
        "float64": pa.float64(), "bool": pa.bool_(), "list<string>": pa.list_(pa.string()),
        "list<float32>": pa.list_(pa.float32()),
    }
    if name in simple:
        return simple[name]
    if name == "list<view>":
        return pa.list_(pa.struct([(field, _arrow_type(kind)) for field, kind in VIEW_FIELDS.items()]))
    raise ValueError(f"unknown manifest type {name!r}")


def manifest_schema():
    """The Arrow schema of the manifest (column order as in :data:`MANIFEST_COLUMNS`)."""
    pa = _pa()
    return pa.schema([(name, _arrow_type(kind)) for name, (kind, _) in MANIFEST_COLUMNS.items()])


def clip_id(source_path: str | Path, clip_start: int, clip_end: int) -> str:
    """Stable id of a clip: the same source path and window always give the same id."""
    text = f"{Path(source_path).as_posix()}\0{int(clip_start)}\0{int(clip_end)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def new_row(**values: Any) -> dict[str, Any]:
    """A manifest row with every column present: unset columns get their empty value (0, '', [], False).

    Unknown names are an error (a typo would otherwise silently vanish when the table is written).
    """
    unknown = sorted(set(values) - set(MANIFEST_COLUMNS))
    if unknown:
        raise ValueError(f"unknown manifest column(s): {', '.join(unknown)}")
    row: dict[str, Any] = {}
    for name, (kind, _) in MANIFEST_COLUMNS.items():
        if name in values:
            row[name] = values[name]
        elif kind.startswith("list"):
            row[name] = []
        elif kind == "string":
            row[name] = ""
        elif kind == "bool":
            row[name] = False
        else:
            row[name] = 0
    return row


def write_manifest(
    rows: Iterable[Mapping[str, Any]], path: str | Path, settings: Mapping[str, Any] | None = None
) -> Path:
    """Write ``rows`` (dicts with every column, see :func:`new_row`) to ``path`` as Parquet, atomically.

    ``settings`` (JSON-serialisable: the prep options that produced the rows) is stored in the file's metadata.
    """
    pa = _pa()
    pq = require("pyarrow.parquet", "data", "reading and writing manifests")
    from fantasyid.io import atomic_path

    rows = [dict(row) for row in rows]
    for index, row in enumerate(rows):
        missing = sorted(set(MANIFEST_COLUMNS) - set(row))
        if missing:
            raise ValueError(f"manifest row {index} lacks column(s): {', '.join(missing)}")
    schema = manifest_schema()
    table = pa.Table.from_pylist([{name: row[name] for name in MANIFEST_COLUMNS} for row in rows], schema=schema)
    meta = {"version": MANIFEST_VERSION, "settings": dict(settings or {})}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode("utf-8")})
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_manifest_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata blob of a manifest file (``version``, ``settings``); checks the version."""
    pq = require("pyarrow.parquet", "data", "reading and writing manifests")
    path = Path(path)
    if not path.is_file():
        raise ManifestError(
            f"manifest '{path}' does not exist",
            hint="run `fantasyid prep VIDEOS --out DATA` then `fantasyid prep merge DATA` to make DATA/manifest.parquet",
        )
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ManifestError(f"'{path}' is not a Parquet manifest: {str(exc).splitlines()[0][:160]}") from exc
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ManifestError(f"'{path}' is a Parquet file but not a fantasyid manifest (no manifest metadata)")
    meta = json.loads(raw.decode("utf-8"))
    version = meta.get("version")
    if version != MANIFEST_VERSION:
        raise ManifestError(
            f"manifest '{path}' is version {version}; this fantasyid reads version {MANIFEST_VERSION}",
            hint="re-run `fantasyid prep merge` (or prep itself) with this fantasyid version",
        )
    return meta


def read_manifest(path: str | Path, columns: Sequence[str] | None = None):
    """Read a manifest as a :class:`pandas.DataFrame`, after checking its version and columns."""
    pq = require("pyarrow.parquet", "data", "reading and writing manifests")
    path = Path(path)
    read_manifest_metadata(path)
    names = set(pq.read_schema(path).names)
    missing = [name for name in MANIFEST_COLUMNS if name not in names]
    if missing:
        raise ManifestError(f"manifest '{path}' lacks column(s): {', '.join(missing)}")
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def kept_clips(frame):
    """The rows of a manifest DataFrame with ``keep`` true, re-indexed from 0."""
    return frame[frame["keep"]].reset_index(drop=True)


def plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays (also object arrays of dicts, as pandas reads Parquet lists of
    structs) become Python numbers and lists."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def frame_to_rows(frame) -> list[dict[str, Any]]:
    """Manifest DataFrame → plain row dicts."""
    return [plain(row) for row in frame.to_dict("records")]


def manifest_sha256(path: str | Path) -> str:
    """sha256 of the manifest file (recorded in training runs and exports)."""
    from fantasyid.io import sha256_file

    return sha256_file(path)


def resolve_asset(manifest_path: str | Path, relative: str) -> Path:
    """A path stored in the manifest (view crop, shape file), resolved against the manifest's folder."""
    path = Path(relative)
    return path if path.is_absolute() else Path(manifest_path).resolve().parent / path
