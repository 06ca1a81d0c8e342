"""Evaluation in shards: ``fantasyid eval --shard I --num-shards N`` and ``fantasyid eval --merge``.

Shard ``I`` of ``N`` evaluates the videos at positions ``I, I+N, I+2N, …`` of the runs' videos taken in order (run by
run, each run's videos by name) and writes one partial file, ``eval-part-IIIII-of-NNNNN.safetensors``:

* per video: RS, IFS and FM (each a mean over the video's frames or pairs) with the number of frames or pairs behind
  it, frame counts and status, as JSON in the file's metadata (floats round-trip exactly through JSON);
* per run: the FID sums of the generated face crops, as torchmetrics keeps them (Σx, Σxxᵀ in float64, the count);
* per reference image used: its Inception features, so that a reference shared by videos of several shards enters
  the run's reference set once, as it does in one process.

:func:`finish` turns partials into an :class:`~fantasyid.metrics.results.EvalSummary`. A single process is the
merge of its one partial, so merged shards give the same per-video values and run means and the same FID up to the
order of float64 additions. Partials are safetensors (no pickle); a merge refuses partials that disagree on the
metrics, settings, models or the list of runs and videos, and names missing or repeated shards.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fantasyid.errors import InputError, require
from fantasyid.io import atomic_path
from fantasyid.metrics.results import EvalSummary, RunResult, VideoResult

#: Written into every partial file; a merge refuses other formats.
PARTIAL_FORMAT = "fantasyid-eval-partial/1"
PARTIAL_PATTERN = re.compile(r"^eval-part-(\d{5})-of-(\d{5})\.safetensors$")


def partial_name(shard: int, num_shards: int) -> str:
    """The file name of shard ``shard``'s partial."""
    return f"eval-part-{shard:05d}-of-{num_shards:05d}.safetensors"


def check_shard(shard: int | None, num_shards: int | None) -> tuple[int, int]:
    """``(shard, num_shards)`` checked: both given or neither (``(0, 1)``), ``0 ≤ shard < num_shards``."""
    if shard is None and num_shards is None:
        return 0, 1
    if shard is None or num_shards is None:
        raise InputError("--shard and --num-shards go together", hint="e.g. --shard 0 --num-shards 4")
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise InputError(
            f"--shard {shard} --num-shards {num_shards}: the shard must lie in 0 … num_shards-1",
            hint=f"run shards 0 to {max(num_shards, 1) - 1}, one process each, then fantasyid eval --merge",
        )
    return shard, num_shards


def in_shard(position: int, shard: int, num_shards: int) -> bool:
    """Whether the video at ``position`` (over all runs, in order) belongs to ``shard``."""
    return position % num_shards == shard


