"""The prep stages, as plain callables over lists of :class:`~fantasyid.data.clips.ClipRecord`.

Each stage loads its model once (in ``__init__``) and fills its columns of the manifest row of every clip it is
given; a clip that a stage rejects is passed over by the later stages. The local engine calls them in turn; the Ray
engine runs each as an actor pool (``map_batches``) over the same records, so both give the same rows.

* :class:`FaceStage`: detection (the pack's SCRFD or RetinaFace) on the sampled frames: main-face score, size,
  frames with no or several faces (METHOD.md: confidence ≥ 0.9, on RetinaFace's scale);
* :class:`~fantasyid.data.motion_stage.MotionStage`: face motion (eval's FM) over pairs of consecutive training
  frames: static clips rejected; the thumbnail signature for duplicate detection at merge;
* :class:`TextStage`: OCR (RapidOCR, weights inside the wheel): fraction of frames with text, text area;
* :class:`ViewsStage`: :func:`fantasyid.face.pose.viewpoint_indices` (most frontal, extremes of yaw and pitch,
  then farthest-point) on the yaw and pitch of the main person's face over the clip's pose grid (``pose_frames``,
  every training frame by default; the pose from the eyes and nose, :func:`fantasyid.face.pose.rigid_head_pose`)
  → 6 views, each view's 512-px FFHQ-aligned crop as PNG;
* :class:`ShapeStage`: DECA + FLAME on each view: FLAME shape codes and vertices (float16) in one ``.npz``;
* :class:`CaptionStage`: the caption from the user's file or sidecar, else a transformers VLM (Qwen2.5-VL: several
  frames of the clip), batched.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.data.clips import ClipRecord, asset_dir, stream_records
from fantasyid.data.motion_stage import MotionStage
from fantasyid.data.settings import PrepSettings
from fantasyid.errors import require

#: The note a clip gets when the 3D stage has no DECA/FLAME files.
NO_3D_FILES = "skipped: no DECA/FLAME files (pass --deca and --flame, or train with w/o FV)"


def detection_scale(height: int, width: int, min_side: int) -> int:
    """Integer upscale factor that brings the shorter side of a frame to at least ``min_side`` (1 if it is)."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


def upscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic integer upscale (detectors miss faces in tiny frames); the frame itself when ``factor`` is 1."""
    if factor == 1:
        return frame
    cv2 = require("cv2", "face", "resizing frames")
    return cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)


class timed:
    """Wall and CPU (process) seconds of a block, shared evenly among the clips it served (``share``)."""

    def __init__(self, stage: str):
        self.stage = stage
        self.wall = self.cpu = 0.0

    def __enter__(self) -> timed:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def share(self, records: list[ClipRecord]) -> None:
        for record in records:
            record.times[self.stage] = (self.wall / len(records), self.cpu / len(records))


def run_timed(stage: Any, records: list[ClipRecord]) -> list[ClipRecord]:
    """``stage(records)``, its time shared among the clips it worked on (those still kept when it started)."""
    active = [r for r in records if r.keep]
    with timed(stage.name) as clock:
        records = stage(records)
    clock.share(active)
    return records


def stream_timed(path: str, records: list[ClipRecord], threads: int | None = None) -> Iterator[ClipRecord]:
    """:func:`~fantasyid.data.clips.stream_records`, the decoding up to each clip added to its ``probe`` time."""
    stream = stream_records(path, records, threads=threads)
    while True:
        with timed("probe") as clock:
            record = next(stream, None)
        if record is None:
            return
        wall, cpu = record.times.get("probe", (0.0, 0.0))
        record.times["probe"] = (wall + clock.wall, cpu + clock.cpu)
        yield record


def _active(records: list[ClipRecord], stage: str, settings: PrepSettings) -> list[ClipRecord]:
    return [r for r in records if r.keep and stage in settings.stages]


class FaceStage:
    """Detection on each sampled frame; the main (largest) face's numbers; rejects by the face rules."""

    name = "face"

    def __init__(self, settings: PrepSettings, out_dir: Path | None = None):
        from fantasyid.face import FaceAnalyzer

        self.settings = settings
        size = settings.det_size
        self.analyzer = FaceAnalyzer(settings.face_pack, settings.face_root, det_size=(size, size), recognition=True,
                                     detector=settings.face_detector, threads=settings.threads)

    def __call__(self, records: list[ClipRecord]) -> list[ClipRecord]:
        for record in _active(records, "face", self.settings):
            self.run(record)
        return records

    def run(self, record: ClipRecord) -> None:
        s, row = self.settings, record.row
        factor = detection_scale(row["height"], row["width"], s.det_min_side)
        none = multi = 0
        faces, embeddings = [], []
        for index in record.face_indices:
            found = self.analyzer.detect(upscale(record.frames[index], factor), crop_512=False)
            if not found:
                none += 1
                continue
            main = found[0]  # largest first
            if any(other.area >= s.second_face_ratio * main.area for other in found[1:]):
                multi += 1
            embeddings.append(main.embedding)
            faces.append(_face_record(main, index, factor))
        typical = _typical_face(embeddings)
        others = [bool(v < s.min_same_person) for v in _same_person(embeddings, typical)]
        faces = [f for f, other in zip(faces, others) if not other]  # views come from the main person only
        total = len(record.face_indices)
        scores = [f["score"] for f in faces]
        sizes = [float(min(f["bbox_det"][2] - f["bbox_det"][0], f["bbox_det"][3] - f["bbox_det"][1])) / factor
                 for f in faces]  # fmt: skip
        row.update(
            face_frames=total, face_frames_none=none, face_frames_multi=multi,
            face_score_min=min(scores, default=0.0), face_score_mean=float(np.mean(scores)) if scores else 0.0,
            face_size_min=min(sizes, default=0.0), face_frames_other=int(sum(others)),
        )  # fmt: skip
        record.ran("face")
        if not faces:
            record.reject(f"no face in any of {total} sampled frames")
        elif sum(others) / total > s.max_no_face:
            record.reject(f"another person in {sum(others)} of {total} sampled frames")
        elif none / total > s.max_no_face:
            record.reject(f"no face in {none} of {total} sampled frames")
        elif multi / total > s.max_multi_face:
            record.reject(f"several faces in {multi} of {total} sampled frames")
        elif row["face_score_mean"] < s.min_face_score:
            record.reject(f"face score {row['face_score_mean']:.2f} < {s.min_face_score:g}")
        elif row["face_size_min"] < s.min_face_size:
            record.reject(f"face size {row['face_size_min']:.0f} px < {s.min_face_size:g} px")
        if record.keep and "views" in s.stages:
            faces += self.pose_grid(record, factor, typical, set(record.face_indices))
        record.faces = sorted(faces, key=lambda f: f["frame"])

    def pose_grid(self, record: ClipRecord, factor: int, typical: np.ndarray, seen: set[int]) -> list[dict]:
        """The main person's face on each frame of the denser pose grid not yet looked at (a kept clip only): the
        views are chosen from the head poses of the whole clip, not only of the sampled frames."""
        faces = []
        for index in record.pose_indices:
            if index in seen:
                continue
            found = self.analyzer.detect(upscale(record.frames[index], factor), crop_512=False)
            if found and _same_person([found[0].embedding], typical)[0] >= self.settings.min_same_person:
                faces.append(_face_record(found[0], index, factor))
        return faces


def _face_record(face: Any, frame: int, factor: int) -> dict[str, Any]:
    """What the later stages need of a frame's main face (detection coordinates: the frame upscaled ``factor``×).
    ``pose`` is :func:`~fantasyid.face.pose.rigid_head_pose`: from the eyes and nose, which expression does not move."""
    from fantasyid.face.pose import rigid_head_pose

    return {
        "frame": frame, "score": float(face.score), "factor": factor, "pose": rigid_head_pose(face.landmarks),
        "bbox_det": np.asarray(face.bbox, np.float32), "landmarks_det": np.asarray(face.landmarks, np.float32),
    }  # fmt: skip


def _typical_face(embeddings: list[np.ndarray]) -> np.ndarray:
    """The clip's typical face: the normalised median of its faces' ArcFace embeddings (zeros when none)."""
    if not embeddings:
        return np.zeros(1, np.float32)
    typical = np.median(np.stack(embeddings), axis=0)  # (512,)
    return typical / max(float(np.linalg.norm(typical)), 1e-8)


def _same_person(embeddings: list[np.ndarray], typical: np.ndarray) -> list[float]:
    """ArcFace cosine of each (L2-normalised) embedding to the typical face; a face below ``min_same_person`` is
    someone other than the clip's main person."""
    return [float(v) for v in np.stack(embeddings) @ typical] if embeddings else []


