"""What :func:`~fantasyid.pipelines.loading.load_pipeline` checks before it loads anything: the device exists, the
dtype runs on it, and the requested video size is one the model can make. Each failure is one line that says what
to do, raised in the first second rather than after minutes of loading."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import InputError

__all__ = ["DTYPES", "pick_device", "pick_dtype", "fixed_size", "check_size", "LATENT_PATCH_PIXELS"]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: VAE down-sampling (8) × transformer patch (2): sizes must be multiples of this many pixels.
LATENT_PATCH_PIXELS = 16
_CPU_HINT = "use --device cpu (or auto), or install a CUDA build of PyTorch (https://pytorch.org/get-started/locally/)"


def pick_device(device: str) -> torch.device:
    """``auto`` → the GPU if there is one, else the CPU; anything else must exist on this machine."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        picked = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"unknown device {device!r}", hint="e.g. auto, cpu, cuda, cuda:1") from exc
    if picked.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: PyTorch sees no CUDA GPU on this machine", hint=_CPU_HINT)
        count = torch.cuda.device_count()
        if picked.index is not None and picked.index >= count:
            raise InputError(f"--device {device}: this machine has {count} CUDA GPU(s), numbered 0..{count - 1}",
                             hint="pick one of them, e.g. --device cuda:0")
    elif picked.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {device}: Apple's MPS backend is not available here", hint=_CPU_HINT)
    elif picked.type != "cpu":
        raise InputError(f"--device {device}: fantasyid runs on cpu, cuda or mps", hint="e.g. --device cuda:0")
    return picked


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` → bf16 on a GPU that has it (else fp16), fp32 elsewhere; an explicit dtype must run on ``device``."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}", hint="use auto, bf16, fp16 or fp32")
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        name = torch.cuda.get_device_name(device)
        raise InputError(f"--dtype bf16: {name} has no native bfloat16 support",
                         hint="use --dtype fp16 (or fp32); bf16 needs an Ampere or newer GPU")
    return DTYPES[dtype]


def fixed_size(checkpoint: Path) -> tuple[int, int] | None:
    """``(height, width)`` in pixels that a checkpoint's learned position embeddings fix, or ``None`` if any size
    goes. Reads only ``transformer/config.json`` (``transformer_ema/`` first) and ``vae/config.json``."""
    folder = checkpoint / "transformer_ema" if (checkpoint / "transformer_ema").is_dir() else checkpoint / "transformer"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the loader reports a missing or broken config in its own words
    if not config.get("use_learned_positional_embeddings") or "sample_height" not in config:
        return None
    try:
        vae = json.loads((checkpoint / "vae" / "config.json").read_text(encoding="utf-8"))
        factor = 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        factor = 8  # CogVideoX's VAE
    return int(config["sample_height"]) * factor, int(config["sample_width"]) * factor


def check_size(height: int | None, width: int | None, fixed: tuple[int, int] | None, model: str) -> None:
    """Refuse a size the model cannot make: not a multiple of the latent patch grid, or not the size its learned
    position embeddings fix."""
    for name, value in (("--height", height), ("--width", width)):
        if value is not None and (value <= 0 or value % LATENT_PATCH_PIXELS):
            raise InputError(f"{name} must be a positive multiple of {LATENT_PATCH_PIXELS}, got {value}")
    if fixed is None:
        return
    want = (height if height is not None else fixed[0], width if width is not None else fixed[1])
    if want != fixed:
        raise InputError(
            f"the model '{model}' makes {fixed[1]}×{fixed[0]} (width×height) videos only; its learned position "
            f"embeddings fix the size, so {want[1]}×{want[0]} is not possible",
            hint=f"use --height {fixed[0]} --width {fixed[1]}",
        )
