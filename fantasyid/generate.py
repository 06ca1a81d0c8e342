"""``fantasyid generate`` as a library: items in, mp4 + JSON sidecar per item out, resumable, failure-tolerant.

A batch is a list of :class:`GenerationItem` (reference image, prompt, optional seed and name). Each finished item is
an H.264 mp4 and a JSON sidecar beside it (prompt, seed, reference path and hash, model ids and hashes, settings, time
taken). Both are written atomically, the sidecar last: an item counts as finished only when its sidecar says
``"status": "done"`` and its mp4 exists, so re-running the same batch resumes where it stopped. A failing item is
recorded and the batch goes on.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import FantasyIDError, InputError
from .io import sha256_file, write_json, write_video

__all__ = [
    "GenerateSettings",
    "GenerationItem",
    "ItemResult",
    "BatchSummary",
    "read_prompt_file",
    "output_stem",
    "generate_batch",
]

SIDECAR_SUFFIX = ".json"


@dataclass
class GenerateSettings:
    """Sampler and output settings; defaults are the release's."""

    steps: int = 50  #: denoising steps
    guidance: float = 6.0  #: classifier-free guidance scale (text only)
    frames: int = 49  #: output frames (1 + a multiple of 4)
    height: int = 480
    width: int = 720
    fps: int = 8
    seed: int = 42  #: default seed of items that give none
    negative_prompt: str = ""

    @classmethod
    def for_model(
        cls,
        model: str,
        *,
        steps: int | None = None,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        **others: Any,
    ) -> GenerateSettings:
        """Settings with the unset sizes filled in for ``model``: the release's defaults, or for ``tiny`` the tiny
        model's (4 steps, 9 frames, 64×64)."""
        tiny = model == "tiny"
        return cls(
            steps=steps or (4 if tiny else 50),
            frames=frames or (9 if tiny else 49),
            height=height or (64 if tiny else 480),
            width=width or (64 if tiny else 720),
            **others,
        )

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"--steps must be ≥ 1, got {self.steps}")
        if self.frames < 1 or (self.frames - 1) % 4:
            raise InputError(f"--frames must be 1 + a multiple of 4 (e.g. 49), got {self.frames}")
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise InputError(f"--height/--width must be positive multiples of 16, got {self.height}×{self.width}")
        if self.fps < 1:
            raise InputError(f"--fps must be ≥ 1, got {self.fps}")


@dataclass
class GenerationItem:
    """One video to make. ``name`` (optional) becomes the output file stem after sanitising."""

    ref: Path
    prompt: str
    seed: int | None = None
    name: str | None = None
    row: int | None = None  #: line of the prompt file it came from (for messages)


@dataclass
class ItemResult:
    item: GenerationItem
    status: str  #: "done", "skipped" (already finished) or "failed"
    video: Path | None = None
    sidecar: Path | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class BatchSummary:
    results: list[ItemResult] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)  #: prompt-file rows that could not be read

    @property
    def done(self) -> int:
        return sum(r.status == "done" for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.status == "skipped" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results) + len(self.bad_rows)

    @property
    def ok(self) -> bool:
        return self.failed == 0


# ----------------------------------------------------------------------------------------------------- prompt files
def _item_from_mapping(row: dict[str, Any], base: Path, where: str) -> GenerationItem:
    ref = str(row.get("ref") or "").strip()
    prompt = str(row.get("prompt") or "").strip()
    if not ref or not prompt:
        raise InputError(f"{where}: needs both 'ref' and 'prompt'")
    seed = row.get("seed")
    if seed not in (None, ""):
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise InputError(f"{where}: seed must be an integer, got {seed!r}") from None
    else:
        seed = None
    name = row.get("name")
    ref_path = Path(ref).expanduser()
    if not ref_path.is_absolute():
        ref_path = base / ref_path
    return GenerationItem(ref=ref_path, prompt=prompt, seed=seed, name=str(name).strip() or None if name else None)


