"""EVA02-CLIP-L-14-336 vision tower on timm's ``Eva``: the hidden states the face abstractor consumes.

The release builds its own EVA ViT (BAAI EVA-CLIP code), loads ``face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt`` with
``strict=False`` and keeps only ``.visual``. Its forward returns the **inputs** of blocks 4, 8, 12, 16 and 20, each
``(B, 577, 1024)`` with the CLS token first, plus the 768-d projected CLS embedding. timm's ``Eva`` computes the same
network (RoPE on patch tokens only, SwiGLU with a LayerNorm before ``w3``, LayerNorm inside attention, 16×16 RoPE
frequencies interpolated to the 24×24 grid), with renamed parameters; :func:`convert_release_state_dict` maps them.

Preprocessing (:func:`preprocess`) is the release's: the 512-px FFHQ crop as RGB in [0, 1], bicubic antialiased
resize to 336 (torchvision), OpenAI CLIP mean/std.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.errors import CheckpointError, InputError, WeightsNotFoundError, require
from fantasyid.face.assets import torch_load_weights

torch = require("torch", "face", "the EVA-CLIP vision tower")
nn = torch.nn

#: OpenAI CLIP normalisation, used by the release for EVA-CLIP (``models/eva_clip/constants.py``).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class EvaClipConfig:
    """Architecture of the EVA-CLIP vision tower. Defaults are EVA02-CLIP-L-14-336 as the release builds it."""

    image_size: int = 336  #: input resolution (square)
    patch_size: int = 14  #: 336 / 14 = 24 × 24 patches + CLS = 577 tokens
    width: int = 1024  #: token width
    depth: int = 24  #: transformer blocks
    num_heads: int = 16  #: attention heads (head width 64)
    mlp_ratio: float = 2.6667  #: SwiGLU hidden = int(width · mlp_ratio) = 2730 (the release's config value)
    embed_dim: int = 768  #: projection of the final CLS token (CLIP embedding)
    rope_ref_grid: int = 16  #: RoPE frequencies of a 16 × 16 grid (224 / 14), interpolated to the real grid
    norm_eps: float = 1e-6  #: LayerNorm epsilon
    hidden_layers: tuple[int, ...] = field(default=(4, 8, 12, 16, 20))  #: blocks whose inputs are returned (>= 1)

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise InputError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.num_heads or (self.width // self.num_heads) % 4:
            raise InputError(f"width {self.width} must split into heads whose width is a multiple of 4")
        if not self.hidden_layers or any(not 1 <= i < self.depth for i in self.hidden_layers):
            raise InputError(f"hidden_layers {self.hidden_layers} must be block indices in [1, {self.depth})")
        if list(self.hidden_layers) != sorted(set(self.hidden_layers)):
            raise InputError(f"hidden_layers {self.hidden_layers} must be strictly increasing")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Patch tokens plus CLS (577 for the real model)."""
        return self.grid_size**2 + 1

    @classmethod
    def tiny(cls) -> EvaClipConfig:
        """A few-kilobyte configuration with the same structure, for tests (4 × 4 grid, 6 blocks)."""
        return cls(
            image_size=56, patch_size=14, width=32, depth=6, num_heads=2, embed_dim=16, rope_ref_grid=3,
            hidden_layers=(1, 2, 3, 4, 5),
        )  # fmt: skip


@dataclass
class EvaClipOutput:
    """What the vision tower returns."""

    hidden_states: list[torch.Tensor]  #: inputs of config.hidden_layers, each (B, num_tokens, width), CLS first
    image_embeds: torch.Tensor | None = None  #: (B, embed_dim) projected CLS token (the release's id_cond_vit)


