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

The package, read top-down: :mod:`.run` (one call: load the model, run the batch with progress bars) →
:mod:`.batch` (the loop: claims, skips, failures, status) → :mod:`.request` (file names, the request that decides a
video, the sidecar) → :mod:`.prompts` (prompt files → items) and :mod:`.settings` (:class:`GenerateSettings`, the
defaults a model brings). Nothing here imports torch at module level.
"""

from __future__ import annotations

from .batch import BatchSummary, ItemResult, ItemStatus, batch_status, generate_batch
from .prompts import GenerationItem, read_prompt_file
from .request import SIDECAR_SUFFIX, item_request, model_key, output_stem, output_stems
from .run import run_generation
from .settings import GenerateSettings

__all__ = [
    "GenerateSettings",
    "GenerationItem",
    "ItemResult",
    "ItemStatus",
    "BatchSummary",
    "SIDECAR_SUFFIX",
    "read_prompt_file",
    "output_stem",
    "output_stems",
    "model_key",
    "item_request",
    "generate_batch",
    "batch_status",
    "run_generation",
]