class TextStage:
    """OCR on the sampled OCR frames; rejects clips with text in too many of them (subtitles, captions burnt in)."""

    name = "text"

    def __init__(self, settings: PrepSettings, out_dir: Path | None = None):
        rapidocr = require("rapidocr", "prep", "the OCR subtitle filter")
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.settings = settings
        # det at most 640 px on the long side (frames are not upscaled beyond that); no angle classifier
        self.engine = rapidocr.RapidOCR(params={
            "Global.log_level": "error", "Global.use_cls": False, "Det.limit_type": "max", "Det.limit_side_len": 640,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        })  # fmt: skip

    def text_boxes(self, frame: np.ndarray) -> list[np.ndarray]:
        """Polygons (4, 2) of the text lines read with at least ``min_text_score`` confidence."""
        result = self.engine(np.ascontiguousarray(frame[:, :, ::-1]))  # RapidOCR reads OpenCV's BGR order
        if result.boxes is None or result.scores is None:
            return []
        return [np.asarray(b, np.float64) for b, score in zip(result.boxes, result.scores)
                if score >= self.settings.min_text_score]  # fmt: skip

    def __call__(self, records: list[ClipRecord]) -> list[ClipRecord]:
        for record in _active(records, "text", self.settings):
            self.run(record)
        return records

    def run(self, record: ClipRecord) -> None:
        row = record.row
        factor = detection_scale(row["height"], row["width"], self.settings.det_min_side)
        with_text, areas = 0, []
        for index in record.ocr_indices:
            frame = upscale(record.frames[index], factor)
            pixels = float(frame.shape[0] * frame.shape[1])
            # a box over most of the frame is RapidOCR misreading a clean picture as one glyph, not text
            shares = [a for a in (_polygon_area(b) / pixels for b in self.text_boxes(frame)) if a <= MAX_TEXT_BOX]
            with_text += bool(shares)
            areas.append(min(1.0, sum(shares)))
        total = len(record.ocr_indices)
        row.update(text_frames=total, text_fraction=with_text / total, text_area=float(np.mean(areas)))
        record.ran("text")
        if with_text >= min(2, total) and row["text_fraction"] > self.settings.max_text_fraction:
            record.reject(f"text in {with_text} of {total} OCR frames (subtitles)")


#: Text boxes covering more than this fraction of the frame are ignored (OCR false positives on clean frames).
MAX_TEXT_BOX = 0.5


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))  # shoelace


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    from fantasyid.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


class ViewsStage:
    """``views`` faces that cover the clip's yaw and pitch; their aligned crops written as PNG."""

    name = "views"

    def __init__(self, settings: PrepSettings, out_dir: Path):
        self.settings = settings
        self.out_dir = Path(out_dir)

    def __call__(self, records: list[ClipRecord]) -> list[ClipRecord]:
        for record in _active(records, "views", self.settings):
            self.run(record)
        return records

    def run(self, record: ClipRecord) -> None:
        from fantasyid.face import align_ffhq
        from fantasyid.face.pose import viewpoint_indices

        s = self.settings
        # viewpoint only: yaw and pitch (roll is an in-plane turn of the same view; expression is kept out by the
        # eyes-and-nose pose); the most frontal first, then the extremes of yaw and pitch, then the most different
        chosen = [record.faces[i] for i in viewpoint_indices([f["pose"] for f in record.faces], s.views)]
        folder = asset_dir(self.out_dir, record.id)
        for stale in folder.glob(".*.partial*"):  # temporary files of a run killed while writing this clip
            stale.unlink()
        views = []
        for k, face in enumerate(chosen):
            frame = upscale(record.frames[face["frame"]], face["factor"])
            crop = align_ffhq(frame, face["landmarks_det"], s.crop_size)
            path = folder / f"view{k}.png"
            _write_png(path, crop)
            landmarks = face["landmarks_det"] / face["factor"]  # (5, 2) in source pixels
            yaw, pitch, roll = face["pose"]
            views.append({
                "frame": int(face["frame"]), "crop": path.relative_to(self.out_dir).as_posix(), "yaw": float(yaw),
                "pitch": float(pitch), "roll": float(roll), "score": face["score"],
                "landmarks": [float(v) for v in landmarks.reshape(-1)],
            })  # fmt: skip
        record.row["views"] = views
        record.faces = chosen  # the 3D stage reads the chosen faces, in view order
        record.ran("views")
        if len(views) < s.views:
            record.reject(f"only {len(views)} face views (need {s.views})")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    torch = require("torch", "face", "DECA and captioning")
    return "cuda" if torch.cuda.is_available() else "cpu"


