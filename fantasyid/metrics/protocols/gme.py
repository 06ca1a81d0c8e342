"""OpenS2V's GmeScore: text–frame similarity in the embedding space of GME (``Alibaba-NLP/gme-Qwen2-VL-7B-Instruct``,
a Qwen2-VL fine-tuned for retrieval), as ``PKU-YuanGroup/OpenS2V-Nexus eval/get_gmescore.py`` with
``eval/utils/gme/gme_model.py`` computes it.

* Frames: 32, ``np.linspace(0, N − 1, 32, dtype=int)``.
* Each frame: ``fetch_image`` (``smart_resize`` to multiples of 28 within 4·28²…16384·28² pixels, PIL's default
  bicubic resize), then the folder's processor with ``min_pixels = 256·28²``, ``max_pixels = 1280·28²``.
* Texts: ``<|im_start|>system\\n{instruction}<|im_end|>\\n<|im_start|>user\\n{input}<|im_end|>\\n<|im_start|>assistant
  \\n<|endoftext|>``; the prompt is a query with the instruction "Find an image that matches the given text.", a frame
  is a corpus item (``<|vision_start|><|image_pad|><|vision_end|>`` as input, the default instruction "You are a
  helpful assistant.").
* Embedding: the vision tower's features scattered into the token embeddings at the image tokens, the language model
  run with plain 1-D positions (``position_ids=None`` as GME's ``forward`` calls it), the last non-padding token's
  hidden state, L2-normalised.
* A video's score: the mean over frames of ``e_text · e_frame`` (fp16 on GPU as the authors run it; fp32 on CPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fantasyid.metrics.protocols.arithmetic import sample_indices
from fantasyid.metrics.protocols.definitions import MetricSpec, Protocol
from fantasyid.metrics.protocols.scorer import ProtocolScorer, ScorerOptions, VideoSample, register
from fantasyid.metrics.protocols.weights import require_eval_weight


QUERY_INSTRUCTION = "Find an image that matches the given text."  # get_gmescore.py
DEFAULT_INSTRUCTION = "You are a helpful assistant."  # gme_model.py defualt_instruction
IMAGE_INPUT = "<|vision_start|><|image_pad|><|vision_end|>"
MIN_PIXELS, MAX_PIXELS = 256 * 28 * 28, 1280 * 28 * 28  # GmeQwen2VL(min_image_tokens=256, max_image_tokens=1280)
FETCH_MIN_PIXELS, FETCH_MAX_PIXELS = 4 * 28 * 28, 16384 * 28 * 28  # gme_model.py MIN_PIXELS, MAX_PIXELS


def gme_message(instruction: str, content: str) -> str:
    """GME's input string (``gme_model.py`` ``embed``)."""
    return (f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
            "<|im_start|>assistant\n<|endoftext|>")


def fetch_image(frame: np.ndarray):
    """``gme_model.py fetch_image`` for an RGB array: resize to ``smart_resize``'s size (multiples of 28)."""
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    image = Image.fromarray(np.ascontiguousarray(frame)).convert("RGB")
    height, width = smart_resize(image.height, image.width, factor=28, min_pixels=FETCH_MIN_PIXELS,
                                 max_pixels=FETCH_MAX_PIXELS)
    return image.resize((width, height), Image.Resampling.BICUBIC)


class GmeEmbedder:
    """GME's ``get_text_embeddings`` / ``get_image_embeddings`` over a transformers Qwen2-VL checkpoint folder."""

    def __init__(self, folder, device: str = "cpu", dtype: torch.dtype | None = None):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = device
        self.dtype = dtype or (torch.float16 if str(device).startswith("cuda") else torch.float32)
        self.model = AutoModelForImageTextToText.from_pretrained(folder, dtype=self.dtype).eval().to(device)
        self.processor = AutoProcessor.from_pretrained(
            folder, size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})
        self.processor.tokenizer.padding_side = "right"  # gme_model.py without flash attention

    @torch.no_grad()
    def _embed(self, texts: list[str], images: list | None) -> torch.Tensor:
        inputs = self.processor(text=texts, images=images, padding=True, truncation=True, max_length=1800,
                                return_tensors="pt")
        ids = inputs["input_ids"].to(self.device)  # (B, L)
        mask = inputs["attention_mask"].to(self.device)  # (B, L)
        core = self.model.model  # Qwen2VLModel: .visual, .language_model
        embeds = core.get_input_embeddings()(ids)  # (B, L, D)
        if images is not None:
            pixels = inputs["pixel_values"].to(self.device, self.dtype)  # (patches, C·t·p·p)
            features = core.get_image_features(pixels, inputs["image_grid_thw"].to(self.device), return_dict=True)
            image_embeds = torch.cat(features.pooler_output, dim=0).to(embeds.dtype)  # (image tokens, D)
            embeds = embeds.masked_scatter((ids == self.model.config.image_token_id)[..., None], image_embeds)
        hidden = core.language_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state  # (B, L, D)
        last = mask.sum(dim=1) - 1  # right padding: the last real token of each row
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, D)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)

    def text_embeddings(self, texts: list[str], instruction: str = QUERY_INSTRUCTION) -> torch.Tensor:
        return self._embed([gme_message(instruction, t) for t in texts], None)

    def image_embeddings(self, frames: list[np.ndarray], batch_size: int = 8) -> torch.Tensor:
        out = []
        for start in range(0, len(frames), batch_size):
            chunk = [fetch_image(f) for f in frames[start:start + batch_size]]
            out.append(self._embed([gme_message(DEFAULT_INSTRUCTION, IMAGE_INPUT)] * len(chunk), chunk))
        return torch.cat(out, dim=0)  # (N, D)


@register
class GmeScorer(ProtocolScorer):
    """Mean cosine between the prompt's GME query embedding and each sampled frame's GME embedding."""

    model_key = "gme"
    needs_prompt = True  # the query is the video's prompt
    needs_reference = False  # reads the generated frames only

    def __init__(self, options: ScorerOptions):
        super().__init__(options)
        self.folder = require_eval_weight("gme", options.weights.get("gme"))
        self.embedder = GmeEmbedder(self.folder, options.device)

    def provenance(self) -> dict[str, Any]:
        return {"model": self.model_key, "what": f"GME embeddings ({self.folder.name})", "weights": str(self.folder), "dtype": str(self.embedder.dtype),
                "query_instruction": QUERY_INSTRUCTION,
                "preprocessing": f"fetch_image smart_resize (28 px), processor min/max pixels {MIN_PIXELS}/"
                f"{MAX_PIXELS}"}

    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        indices = sample_indices(spec.frames, len(sample.frames), spec.count)
        if not indices or not sample.prompt:
            return None
        text = self.embedder.text_embeddings([sample.prompt])  # (1, D): the authors repeat it per frame
        frames = self.embedder.image_embeddings([sample.frames[i] for i in indices])  # (N, D)
        return float((frames.double() @ text[0].double()).mean())
