"""``--engine ray``: the prep stages on Ray Data, on this machine or a cluster (``--ray-address``).

Probing and decoding run as CPU tasks (``flat_map``: one video in, its clip records out); each model stage (face
detection, OCR, views, DECA, captioning) runs as an actor pool (``map_batches`` with ``ActorPoolStrategy``), so each
model loads once per actor. DECA and the captioner ask for a GPU when the cluster has one and ``--device`` is
``auto`` or ``cuda``. Records stream back to
the driver, which journals each finished clip exactly as the local engine does: the same rows, the same resume.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.data.clips import plan_clips
from fantasyid.data.settings import PrepSettings
from fantasyid.data.sources import VideoSource
from fantasyid.data.stages import STAGE_CLASSES, run_timed, stream_timed, timed
from fantasyid.errors import require

#: Stages that use a GPU when the cluster has one.
GPU_STAGES = ("3d", "caption")


class _Decode:
    """Ray task body: a video → its pending clip records with their frames decoded."""

    def __init__(self, settings: PrepSettings, num_shards: int):
        self.settings = settings
        self.num_shards = num_shards

    def __call__(self, item: dict[str, Any]):
        source = VideoSource(item["path"], item["caption"], item["caption_source"], item["key"])
        done = set(item["done"])
        with timed("probe") as clock:
            records = [r for r in plan_clips(source, self.settings, self.num_shards) if r.id not in done]
        clock.share(records)
        for record in stream_timed(source.path, records):  # one clip's frames at a time
            yield {"record": record, "video_clips": len(records)}


class _StageActor:
    """Ray actor body: one stage (its model loaded once), applied to batches of records."""

    def __init__(self, name: str, settings: PrepSettings, out_dir: str):
        self.stage = dict(STAGE_CLASSES)[name](settings, Path(out_dir))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = run_timed(self.stage, list(batch["record"]))
        out = np.empty(len(records), dtype=object)  # (B,) of ClipRecord
        out[:] = records
        return {"record": out, "video_clips": batch["video_clips"]}


def run_on_ray(
    tasks: Sequence[tuple[int, VideoSource, set[str]]],
    settings: PrepSettings,
    out_dir: Path,
    num_shards: int,
    emit: Callable[[int, dict[str, Any]], None],
    *,
    workers: int = 2,
    address: str | None = None,
    on_video: Callable[[], None] | None = None,
) -> None:
    """Run ``tasks`` (shard, source, clip ids already done) through the stages on Ray; ``emit(shard, row)`` each
    finished clip on the driver. Starts a local Ray instance with ``workers`` CPUs unless one is running or
    ``address`` names a cluster; shuts down only what it started."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token file written under the home folder
    ray = require("ray", "ray", "the Ray engine (--engine ray)")
    require("ray.data", "ray", "the Ray engine (--engine ray)")
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers
        ray.init(**kwargs)
        started = True
    try:
        _run(ray, tasks, settings, out_dir, num_shards, emit, workers, on_video)
    finally:
        if started:
            ray.shutdown()


def _run(ray, tasks, settings, out_dir, num_shards, emit, workers, on_video) -> None:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    resources = ray.cluster_resources()
    stages = [name for name, _ in STAGE_CLASSES if name in settings.stages]
    # scheduling shares, so that every pool and the decode tasks fit in the cluster's CPUs at once
    cpu_share = min(1.0, float(resources.get("CPU", workers)) / (workers * (len(stages) + 1)))
    gpus = float(resources.get("GPU", 0))
    items = [{"shard": shard, "path": s.path, "caption": s.caption, "caption_source": s.caption_source,
              "key": s.key, "done": sorted(done)} for shard, s, done in tasks]  # fmt: skip
    shard_of_path = {item["path"]: item["shard"] for item in items}
    dataset = ray.data.from_items(items).flat_map(_Decode(settings, num_shards), num_cpus=cpu_share)
    for name in stages:
        on_gpu = gpus and name in GPU_STAGES and settings.device != "cpu"  # --device auto or cuda asks for one
        gpu = min(1.0, gpus / workers) if on_gpu else 0
        dataset = dataset.map_batches(
            _StageActor,
            fn_constructor_args=(name, settings, str(out_dir)),
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
            batch_size=settings.caption_batch if name == "caption" else 1,
            batch_format="numpy",
            num_cpus=cpu_share,
            num_gpus=gpu,
        )
    seen: Counter[str] = Counter()
    finished = 0
    for item in dataset.iter_rows():
        record = item["record"]
        record.release()
        emit(shard_of_path[record.row["source_path"]], record.row)
        seen[record.row["source_path"]] += 1
        if seen[record.row["source_path"]] == int(item["video_clips"]) and on_video is not None:
            finished += 1
            on_video()
    for _ in range(len(items) - finished):  # videos with nothing left to do
        if on_video is not None:
            on_video()