class ShapeStage:
    """DECA + FLAME on every chosen view (the paper's DECA crop around the detector box): shape codes + vertices."""

    name = "3d"

    def __init__(self, settings: PrepSettings, out_dir: Path):
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.model = None
        if settings.has_3d_files and "3d" in settings.stages:
            from fantasyid.face.deca import DecaFlame

            self.model = DecaFlame.from_files(settings.deca, settings.flame, device=resolve_device(settings.device))

    def __call__(self, records: list[ClipRecord]) -> list[ClipRecord]:
        for record in _active(records, "3d", self.settings):
            if self.model is None:
                record.row["shape_status"] = NO_3D_FILES
            else:
                self.run(record)
        return records

    def run(self, record: ClipRecord) -> None:
        import torch

        from fantasyid.io import atomic_path

        batch = torch.cat([
            self.model.prepare(upscale(record.frames[f["frame"]], f["factor"]), mode="paper", bbox=f["bbox_det"])
            for f in record.faces
        ])  # (V, 3, 224, 224)
        with torch.no_grad():
            codes = self.model.encoder(batch)
            vertices = self.model.flame.shape_only(codes.shape)  # (V, N, 3)
        path = asset_dir(self.out_dir, record.id) / "shape.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, shape=codes.shape.float().cpu().numpy(), mode=np.array("paper"),
                     vertices=vertices.float().cpu().numpy().astype(np.float16))  # fmt: skip
        record.row["shape_file"] = path.relative_to(self.out_dir).as_posix()
        record.row["shape_status"] = "done"
        record.ran("3d")


class CaptionStage:
    """Captions from the user's file or sidecar stay; other kept clips are captioned by the model, in batches.

    A video captioner (Qwen2.5-VL) sees ``caption_frames`` of the face stage's sampled frames, evenly spread over
    the clip, with their frame rate; an image captioner sees the clip's middle frame.
    """

    name = "caption"

    def __init__(self, settings: PrepSettings, out_dir: Path | None = None):
        from fantasyid.data.caption import Captioner

        self.settings = settings
        self.captioner = None
        if settings.captioner and "caption" in settings.stages:
            self.captioner = Captioner(settings.captioner, device=resolve_device(settings.device),
                                       max_new_tokens=settings.caption_max_tokens, prompt=settings.caption_prompt)

    def frames(self, record: ClipRecord) -> tuple[list[np.ndarray], float]:
        """The frames the captioner sees, in time order, and their frame rate (source fps over the index step)."""
        from fantasyid.data.video import evenly_spaced

        if not self.captioner.video:
            return [record.frames[record.caption_index]], float(record.row["fps"])
        sampled = record.face_indices
        indices = [sampled[i] for i in evenly_spaced(len(sampled), self.settings.caption_frames)]
        span = indices[-1] - indices[0]
        fps = float(record.row["fps"]) * ((len(indices) - 1) / span if span else 1.0)
        return [record.frames[i] for i in indices], fps

    def __call__(self, records: list[ClipRecord]) -> list[ClipRecord]:
        active = _active(records, "caption", self.settings)
        todo = [r for r in active if not r.row["caption"]] if self.captioner else []
        size = self.settings.caption_batch
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            clips, rates = zip(*(self.frames(r) for r in chunk))
            captions = self.captioner(list(clips), list(rates))
            for record, caption in zip(chunk, captions):
                record.row["caption"] = caption
                record.row["caption_source"] = f"model:{self.captioner.name}"
        for record in active:
            record.ran("caption")
            if self.settings.require_caption and not record.row["caption"]:
                record.reject("no caption")
        return records


#: The stages in the order they run (after probing and decoding).
STAGE_CLASSES: tuple[tuple[str, type], ...] = (
    ("face", FaceStage), ("motion", MotionStage), ("text", TextStage), ("views", ViewsStage), ("3d", ShapeStage),
    ("caption", CaptionStage),
)  # fmt: skip


def build_stages(settings: PrepSettings, out_dir: Path) -> list[Any]:
    """The stage objects a worker needs (models loaded once), in order; stages not requested are left out."""
    wanted = [(name, cls) for name, cls in STAGE_CLASSES if name in settings.stages]
    return [cls(settings, out_dir) for _, cls in wanted]