def _build_trunk(config: EvaClipConfig, device: Any = None, dtype: Any = None):
    require("timm", "face", "the EVA-CLIP vision tower")
    from timm.layers import LayerNorm
    from timm.models.eva import Eva

    return Eva(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.width,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        qkv_bias=True,  # EVA-CLIP's q_bias / v_bias (k has none)
        qkv_fused=False,  # separate q_proj, k_proj, v_proj as in EVA-CLIP with subln
        swiglu_mlp=True,  # naiveswiglu: w3(ffn_ln(silu(w1 x) * w2 x))
        scale_mlp=True,  # ffn_ln
        scale_attn_inner=True,  # inner_attn_ln
        use_rot_pos_emb=True,
        ref_feat_shape=(config.rope_ref_grid, config.rope_ref_grid),
        global_pool="token",  # use_mean_pooling=False: CLS token after the final norm
        num_classes=config.embed_dim,
        norm_layer=partial(LayerNorm, eps=config.norm_eps),
        device=device,
        dtype=dtype,
    )


class EvaClipVisionTower(nn.Module):
    """EVA-CLIP vision tower (timm ``Eva`` as ``self.trunk``) returning the face abstractor's hidden states.

    Random initialisation (timm's) unless loaded with :func:`load_eva_clip_vision`.
    """

    def __init__(self, config: EvaClipConfig | None = None, *, device: Any = None, dtype: Any = None):
        super().__init__()
        self.config = config or EvaClipConfig()
        self.trunk = _build_trunk(self.config, device=device, dtype=dtype)

    def forward(self, pixel_values: torch.Tensor, *, return_embeds: bool = False) -> EvaClipOutput:
        """``pixel_values`` (B, 3, S, S) from :func:`preprocess` → :class:`EvaClipOutput`.

        Without ``return_embeds`` the blocks after the last requested input are skipped.
        """
        size = self.config.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise InputError(
                f"EVA-CLIP expects pixel_values of shape (B, 3, {size}, {size}), got {tuple(pixel_values.shape)}"
            )
        reference = self.trunk.cls_token
        x = pixel_values.to(device=reference.device, dtype=reference.dtype)
        # the input of block i is the output of block i - 1
        result = self.trunk.forward_intermediates(
            x,
            indices=[i - 1 for i in self.config.hidden_layers],
            return_prefix_tokens=True,
            norm=False,
            stop_early=not return_embeds,
            output_fmt="NLC",
            intermediates_only=not return_embeds,
        )
        final, intermediates = (None, result) if not return_embeds else result
        # timm splits CLS from the patch tokens; the release keeps them together, CLS first: (B, 1 + grid², width)
        hidden = [torch.cat([prefix, patches], dim=1) for patches, prefix in intermediates]
        embeds = self.trunk.forward_head(final) if return_embeds else None
        return EvaClipOutput(hidden_states=hidden, image_embeds=embeds)


def build_eva_clip_vision(config: EvaClipConfig | None = None, *, device: Any = None, dtype: Any = None):
    """A randomly initialised vision tower (timm's initialisation), e.g. ``EvaClipConfig.tiny()`` for tests."""
    return EvaClipVisionTower(config, device=device, dtype=dtype)


# ----------------------------------------------------------------------------------------------------------------
# State-dict conversion


# EVA-CLIP (release) parameter names → timm Eva names, applied after stripping "visual.". Our reading of
# models/eva_clip/eva_vit_model.py: Attention(subln) has q_proj/k_proj/v_proj without bias plus q_bias/v_bias and
# inner_attn_ln; SwiGLU computes w3(ffn_ln(silu(w1 x) * w2 x)), so w1 is the gate.
_RELEASE_RENAMES = (
    (re.compile(r"^(blocks\.\d+\.attn)\.q_bias$"), r"\1.q_proj.bias"),
    (re.compile(r"^(blocks\.\d+\.attn)\.v_bias$"), r"\1.v_proj.bias"),
    (re.compile(r"^(blocks\.\d+\.attn)\.inner_attn_ln\."), r"\1.norm."),
    (re.compile(r"^(blocks\.\d+\.mlp)\.w1\."), r"\1.fc1_g."),
    (re.compile(r"^(blocks\.\d+\.mlp)\.w2\."), r"\1.fc1_x."),
    (re.compile(r"^(blocks\.\d+\.mlp)\.ffn_ln\."), r"\1.norm."),
    (re.compile(r"^(blocks\.\d+\.mlp)\.w3\."), r"\1.fc2."),
)
# computed RoPE tables: the release deletes them before loading too (factory.py, RoPE=1)
_ROPE_BUFFER = re.compile(r"(^|\.)rope\.freqs_(cos|sin)$")


