"""What the web app does, without the web: check a reference photo, edit the 3D face, generate, evaluate.

Every action goes through the library the command line uses — :func:`fantasyid.generation.run_generation` (same mp4,
same sidecar as ``fantasyid generate``), :func:`fantasyid.editing.run.run_edit_shape` (same ``SHAPE.npz`` and
preview as ``fantasyid edit-shape``) and :func:`fantasyid.metrics.evaluate_runs` (same numbers as ``fantasyid eval``)
— on one pipeline loaded at start-up. Everything is written under one output folder:

* ``refs/<sha256[:16]>.<ext>``: each uploaded photo, kept so that the sidecars' ``ref`` stays valid;
* ``<name>.mp4`` + ``<name>.json``: the videos and their sidecars (``fantasyid eval OUT`` works on the folder);
* ``shapes/<name>.npz`` and ``shapes/<name>.png``: edited 3D faces and their previews;
* ``eval/<name>/``: the evaluation of one video (``summary.json``, ``per_video.csv``, tables).

Errors a user can cause raise :class:`~fantasyid.errors.FantasyIDError`; :func:`error_text` turns one into the two
lines the command line prints (``error: …`` / ``hint: …``).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.errors import FantasyIDError, InputError
from fantasyid.io import sha256_file

__all__ = ["AppBackend", "AppConfig", "FaceCheck", "Generated", "MAX_UPLOAD_BYTES", "error_text"]

#: Largest reference photo the app accepts (bytes); checked before the file is opened.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Photo endings the app accepts (what :func:`fantasyid.face.load_image` reads).
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: Shape sliders move traits in prior standard deviations, within ± this.
SLIDER_RANGE = 3.0


def error_text(exc: FantasyIDError) -> str:
    """The command line's two lines for ``exc``: ``error: <message>`` and, when there is one, ``hint: <hint>``."""
    return f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else "")


@dataclass
class AppConfig:
    """How the app was started: model, sizes of the videos it makes, and where it writes."""

    model: str = "released"
    out: Path = Path("app_outputs")
    device: str = "auto"
    dtype: str = "auto"
    face_root: Path | None = None  #: model root of the face pack (default: $FANTASYID_HOME)
    frames: int | None = None  #: default: the model's (tiny 9, released 49)
    height: int | None = None
    width: int | None = None
    fps: int | None = None  #: None: the model's own
    flame: Path | None = None
    deca: Path | None = None
    memory: str | None = None  #: GPU memory to fit in, as ``generate --memory`` (default: auto)


@dataclass
class FaceCheck:
    """The faces found in a reference photo."""

    photo: Path  #: the copy under ``OUT/refs/``
    annotated: np.ndarray  #: (H, W, 3) uint8: the photo with every face's box (the used one green, others grey)
    boxes: list[tuple[float, float, float, float]]  #: largest first: the first is used
    message: str


@dataclass
class Generated:
    video: Path
    sidecar: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)


