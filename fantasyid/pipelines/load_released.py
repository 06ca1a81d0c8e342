"""The authors' released checkpoint folder (``acvlab/FantasyID`` layout, see reference/official_code_notes.md).

``transformer/`` holds the CogVideoX-5B-I2V weights and every identity module in one state dict, converted strictly
onto our classes (a missing or unexpected key is an error listing them); ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/`` are diffusers/transformers folders; ``face_encoder/`` has the EVA-CLIP ``.pt`` and the
antelopev2 pack. The mesh hierarchy (``transform.pkl``) and the licensed DECA + FLAME files are resolved through
:mod:`fantasyid.hub`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..hub import RELEASED_WEIGHTS, resolve
from .components import LoadedPipeline, licensed_shape_estimator, release_precision
from .weights import materialise_buffers, read_state_dict

__all__ = ["EVA_FILE", "ReleasedSizes", "load_released", "load_released_transformer"]

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
    state = read_state_dict(subfolder)
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
    materialise_buffers(transformer, config)
    encoder = FantasyIDIdentityEncoder(**e_config)
    mesh_buffers = [name for name, _ in encoder.named_buffers() if name.startswith("mesh")]
    check_state_dict(encoder, identity_state, exclude=mesh_buffers)
    missing, unexpected = encoder.load_state_dict(identity_state, strict=False)
    if unexpected or set(missing) - set(mesh_buffers):
        raise CheckpointError(f"identity encoder: missing {sorted(set(missing) - set(mesh_buffers))[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    return transformer.eval(), encoder.eval()


def load_released(
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
    """The whole pipeline from a released checkpoint folder (already resolved)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler
    from transformers import AutoTokenizer, T5EncoderModel

    from ..face import FaceAnalyzer
    from ..face.eva_clip import load_eva_clip_vision
    from ..models.mesh import load_mesh_hierarchy
    from .pipeline_fantasyid import FantasyIDPipeline

    mesh_spec = next(spec for spec in RELEASED_WEIGHTS if spec.key == "mesh")
    mesh_path = resolve(mesh_spec, mesh).path
    if mesh_path is None and (checkpoint / "assets" / "transform.pkl").is_file():
        mesh_path = checkpoint / "assets" / "transform.pkl"
    if mesh_path is None:
        resolve(mesh_spec, mesh).require()
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
    shape_estimator = licensed_shape_estimator("released", deca, flame, device) if shape_needed else None
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
