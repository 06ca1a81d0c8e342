"""``fantasyid generate`` as a library: items in, mp4 + JSON sidecar per item out, resumable, shared, failure-tolerant.

A batch is a list of :class:`GenerationItem` (reference image, prompt, optional seed and name). Each finished item is
an H.264 mp4 and a JSON sidecar beside it (the request — prompt, negative prompt, seed, reference hash, model,
settings — plus model hashes, identity details and time taken). Both are written atomically, the sidecar last.

Re-running a batch resumes it: an item is skipped only when its sidecar's request equals the request made now and
its mp4 decodes to the expected frames (:class:`fantasyid.batch.BatchFolder`); an item whose request changed is said
so and made again (refused with ``no_overwrite``). Any number of processes may share one output folder: each item is
claimed with an exclusive lock file first (:mod:`fantasyid.batch.claims`), and ``shard`` splits a batch between
processes deterministically. A failing item is recorded (``OUT/.fantasyid/failed/``) and the batch goes on; the next
run tries it again.
"""

from __future__ import annotations

import csv
import json
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .batch import DEFAULT_CLAIM_TIMEOUT, BatchFolder, ClaimInfo, ItemCheck, Shard
from .errors import FantasyIDError, InputError
from .io import sha256_file, write_json, write_video

__all__ = [
    "GenerateSettings",
    "GenerationItem",
    "ItemResult",
    "BatchSummary",
    "read_prompt_file",
    "output_stem",
    "output_stems",
    "model_key",
    "item_request",
    "generate_batch",
    "batch_status",
    "run_generation",
]

SIDECAR_SUFFIX = ".json"


@dataclass
class GenerateSettings:
    """Sampler and output settings; defaults are the release's."""

    steps: int = 50  #: denoising steps
    guidance: float = 6.0  #: classifier-free guidance scale (text only)
    frames: int = 49  #: output frames (1 + a multiple of 8)
    height: int = 480
    width: int = 720
    fps: int = 8
    seed: int = 42  #: default seed of items that give none
    negative_prompt: str = ""
    cache: str | None = None  #: diffusers cache hook, e.g. "fbc:threshold=0.05" (fantasyid.pipelines.acceleration)
    compile: bool = False  #: torch.compile the transformer blocks

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
        model's (4 steps, 9 frames, 64×64). A value given (even 0, which is then refused) is never replaced."""
        tiny = model == "tiny"
        saved = _saved_checkpoint_size(model)  # our own checkpoint folder: the size its model was built for

        def pick(value: int | None, tiny_default: int, default: int) -> int:
            return value if value is not None else (tiny_default if tiny else default)

        return cls(
            steps=pick(steps, 4, 50),
            frames=frames if frames is not None else (saved[0] if saved else pick(None, 9, 49)),
            height=height if height is not None else (saved[1] if saved else pick(None, 64, 480)),
            width=width if width is not None else (saved[2] if saved else pick(None, 64, 720)),
            **others,
        )

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"--steps must be ≥ 1, got {self.steps}", hint="50 is the release's default")
        # CogVideoX's VAE makes 4 frames per latent frame after the first, and an even number of latent frames
        # decodes to the wrong count (5 → 8, 13 → 16): 1 + a multiple of 8 is what comes out as asked.
        if self.frames < 1 or (self.frames - 1) % 8:
            raise InputError(
                f"--frames must be 1 + a multiple of 8 (9, 17, …, 49), got {self.frames}",
                hint="CogVideoX's VAE decodes other counts to a different number of frames",
            )
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise InputError(f"--height/--width must be positive multiples of 16, got {self.height}×{self.width}")
        if self.fps < 1:
            raise InputError(f"--fps must be ≥ 1, got {self.fps}")
        if self.cache:  # normalised: every option written out, so the sidecar records the exact settings
            from .pipelines.acceleration import CacheSpec

            spec = CacheSpec.parse(self.cache)
            if spec.method == "fastercache" and self.guidance <= 1:
                raise InputError("--cache fastercache approximates the unconditional CFG half: it needs --guidance > 1")
            self.cache = str(spec)

    def warnings(self) -> list[str]:
        """Settings that run but are probably not what was meant."""
        notes = []
        if self.guidance < 1:
            notes.append(f"--guidance {self.guidance:g} is below 1: classifier-free guidance is off (the release uses 6)")
        return notes

    def request(self) -> dict[str, Any]:
        """The settings that change a video (the per-item seed and the negative prompt are kept apart)."""
        return {key: value for key, value in asdict(self).items() if key not in ("seed", "negative_prompt")}


