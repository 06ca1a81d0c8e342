"""``fantasyid prep VIDEOS --out DATA --stages 3d --deca … --flame …``: add the 3D stage to a finished prep output.

For a prep run made without the licensed DECA/FLAME files: each kept clip without shapes gets them now, computed
exactly as a run with the files would have (the view frames are decoded again, the face detected again with the
run's own detector settings and matched to the stored landmarks, then DECA on the detector box). Shards are
rewritten atomically one at a time; the run's settings and fingerprint stay as they were, so ``prep merge`` and
later reruns still accept the folder.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.data.clips import ClipRecord
from fantasyid.data.manifest import read_manifest, read_manifest_metadata, write_manifest
from fantasyid.data.settings import PrepSettings
from fantasyid.data.stages import ShapeStage, detection_scale, timed, upscale
from fantasyid.data.video import FrameReader, VideoReadError
from fantasyid.errors import ConfigError, InputError
from fantasyid.io import write_json


def stored_settings(out_dir: Path) -> tuple[PrepSettings, dict[str, Any]]:
    """The settings an output folder was prepared with (``prep.json``)."""
    info_path = out_dir / "prep.json"
    if not info_path.is_file():
        raise ConfigError(
            f"--stages 3d alone adds 3D shapes to an earlier prep output, and '{out_dir}' holds none (no prep.json)",
            hint="run prep with every stage first, or pass --deca and --flame to that run",
        )
    info = json.loads(info_path.read_text(encoding="utf-8"))
    known = {f.name for f in fields(PrepSettings)}
    settings = PrepSettings(**{k: v for k, v in info["settings"].items() if k in known})
    return settings, info


def _match(faces, landmarks: np.ndarray):
    """The detected face whose landmarks are nearest the stored ones (pixels of the detector's frame)."""
    distances = [float(np.abs(face.landmarks - landmarks).max()) for face in faces]
    best = int(np.argmin(distances))
    return faces[best] if distances[best] < 1.0 else None


def add_shapes(out_dir: Path, deca: str, flame: str, device: str = "cpu", progress: Any = None) -> tuple[int, int]:
    """Add DECA + FLAME shapes to every kept clip of every finished shard that lacks them.

    Returns ``(clips updated, shards rewritten)``.
    """
    from fantasyid.face import FaceAnalyzer
    from fantasyid.data.manifest import frame_to_rows

    settings, info = stored_settings(out_dir)
    if "views" not in settings.stages:
        raise ConfigError(f"'{out_dir}' was prepared without the views stage: there is nothing to run DECA on")
    run = replace(settings, deca=deca, flame=flame, device=device, stages=(*settings.stages, "3d")
                  if "3d" not in settings.stages else settings.stages)  # fmt: skip
    stage = ShapeStage(run, out_dir)
    size = settings.det_size
    analyzer = FaceAnalyzer(settings.face_pack, settings.face_root, det_size=(size, size), recognition=False,
                            detector=settings.face_detector)
    updated = shards = 0
    if progress is not None:
        progress.start(0)
    for marker in sorted((out_dir / "shards").glob("*.done")):
        parquet = marker.with_suffix(".parquet")
        meta = read_manifest_metadata(parquet)
        rows = frame_to_rows(read_manifest(parquet))
        todo = [r for r in rows if r["keep"] and r["shape_status"] != "done" and r["views"]]
        for row in todo:
            _add_one(row, analyzer, stage)
            updated += 1
            if progress is not None:
                progress.clip(row)
        if todo:
            write_manifest(rows, parquet, settings=meta["settings"])
            shards += 1
    info["shapes_added"] = {"deca": Path(deca).name, "flame": Path(flame).name}
    write_json(out_dir / "prep.json", info)
    return updated, shards


def _add_one(row: dict[str, Any], analyzer, stage: ShapeStage) -> None:
    from fantasyid.io import sha256_file

    if not Path(row["source_path"]).is_file() or sha256_file(row["source_path"]) != row["source_sha256"]:
        raise InputError(
            f"{row['source_path']} is missing or changed since prep ran (sha256 differs)",
            hint="put the original file back, or run prep again into a new --out",
        )
    factor = detection_scale(row["height"], row["width"], stage.settings.det_min_side)
    wanted = {int(v["frame"]) for v in row["views"]}
    try:
        frames = dict(FrameReader(row["source_path"], keep=wanted))
    except VideoReadError as exc:
        raise InputError(f"cannot decode the views of clip {row['clip_id']} again: {exc.message}") from exc
    record = ClipRecord(row, frames={i: frames[i] for i in wanted if i in frames})
    for view in row["views"]:
        frame = record.frames.get(int(view["frame"]))
        stored = np.asarray(view["landmarks"], np.float32).reshape(5, 2) * factor  # (5, 2) detector pixels
        face = None if frame is None else _match(analyzer.detect(upscale(frame, factor), crop_512=False), stored)
        if face is None:
            raise InputError(
                f"the face of view frame {view['frame']} of {row['source_path']} was not found again",
                hint="the source video changed since prep ran; run prep again into a new --out",
            )
        record.faces.append({"frame": int(view["frame"]), "factor": factor, "bbox_det": np.asarray(face.bbox)})
    with timed("3d") as clock:
        stage.run(record)
    row["stage_wall"] = [*row["stage_wall"], clock.wall]  # in the order of row["stages"], which now ends in 3d
    row["stage_cpu"] = [*row["stage_cpu"], clock.cpu]
