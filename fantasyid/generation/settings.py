"""What a generation run is asked to make: :class:`GenerateSettings` (sampler and output settings) and the defaults a
model brings with it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["GenerateSettings"]


@dataclass
class GenerateSettings:
    """Sampler and output settings; defaults are the release's."""

    steps: int = 50  #: denoising steps
    guidance: float = 6.0  #: classifier-free guidance scale (text only)
    frames: int = 49  #: output frames (1 + a multiple of 8)
    height: int = 480
    width: int = 720
    fps: int = 8
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
        **others: Any,
    ) -> GenerateSettings:
        """Settings with the unset sizes filled in for ``model``: the release's defaults, or for ``tiny`` the tiny
        model's (4 steps, 9 frames, 64×64). A value given (even 0, which is then refused) is never replaced."""
        tiny = model == "tiny"
        saved = _saved_checkpoint_size(model)  # our own checkpoint folder: the size its model was built for

        def pick(value: int | None, tiny_default: int, default: int) -> int:
            return value if value is not None else (tiny_default if tiny else default)

        return cls(
            steps=pick(steps, 4, 50),
            frames=frames if frames is not None else (saved[0] if saved else pick(None, 9, 49)),
            height=height if height is not None else (saved[1] if saved else pick(None, 64, 480)),
            width=width if width is not None else (saved[2] if saved else pick(None, 64, 720)),
            **others,
        )

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


def _saved_checkpoint_size(model: str) -> tuple[int, int, int] | None:
    """(frames, height, width) a checkpoint folder in our format was built for, read from its configs (no torch):
    the transformer's ``sample_frames`` and latent ``sample_height/width`` times the VAE's spatial factor. ``None``
    for anything else (``tiny``, ``released``, a hub id, the release's own folder)."""
    folder = Path(model).expanduser()
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        if not isinstance(index, dict) or not isinstance(index.get("fantasyid"), dict):
            return None
        transformer = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        scale = 2 ** (len(vae["block_out_channels"]) - 1)  # diffusers' vae_scale_factor_spatial
        return (int(transformer["sample_frames"]), int(transformer["sample_height"]) * scale,
                int(transformer["sample_width"]) * scale)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not our folder (or unreadable): the loader says what is wrong later

