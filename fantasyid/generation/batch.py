"""The batch loop: each item of this process's shard claimed, made by a runner, written (mp4 checked, then its
sidecar), skipped when already done for the same request, and recorded when it fails; and the status of a batch
folder without making anything."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch import DEFAULT_CLAIM_TIMEOUT, BatchFolder, ClaimInfo, ItemCheck, Shard
from ..errors import FantasyIDError, InputError
from ..io import sha256_file, write_json, write_video
from .prompts import GenerationItem
from .request import default_model_key, item_request, item_seed, make_sidecar, output_stems
from .settings import GenerateSettings

__all__ = ["BatchSummary", "ItemResult", "ItemStatus", "batch_status", "generate_batch"]


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
    model = model if model is not None else default_model_key(model_info)
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
        seed = item_seed(item, settings)
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
            data = make_sidecar(item, seed, settings, model_info, extra, video, seconds, request)
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
    from ..batch.folder import video_problem

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
        request = item_request(item, item_seed(item, settings), settings, model) if item.ref.is_file() else None
        rows.append(ItemStatus(index, item, stem,
                               folder.status(stem, request, settings.frames, settings.height, settings.width)))
        if on_item is not None:
            on_item(index)
    return rows

