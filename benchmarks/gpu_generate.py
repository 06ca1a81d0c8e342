"""Seconds and GPU memory per generated video: CogVideoX-5B-I2V and FantasyID (released, paper) at full size.

    python benchmarks/gpu_generate.py                          # one GPU, full size, a few minutes (< 8 on an H100)
    python benchmarks/gpu_generate.py --quick                  # about a minute: released model, First-Block Cache only
    python benchmarks/gpu_generate.py --size tiny --device cpu # the same code at toy size (what the tests run)
    python benchmarks/gpu_generate.py --memory                 # every memory plan instead (benchmarks/memory_sweep.py)

Every model is built on the ``meta`` device and materialised on the GPU with random weights (no download; the
numbers are about compute and memory, not about videos). One denoising step is one transformer call on a batch of 2
(classifier-free guidance) at 49×480×720 (13×60×90 latents), bf16, PyTorch SDPA attention (diffusers' default
processor). Printed tables:

1. per model: seconds per step, steps/s, the identity branch's one-time cost (identity encoder + keys/values of
   every injection layer, once per video), peak GPU memory of the transformer alone, and the 50-step denoising time
   projected from the step time;
2. FantasyID (released) through the pipeline's denoising loop without and with each cache of
   ``fantasyid generate --cache`` and with ``--compile``: s/step, speed-up, what was skipped, and how far the final
   latents move from the uncached run at the same seed (random weights: this shows the mechanism, not the quality);
3. the whole pipeline (T5-XXL, identity encoder resident, transformer, VAE encode and decode at 49×480×720) with and
   without model CPU offload and VAE tiling: peak GPU memory, text+image encoding and decoding time, and the
   projected time of a full 50-step video.

It imports torch, transformers, accelerate, safetensors, numpy, diffusers and ``fantasyid``, nothing else: the
identity encoder needs timm (and torchvision) and is timed only where they are installed; without them the
identity branch row covers the keys/values only and says so. See benchmarks/README.md for running it on a machine
without network.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fantasyid.models.configs import identity_encoder_config, transformer_config  # noqa: E402
from fantasyid.pipelines import tiny  # noqa: E402

GIB = 1024**3
PROJECTED_STEPS = 50
CACHES = ("fbc", "pab", "fastercache", "taylorseer")
NEEDED = ("diffusers", "transformers", "accelerate", "safetensors", "PIL")  # PIL: Pillow, a diffusers dependency


@dataclass
class Size:
    """Everything that differs between the full-size run and the toy run of the same code."""

    name: str
    frames: int
    height: int
    width: int
    dtype: torch.dtype
    transformer: dict = field(default_factory=dict)  #: model name → transformer constructor keys
    encoder: dict = field(default_factory=dict)  #: model name → identity encoder keys (None: CogVideoX)
    text_encoder: dict = field(default_factory=dict)  #: T5Config keys
    vae: dict = field(default_factory=dict)  #: AutoencoderKLCogVideoX keys


def full_size() -> Size:
    # T5-XXL v1.1 (CogVideoX's text_encoder/config.json) and CogVideoX-5B's VAE (vae/config.json: the class defaults
    # with scaling factor 0.7).
    t5 = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
              layer_norm_epsilon=1e-6, dropout_rate=0.0, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1)
    base = {k: v for k, v in transformer_config("released").items() if not k.startswith("identity_")}
    return Size(
        "full", 49, 480, 720, torch.bfloat16,
        transformer={"cogvideox": base, **{name: transformer_config(name) for name in ("released", "paper")}},
        encoder={"cogvideox": None, "released": identity_encoder_config("released"),
                 "paper": identity_encoder_config("paper")},
        text_encoder=t5, vae={"scaling_factor": 0.7},
    )


def tiny_size() -> Size:
    configs = {name: tiny.tiny_transformer_config(name) for name in ("released", "paper")}
    base = {k: v for k, v in configs["released"].items() if not k.startswith("identity_")}
    return Size(
        "tiny", tiny.TINY_FRAMES, tiny.TINY_HEIGHT, tiny.TINY_WIDTH, torch.float32,
        transformer={"cogvideox": base, **configs},
        encoder={"cogvideox": None, **{name: identity_encoder_config("tiny", variant=name) for name in configs}},
        text_encoder=tiny.tiny_text_encoder_config(256, base["text_embed_dim"]),
        vae=tiny.tiny_vae_config(base["in_channels"] // 2),
    )


# ------------------------------------------------------------------------------------------------ building models
def materialise(factory, device: torch.device, dtype: torch.dtype, seed: int):
    """Build ``factory()`` with its parameters on ``meta``, then allocate them on ``device`` in ``dtype`` and fill
    them randomly there: each module's own ``reset_parameters``; parameters of modules without one get 1 (1-D
    weights, i.e. norm gains), 0 (other 1-D) or N(0, 0.02). Buffers (positional tables, …) keep their computed
    values."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = factory()
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    model = model.to_empty(device=device).to(dtype)
    if callable(getattr(model, "tie_weights", None)):  # transformers models: the meta build untied shared weights
        model.tie_weights()
    torch.manual_seed(seed)
    with torch.no_grad():
        current = dict(model.named_buffers())
        for name, value in buffers.items():
            current[name].copy_(value)
        for module in model.modules():
            own = list(module.named_parameters(recurse=False))
            if not own:
                continue
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                continue
            for name, param in own:
                if param.ndim == 1:
                    param.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    param.normal_(0.0, 0.02)
    return model.eval().requires_grad_(False)