def _saved_checkpoint_size(model: str) -> tuple[int, int, int] | None:
    """(frames, height, width) a checkpoint folder in our format was built for, read from its configs (no torch):
    the transformer's ``sample_frames`` and latent ``sample_height/width`` times the VAE's spatial factor. ``None``
    for anything else (``tiny``, ``released``, a hub id, the release's own folder)."""
    folder = Path(model).expanduser()
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        if not isinstance(index, dict) or not isinstance(index.get("fantasyid"), dict):
            return None
        transformer = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        scale = 2 ** (len(vae["block_out_channels"]) - 1)  # diffusers' vae_scale_factor_spatial
        return (int(transformer["sample_frames"]), int(transformer["sample_height"]) * scale,
                int(transformer["sample_width"]) * scale)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not our folder (or unreadable): the loader says what is wrong later


@dataclass
class GenerationItem:
    """One video to make. ``name`` (optional) becomes the output file stem after sanitising."""

    ref: Path
    prompt: str
    seed: int | None = None
    name: str | None = None
    row: int | None = None  #: line of the prompt file it came from (for messages)

    def where(self, index: int) -> str:
        return f"line {self.row}" if self.row is not None else f"item {index}"


@dataclass
class ItemResult:
    item: GenerationItem
    #: "done" (made now), "skipped" (already done for this request), "failed", "refused" (outputs of another request
    #: kept: no_overwrite) or "busy" (another live process is making it)
    status: str
    video: Path | None = None
    sidecar: Path | None = None
    error: str | None = None
    seconds: float = 0.0
    note: str | None = None  #: why it was (re)made: the request changed, the mp4 was broken, a dead claim was taken
    index: int = 0  #: position in the batch
    traceback: str | None = None  #: of a failure, for FANTASYID_DEBUG=1


@dataclass
class BatchSummary:
    results: list[ItemResult] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)  #: prompt-file rows that could not be read
    shard: Shard = field(default_factory=Shard)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def busy(self) -> int:
        return self.count("busy")

    @property
    def refused(self) -> int:
        return self.count("refused")

    @property
    def failed(self) -> int:
        return self.count("failed") + len(self.bad_rows)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.refused == 0


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


def _csv_rows(path: Path, text: str):
    """``(line, row)`` per CSV record; an unclosed quote (which would merge the following rows into one field) is an
    error naming the line where the quote opens."""
    lines = text.splitlines()
    reader = csv.DictReader(lines, strict=True)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise InputError(f"{path.name}:1: malformed CSV header ({exc})") from None
    if not fieldnames or not {"ref", "prompt"} <= {f.strip() for f in fieldnames}:
        raise InputError(
            f"{path}: a CSV prompt file needs a header with 'ref' and 'prompt'",
            hint="first line: ref,prompt,seed,name (seed and name optional); or use JSONL",
        )
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # strict mode: a quote still open at the end of the file, text after a quote
            if "unexpected end of data" in str(exc):
                what = f"a quote opened on line {start} is never closed"
            elif reader.reader.line_num > start:  # (DictReader.line_num is only updated after a good row)
                what = f"a quote opened on line {start} runs on to line {reader.reader.line_num} ({exc})"
            else:
                what = str(exc)
            raise InputError(
                f"{path.name}:{start}: malformed CSV: {what}",
                hint='a prompt with commas is written "a man, smiling", with "" for a quote inside it',
            ) from None
        end = reader.line_num
        if end > start:  # a quoted field ran over line ends: an unclosed quote merging rows (prompts hold no newline)
            raise InputError(
                f"{path.name}:{start}: malformed CSV: a quote opened on line {start} runs on to line {end}, merging "
                f"{end - start + 1} lines into one row",
                hint='close the quote on its line; a prompt with commas is written "a man, smiling"',
            )
        yield start, row, fieldnames


