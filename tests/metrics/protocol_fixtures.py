"""Weights for the protocol metrics in their real formats, with tiny random configurations of the real classes
(the released weights cannot be downloaded in tests): a CurricularFace IR state dict saved with ``torch.save`` (the
released ``.bin`` layout), a transformers ``CLIPModel`` + ``CLIPProcessor`` folder (``save_pretrained``, the hub
layout of openai/clip-vit-base-patch32) and torchvision's Inception-v3 state dict (its released ``.pth`` layout;
Inception-v3 has no smaller configuration, so it is full size with random weights)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: A small IR backbone: two stages of one unit each (the released IR-101 has 3, 13, 30, 3).
TINY_IR = dict(units=(1, 1), widths=(8, 16), stem=8, embedding=16, input_size=112)


def write_curricularface(path: Path, seed: int = 0) -> Path:
    """A tiny CurricularFace IR backbone's state dict, written with ``torch.save`` like the released ``.bin``."""
    from fantasyid.metrics.protocols.curricularface import IRBackbone, IRConfig

    torch.manual_seed(seed)
    model = IRBackbone(IRConfig(**TINY_IR))
    for module in model.modules():  # non-trivial running statistics, as a trained model has
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def _byte_chars() -> list[str]:
    """GPT-2 / CLIP's byte → unicode table, in order (the base symbols of CLIP's BPE vocabulary)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` (1 layer, width 32, 32-px images) and its ``CLIPProcessor`` (a character-level BPE
    vocabulary: CLIP's byte symbols and their end-of-word forms, no merges), saved with ``save_pretrained``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, eos_token_id=vocab["<|endoftext|>"],
                         bos_token_id=vocab["<|startoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_inception(path: Path, seed: int = 0) -> Path:
    """torchvision's Inception-v3 (``aux_logits``, as the released weights) with random weights, ``torch.save``d.
    The batch-norm statistics are set from one forward pass over noise, so that the features are of order one (with
    the default statistics they vanish through the 94 layers and every distance would be ~1e-16)."""
    from torchvision.models import inception_v3

    torch.manual_seed(seed)
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 299, 299))
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def write_consisid_weights(home: Path) -> dict[str, Path]:
    """Every ConsisID weight where the resolver looks (``$FANTASYID_HOME/eval/…``); returns them by model key."""
    from fantasyid.metrics.protocols.weights import EVAL_WEIGHTS

    return {
        "curricularface": write_curricularface(home / EVAL_WEIGHTS["curricularface"].home_path),
        "clip_vit_b32": write_clip(home / EVAL_WEIGHTS["clip_vit_b32"].home_path),
        "inception_v3_torchvision": write_inception(home / EVAL_WEIGHTS["inception_v3_torchvision"].home_path),
    }