def build_transformer(size: Size, name: str, device, seed: int = 0):
    from diffusers import CogVideoXTransformer3DModel

    from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel

    cls = CogVideoXTransformer3DModel if name == "cogvideox" else FantasyIDTransformer3DModel
    return materialise(lambda: cls(**size.transformer[name]), device, size.dtype, seed)


def identity_encoder_class():
    """The identity encoder class, or the reason it cannot be imported here (it needs timm)."""
    try:
        from fantasyid.models.identity_encoder import FantasyIDIdentityEncoder
    except ImportError as exc:
        missing = (exc.name or str(exc)).split(".")[0]
        return None, f"identity encoder not timed: {missing} is not installed (the encoder needs timm + torchvision)"
    return FantasyIDIdentityEncoder, None


def build_identity_encoder(size: Size, name: str, device, seed: int = 1):
    cls, why = identity_encoder_class()
    if cls is None:
        return None, why
    encoder = materialise(lambda: cls(**size.encoder[name]), device, size.dtype, seed)
    # The mesh hierarchy is data (the release's transform.pkl); random valid indices cost the same gathers.
    vertices = encoder.config.mesh_num_vertices
    with torch.no_grad():
        for buffer_name, buffer in encoder.named_buffers():
            if not buffer_name.startswith("mesh_") or buffer_name == "mesh_loaded":
                continue
            level = int(buffer_name.rsplit("_", 1)[1])
            if buffer.is_floating_point():
                buffer.uniform_(0.0, 1.0)
            else:
                buffer.random_(0, vertices[level + 1] if "_up_index_" in buffer_name else vertices[level])
        encoder.mesh_loaded.fill_(True)
    return encoder, None


def identity_token_count(config: dict) -> int:
    """N_id without building the encoder (as ``FantasyIDIdentityEncoder.num_identity_tokens``)."""
    if config["variant"] == "paper":
        return config["mesh_num_vertices"][-1]
    length = config["mesh_num_vertices"][0]
    for stride in config["reducer_strides"]:
        length = (length - 1) // stride + 1
    return config["abstractor_pool_size"] ** 2 + length


