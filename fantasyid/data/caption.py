"""Captioning clips with a vision-language model from transformers, given by local path (never downloaded here).

Two kinds of model, told apart by their processor:

* **video VLMs** (Qwen2.5-VL, Qwen2-VL: a processor with a ``video_processor`` and a chat template; the default,
  :data:`fantasyid.hub.CAPTIONER`) see several frames of the clip, evenly spread over it, as one video with its
  frame rate, and answer :data:`CAPTION_PROMPT`: one training caption of the person, the action and the scene;
* **image captioners** (Florence-2, BLIP, LLaVA, …) see the clip's middle frame; chat models get the prompt as a
  user turn with the image, Florence-2 its ``<MORE_DETAILED_CAPTION>`` task token, BLIP no prompt.

Greedy decoding, batches of clips (left padding for decoder-only models), on the given device.

:func:`build_tiny_captioner` saves a tiny, randomly initialised model of the real class with a processor in the real
format (``save_pretrained``): ``Qwen2_5_VLForConditionalGeneration`` with a small byte-level BPE tokenizer trained
here, or a BLIP captioner. Tests and benchmarks load it through the same :class:`Captioner` users do: the real code
path, meaningless words.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fantasyid.errors import CheckpointError, require

#: The instruction given to video VLMs. The paper only says each training clip has a caption; like the captions of
#: CogVideoX's training data (and ConsisID's), it describes who is seen, what they do and where, in plain prose.
CAPTION_PROMPT = (
    "Write one caption for this video clip, to train a text-to-video model. In 2-4 sentences describe the person "
    "(apparent age, gender, hair, clothing, accessories), what they do (expression, head and body movement, speaking "
    "or not) and the scene (place, background, lighting, camera framing and movement). Describe only what is visible; "
    "do not name the person and do not mention that this is a video."
)

#: Words of the tiny test captioners' vocabularies.
TINY_WORDS = ("a man woman person talks speaks smiles looks at the camera in car on road street room face hair "
              "young old with glasses and sits stands outdoors indoors").split()  # fmt: skip


def missing_captions_warning(missing: int, kept: int) -> str | None:
    """The warning for ``missing`` of ``kept`` clips without a caption (``None`` when every kept clip has one):
    training on such clips is unconditional, which no one wants silently."""
    if missing <= 0:
        return None
    if missing >= kept:
        which = f"none of the {kept} kept clips has a caption"
    else:
        which = f"{missing} of {kept} kept clips have no caption"
    return (f"{which}: training on them is unconditional (an empty prompt). Add captions with `fantasyid prep "
            f"--captioner qwen2.5-vl` (or --captions FILE, or a .txt beside each video); --require-caption drops "
            f"clips without one")


class Captioner:
    """A transformers vision-language model from a local folder: ``captioner(clips, fps) -> captions``, one per clip
    (each clip a sequence of ``(H, W, 3)`` uint8 RGB frames in time order)."""

    def __init__(self, folder: str | os.PathLike[str], *, device: str = "cpu", max_new_tokens: int = 60,
                 prompt: str = CAPTION_PROMPT):  # fmt: skip
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
                hint="pass a folder saved with save_pretrained holding a vision-language model and its processor "
                "(e.g. Qwen/Qwen2.5-VL-7B-Instruct)",
            ) from exc
        self.model.to(device).eval()
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None and not self.model.config.is_encoder_decoder:
            tokenizer.padding_side = "left"  # decoder-only generation continues after the prompt
        self.model_type = str(getattr(self.model.config, "model_type", ""))
        chat = bool(getattr(self.processor, "chat_template", None))
        #: the model sees the clip as a video (several frames), not one frame
        self.video = chat and getattr(self.processor, "video_processor", None) is not None

    def _chat(self, kind: str, count: int) -> list[str]:
        messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": self.prompt}]}]
        return [self.processor.apply_chat_template(messages, add_generation_prompt=True)] * count

    def _inputs(self, clips: list[np.ndarray], fps: Sequence[float]) -> dict:
        if self.video:
            metadata = [{"total_num_frames": len(c), "fps": float(f)} for c, f in zip(clips, fps)]
            return self.processor(text=self._chat("video", len(clips)), videos=clips, padding=True,
                                  return_tensors="pt", videos_kwargs={"do_sample_frames": False,
                                                                      "video_metadata": metadata,
                                                                      "cap_pixels_per_frame": True})  # fmt: skip
        from PIL import Image

        images = [Image.fromarray(clip[len(clip) // 2]) for clip in clips]  # the middle frame
        kwargs = {"images": images, "return_tensors": "pt"}
        if getattr(self.processor, "chat_template", None):
            kwargs.update(text=self._chat("image", len(images)), padding=True)
        elif "florence" in self.model_type:
            kwargs.update(text=["<MORE_DETAILED_CAPTION>"] * len(images), padding=True)
        return self.processor(**kwargs)  # BLIP-style captioners get no text: unconditional captioning

    def __call__(self, clips: Sequence[Sequence[np.ndarray]], fps: Sequence[float] | None = None) -> list[str]:
        """Captions of ``clips``; ``fps`` is each clip's frame rate as given (the time between its frames)."""
        import torch

        if not clips:
            return []
        stacked = [np.stack([np.asarray(f, dtype=np.uint8) for f in clip]) for clip in clips]  # each (T, H, W, 3)
        if any(len(clip) == 0 for clip in stacked):
            raise ValueError("every clip needs at least one frame")
        rates = [1.0] * len(stacked) if fps is None else list(fps)
        inputs = self._inputs(stacked, rates).to(self.device)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        if "input_ids" in inputs and not self.model.config.is_encoder_decoder:
            output = output[:, inputs["input_ids"].shape[1] :]  # (B, new tokens): drop the echoed prompt
        return [" ".join(text.split()) for text in self.processor.batch_decode(output, skip_special_tokens=True)]