@dataclass
class Partial:
    """What one shard measured (see the module docstring)."""

    shard: int
    num_shards: int
    config: dict[str, Any]  #: metrics, settings, models and every run's video list: must agree between shards
    provenance: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    videos: list[VideoResult] = field(default_factory=list)  #: this shard's videos
    fake: dict[int, Any] = field(default_factory=dict)  #: run index → FID FeatureStats of its generated crops
    references: dict[str, Any] = field(default_factory=dict)  #: resolved reference path → (2048,) features
    reference_of: dict[str, str] = field(default_factory=dict)  #: video path → resolved reference path
    source: Path | None = None  #: the file it was read from

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the partial into ``folder`` (atomically); returns its path."""
        torch = require("torch", "metrics", "eval partial files")
        safetensors_torch = require("safetensors.torch", "metrics", "eval partial files")
        tensors: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for index, stats in self.fake.items():
            tensors[f"fake.{index}.total"] = stats.total.contiguous()
            tensors[f"fake.{index}.outer"] = stats.outer.contiguous()
            counts[str(index)] = stats.count
        keys = sorted(self.references)
        for number, key in enumerate(keys):
            # a copy: features of one Inception batch are rows of one tensor, and safetensors refuses shared storage
            tensors[f"reference.{number}"] = torch.as_tensor(self.references[key]).clone()
        meta = {
            "format": PARTIAL_FORMAT,
            "shard": self.shard,
            "num_shards": self.num_shards,
            "config": self.config,
            "provenance": self.provenance,
            "notes": self.notes,
            "videos": [video.to_dict() for video in self.videos],
            "fake_counts": counts,
            "references": keys,
            "reference_of": self.reference_of,
        }
        path = Path(folder) / partial_name(self.shard, self.num_shards)
        with atomic_path(path) as tmp:
            safetensors_torch.save_file(tensors, str(tmp), metadata={"fantasyid": json.dumps(meta, allow_nan=False)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Partial:
        """Read a partial written by :meth:`save` (safetensors: tensors and JSON, nothing executable)."""
        from fantasyid.metrics.fid import FeatureStats

        safetensors = require("safetensors", "metrics", "eval partial files")
        safetensors_torch = require("safetensors.torch", "metrics", "eval partial files")
        path = Path(path)
        try:
            with safetensors.safe_open(str(path), framework="pt") as handle:
                meta = json.loads((handle.metadata() or {}).get("fantasyid", "null"))
            tensors = safetensors_torch.load_file(str(path))
        except (OSError, ValueError, RuntimeError, safetensors.SafetensorError) as exc:
            raise InputError(f"cannot read the eval partial {path}: {str(exc).splitlines()[0]}") from exc
        if not isinstance(meta, dict) or meta.get("format") != PARTIAL_FORMAT:
            raise InputError(
                f"{path} is not an eval partial of this fantasyid version (format {PARTIAL_FORMAT})",
                hint="write partials with fantasyid eval --shard I --num-shards N",
            )
        fake = {
            int(index): FeatureStats(tensors[f"fake.{index}.total"], tensors[f"fake.{index}.outer"], int(count))
            for index, count in meta["fake_counts"].items()
        }
        references = {key: tensors[f"reference.{number}"] for number, key in enumerate(meta["references"])}
        return cls(
            shard=int(meta["shard"]),
            num_shards=int(meta["num_shards"]),
            config=meta["config"],
            provenance=meta["provenance"],
            notes=list(meta["notes"]),
            videos=[VideoResult.from_dict(video) for video in meta["videos"]],
            fake=fake,
            references=references,
            reference_of=dict(meta["reference_of"]),
            source=path,
        )


def find_partials(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Partial files named directly or found in folders (``eval-part-*-of-*.safetensors``)."""
    if not sources:
        raise InputError("nothing to merge", hint="pass the folders (or files) the shards wrote: fantasyid eval --merge parts/")
    files: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if PARTIAL_PATTERN.match(p.name))
            if not found:
                raise InputError(
                    f"no eval partial (eval-part-*-of-*.safetensors) in {path}",
                    hint="the shards write them into their --out folder: fantasyid eval RUNS --shard I --num-shards N",
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"not found: {path}")
    return files


def _check_complete(partials: list[Partial]) -> None:
    first = partials[0]
    by_shard: dict[int, Partial] = {}
    for partial in partials:
        if partial.num_shards != first.num_shards:
            raise InputError(
                f"{partial.source} is shard {partial.shard} of {partial.num_shards}, {first.source} one of "
                f"{first.num_shards}: they come from different splits",
                hint="merge the partials of one split only",
            )
        if partial.shard in by_shard:
            raise InputError(
                f"shard {partial.shard} is given twice: {by_shard[partial.shard].source} and {partial.source}",
                hint="pass each shard's partial once",
            )
        by_shard[partial.shard] = partial
        theirs, ours = partial.config.get("protocol", "fantasyid"), first.config.get("protocol", "fantasyid")
        if theirs != ours:
            raise InputError(
                f"{partial.source} was evaluated with --protocol {theirs}, {first.source} with --protocol {ours}",
                hint="merge the partials of one protocol only",
            )
        if partial.config != first.config:
            differing = sorted(k for k in set(first.config) | set(partial.config)
                               if first.config.get(k) != partial.config.get(k))
            raise InputError(
                f"{partial.source} was evaluated with other {', '.join(differing)} than {first.source}",
                hint="every shard must run the same command apart from --shard",
            )
    missing = [str(i) for i in range(first.num_shards) if i not in by_shard]
    if missing:
        raise InputError(
            f"{len(missing)} of {first.num_shards} shards missing: {', '.join(missing[:10])}"
            + (" …" if len(missing) > 10 else ""),
            hint="run the missing shards (fantasyid eval … --shard I --num-shards N) and merge again",
        )