def _unwrap(checkpoint: Any, path: Path) -> Mapping[str, Any]:
    state = checkpoint
    # the release's loader accepts {"model" | "module" | "state_dict": ...} wrappers and a "module." prefix
    for key in ("model", "module", "state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path} holds no state dict (found {type(state).__name__})")
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def detect_layout(state: Mapping[str, Any]) -> str:
    """``"release"`` (EVA-CLIP ``visual.*`` keys), ``"open_clip"`` (``visual.trunk.*``) or ``"timm"`` (bare)."""
    if any(k.startswith("visual.trunk.") for k in state):
        return "open_clip"
    if any(k.startswith("visual.") for k in state):
        return "release"
    if any(k.startswith("blocks.") or k in ("cls_token", "pos_embed") for k in state):
        return "timm"
    raise CheckpointError("unrecognised EVA-CLIP checkpoint: no visual.*, visual.trunk.* or timm Eva keys")


def convert_release_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """EVA-CLIP checkpoint (``visual.*``, the release's ``EVA02_CLIP_L_336_psz14_s6B.pt``) → timm ``Eva`` keys.

    Text-tower keys (``text.*``, ``logit_scale``) and computed RoPE tables are dropped.
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        if not key.startswith("visual."):
            continue  # text.*, logit_scale: the text tower is not used
        name = key[len("visual.") :]
        if _ROPE_BUFFER.search(name):
            continue
        for pattern, replacement in _RELEASE_RENAMES:
            name = pattern.sub(replacement, name)
        out[name] = value
    return out


def convert_timm_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """timm hub weights (bare keys, or open_clip's ``visual.trunk.*``) → timm ``Eva`` keys (RoPE buffers dropped)."""
    prefix = "visual.trunk." if detect_layout(state) == "open_clip" else ""
    out = {}
    for key, value in state.items():
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix) :]
        if key.startswith("rope.") or ".rope." in key:
            continue  # rope.bands / rope.pos_embed are computed
        out[key] = value
    return out


def read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Tensors of a ``.safetensors`` file or a torch checkpoint (``weights_only=True``, memory-mapped if possible)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"EVA-CLIP weights not found: {path}",
            hint="point at face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt of the FantasyID checkpoint, or at timm's "
            "eva02_large_patch14_clip_336 model.safetensors",
        )
    if path.suffix == ".safetensors":
        safetensors_torch = require("safetensors.torch", "face", "reading .safetensors weights")
        try:
            return safetensors_torch.load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for malformed headers
            raise CheckpointError(f"cannot read {path} as safetensors: {exc}") from exc
    checkpoint = torch_load_weights(path, mmap=True)
    return _unwrap(checkpoint, path)


@dataclass
class LoadReport:
    """Keys that did not match when loading with ``strict=False``."""

    layout: str
    missing: list[str]
    unexpected: list[str]


