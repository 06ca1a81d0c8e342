"""Peak memory per GPU of FantasyID training at full size, estimated from parameter, optimizer and activation counts
on the ``meta`` device (no weights, no GPU), plus the training FLOPs per sample behind the 5B config's wall time.

    python benchmarks/train_memory.py [--variant paper] [--frames 49] [--height 480] [--width 720]
    python benchmarks/train_memory.py --strategies      # measured: DDP vs ZeRO-2 vs FSDP, 2 CPU processes, tiny/small

Method (bytes per parameter; N = number of GPUs):

* DDP, accelerate bf16 autocast: fp32 weights 4 + fp32 gradients 4 + AdamW moments 8 = 16 per trainable parameter,
  4 per frozen one (replicated on every GPU).
* DeepSpeed ZeRO-2, bf16: bf16 weights 2 (replicated) + (bf16 gradients 2 + fp32 master 4 + moments 8) / N per
  trainable parameter; 2 per frozen one.
* FSDP full shard, fp32 sharded weights, bf16 compute: 16 / N per trainable and 4 / N per frozen parameter, plus one
  gathered block in bf16 (twice, with prefetch).
* Frozen encoders that stay on the GPU in bf16: T5-XXL encoder (4.76 B), CogVideoX VAE (0.22 B), EVA02-CLIP-L
  vision (0.30 B) — their inputs are small; the VAE's own activations while encoding 49×480×720 are left out
  (they are transient and vanish with --precompute).
* Activations per sample (Korthikanti et al. 2022, with fused SDPA attention): 34·s·h bytes per transformer layer
  (s = video + text tokens, h = hidden size) plus the identity cross-attention (≈ 10·s·h + its 314 K/V tokens).
  With gradient checkpointing only each block's input (2·s·h, bf16) is kept, plus one block recomputed.
* +10 % for the CUDA context, allocator fragmentation and workspace.

Training FLOPs per sample are counted by ``FlopCounterMode`` on the meta device (forward + backward, plus one more
forward with gradient checkpointing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from flops import count_flops, params  # noqa: E402

from fantasyid.models.configs import identity_encoder_config, transformer_config  # noqa: E402

META = torch.device("meta")
FROZEN_ENCODERS = 4.76e9 + 0.22e9 + 0.30e9  # T5-XXL encoder, CogVideoX VAE, EVA02-CLIP-L vision tower
GIB = 1024**3
A100_BF16_PEAK = 312e12


def build(variant: str, lora_rank: int = 64):
    from peft import LoraConfig

    from fantasyid.models.identity_encoder import FantasyIDIdentityEncoder
    from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel
    from fantasyid.training.model import LORA_TARGETS

    with META:
        transformer = FantasyIDTransformer3DModel(**transformer_config(variant))
        encoder = FantasyIDIdentityEncoder(**identity_encoder_config(variant))
    backbone = sum(p.numel() for n, p in transformer.named_parameters() if not n.startswith("identity_attention."))
    injection = sum(p.numel() for p in transformer.identity_attention.parameters())
    identity = params(encoder)
    with META:
        transformer.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=LORA_TARGETS))
    lora = sum(p.numel() for n, p in transformer.named_parameters() if "lora_" in n)
    return transformer, encoder, {"backbone": backbone, "injection": injection, "identity": identity, "lora": lora}


def train_flops(transformer, encoder, frames: int, height: int, width: int) -> tuple[float, int]:
    """(forward + backward FLOPs of one sample, tokens per block)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    transformer.disable_lora() if hasattr(transformer, "disable_lora") else None
    config = transformer.config
    latent_frames, lh, lw = (frames - 1) // 4 + 1, height // 8, width // 8
    latents = torch.empty(1, latent_frames, config.in_channels, lh, lw, device=META)
    text = torch.empty(1, config.max_text_seq_length, config.text_embed_dim, device=META)
    t = torch.zeros(1, dtype=torch.long, device=META)
    cos, sin = get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim, crops_coords=((0, 0), (lh // 2, lw // 2)),
                                       grid_size=(lh // 2, lw // 2), temporal_size=latent_frames)
    c = encoder.config
    clip = [torch.empty(1, c.clip_grid_size**2 + 1, c.clip_hidden_dim, device=META) for _ in range(c.num_clip_layers)]
    vertices = torch.empty(1, c.mesh_num_vertices[0], 3, device=META)

    def step():
        tokens = encoder(clip, vertices)
        out = transformer(latents, text, t, image_rotary_emb=(cos.to(META), sin.to(META)), identity_tokens=tokens,
                          return_dict=False)[0]
        out.float().square().mean().backward()

    for p in list(transformer.parameters()) + list(encoder.parameters()):
        p.requires_grad_(True)
    flops = count_flops(step)
    tokens = latent_frames * (lh // 2) * (lw // 2) + config.max_text_seq_length
    return float(flops), tokens


def memory_gib(counts: dict, mode: str, strategy: str, gpus: int, checkpointing: bool, tokens: int,
               hidden: int, layers: int, block_params: int) -> float:
    total = counts["backbone"] + counts["injection"] + counts["identity"]
    trainable = {"full": total, "identity": counts["injection"] + counts["identity"],
                 "lora": counts["lora"] + counts["injection"] + counts["identity"]}[mode]
    frozen = total - trainable + (counts["lora"] if mode != "lora" else 0) * 0
    if strategy == "DDP":
        states = 16 * trainable + 4 * frozen
    elif strategy == "ZeRO-2":
        states = (2 + 14 / gpus) * trainable + 2 * frozen
    else:  # FSDP
        states = (16 * trainable + 4 * frozen) / gpus + 2 * 2 * block_params
    encoders = 2 * FROZEN_ENCODERS
    per_layer = (34 + 10) * tokens * hidden
    activations = (2 * tokens * hidden * layers + per_layer) if checkpointing else per_layer * layers
    return 1.1 * (states + encoders + activations) / GIB


def precompute_weights(counts: dict) -> tuple[int, int]:
    """(T5-XXL encoder + CogVideoX VAE parameters, what training loads besides them), counted on the meta device:
    ``fantasyid train --precompute`` builds the first only."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    t5_xxl = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                      feed_forward_proj="gated-gelu")  # CogVideoX-5B's text_encoder/config.json
    with META:
        encoders = params(T5EncoderModel(t5_xxl)) + params(AutoencoderKLCogVideoX())  # diffusers' default: CogVideoX
    rest = counts["backbone"] + counts["injection"] + counts["identity"] + 0.30e9  # + EVA02-CLIP-L vision
    return encoders, int(rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="paper", choices=("paper", "released"))
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--strategies", action="store_true",
                        help="measured instead: memory per process of DDP vs ZeRO-2 vs FSDP, 2 CPU processes, tiny and small")
    args = parser.parse_args()
    if args.strategies:
        from train_strategies import table

        table(["tiny", "small"], 2, steps=1)
        return

    transformer, encoder, counts = build(args.variant)
    config = transformer.config
    hidden, layers = config.num_attention_heads * config.attention_head_dim, config.num_layers
    block_params = params(transformer.transformer_blocks[0]) + params(transformer.identity_attention[0])
    flops, tokens = train_flops(transformer, encoder, args.frames, args.height, args.width)
    print(f"FantasyID ({args.variant}) at {args.frames}×{args.height}×{args.width}, batch 1 per GPU: {tokens:,} tokens "
          f"per block. Parameters: backbone {counts['backbone'] / 1e9:.2f} B, identity injection "
          f"{counts['injection'] / 1e9:.3f} B, identity encoder {counts['identity'] / 1e9:.3f} B, LoRA r=64 "
          f"{counts['lora'] / 1e6:.1f} M; frozen T5 + VAE + EVA-CLIP {FROZEN_ENCODERS / 1e9:.2f} B.\n")
    print("| trainable | checkpointing | strategy | 1 GPU | 8 GPUs | 16 GPUs |")
    print("|---|---|---|---:|---:|---:|")
    for mode in ("full", "identity", "lora"):
        for checkpointing in (True, False):
            for strategy in ("DDP", "ZeRO-2", "FSDP"):
                cells = [memory_gib(counts, mode, strategy, n, checkpointing, tokens, hidden, layers, block_params)
                         for n in (1, 8, 16)]
                shown = " | ".join(f"{c:.1f} GiB" + (" ✗" if c > 80 else "") for c in cells)
                print(f"| {mode} | {'yes' if checkpointing else 'no'} | {strategy} | {shown} |")
    print("\n✗: over an 80 GB GPU. Check against finetrainers' ~53 GB (CogVideoX-5B alone, bf16 weights, gradients "
          "and AdamW states, 49×512×768, gradient checkpointing):")
    b = counts["backbone"]
    tokens_ft = 13 * 32 * 48 + 226
    ft = (8 * b + 2 * tokens_ft * hidden * layers + 34 * tokens_ft * hidden) / GIB
    print(f"  the same counting gives {ft:.1f} GiB (8 B/param × {b / 1e9:.2f} B + activations) "
          f"+ T5/VAE if kept on the GPU ({2 * FROZEN_ENCODERS / GIB:.1f} GiB).")
    fwd_bwd = flops
    with_ckpt = flops * 4 / 3  # one more forward: forward ≈ 1/3 of forward + backward
    print(f"\nTraining FLOPs per sample: {fwd_bwd / 1e15:.3f} PFLOP forward + backward, {with_ckpt / 1e15:.3f} PFLOP "
          f"with gradient checkpointing → {with_ckpt / A100_BF16_PEAK:.1f} s at an A100's bf16 peak, "
          f"{with_ckpt / (0.4 * A100_BF16_PEAK):.1f} s at 40 % MFU.")
    samples = 90_000 * 16
    for gpus in (8, 16):
        hours = samples * with_ckpt / (0.4 * A100_BF16_PEAK) / gpus / 3600
        print(f"  90k steps × batch 16 on {gpus} A100s at 40 % MFU: {hours:,.0f} h")

    encoders, rest = precompute_weights(counts)
    print(f"\n--precompute loads T5-XXL and the VAE only: {encoders / 1e9:.2f} B parameters, "
          f"{2 * encoders / GIB:.1f} GiB in bf16 ({4 * encoders / GIB:.1f} GiB fp32), instead of "
          f"{(encoders + rest) / 1e9:.2f} B with the transformer, identity modules and EVA-CLIP "
          f"({2 * (encoders + rest) / GIB:.1f} GiB bf16); the VAE's activations while encoding come on top.")


if __name__ == "__main__":
    main()