def read_prompt_file(path: str | Path) -> tuple[list[GenerationItem], list[str]]:
    """Read a batch: CSV with a header (``ref,prompt[,seed][,name]``) or JSONL (one object per line).

    Relative ``ref`` paths are relative to the prompt file. Returns the good items and a message per bad row (bad
    rows do not stop the others); a malformed file (an unclosed CSV quote) is an error naming the line.
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
        for number, row, fieldnames in _csv_rows(path, text):
            where = f"{path.name}:{number}"
            if row.get(None):  # more fields than the header names
                bad.append(f"{where}: {len(fieldnames) + len(row[None])} fields, the header has {len(fieldnames)} "
                           '(quote a prompt that holds commas: "a man, smiling")')  # fmt: skip
                continue
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


def _seed(item: GenerationItem, settings: GenerateSettings) -> int:
    return settings.seed if item.seed is None else item.seed


def output_stems(items: Sequence[GenerationItem], settings: GenerateSettings) -> list[str]:
    """Every item's file stem; two items with the same stem are an error naming both (before anything runs)."""
    stems, first = [], {}
    for index, item in enumerate(items):
        stem = output_stem(item, _seed(item, settings), index)
        key = stem.lower()  # case-insensitive file systems (macOS, Windows) would merge them too
        if key in first:
            other = first[key]
            raise InputError(
                f"{items[other].where(other)} and {item.where(index)} both write '{stem}.mp4'",
                hint="give the rows different names (the 'name' column), or leave 'name' empty for automatic names",
            )
        first[key] = index
        stems.append(stem)
    return stems


# ----------------------------------------------------------------------------------------------------- requests
def model_key(model: str, shape: str | Path | None = None, **others: Any) -> dict[str, Any]:
    """What identifies the model a video is made with, known before loading it: the ``--model`` given, the hash of
    the ``--shape`` file, and any other option that changes the video (``None`` values left out)."""
    key: dict[str, Any] = {"model": str(model), "shape_sha256": sha256_file(shape) if shape is not None else None}
    key.update({name: value for name, value in others.items() if value is not None})
    return key