def read_prompt_file(path: str | Path) -> tuple[list[GenerationItem], list[str]]:
    """Read a batch: CSV with a header (``ref,prompt[,seed][,name]``) or JSONL (one object per line).

    Relative ``ref`` paths are relative to the prompt file. Returns the good items and a message per bad row (bad
    rows do not stop the others).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompt file '{path}' does not exist")
    base = path.parent
    items: list[GenerationItem] = []
    bad: list[str] = []
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise InputError(f"{where}: expected a JSON object")
                item = _item_from_mapping(row, base, where)
            except json.JSONDecodeError as exc:
                bad.append(f"{where}: not valid JSON ({exc.msg})")
                continue
            except InputError as exc:
                bad.append(exc.message)
                continue
            item.row = number
            items.append(item)
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"ref", "prompt"} <= {f.strip() for f in reader.fieldnames}:
            raise InputError(
                f"{path}: a CSV prompt file needs a header with 'ref' and 'prompt'",
                hint="first line: ref,prompt,seed,name (seed and name optional); or use JSONL",
            )
        for number, row in enumerate(reader, start=2):
            where = f"{path.name}:{number}"
            try:
                item = _item_from_mapping({k.strip(): v for k, v in row.items() if k}, base, where)
            except InputError as exc:
                bad.append(exc.message)
                continue
            item.row = number
            items.append(item)
    if not items and not bad:
        raise InputError(f"prompt file '{path}' has no rows")
    return items, bad


# ----------------------------------------------------------------------------------------------------- naming
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str, limit: int = 60) -> str:
    cleaned = _UNSAFE.sub("-", text).strip(".-_")[:limit]
    return cleaned or "video"


def output_stem(item: GenerationItem, seed: int, index: int) -> str:
    """A file stem that is safe on every file system and never a path: from ``name`` if given, else from the
    reference's stem, the item's index and the seed. Prompts never become file names."""
    if item.name:
        return _safe(item.name)
    return f"{index:04d}_{_safe(item.ref.stem, 40)}_s{seed}"


def _finished(video: Path, sidecar: Path) -> bool:
    if not (video.is_file() and sidecar.is_file()):
        return False
    try:
        return json.loads(sidecar.read_text(encoding="utf-8")).get("status") == "done"
    except (OSError, json.JSONDecodeError):
        return False


# ----------------------------------------------------------------------------------------------------- batch
def generate_batch(
    runner: Callable[[GenerationItem, int], Any],
    items: Sequence[GenerationItem],
    settings: GenerateSettings,
    out_dir: str | Path,
    model_info: dict[str, Any],
    on_item_start: Callable[[int, GenerationItem], None] | None = None,
    on_item_end: Callable[[int, ItemResult], None] | None = None,
) -> BatchSummary:
    """Run every item through ``runner(item, seed) -> (frames, extra_info)`` and write mp4 + sidecar.

    ``runner`` makes one video (``frames`` ``(F, H, W, 3)``); a :class:`~fantasyid.errors.FantasyIDError` it raises
    fails that item only. Finished items (sidecar says done) are skipped. Ctrl-C stops the batch; what was finished
    stays finished and the interrupted item leaves nothing behind.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary()
    for index, item in enumerate(items):
        seed = settings.seed if item.seed is None else item.seed
        stem = output_stem(item, seed, index)
        video, sidecar = out_dir / f"{stem}.mp4", out_dir / f"{stem}{SIDECAR_SUFFIX}"
        if on_item_start is not None:
            on_item_start(index, item)
        if _finished(video, sidecar):
            result = ItemResult(item, "skipped", video, sidecar)
        else:
            start = time.perf_counter()
            try:
                if not item.ref.is_file():
                    raise InputError(f"reference image '{item.ref}' does not exist")
                frames, extra = runner(item, seed)
                seconds = time.perf_counter() - start
                write_video(video, frames, fps=settings.fps)
                write_json(sidecar, _sidecar(item, seed, settings, model_info, extra, video, seconds))
                result = ItemResult(item, "done", video, sidecar, seconds=seconds)
            except FantasyIDError as exc:
                message = exc.message + (f" ({exc.hint})" if exc.hint else "")
                result = ItemResult(item, "failed", error=message, seconds=time.perf_counter() - start)
        summary.results.append(result)
        if on_item_end is not None:
            on_item_end(index, result)
    return summary


