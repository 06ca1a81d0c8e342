"""Our own checkpoint format: a whole :class:`FantasyIDPipeline` (either variant, any size) in one folder.

Diffusers-style, every weight in safetensors, nothing pickled::

    model_index.json        diffusers keys ([library, class] per component) + a "fantasyid" block
    transformer/            FantasyIDTransformer3DModel.save_pretrained
    identity_encoder/       FantasyIDIdentityEncoder.save_pretrained (mesh buffers included)
    vae/ text_encoder/ tokenizer/ scheduler/   their own save_pretrained
    image_encoder/          EVA-CLIP vision tower: config.json (EvaClipConfig) + model.safetensors (timm keys)
    mesh/hierarchy.npz      the mesh hierarchy as plain arrays (MeshHierarchy.save)
    shape_estimator/        only for a shape estimator made by code (the tiny model's): deca_encoder.safetensors
                            + flame_model.npz. Licensed DECA/FLAME (full size) are never saved: they are resolved
                            through fantasyid.hub when loading.

The ``"fantasyid"`` block: ``format_version`` (1), ``variant``, ``shape_mode``, ``face_pack`` and whatever the caller
adds (training config, manifest hash, …). Reading is strict: a missing or unexpected key of ``model_index.json``, a
missing folder, or a state dict that does not fit its class is a one-line :class:`CheckpointError` naming it.

This module is the format (writing it, and reading the parts that are not diffusers/transformers folders); the
loader that assembles a pipeline from it is :mod:`fantasyid.pipelines.load_saved`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import CheckpointError, ConfigError, InputError
from ..io import atomic_path, write_json

__all__ = ["FORMAT_VERSION", "save_fantasyid_checkpoint", "is_fantasyid_checkpoint", "require_model_folder",
           "read_model_index",
           "read_image_encoder", "read_mesh", "read_saved_shape_estimator"]

FORMAT_VERSION = 1
INDEX_FILE = "model_index.json"
#: component → (library, class) as diffusers' model_index.json names them.
COMPONENTS = {
    "transformer": ("fantasyid", "FantasyIDTransformer3DModel"),
    "identity_encoder": ("fantasyid", "FantasyIDIdentityEncoder"),
    "vae": ("diffusers", "AutoencoderKLCogVideoX"),
    "text_encoder": ("transformers", "T5EncoderModel"),
    "tokenizer": ("transformers", "T5TokenizerFast"),
    "scheduler": ("diffusers", "CogVideoXDPMScheduler"),
}
_INDEX_KEYS = {"_class_name", "_diffusers_version", "fantasyid", *COMPONENTS}
_BLOCK_KEYS = ("format_version", "variant", "shape_mode", "face_pack")
IMAGE_ENCODER_DIR, MESH_FILE, SHAPE_DIR = "image_encoder", "mesh/hierarchy.npz", "shape_estimator"
_INCOMPLETE = "the checkpoint is incomplete: save it again"
_FLAME_FIELDS = ("v_template", "shapedirs", "posedirs", "j_regressor", "parents", "lbs_weights", "faces")


# ------------------------------------------------------------------------------------------------------------ save
def save_fantasyid_checkpoint(pipe, folder: str | os.PathLike[str], *, info: dict[str, Any] | None = None) -> Path:
    """Save ``pipe`` (a :class:`FantasyIDPipeline` with its identity encoder and face tools) into ``folder``.

    ``info`` goes into the model index's ``"fantasyid"`` block (e.g. ``{"training": {...}, "manifest_sha256": …}``);
    it may not override the format keys. The model index is written last, so a folder without one is unfinished.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"'{folder}' exists and is not a folder")
    encoder = pipe.identity_encoder
    if encoder is None:
        raise ConfigError("this pipeline has no identity encoder: nothing FantasyID to save")
    if pipe.image_encoder is None:
        raise ConfigError("this pipeline has no EVA-CLIP image encoder", hint="attach it with pipe.set_face_tools(...)")
    clash = set(info or {}) & set(_BLOCK_KEYS)
    if clash:
        raise ConfigError(f"info may not set {sorted(clash)[0]!r}: the checkpoint records it itself")
    variant = encoder.config.variant
    estimator = pipe.shape_estimator
    shape_mode = getattr(estimator, "mode", variant)
    if shape_mode != variant:
        raise ConfigError(f"the shape estimator decodes the {shape_mode} mode but the model is the {variant} variant")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX_FILE).unlink(missing_ok=True)  # unfinished until the index is written again

    for name in ("transformer", "identity_encoder", "vae", "text_encoder"):
        getattr(pipe, name).save_pretrained(folder / name, safe_serialization=True)
    pipe.tokenizer.save_pretrained(folder / "tokenizer")
    pipe.scheduler.save_pretrained(folder / "scheduler")
    _save_image_encoder(pipe.image_encoder, folder / IMAGE_ENCODER_DIR)
    _save_mesh(encoder, folder / MESH_FILE)
    saved_shape = estimator is not None and not getattr(estimator, "licensed", True)
    if saved_shape:
        _save_shape_estimator(estimator, folder / SHAPE_DIR)

    analyzer = pipe.face_analyzer
    block = {
        "format_version": FORMAT_VERSION,
        "variant": variant,
        "shape_mode": variant,
        "face_pack": getattr(analyzer, "pack", None) or "antelopev2",
        "shape_estimator": SHAPE_DIR if saved_shape else "licensed DECA + FLAME, resolved through fantasyid.hub",
        "fantasyid_version": __version__,
        **(info or {}),
    }
    import diffusers

    index = {"_class_name": "FantasyIDPipeline", "_diffusers_version": diffusers.__version__}
    index.update({name: list(library_class) for name, library_class in COMPONENTS.items()})
    index["fantasyid"] = block
    write_json(folder / INDEX_FILE, index)
    return folder