class AppBackend:
    """One loaded pipeline, used by every request of the app (the web layer runs one generation at a time)."""

    def __init__(self, config: AppConfig, loaded: Any = None):
        self.config = config
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if loaded is None:
            from fantasyid.generation import GenerateSettings
            from fantasyid.pipelines.loading import load_pipeline
            from fantasyid.pipelines.memory import plan_for

            size = GenerateSettings.for_model(config.model, frames=config.frames, height=config.height,
                                              width=config.width)
            prediction, _ = plan_for(config.model, config.memory, device=config.device, dtype=config.dtype,
                                     frames=size.frames, height=size.height, width=size.width)  # before loading
            loaded = load_pipeline(
                config.model, device=config.device, dtype=config.dtype, memory_plan=prediction.plan,
                face_root=None if config.face_root is None else str(config.face_root),
                flame=None if config.flame is None else str(config.flame),
                deca=None if config.deca is None else str(config.deca),
            )  # fmt: skip
        self.loaded = loaded
        self._lock = threading.Lock()  # the pipeline is not re-entrant: one generation or edit at a time

    # ----------------------------------------------------------------------------------------------- photo
    def store_photo(self, upload: str | Path | None) -> Path:
        """Check an uploaded photo (present, an image ending, not huge) and keep a copy under ``OUT/refs/``."""
        if upload is None or not str(upload):
            raise InputError("no reference photo", hint="upload a photo with one clearly visible face")
        path = Path(upload)
        if not path.is_file():
            raise InputError(f"reference photo '{path.name}' was not received", hint="upload it again")
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            raise InputError(
                f"'{path.name}' is not a supported photo format",
                hint="use a JPEG, PNG, WebP, BMP or TIFF file",
            )
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise InputError(
                f"'{path.name}' is {size / 2**20:.1f} MB; the app takes photos up to {MAX_UPLOAD_BYTES // 2**20} MB",
                hint="resize or re-compress the photo",
            )
        digest = sha256_file(path)
        kept = self.out / "refs" / f"{digest[:16]}{path.suffix.lower()}"
        if not kept.is_file():
            from fantasyid.io import atomic_path

            with atomic_path(kept) as tmp:
                shutil.copyfile(path, tmp)
        return kept

    def check_photo(self, upload: str | Path | None) -> FaceCheck:
        """Find the faces of an uploaded photo: the box of each, and which one generation uses (the largest)."""
        from PIL import Image, ImageDraw

        from fantasyid.errors import NoFaceError
        from fantasyid.face import load_image

        photo = self.store_photo(upload)
        rgb = load_image(photo)  # (H, W, 3) uint8; unreadable or oversized images are an InputError
        faces = self.loaded.pipe.face_analyzer.detect(rgb, crop_512=False)
        if not faces:
            raise NoFaceError(f"no face found in '{Path(upload).name}'",
                              hint="use a photo with one clearly visible, frontal face")  # fmt: skip
        canvas = Image.fromarray(rgb)
        draw = ImageDraw.Draw(canvas)
        width = max(2, round(max(rgb.shape[:2]) / 200))
        boxes = [tuple(float(v) for v in face.bbox) for face in faces]
        for number, box in reversed(list(enumerate(boxes, start=1))):  # the used face drawn last, on top
            colour = (40, 200, 60) if number == 1 else (170, 170, 170)
            draw.rectangle(box, outline=colour, width=width)
            draw.text((box[0] + width, box[1] + width), str(number), fill=colour)
        if len(faces) == 1:
            message = "1 face found (green box): it is used"
        else:
            message = f"{len(faces)} faces found: the largest (green box, 1) is used"
        return FaceCheck(photo, np.asarray(canvas), boxes, message)

    # ----------------------------------------------------------------------------------------------- shape
    def edit_shape(self, upload: str | Path | None, values: Mapping[str, float]) -> tuple[Path | None, Path, str]:
        """Edit the photo's 3D face by ``values`` (trait → change in prior standard deviations).

        Returns ``(SHAPE.npz or None when nothing is changed, preview PNG, summary)``; the files are what
        ``fantasyid edit-shape`` writes.
        """
        from fantasyid.editing import TRAIT_NAMES, parse_edit
        from fantasyid.editing.run import EditShapeRequest, run_edit_shape

        unknown = sorted(set(values) - set(TRAIT_NAMES))
        if unknown:
            raise InputError(f"unknown trait {', '.join(unknown)}", hint=f"traits: {', '.join(TRAIT_NAMES)}")
        for name, value in values.items():
            if not abs(float(value)) <= SLIDER_RANGE:
                raise InputError(f"{name} {float(value):+g} sd is out of range",
                                 hint=f"move it within ±{SLIDER_RANGE:g} standard deviations")  # fmt: skip
        edits = [parse_edit(name, f"{float(value):+g}sd") for name, value in values.items() if float(value) != 0.0]
        photo = self.store_photo(upload)
        tag = "_".join(f"{edit.trait}{edit.value:+g}" for edit in edits) or "original"
        stem = f"{photo.stem}_{tag}"
        shape, preview = self.out / "shapes" / f"{stem}.npz", self.out / "shapes" / f"{stem}.png"
        request = EditShapeRequest(
            edits=edits, out=shape, ref=photo, preview=preview, model=self.config.model, device=self._device(),
            mode=getattr(self.loaded, "variant", None),
            face_root=self.config.face_root, flame=self.config.flame, deca=self.config.deca, loaded=self.loaded,
        )
        with self._lock:
            outcome = run_edit_shape(request)
        result = outcome.result
        lines = [
            f"{name}: {before:.2f} → {after:.2f} {unit}"
            for name, unit, before, after in zip(
                result.trait_names, result.trait_units, result.traits_before, result.traits_after
            )
        ]
        if result.changed:
            lines.append(f"shape coefficients moved by ‖Δβ‖ = {result.coefficient_change:.2f} (limit "
                         f"{result.max_change:g})")  # fmt: skip
        return (shape if edits else None), preview, "\n".join(lines)

    # ----------------------------------------------------------------------------------------------- generate
    def generate(
        self,
        upload: str | Path | None,
        prompt: str,
        *,
        seed: int = 42,
        steps: int | None = None,
        guidance: float = 6.0,
        shape: str | Path | None = None,
        step_callback: Callable[[int, int], None] | None = None,
    ) -> Generated:
        """One video with ``fantasyid generate``'s code and files (mp4 + sidecar in the output folder)."""
        import json

        from rich.console import Console

        from fantasyid.generation import GenerateSettings, GenerationItem, run_generation

        prompt = (prompt or "").strip()
        if not prompt:
            raise InputError("the prompt is empty", hint="describe what the person does, e.g. 'a woman smiles'")
        try:
            seed = int(seed)
            steps = None if steps in (None, "") else int(steps)
        except (TypeError, ValueError):
            raise InputError("seed and steps must be whole numbers") from None
        settings = GenerateSettings.for_model(
            self.config.model, steps=steps, frames=self.config.frames, height=self.config.height,
            width=self.config.width, guidance=float(guidance), fps=self.config.fps, seed=seed,
        )  # fmt: skip
        photo = self.store_photo(upload)
        name = f"app_{time.strftime('%Y%m%d-%H%M%S')}_{photo.stem[:8]}_s{seed}"
        item = GenerationItem(ref=photo, prompt=prompt, seed=seed, name=name)
        with self._lock:
            summary = run_generation(
                [item], settings, self.out, model=self.config.model, shape=shape, console=Console(quiet=True),
                loaded=self.loaded, step_callback=step_callback,
            )  # fmt: skip
        result = summary.results[0]
        if result.status == "failed" or result.video is None:
            raise InputError(result.error or "generation failed")
        sidecar = json.loads(Path(result.sidecar).read_text(encoding="utf-8"))
        notes = [self.loaded.info["note"]] if self.loaded.info.get("random_weights") else []
        return Generated(Path(result.video), sidecar, result.seconds, notes)

    # ----------------------------------------------------------------------------------------------- evaluate
    def evaluate(self, video: str | Path | None, metrics: str = "rs,ifs,fm") -> tuple[str, Path]:
        """RS / IFS / FM of one generated video against its reference (from its sidecar), as ``fantasyid eval``.

        Returns a Markdown table and the folder the evaluation files were written to.
        """
        from fantasyid.metrics import evaluate_runs

        if video is None or not Path(video).is_file():
            raise InputError("no video to evaluate yet", hint="generate one first")
        video = Path(video)
        out_dir = self.out / "eval" / video.stem
        summary = evaluate_runs(
            [video], metrics, face_root=self.config.face_root, out_dir=out_dir, device=self._device(),
        )  # fmt: skip
        run = summary.runs[0]
        result = run.videos[0]

        def show(value: float | None) -> str:
            return "—" if value is None else f"{value:.4f}"

        rows = [f"| {name.upper()} | {show(getattr(run, name))} |" for name in summary.metrics]
        lines = ["| metric | value |", "|---|---|", *rows, "",
                 f"{result.frames} frames evaluated, {result.frames_without_face} without a face "
                 f"(status: {result.status}{': ' + result.message if result.message else ''}).",
                 f"Face pack: {summary.provenance['face_pack']['pack']}. Files: `{out_dir}`."]  # fmt: skip
        return "\n".join(lines), out_dir

    def _device(self) -> str:
        return str(self.loaded.info.get("device", "cpu"))
