"""A pipeline from a folder in fantasyid's own checkpoint format (:mod:`fantasyid.pipelines.checkpoint`), either
variant, any size: what ``load_pipeline(PATH)`` calls for such a folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from .checkpoint import IMAGE_ENCODER_DIR, SHAPE_DIR, read_image_encoder, read_mesh, read_model_index
from .checkpoint import read_saved_shape_estimator
from .components import LoadedPipeline, default_face_root, face_analyzer, licensed_shape_estimator, release_precision
from .weights import load_model_strict, materialise_buffers

__all__ = ["load_fantasyid_checkpoint"]


def load_fantasyid_checkpoint(
    folder: str | os.PathLike[str],
    *,
    device: torch.device,
    dtype: torch.dtype,
    variant: str | None = None,
    face_root: str | None = None,
    face_pack: str | None = None,
    flame: str | None = None,
    deca: str | None = None,
    shape_needed: bool = True,
) -> LoadedPipeline:
    """A :class:`~fantasyid.pipelines.components.LoadedPipeline` from a folder written by
    :func:`~fantasyid.pipelines.checkpoint.save_fantasyid_checkpoint`."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler
    from transformers import AutoTokenizer, T5EncoderModel

    from ..models.identity_encoder import FantasyIDIdentityEncoder
    from ..models.transformer_fantasyid import FantasyIDTransformer3DModel
    from .pipeline_fantasyid import FantasyIDPipeline

    folder = Path(folder).expanduser()
    block = read_model_index(folder)["fantasyid"]
    if variant is not None and variant != block["variant"]:
        raise ConfigError(
            f"'{folder}' is a {block['variant']} checkpoint, not {variant}",
            hint=f"drop --variant or use --variant {block['variant']}",
        )
    transformer = load_model_strict(FantasyIDTransformer3DModel, folder / "transformer", meta=True)
    materialise_buffers(transformer, dict(transformer.config))
    encoder = load_model_strict(FantasyIDIdentityEncoder, folder / "identity_encoder", meta=False)
    if encoder.config.variant != block["variant"]:
        raise CheckpointError(f"'{folder}': identity_encoder/ is {encoder.config.variant}, the index says "
                              f"{block['variant']}")
    encoder.mesh_hierarchy = read_mesh(folder)
    pipe = FantasyIDPipeline(
        tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
        text_encoder=T5EncoderModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype),
        vae=AutoencoderKLCogVideoX.from_pretrained(folder / "vae", torch_dtype=dtype),
        transformer=transformer if transformer.dtype == dtype else transformer.to(dtype),
        scheduler=CogVideoXDPMScheduler.from_pretrained(folder / "scheduler"),
        identity_encoder=encoder,  # fp32 but for the released face abstractor on a GPU (release_precision)
    )
    release_precision(encoder, device, dtype)
    mode = block["shape_mode"]
    shape_estimator = None
    if (folder / SHAPE_DIR).is_dir():
        shape_estimator = read_saved_shape_estimator(folder / SHAPE_DIR, mode, device)
    elif shape_needed and getattr(encoder.config, "vertex_tokens", True):  # w/o FV reads no vertices: no DECA
        shape_estimator = licensed_shape_estimator(mode, deca, flame, device)
    pack = face_pack or block["face_pack"]
    in_folder = (folder / "face_encoder" / "models" / pack).is_dir()  # a pack saved with the model comes first
    root = folder / "face_encoder" if in_folder else default_face_root(face_root)
    pipe.set_face_tools(
        face_analyzer=face_analyzer(pack, root, install=not in_folder),
        image_encoder=read_image_encoder(folder / IMAGE_ENCODER_DIR, torch.float32 if device.type == "cpu" else dtype,
                                         device),
        shape_estimator=shape_estimator,
    )
    info = {key: value for key, value in block.items() if key not in ("format_version",)}
    info.update({"model": str(folder), "random_weights": bool(block.get("random_weights", False)),
                 "face_pack": pack, "identity_variant": block["variant"]})
    if info["random_weights"]:
        info.setdefault("note", "this checkpoint records random weights: its videos show the machinery only")
    return LoadedPipeline(pipe, info, block["variant"])
