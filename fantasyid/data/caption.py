"""Captioning a clip from its middle frame with an image-to-text model from transformers, given by local path.

Works with the families that ``AutoModelForImageTextToText`` loads: chat models with a chat template (Qwen2-VL,
Qwen2.5-VL, LLaVA, …) get the prompt as a user turn with the image; Florence-2 gets its ``<MORE_DETAILED_CAPTION>``
task token; BLIP-style captioners get no prompt. Greedy decoding, batches of frames, on the given device. Nothing
is downloaded: the folder must hold the model (``save_pretrained``).

:func:`build_tiny_captioner` saves a tiny, randomly initialised BLIP captioner (the real class, a 30-word vocabulary)
for tests and benchmarks: the real code path, meaningless words.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fantasyid.errors import CheckpointError, require

#: Words of the tiny test captioner's vocabulary (after BERT's five special tokens).
TINY_WORDS = ("a man woman person talks speaks smiles looks at the camera in car on road street room face hair "
              "young old with glasses and sits stands outdoors indoors").split()  # fmt: skip


class Captioner:
    """A transformers image-to-text model from a local folder: ``captioner(frames) -> captions`` (one per frame)."""

    def __init__(self, folder: str | os.PathLike[str], *, device: str = "cpu", max_new_tokens: int = 60,
                 prompt: str = "Describe this video frame in one detailed sentence."):  # fmt: skip
        transformers = require("transformers", "prep", "captioning clips")
        self.folder = Path(folder)
        self.name = self.folder.name
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(self.folder)
            self.model = transformers.AutoModelForImageTextToText.from_pretrained(self.folder)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"cannot load a captioning model from '{self.folder}': {' '.join(str(exc).split())[:200]}",
                hint="pass a folder saved with save_pretrained holding an image-to-text model and its processor",
            ) from exc
        self.model.to(device).eval()
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None and not self.model.config.is_encoder_decoder:
            tokenizer.padding_side = "left"  # decoder-only generation continues after the prompt
        self.model_type = str(getattr(self.model.config, "model_type", ""))

    def _texts(self, count: int) -> list[str] | None:
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
            return [self.processor.apply_chat_template(messages, add_generation_prompt=True)] * count
        if "florence" in self.model_type:
            return ["<MORE_DETAILED_CAPTION>"] * count
        return None  # BLIP-style unconditional captioning

    def __call__(self, frames: Sequence[np.ndarray]) -> list[str]:
        import torch
        from PIL import Image

        if not frames:
            return []
        images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        texts = self._texts(len(images))
        kwargs = {"images": images, "return_tensors": "pt"}
        if texts is not None:
            kwargs.update(text=texts, padding=True)
        inputs = self.processor(**kwargs).to(self.device)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        if "input_ids" in inputs and not self.model.config.is_encoder_decoder:
            output = output[:, inputs["input_ids"].shape[1] :]  # (B, new tokens): drop the echoed prompt
        return [" ".join(text.split()) for text in self.processor.batch_decode(output, skip_special_tokens=True)]


def build_tiny_captioner(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """Save a tiny randomly initialised BLIP captioner (``BlipForConditionalGeneration``) with its processor.

    Weights are drawn wider than BLIP's initialisation so that greedy decoding emits words, not end tokens at once.
    """
    import torch
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)  # fmt: skip

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = BlipConfig(
        text_config=dict(vocab_size=len(words), max_position_embeddings=64, bos_token_id=2, eos_token_id=3,
                         sep_token_id=3, pad_token_id=0, **tiny),
        vision_config=dict(image_size=32, patch_size=8, **tiny),
        projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, 0.3)
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