def _sidecar(item, seed, settings, model_info, extra, video: Path, seconds: float) -> dict[str, Any]:
    return {
        "status": "done",
        "video": video.name,
        "prompt": item.prompt,
        "negative_prompt": settings.negative_prompt,
        "seed": seed,
        "ref": str(item.ref.resolve()),
        "ref_sha256": sha256_file(item.ref),
        "model": model_info,
        "settings": asdict(settings),
        "identity": extra,
        "seconds": round(seconds, 3),
        "fantasyid_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ----------------------------------------------------------------------------------------------------- one call
def run_generation(
    items: Sequence[GenerationItem],
    settings: GenerateSettings,
    out_dir: str | Path,
    *,
    model: str = "released",
    variant: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    offload: bool = False,
    shape: str | Path | None = None,
    face_pack: str | None = None,
    mesh: str | Path | None = None,
    flame: str | Path | None = None,
    deca: str | Path | None = None,
    download: bool = False,
    console=None,
    loaded=None,
) -> BatchSummary:
    """Load the pipeline once, then make every item (what ``fantasyid generate`` runs), with Rich progress bars.

    ``loaded`` (a :class:`~fantasyid.pipelines.loading.LoadedPipeline` of ``model``) skips loading it again.
    """
    import PIL.Image
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .face import load_image
    from .face.shape import check_shape_mode, load_shape_file
    from .pipelines.loading import load_pipeline

    console = console or Console(stderr=True)
    vertices = load_shape_file(shape) if shape is not None else None
    if loaded is None:
        with console.status(f"loading the {model} model…"):
            loaded = load_pipeline(
                model, variant=variant, device=device, dtype=dtype, offload=offload, face_pack=face_pack,
                mesh=None if mesh is None else str(mesh), flame=None if flame is None else str(flame),
                deca=None if deca is None else str(deca), download=download, shape_needed=vertices is None,
            )
    if shape is not None:
        check_shape_mode(shape, loaded.variant)  # a SHAPE.npz of the other mode is refused
    if loaded.info.get("random_weights"):
        console.print(f"[yellow]note:[/] {loaded.info['note']}")
    pipe = loaded.pipe
    pipe.set_progress_bar_config(disable=True)
    model_info = dict(loaded.info)
    if shape is not None:
        model_info["shape_file"] = str(Path(shape).resolve())
        model_info["shape_sha256"] = sha256_file(shape)

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        videos = progress.add_task("videos", total=len(items))
        steps = progress.add_task("steps", total=settings.steps, visible=False)

        def on_step(pipeline, step, timestep, tensors):
            progress.update(steps, completed=step + 1)
            return {}

        def runner(item: GenerationItem, seed: int):
            image = PIL.Image.fromarray(load_image(item.ref))
            progress.reset(steps, total=settings.steps, visible=True, description=f"steps ({item.ref.name})")
            generator = torch.Generator(device="cpu").manual_seed(seed)
            result = pipe(
                image,
                item.prompt,
                negative_prompt=settings.negative_prompt,
                height=settings.height,
                width=settings.width,
                num_frames=settings.frames,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                generator=generator,
                vertices=vertices,
                callback_on_step_end=on_step,
            )
            identity = result.identity
            extra = {
                "faces_in_reference": identity.num_faces,
                "face_bbox": [round(v, 1) for v in identity.bbox] if identity.bbox else None,
            }
            if identity.num_faces > 1:
                console.print(f"[yellow]note:[/] {item.ref.name} has {identity.num_faces} faces; the largest was used")
            return result.frames[0], extra

        summary = generate_batch(
            runner, items, settings, out_dir, model_info,
            on_item_end=lambda index, result: progress.advance(videos),
        )
    return summary