# ------------------------------------------------------------------------------------------------ measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def timed(fn, device, warmup: int, repeat: int) -> tuple[float, float | None]:
    """Mean seconds per call after ``warmup`` calls, and the peak GPU memory over the timed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeat, peak_gib(device)


def free() -> None:
    """Give memory back after the caller dropped its references."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def backbone_inputs(size: Size, config: dict, device, batch: int = 2):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    g = torch.Generator(device="cpu").manual_seed(0)
    p = config["patch_size"]
    frames = (size.frames - 1) // config["temporal_compression_ratio"] + 1
    h, w = size.height // 8, size.width // 8
    latents = torch.randn(batch, frames, config["in_channels"], h, w, generator=g)  # (B, F', C, h, w)
    text = torch.randn(batch, config["max_text_seq_length"], config["text_embed_dim"], generator=g)
    cos, sin = get_3d_rotary_pos_embed(
        embed_dim=config["attention_head_dim"], crops_coords=((0, 0), (h // p, w // p)), grid_size=(h // p, w // p),
        temporal_size=frames,
    )
    to = dict(device=device, dtype=size.dtype)
    return latents.to(**to), text.to(**to), torch.full((batch,), 500, device=device), (cos.to(device), sin.to(device))


def identity_branch(size: Size, name: str, transformer, device, warmup: int, repeat: int):
    """(seconds once per video, note, identity cache) for a FantasyID model."""
    config = size.encoder[name]
    encoder, why = build_identity_encoder(size, name, device)
    g = torch.Generator(device="cpu").manual_seed(2)
    to = dict(device=device, dtype=size.dtype)
    if encoder is not None:
        tokens_per_state = config["clip_grid_size"] ** 2 + 1  # EVA-CLIP states (the vision tower is not included)
        clip = [torch.randn(1, tokens_per_state, config["clip_hidden_dim"], generator=g).to(**to)
                for _ in range(config["num_clip_layers"])]
        vertices = torch.randn(1, config["mesh_num_vertices"][0], 3, generator=g).to(**to)

        def branch():
            return transformer.prepare_identity(encoder(clip, vertices))

        note = "identity encoder + keys/values of every injection layer"
    else:
        tokens = torch.randn(1, identity_token_count(config), config["identity_dim"], generator=g).to(**to)

        def branch():
            return transformer.prepare_identity(tokens)

        note = f"keys/values only; {why}"
    with torch.no_grad():
        seconds, _ = timed(branch, device, warmup, repeat)
        cache = branch()
    return seconds, note, cache


def model_row(size: Size, name: str, device, args) -> tuple[dict, object]:
    """One row of table 1 and the model's identity cache; the model is gone when this returns."""
    transformer = build_transformer(size, name, device)
    latents, text, timestep, rope = backbone_inputs(size, size.transformer[name], device)
    once, note, cache = (0.0, "–", None)
    if name != "cogvideox":
        once, note, cache = identity_branch(size, name, transformer, device, 1, args.repeat)
        free()  # the identity encoder
    extra = {} if cache is None else {"identity_cache": cache}
    with torch.no_grad():
        step, peak = timed(lambda: transformer(latents, text, timestep, image_rotary_emb=rope, **extra),
                           device, args.warmup, args.repeat)
    row = {
        "model": "CogVideoX-5B-I2V" if name == "cogvideox" else f"FantasyID ({name})",
        "params_m": sum(p.numel() for p in transformer.parameters()) / 1e6,
        "step_s": step, "identity_once_s": once, "identity_note": note, "peak_gib": peak,
        "denoise_50_s": once + PROJECTED_STEPS * step,
    }
    return row, cache


def model_rows(size: Size, names, device, args) -> tuple[list[dict], dict]:
    """Table 1; also returns the released model's step time and identity cache (reused by tables 2 and 3)."""
    rows, kept = [], {}
    for name in names:
        row, cache = model_row(size, name, device, args)
        free()
        rows.append(row)
        if name == "released":
            kept = {"step_s": row["step_s"], "identity_once_s": row["identity_once_s"], "identity_cache": cache}
    return rows, kept


# ------------------------------------------------------------------------------------------------ the pipeline
def build_pipeline(size: Size, device, text_encoder: bool):
    """FantasyIDPipeline with the released transformer; T5 only with ``text_encoder`` (else prompts come embedded)."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    from fantasyid.pipelines.pipeline_fantasyid import FantasyIDPipeline

    t5 = None
    if text_encoder:
        t5 = materialise(lambda: T5EncoderModel(T5Config(**size.text_encoder)), device, size.dtype, 3)
    vae = materialise(lambda: AutoencoderKLCogVideoX(**size.vae), device, size.dtype, 4)
    transformer = build_transformer(size, "released", device)
    pipe = FantasyIDPipeline(tokenizer=tiny.tiny_tokenizer(), text_encoder=t5, vae=vae, transformer=transformer,
                             scheduler=tiny.cogvideox_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def first_frame(size: Size):
    import PIL.Image

    rng = np.random.default_rng(0)
    return PIL.Image.fromarray((rng.random((size.height, size.width, 3)) * 255).astype(np.uint8))


def run_loop(pipe, size: Size, cache, steps: int, device) -> tuple[torch.Tensor, float, dict | None]:
    """The denoising loop only (prompt embeddings given, latents out): final latents, mean s/step over steps 2…N."""
    config = pipe.transformer.config
    g = torch.Generator(device="cpu").manual_seed(7)
    embeds = torch.randn(2, config.max_text_seq_length, config.text_embed_dim, generator=g).to(device, size.dtype)
    stamps = []

    def on_step(pipeline, step, timestep, tensors):
        sync(device)
        stamps.append(time.perf_counter())
        return {}

    out = pipe(first_frame(size), prompt_embeds=embeds[1:], negative_prompt=None, negative_prompt_embeds=embeds[:1],
               height=size.height, width=size.width, num_frames=size.frames, num_inference_steps=steps,
               generator=torch.Generator(device="cpu").manual_seed(42), identity_cache=cache, output_type="latent",
               identity=given_crop(size),
               callback_on_step_end=on_step)
    return out.frames.float(), (stamps[-1] - stamps[0]) / (len(stamps) - 1), out.acceleration


def given_crop(size: Size):
    """The first-frame image passed as an already aligned face crop: with a precomputed identity cache the pipeline
    otherwise detects and aligns the face itself, and this machine may have no face detector."""
    from fantasyid.pipelines.pipeline_fantasyid import IdentityInputs

    return IdentityInputs(face_image=first_frame(size), vertices=None)


def cache_rows(size: Size, device, cache, args) -> list[dict]:
    """Table 2: the released model's denoising loop plain, with each cache, and compiled."""
    from fantasyid.pipelines.acceleration import accelerate, describe_skips, remove_cache

    pipe = build_pipeline(size, device, text_encoder=False)
    reference, base_step, _ = run_loop(pipe, size, cache, args.cache_steps, device)
    rows = [{"setting": "none", "step_s": base_step, "skipped": "–", "max_abs": 0.0, "rel_l2": 0.0}]
    rows[0]["latents_rms"] = reference.square().mean().sqrt().item()

    def row(setting, latents, step, report):
        skipped = report.get("skipped") if report else None
        return {"setting": setting, "step_s": step, "skipped": describe_skips(skipped) if skipped else "–",
                "max_abs": (latents - reference).abs().max().item(),
                "rel_l2": ((latents - reference).norm() / reference.norm()).item()}

    for spec in args.caches:
        accelerate(pipe, cache=spec)
        latents, step, report = run_loop(pipe, size, cache, args.cache_steps, device)
        rows.append(row(spec.method, latents, step, report) | {"options": str(spec)})
        remove_cache(pipe)
    if args.compile:
        accelerate(pipe, compile=True)
        start = time.perf_counter()
        run_loop(pipe, size, cache, 2, device)  # compiles
        compile_s = time.perf_counter() - start
        latents, step, report = run_loop(pipe, size, cache, args.cache_steps, device)
        rows.append(row(f"--compile (first call {compile_s:.0f} s)", latents, step, report))
    del pipe
    free()
    for r in rows:
        r["speedup"] = base_step / r["step_s"]
    return rows


def pipeline_rows(size: Size, device, kept: dict, args) -> list[dict]:
    """Table 3: whole pipeline, one denoising step then the full decode, with/without offload and VAE tiling."""
    cls, _ = identity_encoder_class()
    settings = [(False, True)] if args.quick else [(False, False), (False, True), (True, False), (True, True)]
    pipe = build_pipeline(size, device, text_encoder=True)
    if cls is not None:  # resident like in real use (its own cost is in table 1)
        encoder, _ = build_identity_encoder(size, "released", device)
        pipe.register_modules(identity_encoder=encoder)
    cache = kept["identity_cache"]
    rows = []
    for offload, tiling in settings:
        if offload and not getattr(pipe, "_offloaded", False):
            pipe.to("cpu")
            pipe.enable_model_cpu_offload(device=device)
            pipe._offloaded = True
        (pipe.vae.enable_tiling if tiling else pipe.vae.disable_tiling)()
        reset_peak(device)
        stamps = []

        def on_step(pipeline, step, timestep, tensors):
            sync(device)
            stamps.append(time.perf_counter())
            return {}

        start = time.perf_counter()
        try:
            pipe(first_frame(size), "a person smiles at the camera", height=size.height, width=size.width,
                 num_frames=size.frames, num_inference_steps=1, identity_cache=cache, output_type="pt",
                 identity=given_crop(size),
                 generator=torch.Generator(device="cpu").manual_seed(42), callback_on_step_end=on_step)
            sync(device)
            end = time.perf_counter()
            encode = stamps[0] - start - kept["step_s"]
            decode = end - stamps[0]
            rows.append({"offload": offload, "tiling": tiling, "peak_gib": peak_gib(device), "encode_s": encode,
                         "decode_s": decode,
                         "video_50_s": encode + kept["identity_once_s"] + PROJECTED_STEPS * kept["step_s"] + decode})
        except torch.OutOfMemoryError:
            rows.append({"offload": offload, "tiling": tiling, "peak_gib": None, "oom": True})
            free()
    del pipe
    free()
    return rows


# ------------------------------------------------------------------------------------------------ output
def fmt(value, spec: str = ".2f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def print_tables(size: Size, device, models, caches, pipelines, steps: int) -> None:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    import diffusers

    print(f"{where} · torch {torch.__version__} · diffusers {diffusers.__version__} · {size.name} size · "
          f"{str(size.dtype).replace('torch.', '')} · PyTorch SDPA · {size.frames}×{size.height}×{size.width}, "
          "CFG batch 2 · random weights\n")
    if size.name == "tiny":
        print("Toy size: each row runs that model's code with tiny widths and depths; the numbers say nothing about "
              "the real models.\n")
    print("| model | params (M) | s / step | steps / s | identity branch, once (s) | peak GPU GiB, transformer "
          f"| {PROJECTED_STEPS} steps + identity (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in models:
        print(f"| {r['model']} | {r['params_m']:,.1f} | {r['step_s']:.3f} | {1 / r['step_s']:.2f} | "
              f"{fmt(r['identity_once_s'] or None, '.3f')} | {fmt(r['peak_gib'])} | {r['denoise_50_s']:.1f} |")
    notes = sorted({r["identity_note"] for r in models if r["identity_note"] != "–"})
    print("".join(f"\nIdentity branch: {note}." for note in notes))
    if caches:
        print(f"\nFantasyID (released), denoising loop of {steps} steps, same seed; s/step over steps 2…{steps}:\n")
        print("| setting | s / step | steps / s | speed-up | skipped | max abs Δ latents | rel. L2 Δ latents |")
        print("|---|---:|---:|---:|---|---:|---:|")
        for r in caches:
            print(f"| {r['setting']} | {r['step_s']:.3f} | {1 / r['step_s']:.2f} | {r['speedup']:.2f}× "
                  f"| {r['skipped']} | {r['max_abs']:.3g} | {r['rel_l2']:.3g} |")
        print(f"\nLatents RMS of the uncached run: {caches[0]['latents_rms']:.3g}. Cache settings (--cache of "
              "fantasyid generate): " + "; ".join(r["options"] for r in caches if "options" in r) + ".")
    if pipelines:
        print("\nWhole pipeline (T5-XXL, identity encoder, transformer, VAE), 1 step then the full decode; the last "
              f"column projects a {PROJECTED_STEPS}-step video:\n")
        print("| model CPU offload | VAE tiling | peak GPU GiB | text + image encode (s) | VAE decode (s) "
              f"| {PROJECTED_STEPS}-step video (s) |")
        print("|---|---|---:|---:|---:|---:|")
        for r in pipelines:
            yes = {True: "on", False: "off"}
            if r.get("oom"):
                print(f"| {yes[r['offload']]} | {yes[r['tiling']]} | out of memory | – | – | – |")
                continue
            print(f"| {yes[r['offload']]} | {yes[r['tiling']]} | {fmt(r['peak_gib'])} | {r['encode_s']:.2f} "
                  f"| {r['decode_s']:.2f} | {r['video_50_s']:.1f} |")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu only with --size tiny)")
    parser.add_argument("--quick", action="store_true", help="released model only, First-Block Cache only, one "
                        "pipeline setting: about a minute on an H100")
    parser.add_argument("--models", default="cogvideox,released,paper")
    parser.add_argument("--caches", default=",".join(CACHES),
                        help="caches of table 2, comma-separated; with options (NAME:key=value,…) separate them by ';'")
    parser.add_argument("--cache-steps", type=int, default=10, help="denoising steps of each table-2 run")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="leave out the --compile row")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="leave out table 3")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    parser.add_argument("--memory", action="store_true", help="only the sweep over the memory plans of fantasyid "
                        "generate --memory (benchmarks/memory_sweep.py): about 6 minutes on an H100")
    parser.add_argument("--memory-steps", type=int, default=3, help="denoising steps per plan in the --memory sweep")
    parser.add_argument("--plans", default=None, help="--memory: plans to run, comma-separated (default: all)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.caches = [c.strip() for c in args.caches.split(";" if ":" in args.caches else ",") if c.strip()]
    if args.quick:
        args.models, args.caches, args.compile, args.cache_steps, args.repeat = ["released"], ["fbc"], False, 6, 2
    unknown = set(args.models) - {"cogvideox", "released", "paper"}
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}: choose from cogvideox, released, paper")
    if args.cache_steps < 3:
        parser.error("--cache-steps must be ≥ 3")
    if args.memory_steps < 2:
        parser.error("--memory-steps must be ≥ 2")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.size == "full" and device.type != "cuda":
        print("error: the full-size models need a CUDA GPU (~12 B parameters in bf16); "
              "use --size tiny --device cpu to run the same code at toy size", file=sys.stderr)
        return 1
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: {', '.join(missing)} not installed here; benchmarks/README.md says how to carry them to a "
              "machine without network (pip download --no-deps -d wheels/ …)", file=sys.stderr)
        return 1
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU is visible to PyTorch here; use --size tiny --device cpu to run the same code on "
              "the CPU at toy size", file=sys.stderr)
        return 1
    import diffusers

    from fantasyid.pipelines.acceleration import CacheSpec

    diffusers.utils.logging.set_verbosity_error()  # dtype-cast notes and FasterCache's "experimental" banner

    args.caches = [CacheSpec.parse(spec) for spec in args.caches]  # bad specs fail before anything is built
    size = full_size() if args.size == "full" else tiny_size()
    if args.memory:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import memory_sweep

        plans = [p.strip() for p in args.plans.split(",")] if args.plans else memory_sweep.PLANS
        rows = memory_sweep.sweep(size, device, args.memory_steps, plans)
        memory_sweep.print_sweep(size, device, rows, args.memory_steps)
        if args.json:
            args.json.write_text(json.dumps({"size": size.name, "device": str(device), "memory": rows}, indent=2))
        return 0
    names = list(dict.fromkeys(args.models + ["released"])) if (args.caches or args.pipeline) else args.models
    models, kept = model_rows(size, names, device, args)
    models = [r for r in models if r["model"] in {f"FantasyID ({n})" if n != "cogvideox" else "CogVideoX-5B-I2V"
                                                  for n in args.models}]
    caches = cache_rows(size, device, kept["identity_cache"], args) if (args.caches or args.compile) else []
    pipelines = pipeline_rows(size, device, kept, args) if args.pipeline else []
    print_tables(size, device, models, caches, pipelines, args.cache_steps)
    if args.json:
        args.json.write_text(json.dumps({"size": size.name, "device": str(device), "models": models, "caches": caches,
                                         "pipelines": pipelines}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
