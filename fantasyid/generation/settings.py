"""What a generation run is asked to make: :class:`GenerateSettings` (sampler and output settings) and the defaults a
model brings with it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..models.configs import GENERATION_DEFAULTS

__all__ = ["GenerateSettings", "model_defaults"]


@dataclass
class GenerateSettings:
    """Sampler and output settings; defaults are the release's (:meth:`for_model`: the model's own)."""

    steps: int = GENERATION_DEFAULTS["released"]["steps"]  #: denoising steps
    guidance: float = GENERATION_DEFAULTS["released"]["guidance"]  #: classifier-free guidance scale (text only)
    frames: int = GENERATION_DEFAULTS["released"]["frames"]  #: output frames (1 + a multiple of 8)
    height: int = GENERATION_DEFAULTS["released"]["height"]
    width: int = GENERATION_DEFAULTS["released"]["width"]
    fps: int = GENERATION_DEFAULTS["released"]["fps"]
    seed: int = 42  #: default seed of items that give none
    negative_prompt: str = ""
    cache: str | None = None  #: diffusers cache hook, e.g. "fbc:threshold=0.05" (fantasyid.pipelines.acceleration)
    compile: bool = False  #: torch.compile the transformer blocks

    @classmethod
    def for_model(
        cls,
        model: str,
        *,
        steps: int | None = None,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        guidance: float | None = None,
        fps: int | None = None,
        **others: Any,
    ) -> GenerateSettings:
        """Settings with what is not given taken from ``model``'s own defaults (:func:`model_defaults`: the
        release's, the tiny model's, or what a saved model records). A value given (even 0, which is then refused)
        is never replaced."""
        given = {"steps": steps, "frames": frames, "height": height, "width": width, "guidance": guidance, "fps": fps}
        defaults = model_defaults(model)
        return cls(**{key: defaults[key] if value is None else value for key, value in given.items()}, **others)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"--steps must be ≥ 1, got {self.steps}", hint="50 is the release's default")
        # CogVideoX's VAE makes 4 frames per latent frame after the first, and an even number of latent frames
        # decodes to the wrong count (5 → 8, 13 → 16): 1 + a multiple of 8 is what comes out as asked.
        if self.frames < 1 or (self.frames - 1) % 8:
            raise InputError(
                f"--frames must be 1 + a multiple of 8 (9, 17, …, 49), got {self.frames}",
                hint="CogVideoX's VAE decodes other counts to a different number of frames",
            )
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise InputError(f"--height/--width must be positive multiples of 16, got {self.height}×{self.width}")
        if self.fps < 1:
            raise InputError(f"--fps must be ≥ 1, got {self.fps}")
        if self.cache:  # normalised: every option written out, so the sidecar records the exact settings
            from ..pipelines.acceleration import CacheSpec

            spec = CacheSpec.parse(self.cache)
            if spec.method == "fastercache" and self.guidance <= 1:
                raise InputError("--cache fastercache approximates the unconditional CFG half: it needs --guidance > 1")
            self.cache = str(spec)

    def warnings(self) -> list[str]:
        """Settings that run but are probably not what was meant."""
        notes = []
        if self.guidance < 1:
            notes.append(f"--guidance {self.guidance:g} is below 1: classifier-free guidance is off (the release uses 6)")
        return notes

    def request(self) -> dict[str, Any]:
        """The settings that change a video (the per-item seed and the negative prompt are kept apart)."""
        return {key: value for key, value in asdict(self).items() if key not in ("seed", "negative_prompt")}


def model_defaults(model: str) -> dict[str, Any]:
    """``steps``, ``guidance``, ``frames``, ``height``, ``width``, ``fps`` that ``model`` generates with unless told
    otherwise, read without torch: the tiny model's for ``tiny``; for a checkpoint folder in our format, its base
    model's (the tiny model's when it was trained from ``tiny``, else the release's), then the size its transformer
    was built for, then what its model index records (``generation_defaults``, written by ``fantasyid train``'s
    export); the release's for anything else."""
    if model == "tiny":
        return dict(GENERATION_DEFAULTS["tiny"])
    folder = Path(model).expanduser()
    block = _fantasyid_block(folder)
    if block is None:
        return dict(GENERATION_DEFAULTS["released"])
    base = "tiny" if block.get("init") == "tiny" else "released"
    defaults = dict(GENERATION_DEFAULTS[base])
    size = _saved_checkpoint_size(folder)
    if size is not None:
        defaults["frames"], defaults["height"], defaults["width"] = size
    recorded = block.get("generation_defaults") or {}
    if not isinstance(recorded, dict):
        raise InputError(f"'{folder / 'model_index.json'}': generation_defaults must be an object")
    for key, value in recorded.items():
        kind = float if key == "guidance" else int
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key not in defaults or not number or kind(value) != value:
            raise InputError(f"'{folder / 'model_index.json'}': generation_defaults has {key}={value!r}",
                             hint=f"known keys: {', '.join(defaults)} (numbers)")
        defaults[key] = kind(value)
    return defaults


def _fantasyid_block(folder: Path) -> dict[str, Any] | None:
    """The ``fantasyid`` block of a checkpoint folder in our format, or ``None`` (anything else, or unreadable: the
    loader says what is wrong later)."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    block = index.get("fantasyid") if isinstance(index, dict) else None
    return block if isinstance(block, dict) else None


def _saved_checkpoint_size(folder: Path) -> tuple[int, int, int] | None:
    """(frames, height, width) a checkpoint folder in our format was built for, read from its configs (no torch):
    the transformer's ``sample_frames`` and latent ``sample_height/width`` times the VAE's spatial factor."""
    try:
        transformer = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        scale = 2 ** (len(vae["block_out_channels"]) - 1)  # diffusers' vae_scale_factor_spatial
        return (int(transformer["sample_frames"]), int(transformer["sample_height"]) * scale,
                int(transformer["sample_width"]) * scale)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: the loader says what is wrong later