def load_state_dict_into(
    model: EvaClipVisionTower, state: Mapping[str, Any], *, strict: bool = True, source: str = "checkpoint"
) -> LoadReport:
    """Convert ``state`` (any supported layout) and load it into an :class:`EvaClipVisionTower`.

    Shapes must match exactly. With ``strict`` (default) missing or unexpected vision keys raise
    :class:`CheckpointError`; otherwise they are reported.
    """
    layout = detect_layout(state)
    converted = convert_release_state_dict(state) if layout == "release" else convert_timm_state_dict(state)
    non_tensors = [k for k, v in converted.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise CheckpointError(f"{source}: {non_tensors[0]} is not a tensor")
    expected = model.trunk.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = [
        f"{k}: file {tuple(converted[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(converted))
        if tuple(converted[k].shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise CheckpointError(
            f"{source} does not fit this EVA-CLIP configuration ({len(wrong)} shape mismatches, e.g. {wrong[0]})",
            hint="check that the file is EVA02-CLIP-L-14-336 (or that the config matches the file)",
        )
    if strict and (missing or unexpected):
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(
            f"{source} ({layout} layout) does not match the EVA-CLIP vision tower: {', '.join(detail)}"
        )
    dtype = model.trunk.cls_token.dtype
    converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in converted.items() if k in expected}
    model.trunk.load_state_dict(converted, strict=False, assign=model.trunk.cls_token.is_meta)
    return LoadReport(layout=layout, missing=missing, unexpected=unexpected)


def _materialise_computed_buffers(model: nn.Module) -> None:
    """Compute the non-persistent buffers (RoPE bands and tables) of a model built on the meta device."""
    for module in model.modules():
        init = getattr(module, "init_non_persistent_buffers", None)
        if not callable(init):
            continue
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer.is_meta:
                module.register_buffer(name, torch.empty_like(buffer, device="cpu"), persistent=False)
        init()


def load_eva_clip_vision(
    path: str | os.PathLike[str],
    config: EvaClipConfig | None = None,
    *,
    dtype: Any = None,
    device: Any = "cpu",
    strict: bool = True,
) -> EvaClipVisionTower:
    """Build the vision tower and load the release's EVA-CLIP ``.pt`` or timm hub weights (layout auto-detected).

    With ``strict`` (default) every vision parameter must be in the file: the model is built on the meta device
    and filled from it, without a random initialisation of 300 M parameters. ``strict=False`` mimics the
    release's loader (missing parameters keep timm's random initialisation) and is only for inspection.
    Returned in eval mode, in the file's layout converted to ``dtype`` (default float32).
    """
    config = config or EvaClipConfig()
    state = read_state_dict(path)
    if strict:
        model = build_eva_clip_vision(config, device="meta")
        load_state_dict_into(model, state, strict=True, source=str(path))
        _materialise_computed_buffers(model)
    else:
        model = build_eva_clip_vision(config)
        load_state_dict_into(model, state, strict=False, source=str(path))
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise CheckpointError(f"{path}: {leftovers[0]} was never initialised")
    model = model.to(device=device, dtype=dtype or torch.float32)
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing


def preprocess(images: Any, image_size: int = 336) -> torch.Tensor:
    """Face crops → EVA-CLIP ``pixel_values`` (B, 3, S, S), exactly as the release prepares them.

    ``images``: one RGB uint8 crop (H, W, 3), a list of them, a (B, H, W, 3) uint8 array, or a float tensor
    (B, 3, H, W) already in [0, 1]. Crops must be square (the release feeds the 512-px FFHQ crop).
    Steps (models/utils.py ``process_face_embeddings``): RGB / 255 → bicubic resize to ``image_size`` with
    antialiasing (torchvision's tensor default) → normalise with the OpenAI CLIP mean/std. No clamping.
    """
    functional = require("torchvision.transforms.functional", "face", "EVA-CLIP preprocessing")
    from torchvision.transforms import InterpolationMode

    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise InputError(
                f"expected a float tensor (B, 3, H, W) in [0, 1], got {tuple(images.shape)} {images.dtype}"
            )
        batch = images.float()
    else:
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        arrays = [np.asarray(image) for image in images]
        if not arrays:
            raise InputError("preprocess got no images")
        for array in arrays:
            if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
                raise InputError(f"expected RGB uint8 crops of shape (H, W, 3), got {array.shape} {array.dtype}")
        if len({a.shape for a in arrays}) != 1:
            raise InputError("all crops in a batch must have the same size")
        stacked = np.stack(arrays)  # (B, H, W, 3)
        batch = torch.from_numpy(stacked).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    height, width = batch.shape[-2:]
    if height != width:
        raise InputError(f"EVA-CLIP crops must be square, got {width}×{height}; use the aligned 512-px face crop")
    batch = functional.resize(batch, image_size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return functional.normalize(batch, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
