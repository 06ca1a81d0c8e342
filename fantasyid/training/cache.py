"""Precomputed training inputs (``fantasyid train CONFIG --precompute``): VAE latent distributions and T5 states.

Only what does not depend on the randomly drawn reference view is cached: for every training clip, the VAE
posterior's parameters (mean and log-variance, ``(2C, F', h, w)``) of each of its ``data.windows`` frame windows,
and the T5 states of its caption (plus the empty prompt's, for text dropout). Training samples the posterior with
the same generator as a live encode, so the loss is the same with and without the cache (on CPU, bit for bit; with
``train.micro_batch`` > 1 the live path encodes captions as one batch, equal to rounding). The drawn view, its
frame-0 latent, EVA-CLIP and DECA stay live.

Folder layout: ``shard-NNNNN.safetensors`` (tensors of up to ``shard_clips`` clips each) and ``index.json`` (the
settings that produced the cache, and per clip id its row key, shard and tensor names, or the reason it could not
be read). Shards and the index are written atomically, the index after its shard, so a killed precompute resumes:
clips already stored under the same settings and the same manifest row are skipped. A cache built under other
settings (frames, fps, size, windows, dtype, VAE or T5 weights) is refused by training, naming the setting.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, InputError
from ..io import atomic_path, check_output_dir, write_json
from .config import TrainConfig

__all__ = ["CACHE_FORMAT", "LatentCache", "PrecomputeReport", "cache_folder", "open_cache", "precompute"]

CACHE_FORMAT = "fantasyid-latent-cache/1"
INDEX = "index.json"

#: Setting keys of the index and how errors name them.
_SETTING_NAMES = {
    "frames": "data.frames", "fps": "data.fps", "height": "data.height", "width": "data.width",
    "windows": "data.windows", "dtype": "the frozen models' dtype (train.mixed_precision / device)",
    "vae": "the VAE (model.init and its weights)", "text_encoder": "the T5 encoder (model.init and its weights)",
    "max_text_seq_length": "the text length (the transformer's max_text_seq_length)",
}


def cache_folder(config: TrainConfig) -> Path:
    """``data.cache``, or ``OUTPUT_DIR/cache`` when it is empty."""
    return Path(config.data.cache) if config.data.cache else Path(config.output_dir) / "cache"


def _fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's config and a strided sample of every tensor (cheap even for T5-XXL)."""
    digest = hashlib.sha256()
    config = getattr(module, "config", None)
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    config = {k: v for k, v in config.items() if not k.startswith("_") and k != "transformers_version"}  # not paths
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().flatten()
        sample = flat[:: max(1, flat.numel() // 256)][:256].float().cpu()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _settings(config: TrainConfig, components, dtype: torch.dtype) -> dict[str, Any]:
    d, pipe = config.data, components.pipe
    return {"frames": d.frames, "fps": float(d.fps), "height": d.height, "width": d.width, "windows": d.windows,
            "dtype": str(dtype).removeprefix("torch."), "vae": _fingerprint(pipe.vae),
            "text_encoder": _fingerprint(pipe.text_encoder),
            "max_text_seq_length": int(pipe.transformer.config.max_text_seq_length)}


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    for key in _SETTING_NAMES:
        if old.get(key) != new.get(key):
            return f"{_SETTING_NAMES[key]} ({old.get(key)!r} in the cache, {new.get(key)!r} now)"
    return None


def _row_key(row: dict) -> str:
    """What a clip's cached tensors depend on in its manifest row (and the source file's size)."""
    path = str(row["source_path"])
    size = os.path.getsize(path) if os.path.isfile(path) else -1
    fields = [path, size, int(row["clip_start"]), int(row["clip_end"]), float(row["fps"]), str(row["caption"])]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def _text_name(caption: str) -> str:
    return "text/" + hashlib.sha256(caption.encode()).hexdigest()[:16]


def _read_index(folder: Path) -> dict[str, Any] | None:
    path = folder / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"'{path}' cannot be read ({exc})", hint="delete the folder and run --precompute") from exc
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        raise ConfigError(f"'{folder}' is not a fantasyid latent cache ({INDEX} of another format)",
                          hint="point data.cache at another folder")
    return index


class LatentCache:
    """Read side of a cache folder (picklable: DataLoader workers open shards themselves)."""

    def __init__(self, folder: Path, index: dict[str, Any]):
        self.folder, self.index = folder, index
        shard, name = index["empty_prompt"]
        self.empty_text_states = self._tensor(shard, name)  # (L, D)

    def _tensor(self, shard: str, name: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(self.folder / shard), framework="pt") as handle:
            return handle.get_tensor(name)

    def load(self, row: dict, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latent distribution (2C, F', h, w), caption T5 states (L, D))`` of a clip's window."""
        entry = self.index["clips"].get(str(row["clip_id"]))
        if entry is None or entry["row"] != _row_key(row):
            raise ConfigError(f"the latent cache '{self.folder}' has no entry for clip {row['clip_id']}",
                              hint="complete it: fantasyid train CONFIG --precompute")
        if "error" in entry:
            raise InputError(entry["error"])  # the clip could not be read when the cache was built
        return self._tensor(entry["shard"], entry["windows"][window]), self._tensor(*entry["text"])


def open_cache(config: TrainConfig, components, rows: list[dict], device: torch.device) -> LatentCache:
    """The cache of ``data.cache``, checked against the settings of this run and the clips it trains on."""
    from .step import frozen_dtype

    folder = Path(config.data.cache)
    index = _read_index(folder)
    rebuild = "fantasyid train CONFIG --precompute"
    if index is None:
        raise ConfigError(f"data.cache '{folder}' holds no latent cache", hint=f"build it: {rebuild}")
    changed = _difference(index["settings"], _settings(config, components, frozen_dtype(
        config.train.mixed_precision, device)))
    if changed:
        raise ConfigError(f"the latent cache '{folder}' was built with another {changed}",
                          hint=f"rebuild it: {rebuild}")
    missing = [row["clip_id"] for row in rows
               if index["clips"].get(str(row["clip_id"]), {}).get("row") != _row_key(row)]
    if missing:
        raise ConfigError(f"the latent cache '{folder}' lacks {len(missing)} of {len(rows)} training clips "
                          f"(first: {missing[0]})", hint=f"complete it: {rebuild}")
    return LatentCache(folder, index)


@dataclass
class PrecomputeReport:
    folder: Path
    clips: int  #: training clips of the manifest
    stored: int  #: encoded in this call
    reused: int  #: already in the cache under the same settings
    failed: int  #: could not be read (recorded; training skips them as it would live)
    latent_bytes_per_clip: float  #: mean over readable clips (all windows)
    text_bytes_per_clip: float  #: one caption's T5 states
    total_bytes: int  #: the folder's shards and index
    rebuilt: str | None = None  #: the changed setting that made this call start over


def precompute(config: TrainConfig, *, console=None, shard_clips: int = 16,
               on_clip: Callable[[str], None] | None = None) -> PrecomputeReport:
    """Encode the training clips' latent distributions and captions into ``cache_folder(config)``; resumable."""
    from accelerate.utils import set_seed
    from safetensors.torch import save_file

    from ..data.dataset import ClipDataset, window_start
    from ..data.clip_reader import sample_indices
    from .model import build_components
    from .step import encode_text, frozen_dtype, place_frozen

    config.validate()
    d, t = config.data, config.train
    if d.windows < 1:
        raise ConfigError("--precompute needs data.windows ≥ 1 (the cache stores one latent per window)",
                          hint="--set data.windows=1 (the centre window) or more")
    folder = cache_folder(config)
    check_output_dir(folder, option="data.cache" if d.cache else "output_dir")
    index = _read_index(folder)
    set_seed(t.seed)  # as the loop: the tiny model's frozen parts depend on the seed
    components = build_components(config.model, seed=t.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = frozen_dtype(t.mixed_precision, device)
    settings = _settings(config, components, dtype)
    dataset = ClipDataset(d.manifest, frames=d.frames, height=d.height, width=d.width, fps=d.fps, views=d.views,
                          clip_image_size=components.image_encoder.config.image_size, num_vertices=None,
                          seed=t.seed, holdout=d.holdout, reader=d.reader, windows=d.windows, vertices=False)
    pipe = components.pipe
    place_frozen(pipe.vae, device, dtype)
    place_frozen(pipe.text_encoder, device, dtype)

    rebuilt, old_shards = None, []
    if index is not None and (changed := _difference(index["settings"], settings)):
        rebuilt, old_shards, index = changed, index["shards"], None
    if index is None:
        index = {"format": CACHE_FORMAT, "settings": settings, "shards": [], "clips": {}, "texts": {},
                 "empty_prompt": None}
    index["manifest_sha256"] = dataset.sha256
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / INDEX, index)  # first the new index, then the old shards go: never an index without shards
    for shard in old_shards:
        (folder / shard).unlink(missing_ok=True)
    for stray in folder.glob(".shard-*.partial.safetensors"):  # a shard being written when a run was killed
        stray.unlink()

    pending: dict[str, torch.Tensor] = {}
    entries: dict[str, dict] = {}
    texts: dict[str, str] = {}

    def flush() -> None:
        shard = None
        if pending:
            shard = f"shard-{len(index['shards']):05d}.safetensors"
            with atomic_path(folder / shard) as tmp:
                save_file(pending, str(tmp))
            index["shards"].append(shard)
        for entry in entries.values():  # point the new entries at the shard just written
            if "windows" in entry and entry["shard"] is None:
                entry["shard"] = shard
            if "text" in entry and entry["text"][0] is None:
                entry["text"][0] = shard
        for name in texts:
            index["texts"][name] = shard
        if index["empty_prompt"] is not None and index["empty_prompt"][0] is None:
            index["empty_prompt"][0] = shard
        index["clips"].update(entries)
        write_json(folder / INDEX, index)  # after its shard: an index never names a missing shard
        pending.clear(), entries.clear(), texts.clear()

    stored = reused = failed = 0
    with torch.no_grad(), _progress(console) as progress:
        task = progress.add_task("precompute", total=len(dataset.rows))
        if index["empty_prompt"] is None:
            pending[_text_name("")] = encode_text(pipe, [""], device, dtype)[0].contiguous().cpu()  # (L, D)
            index["empty_prompt"] = [None, _text_name("")]
            texts[_text_name("")] = ""
        for row in dataset.rows:
            clip_id, key = str(row["clip_id"]), _row_key(row)
            if index["clips"].get(clip_id, {}).get("row") == key:
                reused += 1
                progress.advance(task)
                continue
            names: dict[tuple[int, ...], str] = {}  # windows with the same frames share one tensor
            windows = []
            try:
                for k in range(d.windows):
                    offset = window_start(k, d.windows)
                    frames = tuple(sample_indices(int(row["clip_start"]), int(row["clip_end"]), float(row["fps"]),
                                                  d.fps, d.frames, offset))
                    if frames not in names:
                        video = dataset.read_clip(row, offset).to(device, dtype)  # (F, 3, H, W)
                        dist = pipe.vae.encode(video[None].transpose(1, 2)).latent_dist  # of (1, 3, F, H, W)
                        names[frames] = f"{clip_id}/window{k}"
                        pending[names[frames]] = dist.parameters[0].contiguous().cpu()  # (2C, F', h, w)
                    windows.append(names[frames])
            except InputError as exc:
                for name in names.values():
                    pending.pop(name, None)
                entries[clip_id] = {"row": key, "error": exc.message}
                failed += 1
            else:
                text = _text_name(str(row["caption"]))
                text_shard = index["texts"].get(text)
                if text_shard is None and text not in texts:
                    pending[text] = encode_text(pipe, [str(row["caption"])], device, dtype)[0].contiguous().cpu()
                    texts[text] = str(row["caption"])
                entries[clip_id] = {"row": key, "shard": None, "windows": windows, "text": [text_shard, text]}
                stored += 1
            progress.advance(task)
            if on_clip is not None:
                on_clip(clip_id)
            if len(entries) >= shard_clips:
                flush()
        flush()
    return _report(folder, index, dataset.rows, stored, reused, failed, rebuilt)


def _report(folder: Path, index: dict, rows: list[dict], stored: int, reused: int, failed: int,
            rebuilt: str | None) -> PrecomputeReport:
    from safetensors import safe_open

    latent, text, readable = 0, 0, 0
    for row in rows:
        entry = index["clips"][str(row["clip_id"])]
        if "windows" not in entry:
            continue
        readable += 1
        with safe_open(str(folder / entry["shard"]), framework="pt") as handle:
            for name in set(entry["windows"]):
                latent += _nbytes(handle, name)
        with safe_open(str(folder / entry["text"][0]), framework="pt") as handle:
            text += _nbytes(handle, entry["text"][1])
    total = sum((folder / name).stat().st_size for name in [*index["shards"], INDEX])
    per = max(1, readable)
    return PrecomputeReport(folder, len(rows), stored, reused, failed, latent / per, text / per, total, rebuilt)


def _nbytes(handle, name: str) -> int:
    tensor = handle.get_tensor(name)
    return tensor.numel() * tensor.element_size()


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]precompute"), MofNCompleteColumn(), BarColumn(), TimeRemainingColumn(),
                    console=console, disable=console is None)
