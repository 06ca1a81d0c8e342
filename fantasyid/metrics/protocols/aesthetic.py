"""OpenS2V's Aesthetics metric: LAION's aesthetic predictor (a linear MLP on normalised CLIP ViT-L/14 image
embeddings), as ``PKU-YuanGroup/OpenS2V-Nexus eval/get_aesscore.py`` runs it.

* Frames: 32 per video, ``np.linspace(0, N − 1, 32, dtype=int)`` (``sample_video_frames``), RGB PIL images.
* CLIP: ``CLIPVisionModelWithProjection`` of ``openai/clip-vit-large-patch14`` with that folder's
  ``CLIPProcessor`` (resize the short side to 224, bicubic, centre crop 224, CLIP mean/std); ``image_embeds``
  (768-d) divided by their L2 norm.
* MLP: ``Linear(768, 1024), Dropout, Linear(1024, 128), Dropout, Linear(128, 64), Dropout, Linear(64, 16),
  Linear(16, 1)`` with no activations (LAION's ``sac+logos+ava1-l14-linearMSE``), weights from
  ``BestWishYsh/OpenS2V-Weight/aesthetic-model.pth`` (keys ``layers.{0,2,4,6,7}.{weight,bias}``, read with
  ``torch.load(weights_only=True)``).
* A video's score: the mean of its frames' predictions (about 1–10; the protocol clips it to [4, 7]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fantasyid.errors import CheckpointError
from fantasyid.io import sha256_file
from fantasyid.metrics.protocols.arithmetic import sample_indices
from fantasyid.metrics.protocols.definitions import MetricSpec, Protocol
from fantasyid.metrics.protocols.scorer import ProtocolScorer, ScorerOptions, VideoSample, register
from fantasyid.metrics.protocols.weights import require_eval_weight


_HINT = "use aesthetic-model.pth from BestWishYsh/OpenS2V-Weight (LAION's sac+logos+ava1-l14-linearMSE predictor)"


class AestheticMLP(nn.Module):
    """LAION's predictor head, in the released layout (module indices as in the state dict's keys)."""

    def __init__(self, width: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2), nn.Linear(128, 64),
            nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:  # (N, width) -> (N, 1)
        return self.layers(embeds)


def load_aesthetic_mlp(path: str | Path) -> AestheticMLP:
    """The predictor with the weights of ``path`` (a torch state dict read with ``weights_only=True``, or a
    ``.safetensors`` file with the same keys), in eval mode; a :class:`CheckpointError` for any other file."""
    from fantasyid.face.assets import torch_load_weights

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch_load_weights(path, hint=_HINT)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "layers.0.weight" not in state:
        raise CheckpointError(f"{path} is not an aesthetic predictor state dict (no layers.0.weight)", hint=_HINT)
    model = AestheticMLP(int(state["layers.0.weight"].shape[1]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: keys or shapes do not match the aesthetic MLP ({str(exc).splitlines()[0]})",
                              hint=_HINT) from exc
    return model.eval()


@register
class AestheticScorer(ProtocolScorer):
    """Mean LAION aesthetic prediction over the protocol's sampled frames."""

    model_key = "aesthetic_mlp"
    needs_reference = False  # reads the generated frames only

    def __init__(self, options: ScorerOptions):
        super().__init__(options)
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        self.clip_path = require_eval_weight("aesthetic_clip", options.weights.get("aesthetic_clip"))
        self.mlp_path = require_eval_weight("aesthetic_mlp", options.weights.get("aesthetic_mlp"))
        self.processor = CLIPImageProcessor.from_pretrained(self.clip_path)
        self.clip = CLIPVisionModelWithProjection.from_pretrained(self.clip_path).eval().to(options.device)
        self.mlp = load_aesthetic_mlp(self.mlp_path).to(options.device)

    def provenance(self) -> dict[str, Any]:
        return {"model": self.model_key, "what": f"LAION aesthetic predictor on CLIP ({self.clip_path.name})",
                "clip": str(self.clip_path), "weights": str(self.mlp_path), "sha256": sha256_file(self.mlp_path),
                "preprocessing": "CLIPImageProcessor of the CLIP folder; image_embeds L2-normalised; mean over frames"}

    @torch.no_grad()
    def predict(self, frames: list[np.ndarray]) -> np.ndarray:
        """Each RGB uint8 frame's aesthetic prediction, ``(N,)``."""
        from PIL import Image

        pixels = self.processor(images=[Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"]
        embeds = self.clip(pixel_values=pixels.to(self.options.device)).image_embeds  # (N, 768)
        embeds = embeds / torch.linalg.vector_norm(embeds, dim=-1, keepdim=True)
        return self.mlp(embeds).squeeze(1).double().cpu().numpy()  # (N, 1) -> (N,)

    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        indices = sample_indices(spec.frames, len(sample.frames), spec.count)
        if not indices:
            return None
        return float(np.mean(self.predict([sample.frames[i] for i in indices])))
