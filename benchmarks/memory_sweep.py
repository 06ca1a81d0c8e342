"""Every memory plan of ``fantasyid generate --memory`` on one GPU: s/video, peak GPU memory, predicted vs measured.

    python benchmarks/gpu_generate.py --memory                          # one H100: all plans, < 10 minutes
    python benchmarks/gpu_generate.py --memory --size tiny --device cpu # the same code at toy size (the tests)

For each plan (:data:`fantasyid.pipelines.memory.PLANS`) the whole released pipeline (T5-XXL, VAE, transformer with
its identity modules) is built with random weights (same seeds for every plan, so the plans hold the same model),
the plan is applied with diffusers' own mechanisms, and one video is made at 49×480×720 with a few denoising steps
(``--memory-steps``, default 3). Printed per plan: seconds per step over steps 2…N, text encoding and VAE decode,
the 50-step video time extrapolated from them (encode + 50 × step + decode), peak allocated and reserved GPU GiB
(``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``) beside the planner's prediction, and how far the
plan's video is from the ``full`` plan's (PSNR over pixels, same seed).

Identity cost: with random weights the videos show no face, so RS / IFS (ArcFace similarity to the reference) are
not measurable here; PSNR against ``full`` is the stand-in (∞ for plans that only move weights). Run it on the real
checkpoint (``--model PATH``) to score RS/IFS with ``fantasyid eval`` on the saved videos.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import gpu_generate as bench
from fantasyid.pipelines.memory import PLANS, _plan, apply_plan, component_sizes, predict

GIB = 1024**3


def _identity_cache(pipe, device):
    config = pipe.transformer.config
    g = torch.Generator(device="cpu").manual_seed(2)
    tokens = torch.randn(1, 5, config.identity_dim, generator=g).to(device, pipe.transformer.dtype)
    with torch.no_grad():
        return pipe.transformer.prepare_identity(tokens)


def plan_row(size, name: str, tiling: bool, device, steps: int, sizes) -> tuple[dict, np.ndarray | None]:
    pipe = bench.build_pipeline(size, device, text_encoder=True)
    cache = _identity_cache(pipe, device)  # before any offloading: the identity keys/values stay on the device
    plan = _plan(name, tiling)
    if plan.group_offload or plan.model_offload or plan.t5_off:
        pipe.to("cpu")  # offloading plans start from host RAM, as loading leaves them
    bench.free()
    apply_plan(pipe, plan, device)
    bench.reset_peak(device)
    stamps = []

    def on_step(pipeline, step, timestep, tensors):
        bench.sync(device)
        stamps.append(time.perf_counter())
        return {}

    row = {"plan": name, "tiling": tiling}
    start = time.perf_counter()
    try:
        with torch.no_grad():
            out = pipe(bench.first_frame(size), "a person smiles at the camera", height=size.height, width=size.width,
                       num_frames=size.frames, num_inference_steps=steps, identity_cache=cache, output_type="np",
                       identity=bench.given_crop(size), generator=torch.Generator(device="cpu").manual_seed(42),
                       callback_on_step_end=on_step)
        bench.sync(device)
        end = time.perf_counter()
        step = (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)
        encode = stamps[0] - start - step  # text + image encoding: before the first step ended
        decode = end - stamps[-1]
        row.update(step_s=step, encode_s=encode, decode_s=decode,
                   video_50_s=encode + bench.PROJECTED_STEPS * step + decode)
        if device.type == "cuda":
            row.update(peak_gib=torch.cuda.max_memory_allocated(device) / GIB,
                       reserved_gib=torch.cuda.max_memory_reserved(device) / GIB)
        frames = np.asarray(out.frames, dtype=np.float32)
    except torch.OutOfMemoryError:
        row["oom"] = True
        frames = None
    if sizes is not None:
        row["predicted_gib"] = predict(sizes, name, tiling, size.frames, size.height, size.width).peak_bytes / GIB
    del pipe
    bench.free()
    return row, frames


def sweep(size, device, steps: int, plans=PLANS) -> list[dict]:
    """One row per plan; the offloading plans with VAE tiling (as the small budgets that choose them need)."""
    model = "tiny" if size.name == "tiny" else "released"
    try:
        sizes = component_sizes(model, dtype=str(size.dtype).replace("torch.", ""), device_type=device.type)
    except ImportError as exc:  # the planner builds the identity encoder and face models: timm, scipy, …
        print(f"no predictions: the planner needs {exc.name or exc}, which is not installed here")
        sizes = None
    rows, reference = [], None
    for name in plans:
        row, frames = plan_row(size, name, PLANS.index(name) >= PLANS.index("offload"), device, steps,
                               sizes)
        if frames is not None:
            if reference is None and name == "full":
                reference = frames
            if reference is not None:
                mse = float(np.mean((frames - reference) ** 2))
                row["psnr_vs_full"] = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
        rows.append(row)
    return rows


def print_sweep(size, device, rows, steps: int) -> None:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nMemory plans on {where} · {size.name} size · {size.frames}×{size.height}×{size.width} · random weights · "
          f"{steps} steps per plan, the {bench.PROJECTED_STEPS}-step video extrapolated (encode + "
          f"{bench.PROJECTED_STEPS} × step + decode):\n")
    print("| plan | VAE tiling | s / step | encode (s) | decode (s) | 50-step video (s) | predicted peak GiB "
          "| peak allocated GiB | peak reserved GiB | PSNR vs full (dB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tiling = "on" if r["tiling"] else "off"
        if r.get("oom"):
            print(f"| {r['plan']} | {tiling} | out of memory | – | – | – | {bench.fmt(r.get('predicted_gib'))} | – | – | – |")
            continue
        print(f"| {r['plan']} | {tiling} | {r['step_s']:.3f} | {r['encode_s']:.2f} | {r['decode_s']:.2f} "
              f"| {r['video_50_s']:.1f} | {bench.fmt(r.get('predicted_gib'))} | {bench.fmt(r.get('peak_gib'))} "
              f"| {bench.fmt(r.get('reserved_gib'))} | {bench.fmt(r.get('psnr_vs_full'), '.1f')} |")