def _run_fid(row: RunResult, index: int, partials: list[Partial], reference_of: dict[str, str],
             references: dict[str, Any]) -> None:
    """The run's FID from its generated crops' sums (added over the shards) and its distinct references."""
    from fantasyid.metrics.fid import FeatureStats, fid_from_stats

    torch = require("torch", "metrics", "FID")
    fake = FeatureStats.empty()
    for partial in partials:
        if index in partial.fake:
            fake = fake + partial.fake[index]
    # the real set: each distinct reference of the run's readable videos, once, in the order of first use
    keys = list(dict.fromkeys(reference_of[str(v.path)] for v in row.videos
                              if v.readable and str(v.path) in reference_of))
    real = FeatureStats.empty()
    if keys:
        real.add(torch.stack([references[key] for key in keys]))  # (R, 2048)
    outcome = fid_from_stats(real, fake)
    if outcome.value is not None and not math.isfinite(outcome.value):
        outcome.warnings.append(f"FID came out as {outcome.value}; reported as missing")
        outcome.value = None
    row.fid = outcome.value
    row.fid_reference_crops, row.fid_generated_crops = outcome.reference_crops, outcome.generated_crops
    row.warnings.extend(outcome.warnings)


def finish(partials: Sequence[Partial]) -> EvalSummary:
    """Combine the partials of every shard (one for an unsharded run) into the evaluation's summary."""
    partials = sorted(partials, key=lambda p: p.shard)
    if not partials:
        raise InputError("nothing to merge")
    _check_complete(partials)
    first = partials[0]
    config = first.config
    metrics = tuple(config["metrics"])
    protocol = config.get("protocol", "fantasyid")  # partials of the paper's metrics do not name it
    results: dict[tuple[str, str], VideoResult] = {(v.run, str(v.path)): v for p in partials for v in p.videos}
    reference_of = {video: key for p in partials for video, key in p.reference_of.items()}
    references = {key: features for p in partials for key, features in p.references.items()}
    runs: list[RunResult] = []
    for index, spec in enumerate(config["runs"]):
        row = RunResult(spec["name"], Path(spec["path"]))
        for video in spec["videos"]:
            result = results.get((spec["name"], video))
            if result is None:  # the config lists it, so some shard owned it: a broken partial
                raise InputError(f"no result for {video} in the partials", hint="rerun its shard and merge again")
            row.videos.append(result)
        if protocol != "fantasyid":
            from fantasyid.metrics.protocols.aggregate import aggregate_run
            from fantasyid.metrics.protocols.definitions import get_protocol

            aggregate_run(get_protocol(protocol), row)
        elif "fid" in metrics:
            _run_fid(row, index, partials, reference_of, references)
        row.aggregate(metrics)
        runs.append(row)
    provenance = dict(first.provenance)
    if first.num_shards > 1:
        provenance["shards"] = {
            "num_shards": first.num_shards,
            "partials": [str(p.source) if p.source else f"shard {p.shard}" for p in partials],
            "created": [p.provenance.get("created") for p in partials],
        }
    notes = list(dict.fromkeys(note for p in partials for note in p.notes))
    return EvalSummary(metrics, runs, provenance, dict(config["settings"]), warnings=notes, protocol=protocol)


def merge_partials(sources: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None = None
                   ) -> EvalSummary:
    """``fantasyid eval --merge``: read the partials in ``sources`` (files or folders), combine them and write the
    tables into ``out_dir`` when given."""
    summary = finish([Partial.load(path) for path in find_partials(sources)])
    if out_dir is not None:
        from fantasyid.metrics.tables import write_outputs

        summary.files = write_outputs(summary, Path(out_dir))
    return summary