def build_tiny_captioner(folder: str | os.PathLike[str], seed: int = 0, kind: str = "qwen2_5_vl") -> Path:
    """Save a tiny randomly initialised captioner of a real class with its processor, loadable by :class:`Captioner`.

    ``kind``: ``qwen2_5_vl`` (``Qwen2_5_VLForConditionalGeneration``, video input) or ``blip``
    (``BlipForConditionalGeneration``, one image). Weights are drawn wider than the classes' initialisation so that
    greedy decoding emits words, not end tokens at once.
    """
    import torch

    if kind not in ("qwen2_5_vl", "blip"):
        raise ValueError(f"unknown tiny captioner kind {kind!r}: qwen2_5_vl or blip")
    model, processor = _tiny_qwen2_5_vl() if kind == "qwen2_5_vl" else _tiny_blip()
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, 0.3)
    folder = Path(folder)
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


#: Qwen2-VL's special tokens, as in its tokenizer (the chat turns and the vision placeholders).
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>")  # fmt: skip

#: Qwen2-VL's chat template, reduced to what captioning uses: user/assistant turns with images, videos and text.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'video' %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_qwen2_5_vl():
    import json
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)  # fmt: skip

    # a byte-level BPE (Qwen2's tokenizer model) trained here on the prompt and the tiny vocabulary
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=list(QWEN_SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    bpe.train_from_iterator([CAPTION_PROMPT, " ".join(TINY_WORDS)] * 4, trainer)
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in spec["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=spec["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    pixels = {"shortest_edge": 56 * 56, "longest_edge": 56 * 56}  # every frame → 56×56: 4×4 patches of 14 px
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(size=pixels), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(size=pixels),
                                    chat_template=QWEN_CHAT_TEMPLATE)  # fmt: skip
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0], window_size=56),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip  (mrope_section: temporal/height/width halves of the 16-wide attention head, 2+3+3 = 8)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    # random weights pick any token: keep them to whole words (no stray bytes or special tokens in the captions)
    word = re.compile(r"^ ?[a-z']+$")
    model.generation_config.suppress_tokens = [
        i for token, i in tokenizer.get_vocab().items()
        if i != ids["<|im_end|>"] and not word.match(tokenizer.convert_tokens_to_string([token]))
    ]  # fmt: skip
    return model, processor


def _tiny_blip():
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
    return BlipForConditionalGeneration(config), processor
