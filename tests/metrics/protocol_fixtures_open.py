"""Tiny random checkpoints, written in the real formats, of the OpenS2V-human metrics' models (the real weights
are large and never downloaded in tests).

* :func:`write_tiny_aesthetic`: a ``CLIPVisionModelWithProjection`` folder (config.json, model.safetensors,
  preprocessor_config.json) and the predictor's ``.pth`` state dict (released keys);
* :func:`write_tiny_qwen2_vl`: a ``Qwen2VLForConditionalGeneration`` (GME's class) or
  ``Qwen2_5_VLForConditionalGeneration`` (the judge's) folder with its processor: a byte-level BPE
  ``Qwen2Tokenizer`` holding Qwen's special tokens, a ``Qwen2VLImageProcessor``, a ``Qwen2VLVideoProcessor`` and a
  ChatML chat template.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fantasyid.data.caption import QWEN_CHAT_TEMPLATE as CHAT_TEMPLATE  # the captioner's tiny Qwen template
from fantasyid.data.caption import QWEN_SPECIAL_TOKENS as SPECIAL_TOKENS


def write_tiny_aesthetic(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """A tiny CLIP vision folder and an aesthetic MLP ``.pth`` under ``folder``; returns (clip folder, mlp file)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from fantasyid.metrics.protocols.aesthetic import AestheticMLP

    folder = Path(folder)
    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=224, patch_size=32, projection_dim=24)
    clip_dir = folder / "clip-vit-large-patch14"
    CLIPVisionModelWithProjection(config).save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(clip_dir)
    mlp = AestheticMLP(config.projection_dim)
    for layer in mlp.layers:  # spread the outputs over a few units, as the released head's 1–10 range
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, std=1.0 / layer.in_features**0.5)
            torch.nn.init.normal_(layer.bias, std=0.5)
    with torch.no_grad():
        mlp.layers[7].weight.mul_(0.1)  # outputs about 5.5 ± 0.5: inside the protocol's [4, 7] clipping range
        mlp.layers[7].bias.fill_(5.5)
    mlp_path = folder / "aesthetic-model.pth"
    torch.save(mlp.state_dict(), mlp_path)
    return clip_dir, mlp_path


def tiny_qwen_tokenizer():
    """A byte-level BPE ``Qwen2Tokenizer`` (the 256 byte symbols, no merges) with Qwen's special tokens."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=SPECIAL_TOKENS[0], eos_token=SPECIAL_TOKENS[0],
                               pad_token=SPECIAL_TOKENS[0])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    return tokenizer


def write_tiny_qwen2_vl(folder: str | Path, family: str = "qwen2_vl", seed: int = 0) -> Path:
    """A tiny random Qwen2-VL (``family="qwen2_vl"``) or Qwen2.5-VL (``"qwen2_5_vl"``) checkpoint folder with
    its processor, loadable with ``AutoModelForImageTextToText`` / ``AutoProcessor``."""
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    folder = Path(folder)
    tokenizer = tiny_qwen_tokenizer()
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))))
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}, bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

        vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision, **tokens))
        processor_class = Qwen2VLProcessor
    elif family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1])
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens))
        processor_class = Qwen2_5_VLProcessor
    else:
        raise ValueError(f"unknown family {family!r}: qwen2_vl or qwen2_5_vl")
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    # the judge's own processor settings (the real folders ship theirs): small images keep the tiny test fast
    images = Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112})
    processor = processor_class(image_processor=images, tokenizer=tokenizer,
                                video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder
