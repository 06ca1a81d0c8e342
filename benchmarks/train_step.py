"""Seconds per training step, samples/s and model FLOP utilisation of FantasyID's trainable part.

    python benchmarks/train_step.py                      # tiny and small sizes on the CPU
    python benchmarks/train_step.py --size full          # one GPU, 49×480×720, random weights, bf16
    python benchmarks/train_step.py --strategies         # DDP vs ZeRO-2 vs FSDP, 2 CPU processes (train_strategies.py)

What is timed is the optimizer step of the training loop's trainable module (transformer + identity branch,
``fantasyid.training.model.TrainModule``) with the loop's own loss (``fantasyid.training.step.compute_loss``):
forward, backward, gradient clipping, AdamW. The frozen encoders' outputs (VAE latents, T5 states, EVA-CLIP
features) are random tensors of their shapes: they come from the precompute cache or cost the same in every
setting. FLOPs are counted once with ``FlopCounterMode``; MFU = FLOPs / time / the device's measured matmul peak
(fp32 on CPU, bf16 on GPU). Nothing is downloaded (random weights, built from the configs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from flops import count_flops  # noqa: E402

from fantasyid.models.configs import identity_encoder_config, transformer_config  # noqa: E402

SIZES = {
    # name: (transformer config, identity config, frames, height, width)
    "tiny": ("tiny", "tiny", 9, 64, 64),
    "small": ("small", "tiny", 13, 128, 128),
    "full": ("paper", "paper", 49, 480, 720),
}


def _transformer_config(name: str) -> dict:
    if name != "small":
        return transformer_config(name)
    config = transformer_config("tiny")  # 4 blocks of width 128, 16×16 latents
    config.update(num_attention_heads=4, attention_head_dim=32, num_layers=4, sample_height=16, sample_width=16,
                  sample_frames=13, identity_num_heads=4, identity_head_dim=16)
    return config


def build(size: str, mode: str, device: torch.device, dtype: torch.dtype):
    from peft import LoraConfig

    from fantasyid.models.identity_encoder import FantasyIDIdentityEncoder
    from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel
    from fantasyid.pipelines.tiny import cogvideox_scheduler
    from fantasyid.training.ablations import IdentityBranch
    from fantasyid.training.model import LORA_TARGETS, TrainModule

    t_name, e_name, frames, height, width = SIZES[size]
    t_config = _transformer_config(t_name)
    e_config = identity_encoder_config(e_name, variant="paper" if e_name == "tiny" else None)
    if size != "full":
        e_config["identity_dim"] = t_config["identity_dim"]
        e_config["reducer_channels"][-1] = t_config["identity_dim"]
    with device:
        transformer = FantasyIDTransformer3DModel(**t_config)
        encoder = FantasyIDIdentityEncoder(**e_config)
    encoder.mesh_loaded.fill_(True)  # timing only: the mesh buffers' values do not change the cost
    transformer.enable_gradient_checkpointing()
    if mode != "full":
        transformer.requires_grad_(False)
        transformer.identity_attention.requires_grad_(True)
    if mode == "lora":
        transformer.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=LORA_TARGETS))
    module = TrainModule(transformer, IdentityBranch(encoder))
    c = encoder.config
    latent_frames, lh, lw = (frames - 1) // 4 + 1, height // 8, width // 8
    channels = t_config["in_channels"] // 2
    latents = torch.randn(1, latent_frames, channels, lh, lw, device=device)
    noisy = torch.randn_like(latents)
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    rotary = get_3d_rotary_pos_embed(embed_dim=t_config["attention_head_dim"],
                                     crops_coords=((0, 0), (lh // 2, lw // 2)),
                                     grid_size=(lh // 2, lw // 2), temporal_size=latent_frames, device=device)
    from fantasyid.training.step import StepInputs

    inputs = StepInputs(
        model_input=torch.cat([noisy, torch.randn_like(latents)], dim=2), latents=latents, noisy=noisy,
        timesteps=torch.tensor([500], device=device),
        text_states=torch.randn(1, t_config["max_text_seq_length"], t_config["text_embed_dim"], device=device),
        clip_hidden_states=[torch.randn(1, c.clip_grid_size**2 + 1, c.clip_hidden_dim, device=device)
                            for _ in range(c.num_clip_layers)],
        vertices=torch.randn(1, c.mesh_num_vertices[0], 3, device=device) * 0.1, rotary=rotary, ofs=None,
    )
    scheduler = cogvideox_scheduler()
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(device)
    return module, inputs, SimpleNamespace(pipe=SimpleNamespace(scheduler=scheduler))


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    start, reps = time.perf_counter(), 3 if device.type == "cpu" else 20
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(size: str, mode: str, device: torch.device, dtype: torch.dtype, steps: int) -> dict:
    from fantasyid.training.step import compute_loss

    module, inputs, components = build(size, mode, device, dtype)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        with autocast:
            loss = compute_loss(module, components, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    flops = count_flops(step)  # also the warm-up step
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    memory = torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None
    return {"seconds": seconds, "flops": flops, "trainable": sum(p.numel() for p in params), "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("cpu", "full"), default="cpu", help="cpu: tiny and small; full: one GPU")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--strategies", action="store_true",
                        help="DDP vs ZeRO-2 vs FSDP (2 CPU processes each, tiny and small; train_strategies.py)")
    args = parser.parse_args()
    if args.strategies:
        from train_strategies import table

        table(["tiny", "small"], 2, args.steps)
        return
    if args.size == "full":
        if not torch.cuda.is_available():
            sys.exit("error: --size full needs a CUDA GPU (49×480×720 trains on GPUs only); run the CPU sizes "
                     "without --size")
        device, dtype, sizes, modes = torch.device("cuda"), torch.bfloat16, ["full"], ["identity", "lora", "full"]
    else:
        device, dtype, sizes = torch.device("cpu"), torch.float32, ["tiny", "small"]
        modes = ["identity", "lora", "full"]
    peak = matmul_peak(device, dtype)
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}, {dtype}, measured matmul "
          f"peak {peak / 1e12:.3f} TFLOP/s, batch 1, gradient checkpointing on\n")
    print("| size | trainable | trainable params | s / step | samples / s | GFLOP / step | MFU | peak memory |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for mode in modes:
            try:
                r = time_step(size, mode, device, dtype, args.steps)
            except torch.OutOfMemoryError:
                print(f"| {size} | {mode} | – | does not fit | – | – | – | – |")
                torch.cuda.empty_cache()
                continue
            memory = f"{r['memory']:.1f} GiB" if r["memory"] is not None else "–"
            print(f"| {size} | {mode} | {r['trainable'] / 1e6:.2f} M | {r['seconds']:.3f} | {1 / r['seconds']:.2f} "
                  f"| {r['flops'] / 1e9:.2f} | {100 * r['flops'] / r['seconds'] / peak:.1f} % | {memory} |")
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