def item_request(item: GenerationItem, seed: int, settings: GenerateSettings, model: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides an item's video; a finished item counts as done only for the same request."""
    return {
        "prompt": item.prompt,
        "negative_prompt": settings.negative_prompt,
        "seed": seed,
        "ref_sha256": sha256_file(item.ref),
        "model": model,
        "settings": settings.request(),
    }


def _default_model_key(model_info: dict[str, Any]) -> dict[str, Any]:
    return {"model": str(model_info.get("model")), "shape_sha256": model_info.get("shape_sha256")}


# ----------------------------------------------------------------------------------------------------- batch
def generate_batch(
    runner: Callable[[GenerationItem, int], Any],
    items: Sequence[GenerationItem],
    settings: GenerateSettings,
    out_dir: str | Path,
    model_info: dict[str, Any],
    on_item_start: Callable[[int, GenerationItem], None] | None = None,
    on_item_end: Callable[[int, ItemResult], None] | None = None,
    *,
    model: dict[str, Any] | None = None,
    shard: Shard | None = None,
    no_overwrite: bool = False,
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    on_note: Callable[[int, str], None] | None = None,
    before_first: Callable[[], None] | None = None,
) -> BatchSummary:
    """Run this shard's items through ``runner(item, seed) -> (frames, extra_info)`` and write mp4 + sidecar.

    ``runner`` makes one video (``frames`` ``(F, H, W, 3)``); a :class:`~fantasyid.errors.FantasyIDError` it raises
    fails that item only (recorded in ``OUT/.fantasyid/failed/``). ``model`` identifies the model in the request
    (:func:`model_key`; default: from ``model_info``). Items already done for this request are skipped; outputs of
    another request are made again, with a note saying what changed (kept, and the item ``refused``, with
    ``no_overwrite``). Each item is claimed before it is made, so other processes may share ``out_dir``; an item a live
    process holds is left to it (``busy``) and looked at again at the end. Partial files of killed runs are removed.
    ``before_first()`` runs once, before the first item is made (loading the model there means a finished batch loads
    nothing); what it raises stops the batch. Ctrl-C stops the batch; what was finished stays finished and the
    interrupted item leaves nothing behind.
    """
    stems = output_stems(items, settings)  # duplicate names: an error before anything runs
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = BatchFolder(out_dir, claim_timeout)
    shard = shard or Shard()
    model = model if model is not None else _default_model_key(model_info)
    summary = BatchSummary(shard=shard)
    run_start = time.time()
    folder.sweep_partials()
    prepared = []

    def prepare() -> None:
        if not prepared:
            if before_first is not None:
                before_first()
            prepared.append(True)

    def attempt(index: int) -> ItemResult:
        item, stem = items[index], stems[index]
        seed = _seed(item, settings)
        result = _make_item(runner, item, seed, stem, settings, folder, model_info, model, no_overwrite, run_start,
                            lambda text: on_note(index, text) if on_note else None, prepare)  # fmt: skip
        result.index = index
        return result

    waiting = []
    for index in shard.take(len(items)):
        if on_item_start is not None:
            on_item_start(index, items[index])
        result = attempt(index)
        if result.status == "busy":  # another process has it: look again at the end
            waiting.append(index)
            continue
        summary.results.append(result)
        if on_item_end is not None:
            on_item_end(index, result)
    for index in waiting:  # its owner may have finished it, failed, or died meanwhile
        result = attempt(index)
        summary.results.append(result)
        if on_item_end is not None:
            on_item_end(index, result)
    summary.results.sort(key=lambda r: r.index)
    return summary


def _make_item(runner, item, seed, stem, settings, folder: BatchFolder, model_info, model, no_overwrite, run_start,
               note, prepare) -> ItemResult:  # fmt: skip
    video, sidecar = folder.video(stem), folder.sidecar(stem)
    if not item.ref.is_file():
        error = f"reference image '{item.ref}' does not exist"
        folder.record_failure(stem, error)
        return ItemResult(item, "failed", error=error)
    request = item_request(item, seed, settings, model)
    check = folder.check(stem, request, settings.frames, settings.height, settings.width)
    if check.state == "done":
        return ItemResult(item, "skipped", video, sidecar)
    if no_overwrite and (video.exists() or sidecar.exists()):
        return ItemResult(item, "refused", error=f"{video.name}: {check.detail}; kept (--no-overwrite)")
    failed_now = _failed_in_this_run(item, folder, stem, run_start)
    if failed_now is not None:
        return failed_now
    claim = folder.claim(stem)
    if isinstance(claim, ClaimInfo):
        return ItemResult(item, "busy", note=f"being made by {claim.describe()}")
    with claim:  # look again: another process may have finished or failed it between our look and our claim
        check = folder.check(stem, request, settings.frames, settings.height, settings.width)
        if check.state == "done":
            return ItemResult(item, "skipped", video, sidecar)
        failed_now = _failed_in_this_run(item, folder, stem, run_start)
        if failed_now is not None:
            return failed_now
        folder.sweep_partials(only_stem=stem)  # what a killed owner of this item left
        reasons = [check.detail] if check.state == "stale" else []
        if claim.took_over:
            reasons.append(f"took over its claim: {claim.took_over}")
        text = "; ".join(reasons) or None
        prepare()  # outside the try: a model that cannot be loaded stops the batch, it does not fail every item
        if text:
            note(f"{video.name}: {text}; making it again" if check.state == "stale" else f"{video.name}: {text}")
        start = time.perf_counter()
        try:
            frames, extra = runner(item, seed)
            seconds = time.perf_counter() - start
            _write_checked_video(video, frames, settings)
            data = _sidecar(item, seed, settings, model_info, extra, video, seconds, request)
            write_json(sidecar, data | {"video_sha256": sha256_file(video)})  # reruns: an unchanged file is done
            folder.clear_failure(stem)
            return ItemResult(item, "done", video, sidecar, seconds=seconds, note=text)
        except FantasyIDError as exc:
            message = exc.message + (f" ({exc.hint})" if exc.hint else "")
            folder.record_failure(stem, message)
            return ItemResult(item, "failed", error=message, seconds=time.perf_counter() - start, note=text,
                              traceback=traceback.format_exc())


def _write_checked_video(video: Path, frames, settings: GenerateSettings) -> None:
    """Write the mp4 and make sure it decodes to the frames asked for (else no file and an error)."""
    from .batch.folder import video_problem

    shape = tuple(getattr(frames, "shape", ()))  # (F, H, W, 3)
    if shape[:3] != (settings.frames, settings.height, settings.width):
        raise InputError(f"the model made frames of shape {shape}, not ({settings.frames}, {settings.height}, "
                         f"{settings.width}, 3)", hint="a frame count or size the model cannot make as asked")  # fmt: skip
    write_video(video, frames, fps=settings.fps)
    problem = video_problem(video, settings.frames, settings.height, settings.width)
    if problem:
        video.unlink()
        raise InputError(f"{video.name} was written but {problem}")


def _failed_in_this_run(item, folder: BatchFolder, stem: str, run_start: float) -> ItemResult | None:
    """A failure recorded since this process started (by another process of the same run): not tried again now;
    an older failure is tried again (a rerun)."""
    failure = folder.failure(stem)
    if failure is None or float(failure.get("unix_time", 0)) < run_start:
        return None
    return ItemResult(item, "failed", error=f"{failure['error']} (in {failure['host']}:{failure['pid']})")


def _sidecar(item, seed, settings, model_info, extra, video: Path, seconds: float, request) -> dict[str, Any]:
    return {
        "status": "done",
        "video": video.name,
        "prompt": item.prompt,
        "negative_prompt": settings.negative_prompt,
        "seed": seed,
        "ref": str(item.ref.resolve()),
        "ref_sha256": request["ref_sha256"],
        "model": model_info,
        "settings": asdict(settings),
        "request": request,
        "identity": {k: v for k, v in extra.items() if k != "acceleration"},
        "acceleration": extra.get("acceleration"),  # cache/compile settings and what the cache skipped
        "seconds": round(seconds, 3),
        "fantasyid_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@dataclass
class ItemStatus:
    index: int
    item: GenerationItem
    stem: str
    check: ItemCheck


def batch_status(
    items: Sequence[GenerationItem],
    settings: GenerateSettings,
    out_dir: str | Path,
    model: dict[str, Any],
    *,
    shard: Shard | None = None,
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    on_item: Callable[[int], None] | None = None,
) -> list[ItemStatus]:
    """The state of every item (of ``shard``) in ``out_dir`` — done, claimed, failed, stale (with what changed) or
    missing — merged over every process that wrote there; loads no model and writes nothing."""
    folder = BatchFolder(out_dir, claim_timeout)
    stems = output_stems(items, settings)
    rows = []
    for index in (shard or Shard()).take(len(items)):
        item, stem = items[index], stems[index]
        request = item_request(item, _seed(item, settings), settings, model) if item.ref.is_file() else None
        rows.append(ItemStatus(index, item, stem,
                               folder.status(stem, request, settings.frames, settings.height, settings.width)))
        if on_item is not None:
            on_item(index)
    return rows


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
    shard: Shard | None = None,
    no_overwrite: bool = False,
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    step_callback: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Make every item of ``shard`` (what ``fantasyid generate`` runs), with Rich progress bars.

    The output folder is checked first; the pipeline is loaded once, when the first item that is not done yet is
    claimed (a rerun of a finished batch loads nothing). ``loaded`` (a
    :class:`~fantasyid.pipelines.loading.LoadedPipeline` of ``model``) skips loading. With ``device`` ``auto`` or
    ``cuda``, a launcher's ``LOCAL_RANK`` picks the GPU. ``step_callback(done, total)`` is called after every
    denoising step (the web app's progress bar).
    """
    import PIL.Image
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .batch import local_rank, pick_gpu, sigterm_as_interrupt
    from .face import load_image
    from .face.shape import check_shape_mode, load_shape_file
    from .io import check_output_dir
    from .pipelines.acceleration import describe_skips
    from .pipelines.loading import fit_size, load_pipeline

    console = console or Console(stderr=True)
    check_output_dir(out_dir)
    shard = shard or Shard()
    vertices = load_shape_file(shape) if shape is not None else None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = pick_gpu(device, local_rank(), gpus)
    key = model_key(model, shape, variant=variant)
    model_info: dict[str, Any] = {}
    state: dict[str, Any] = {"loaded": loaded}

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        videos = progress.add_task("videos", total=len(shard.take(len(items))))
        steps = progress.add_task("steps", total=settings.steps, visible=False)

        def load() -> None:  # once, before the first item that is made
            if state["loaded"] is None:
                loading = progress.add_task(f"loading the {model} model…", total=None)
                state["loaded"] = load_pipeline(
                    model, variant=variant, device=device, dtype=dtype, offload=offload, face_pack=face_pack,
                    mesh=None if mesh is None else str(mesh), flame=None if flame is None else str(flame),
                    deca=None if deca is None else str(deca), download=download, shape_needed=vertices is None,
                    height=settings.height, width=settings.width,
                )
                progress.remove_task(loading)
            fit_size(state["loaded"], settings.height, settings.width)  # tiny takes any size; a fixed-size one refuses
            if shape is not None:
                check_shape_mode(shape, state["loaded"].variant)  # a SHAPE.npz of the other mode is refused
            info = state["loaded"].info
            if info.get("random_weights"):
                console.print(f"[yellow]note:[/] {info['note']}")
            state["loaded"].pipe.set_progress_bar_config(disable=True)
            if settings.cache or settings.compile:
                from .pipelines.acceleration import accelerate

                accelerate(state["loaded"].pipe, cache=settings.cache, compile=settings.compile)
            model_info.update(info)
            if shape is not None:
                model_info["shape_file"] = str(Path(shape).resolve())
                model_info["shape_sha256"] = key["shape_sha256"]

        def on_step(pipeline, step, timestep, tensors):
            progress.update(steps, completed=step + 1)
            if step_callback is not None:
                step_callback(step + 1, settings.steps)
            return {}

        def runner(item: GenerationItem, seed: int):
            pipe = state["loaded"].pipe
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
            if result.acceleration is not None:
                extra["acceleration"] = result.acceleration
                skipped = result.acceleration.get("skipped")
                if skipped:
                    console.print(f"cache {settings.cache.split(':')[0]}: {describe_skips(skipped)} ({item.ref.name})")
            return result.frames[0], extra

        with sigterm_as_interrupt():  # a launcher stopping this process: the claim and partial files go too
            summary = generate_batch(
                runner, items, settings, out_dir, model_info,
                on_item_end=lambda index, result: progress.advance(videos),
                model=key, shard=shard, no_overwrite=no_overwrite, claim_timeout=claim_timeout, before_first=load,
                on_note=lambda index, text: console.print(f"[yellow]note:[/] {text}", highlight=False, soft_wrap=True),
            )
    return summary