def _save_tensors(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _save_image_encoder(image_encoder, target: Path) -> None:
    config = dataclasses.asdict(image_encoder.config)
    _save_tensors(target / "model.safetensors", image_encoder.trunk.state_dict(), {"format": "pt"})
    write_json(target / "config.json", {"_class_name": "EvaClipVisionTower", **config})


def _save_mesh(encoder, path: Path) -> None:
    hierarchy = getattr(encoder, "mesh_hierarchy", None)
    if hierarchy is None:
        raise ConfigError(
            "the identity encoder does not keep the mesh hierarchy it was loaded with",
            hint="load the mesh with encoder.load_mesh(hierarchy) before saving",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    hierarchy.save(path)


def _save_shape_estimator(estimator, target: Path) -> None:
    deca_flame = estimator.deca_flame
    _save_tensors(target / "deca_encoder.safetensors", deca_flame.encoder.state_dict(), {"format": "pt"})
    data = deca_flame.flame.model_data
    arrays = {name: np.asarray(getattr(data, name)) for name in _FLAME_FIELDS}
    with atomic_path(target / "flame_model.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


# ------------------------------------------------------------------------------------------------------------ read
def is_fantasyid_checkpoint(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` is a checkpoint in our format (a ``model_index.json`` with a ``"fantasyid"`` block)."""
    path = Path(folder).expanduser() / INDEX_FILE
    if not path.is_file():
        return False
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(index, dict) and isinstance(index.get("fantasyid"), dict)


#: What a model folder holds, for the error about a folder that is not one.
MODEL_FOLDER_HINT = (
    "a model folder holds model_index.json with transformer/, identity_encoder/, vae/, text_encoder/, tokenizer/, "
    "scheduler/ (fantasyid's format, as `fantasyid train` exports it) or the authors' release (transformer/, vae/, "
    "text_encoder/, tokenizer/, scheduler/, face_encoder/); or use --model tiny"
)


def require_model_folder(folder: str | os.PathLike[str]) -> str:
    """``"fantasyid"`` for a folder in our format, ``"released"`` for one in the authors' layout (it has
    ``transformer/``); anything else (an empty folder, an empty model index, a sub-folder of a model) is a one-line
    :class:`CheckpointError` saying the folder is not a model, before any weight is looked for."""
    folder = Path(folder).expanduser()
    if is_fantasyid_checkpoint(folder):
        return "fantasyid"
    if (folder / "transformer").is_dir() or (folder / "transformer_ema").is_dir():
        return "released"
    if not any(folder.iterdir()):
        why = "it is empty"
    elif (folder / INDEX_FILE).is_file():
        why = f"its {INDEX_FILE} has no 'fantasyid' block and it has no transformer/ folder"
    else:
        why = f"it has neither {INDEX_FILE} nor a transformer/ folder"
    raise CheckpointError(f"'{folder}' is not a model folder: {why}", hint=MODEL_FOLDER_HINT)


def read_model_index(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The model index of a checkpoint in our format, checked key by key."""
    folder = Path(folder).expanduser()
    path = folder / INDEX_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"'{folder}' has no {INDEX_FILE}",
                              hint="save it with save_fantasyid_checkpoint") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not readable JSON ({exc})") from exc
    if not isinstance(index, dict):
        raise CheckpointError(f"'{path}' holds no JSON object")
    missing = sorted(_INDEX_KEYS - set(index))
    if missing:
        raise CheckpointError(f"'{path}' lacks the key '{missing[0]}'", hint=_INCOMPLETE)
    extra = sorted(set(index) - _INDEX_KEYS)
    if extra:
        raise CheckpointError(f"'{path}' has an unexpected key '{extra[0]}'", hint="this loader knows format version "
                              f"{FORMAT_VERSION}; remove the key or use the fantasyid version that wrote it")
    for name, expected in COMPONENTS.items():
        if list(index[name]) != list(expected):
            raise CheckpointError(f"'{path}': {name} is {index[name]}, expected {list(expected)}")
    block = index["fantasyid"]
    if not isinstance(block, dict):
        raise CheckpointError(f"'{path}': 'fantasyid' must be an object")
    lacking = [key for key in _BLOCK_KEYS if key not in block]
    if lacking:
        raise CheckpointError(f"'{path}': the fantasyid block lacks the key '{lacking[0]}'")
    if block["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"'{path}' is format version {block['format_version']}; this fantasyid reads "
                              f"{FORMAT_VERSION}", hint="use the fantasyid version that wrote it")
    if block["variant"] not in ("released", "paper") or block["shape_mode"] != block["variant"]:
        raise CheckpointError(f"'{path}': variant {block['variant']!r} with shape mode {block['shape_mode']!r}")
    for name in [*COMPONENTS, IMAGE_ENCODER_DIR]:
        if not (folder / name).is_dir():
            raise CheckpointError(f"'{folder}' has no {name}/ folder", hint=_INCOMPLETE)
    if not (folder / MESH_FILE).is_file():
        raise CheckpointError(f"'{folder}' has no {MESH_FILE}", hint=_INCOMPLETE)
    return index


# ------------------------------------------------------------------------------------------------------------ read parts
def read_image_encoder(folder: Path, dtype: torch.dtype, device: torch.device):
    """The EVA-CLIP vision tower of ``IMAGE_ENCODER_DIR``: its config checked key by key, its weights strictly."""
    from ..face.eva_clip import EvaClipConfig, load_eva_clip_vision

    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    raw.pop("_class_name", None)
    fields = {f.name for f in dataclasses.fields(EvaClipConfig)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise CheckpointError(f"'{folder / 'config.json'}' has an unexpected key '{unknown[0]}'")
    raw["hidden_layers"] = tuple(raw.get("hidden_layers", ()))
    return load_eva_clip_vision(folder / "model.safetensors", EvaClipConfig(**raw), dtype=dtype, device=device)


def read_mesh(folder: Path):
    """The mesh hierarchy of ``MESH_FILE`` (plain arrays)."""
    from ..models.mesh import MeshHierarchy

    return MeshHierarchy.load_npz(folder / MESH_FILE)


def read_saved_shape_estimator(folder: Path, mode: str, device: torch.device):
    """The shape estimator of ``SHAPE_DIR`` (one made by code, the tiny model's): DECA encoder + FLAME arrays."""
    from safetensors.torch import load_file

    from ..face.deca import DecaEncoder, DecaFlame
    from ..face.flame import FlameLayer, FlameModelData
    from ..face.shape import ShapeEstimator
    from ..models.convert import check_state_dict

    encoder = DecaEncoder()
    state = load_file(str(folder / "deca_encoder.safetensors"))
    try:
        check_state_dict(encoder, state)
    except CheckpointError as exc:
        raise CheckpointError(f"{SHAPE_DIR}/deca_encoder: {exc.message}") from None
    encoder.load_state_dict(state, strict=True)
    with np.load(folder / "flame_model.npz", allow_pickle=False) as data:
        missing = [name for name in _FLAME_FIELDS if name not in data.files]
        if missing:
            raise CheckpointError(f"{SHAPE_DIR}/flame_model.npz lacks '{missing[0]}'")
        flame = FlameModelData(**{name: np.asarray(data[name]) for name in _FLAME_FIELDS})
    deca_flame = DecaFlame(encoder, FlameLayer(flame)).to(device).eval()
    return ShapeEstimator(deca_flame, mode=mode, licensed=False)
