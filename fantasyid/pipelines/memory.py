"""Memory plans: which of diffusers' own memory mechanisms a budget of GPU memory needs, and what each will use.

A **plan** is a named list of mechanisms, fastest first:

=================  ================================================================================================
``full``           every component on the GPU, bf16, VAE untiled
``t5-off``         T5 runs on the GPU once, then goes back to host RAM before denoising (accelerate's
                   ``cpu_offload_with_hook`` on the text encoder, offloaded when the transformer first runs)
``fp8``            ``t5-off`` + the transformer stored in fp8 (``enable_layerwise_casting``: float8_e4m3fn storage,
                   bf16 compute; norms, embeddings and the identity modules skipped, diffusers' advice)
``offload``        diffusers' ``enable_model_cpu_offload`` (one model on the GPU at a time), bf16: ``--offload``
``fp8-offload``    ``offload`` + the transformer's fp8 storage
``group-block``    ``enable_group_offload`` block level (one block per group, CUDA stream prefetch) on the
                   transformer, T5 and VAE; the identity encoder and face models (small) stay on the GPU
``group-leaf``     ``enable_group_offload`` leaf level (each layer its own group, stream prefetch)
=================  ================================================================================================

VAE tiling (and slicing) is switched on only where the untiled decode does not fit the budget.

**Prediction.** Weight bytes are counted exactly: every component is built on the ``meta`` device at its
configuration and each parameter and buffer's ``numel × element size`` in the dtype it is held in is summed (a test
checks the sum against the built tiny modules byte for byte). Activations are estimates, stated here:

- transformer step (classifier-free guidance batch B = 2, S = video + text tokens, D = hidden width, bf16):
  ``12 · B · S · D · 2`` bytes. Inside a CogVideoX block the attention holds the normed input, q, k, v, the
  rotated q and k and the output (≈ 9 · B·S·D) beside the two residual streams; the feed-forward holds its
  4·D-wide projection and its GELU (8 · B·S·D) plus three D-wide tensors: ≈ 11–12 · B·S·D at the peak. SDPA
  (flash / memory-efficient kernels) keeps only O(B · heads · S) statistics, no S × S matrix.
- VAE decode: CogVideoX's decoder runs 2 latent frames at a time (8 output frames); at full resolution its
  widest activation is 128 channels × 8 frames × H × W; about 6 such tensors live at once:
  ``6 · 128 · 8 · H · W · 2`` bytes untiled, and the same for one tile (H/2 × W/2 with overlap) when tiled.
- T5 encode, face tools: ``2 · L · (2 · d_ff + 6 · d_model) · 2`` bytes for T5; 0.25 GiB for the face tools.
- headroom: the CUDA context, cuBLAS workspaces and the allocator's rounding: 10 % of the peak plus 0.75 GiB.

These are estimates until a GPU task measures them (``benchmarks/gpu_generate.py --memory``); the README table has
a column for the measurements.

**Host RAM.** The loaders read each component into host RAM (safetensors memory-mapped) and place the pipeline
afterwards, so every plan needs the sum of the components plus a margin at load time; offloading plans keep that
much for the whole run (pinned for streams). Loading one component at a time straight onto the GPU, which would
bring the all-on-GPU plans down to the largest component plus a margin, is not done yet.

This module imports torch only inside functions, so a plan can be printed before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

__all__ = ["PLANS", "PRESETS", "ComponentSizes", "Plan", "PlanPrediction", "apply_plan", "choose_plan",
           "component_sizes", "count_bytes", "describe_prediction", "plan_for", "predict", "predict_all"]

GIB = 1024**3
#: plans, fastest first
PLANS = ("full", "t5-off", "fp8", "offload", "fp8-offload", "group-block", "group-leaf")
#: ``--memory`` values: a budget in GB of GPU memory, ``full`` or ``auto``
PRESETS = ("auto", "full", "24", "16", "12", "8")
HEADROOM_FRACTION, HEADROOM_GIB = 0.10, 0.75
FACE_TOOLS_ACTIVATION = 0.25 * GIB
HOST_MARGIN_GIB = 2.0
# Layerwise casting keeps these in bf16 (diffusers' CogVideoX patterns plus every norm, embedding and the identity
# modules: small, and sensitive to fp8 rounding).
FP8_SKIP_PATTERNS = ("patch_embed", "norm", "time_embedding", "proj_out", "identity", "^proj_", "pos_embed")


@dataclass(frozen=True)
class Plan:
    name: str
    transformer_fp8: bool = False
    t5_off: bool = False
    model_offload: bool = False
    group_offload: str | None = None  #: "block_level" or "leaf_level"
    vae_tiling: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "transformer_fp8": self.transformer_fp8, "t5_off": self.t5_off,
                "model_offload": self.model_offload, "group_offload": self.group_offload,
                "vae_tiling": self.vae_tiling}

    def mechanisms(self) -> str:
        parts = []
        if self.group_offload:
            parts.append(f"group offload ({self.group_offload.replace('_', '-')}, stream prefetch)")
        elif self.model_offload:
            parts.append("model CPU offload")
        elif self.t5_off:
            parts.append("T5 off the GPU before denoising")
        if self.transformer_fp8:
            parts.append("transformer stored in fp8, computed in the model's dtype")
        parts.append("VAE tiling" if self.vae_tiling else "VAE untiled")
        return ", ".join(parts) if parts else "everything on the GPU"


def _plan(name: str, vae_tiling: bool) -> Plan:
    if name not in PLANS:
        raise InputError(f"unknown memory plan {name!r}", hint=f"use one of: {', '.join(PLANS)}")
    fp8 = name in ("fp8", "fp8-offload")
    return Plan(name, transformer_fp8=fp8, t5_off=name in ("t5-off", "fp8"),
                model_offload=name in ("offload", "fp8-offload"),
                group_offload={"group-block": "block_level", "group-leaf": "leaf_level"}.get(name),
                vae_tiling=vae_tiling)


# ------------------------------------------------------------------------------------------------ weight bytes
def count_bytes(module, dtype=None, only_floating: bool = True) -> int:
    """Bytes of ``module``'s parameters and buffers (each tensor once), as held in ``dtype`` (``None``: as they are).
    ``only_floating``: integer buffers keep their own size whatever ``dtype`` is."""
    seen, total = set(), 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        size = tensor.element_size()
        if dtype is not None and (tensor.is_floating_point() or not only_floating):
            size = dtype.itemsize
        total += tensor.numel() * size
    return total


@dataclass
class ComponentSizes:
    """Weight bytes of each component as held during generation, and the shapes the activation estimate needs."""

    model: str
    weights: dict[str, int]  #: component → bytes (transformer in the compute dtype)
    transformer_fp8: int  #: transformer bytes with fp8 storage (skipped modules in the compute dtype)
    #: group offloading, per offloaded model (transformer, text_encoder, vae) and level: (bytes resident while the
    #: model runs, bytes of its largest group); two groups are on the GPU at once (one computing, one prefetched)
    groups: dict[str, dict[str, tuple[int, int]]]
    hidden: int
    text_tokens: int
    t5: tuple[int, int]  #: (d_model, d_ff)
    latent_channels: int


#: children that block-level group offloading descends into (diffusers' ``block_modules``): T5's stack of layers,
#: the VAE's encoder and decoder; elsewhere the top-level ModuleLists are the blocks
GROUP_BLOCK_MODULES = {"text_encoder": ("encoder",), "vae": ("encoder", "decoder")}


def _groups(module, level: str, block_modules=(), dtype=None) -> tuple[int, int]:
    """(resident bytes, largest group bytes) of ``module`` under diffusers' group offloading at ``level``: block
    level groups each element of a top-level ModuleList/Sequential (descending into ``block_modules``) and onloads
    the other children and the module's own tensors together; leaf level makes each leaf module a group and onloads
    the tensors held by non-leaf modules together."""
    def own(m) -> int:
        tensors = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
        return sum(t.numel() * (dtype.itemsize if dtype is not None and t.is_floating_point() else t.element_size())
                   for t in tensors)

    if level == "leaf_level":
        leaves = [m for m in module.modules() if not list(m.children())]
        rest = sum(own(m) for m in module.modules() if list(m.children()))
        return rest, max(own(m) for m in leaves)
    import torch

    resident, largest = own(module), 0
    for name, child in module.named_children():
        if name in block_modules:
            inner_resident, inner_largest = _groups(child, level, (), dtype)
            resident, largest = resident + inner_resident, max(largest, inner_largest)
        elif isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            largest = max([largest] + [count_bytes(block, dtype) for block in child])
        else:
            resident += count_bytes(child, dtype)
    return resident, largest


def _fp8_bytes(transformer, dtype) -> int:
    import re

    import torch

    total = 0
    for name, module in transformer.named_modules():
        own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        skipped = any(re.search(pattern, name) for pattern in FP8_SKIP_PATTERNS) or not name
        for tensor in own:
            if not tensor.is_floating_point():
                total += tensor.numel() * tensor.element_size()
            elif skipped or not isinstance(tensor, torch.nn.Parameter):  # kept as loaded
                total += tensor.numel() * (tensor.element_size() if dtype is None else dtype.itemsize)
            else:
                total += tensor.numel()  # float8: one byte
    return total


def _meta_components(model: str, variant: str):
    """Every component built on ``meta`` at ``model``'s size: name → (module, dtype rule)."""
    import torch
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    from ..face.deca import DecaEncoder
    from ..face.eva_clip import EvaClipConfig, build_eva_clip_vision
    from ..models.configs import identity_encoder_config, transformer_config
    from ..models.identity_encoder import FantasyIDIdentityEncoder
    from ..models.transformer_fantasyid import FantasyIDTransformer3DModel
    from . import tiny

    if model == "tiny":
        t_config = tiny.tiny_transformer_config(variant)
        e_config = identity_encoder_config("tiny", variant=variant)
        t5 = tiny.tiny_text_encoder_config(len(tiny.tiny_tokenizer()), t_config["text_embed_dim"])
        vae = tiny.tiny_vae_config(t_config["in_channels"] // 2)
    else:
        t_config, e_config = transformer_config(variant), identity_encoder_config(variant)
        # T5-XXL v1.1 encoder (CogVideoX's text_encoder/config.json), CogVideoX-5B's VAE (the class defaults)
        t5 = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                  feed_forward_proj="gated-gelu", tie_word_embeddings=False)
        vae = {"scaling_factor": 0.7}
    with torch.device("meta"):
        built = {
            "transformer": FantasyIDTransformer3DModel(**t_config),
            "text_encoder": T5EncoderModel(T5Config(**t5)),
            "vae": AutoencoderKLCogVideoX(**vae),
            "identity_encoder": FantasyIDIdentityEncoder(**e_config),
            "deca": DecaEncoder(),
        }
    if model == "tiny":
        with torch.device("meta"):
            built["eva_clip"] = tiny.build_tiny_image_encoder(e_config["num_clip_layers"])
    else:
        built["eva_clip"] = build_eva_clip_vision(EvaClipConfig(), device="meta")
    return built, t_config, t5


def _flame_bytes(model: str) -> int:
    """FLAME's buffers (fp32 blend shapes, long faces): DECA's 100 shape + 50 expression components."""
    if model == "tiny":
        from ..face.shape import synthetic_flame_model

        data = synthetic_flame_model()
        vertices, faces, joints, poses = (data.v_template.shape[0], data.faces.shape[0], data.j_regressor.shape[0],
                                          data.posedirs.shape[2])
    else:  # FLAME 2020 (generic_model.pkl): 5023 vertices, 9976 faces, 5 joints, 36 pose features
        vertices, faces, joints, poses = 5023, 9976, 5, 36
    floats = vertices * 3 + vertices * 3 * 150 + poses * vertices * 3 + 2 * joints * vertices
    return 4 * floats + 8 * faces * 3


def component_sizes(model: str = "released", dtype: str = "bfloat16", device_type: str = "cuda",
                    variant: str | None = None) -> ComponentSizes:
    """Weight bytes of every component of ``model`` (``released``, ``paper`` or ``tiny``) held as the loader holds
    them: T5, VAE, transformer and EVA-CLIP in ``dtype``; the identity encoder fp32 but for the released face
    abstractor on a GPU (:func:`~fantasyid.pipelines.loading.release_precision`); DECA + FLAME fp32."""
    import torch

    torch_dtype = getattr(torch, dtype)
    variant = variant or ("paper" if model == "paper" else "released")
    built, t_config, t5 = _meta_components(model, variant)
    encoder = built["identity_encoder"]
    identity = count_bytes(encoder, torch.float32)
    if device_type == "cuda" and variant == "released":
        abstractor = encoder.face_abstractor
        identity += count_bytes(abstractor, torch_dtype) - count_bytes(abstractor, torch.float32)
    # the tiny loader keeps EVA-CLIP fp32 and casts T5, VAE and the transformer only to another dtype (so in fp32
    # the transformer's float64 positional table stays float64); the released loader casts them always
    cast = None if model == "tiny" and torch_dtype == torch.float32 else torch_dtype
    eva_dtype = torch.float32 if model == "tiny" else torch_dtype
    weights = {
        "text_encoder": count_bytes(built["text_encoder"], cast),
        "transformer": count_bytes(built["transformer"], cast),
        "vae": count_bytes(built["vae"], cast),
        "identity_encoder": identity,
        "eva_clip": count_bytes(built["eva_clip"], eva_dtype),
        "deca": count_bytes(built["deca"], torch.float32) + _flame_bytes(model),
    }
    groups = {level: {name: _groups(built[name], level, GROUP_BLOCK_MODULES.get(name, ()), cast)
                      for name in ("transformer", "text_encoder", "vae")} for level in ("block_level", "leaf_level")}
    return ComponentSizes(
        model=model, weights=weights, transformer_fp8=_fp8_bytes(built["transformer"], cast), groups=groups,
        hidden=t_config["num_attention_heads"] * t_config["attention_head_dim"],
        text_tokens=t_config["max_text_seq_length"], t5=(t5["d_model"], t5["d_ff"]),
        latent_channels=t_config["in_channels"] // 2,
    )


# ------------------------------------------------------------------------------------------------ prediction
@dataclass
class PlanPrediction:
    plan: Plan
    peak_bytes: int  #: predicted peak allocated GPU memory
    need_bytes: int  #: peak plus headroom: the budget this plan needs
    host_bytes: int  #: host RAM it needs
    phases: dict[str, int] = field(default_factory=dict)  #: phase → predicted bytes

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "predicted_peak_gib": round(self.peak_bytes / GIB, 2),
                "predicted_need_gib": round(self.need_bytes / GIB, 2), "host_ram_gib": round(self.host_bytes / GIB, 2),
                "phases_gib": {k: round(v / GIB, 2) for k, v in self.phases.items()}}


def _activations(sizes: ComponentSizes, frames: int, height: int, width: int) -> dict[str, int]:
    latent_frames = (frames - 1) // 4 + 1
    tokens = latent_frames * (height // 16) * (width // 16) + sizes.text_tokens  # patch 2 on the 8× latents
    d_model, d_ff = sizes.t5
    vae_full = 6 * 128 * 8 * height * width * 2
    tile = 6 * 128 * 8 * min(height, 240) * min(width, 360) * 2  # diffusers' CogVideoX tile: half the 480×720 size
    return {"transformer": 12 * 2 * tokens * sizes.hidden * 2, "t5": 2 * sizes.text_tokens * (2 * d_ff + 6 * d_model) * 2,
            "vae": vae_full, "vae_tiled": min(tile, vae_full), "face": FACE_TOOLS_ACTIVATION}


def predict(sizes: ComponentSizes, name: str, vae_tiling: bool, frames: int = 49, height: int = 480,
            width: int = 720) -> PlanPrediction:
    """Peak GPU bytes of plan ``name`` per phase (text encoding, face tools, denoising, decoding)."""
    plan = _plan(name, vae_tiling)
    w, act = sizes.weights, _activations(sizes, frames, height, width)
    transformer = sizes.transformer_fp8 if plan.transformer_fp8 else w["transformer"]
    face = w["identity_encoder"] + w["eva_clip"] + w["deca"]
    tools = w["eva_clip"] + w["deca"]
    decode = act["vae_tiled"] if vae_tiling else act["vae"]
    if plan.group_offload:
        # per model: what stays onloaded while it runs, plus two groups (one computing, the next prefetched); the
        # identity encoder and the face tools (EVA-CLIP, DECA: plain attributes of the pipeline) stay on the GPU
        held = {name: resident + 2 * largest for name, (resident, largest) in sizes.groups[plan.group_offload].items()}
        kept = w["identity_encoder"] + tools
        phases = {"text": kept + held["text_encoder"] + act["t5"], "face": kept + act["face"],
                  "denoise": kept + held["transformer"] + act["transformer"], "decode": kept + held["vae"] + decode}
    elif plan.model_offload:  # one model of the offload sequence at a time; the face tools are not offloaded
        phases = {"text": tools + w["text_encoder"] + act["t5"], "face": tools + w["identity_encoder"] + act["face"],
                  "denoise": tools + transformer + act["transformer"], "decode": tools + w["vae"] + decode}
    else:
        rest = transformer + w["vae"] + face
        phases = {"text": w["text_encoder"] + rest + act["t5"],
                  "face": w["text_encoder"] * (not plan.t5_off) + rest + act["face"],
                  "denoise": w["text_encoder"] * (not plan.t5_off) + rest + act["transformer"],
                  "decode": w["text_encoder"] * (not plan.t5_off) + rest + decode}
    peak = max(phases.values())
    need = int(peak * (1 + HEADROOM_FRACTION) + HEADROOM_GIB * GIB)
    host = sum(w.values()) + int(HOST_MARGIN_GIB * GIB)  # every component is in host RAM once, while loading
    return PlanPrediction(plan, peak, need, host, phases)


def predict_all(sizes: ComponentSizes, frames: int = 49, height: int = 480, width: int = 720) -> list[PlanPrediction]:
    """Every plan, untiled and tiled, fastest first (within a plan, untiled first)."""
    return [predict(sizes, name, tiled, frames, height, width) for name in PLANS for tiled in (False, True)]


def _budget(memory: str, free_bytes: int | None) -> int | None:
    if memory == "full":
        return None
    if memory == "auto":
        if free_bytes is None:
            raise InputError("--memory auto needs a GPU to read its free memory", hint="name a budget: --memory 12")
        return free_bytes
    try:
        value = float(memory)
    except ValueError:
        raise InputError(f"--memory {memory!r} is not a budget or a plan",
                         hint=f"use auto, full, GB of GPU memory (e.g. 12) or a plan: {', '.join(PLANS)}") from None
    if value <= 0:
        raise InputError(f"--memory {memory} must be positive", hint="use auto, full or GB of GPU memory (e.g. 12)")
    return int(value * 1e9)


def choose_plan(sizes: ComponentSizes, memory: str = "full", free_bytes: int | None = None, frames: int = 49,
                height: int = 480, width: int = 720) -> PlanPrediction:
    """The fastest plan predicted to fit ``memory`` (GB, ``full`` or ``auto`` with ``free_bytes`` of the GPU);
    a budget no plan fits is refused in one line naming the smallest budget that would."""
    memory = str(memory).strip().lower()
    predictions = predict_all(sizes, frames, height, width)
    if memory in PLANS and memory != "full":  # a plan by name (experts, tests): tiled only where its budget needs it
        return predict(sizes, memory, memory in PLANS[PLANS.index("offload"):], frames, height, width)
    budget = _budget(memory, free_bytes)
    if budget is None:
        return predictions[0]
    for prediction in predictions:
        if prediction.need_bytes <= budget:
            return prediction
    smallest = min(p.need_bytes for p in predictions)
    raise InputError(
        f"no memory plan fits {budget / 1e9:.1f} GB for {frames}×{height}×{width}; the smallest needs "
        f"{smallest / 1e9:.1f} GB", hint=f"use --memory {int(-(-smallest // 1e9))} or more, or a smaller video")


def describe_prediction(prediction: PlanPrediction, sizes: ComponentSizes) -> str:
    """Lines for people: the plan, its mechanisms, the weights, predicted peak per phase and host RAM."""
    gb = lambda n: f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"  # noqa: E731
    lines = [f"memory plan: {prediction.plan.name} — {prediction.plan.mechanisms()}",
             "weights: " + ", ".join(f"{k} {gb(v)}" for k, v in sizes.weights.items())
             + (f" (transformer fp8: {gb(sizes.transformer_fp8)})" if prediction.plan.transformer_fp8 else ""),
             "predicted GPU peak: " + gb(prediction.peak_bytes) + " ("
             + ", ".join(f"{k} {gb(v)}" for k, v in prediction.phases.items()) + f"); with headroom "
             + gb(prediction.need_bytes),
             f"host RAM: {gb(prediction.host_bytes)} (every component is read into host RAM before it is placed)"]
    return "\n".join(lines)


def plan_for(model: str, memory: str | None, offload: bool = False, device: str = "auto", dtype: str = "auto",
             variant: str | None = None, frames: int = 49, height: int = 480, width: int = 720):
    """``(prediction, sizes)`` for ``generate --memory`` (``None``: ``offload`` if ``--offload``, else ``auto``).

    ``auto`` reads the free memory of the chosen GPU (``torch.cuda.mem_get_info``); on a CPU it is ``full`` (the
    CPU's memory is not budgeted). Predictions are for a GPU in the chosen dtype (bf16 where none is chosen). Checkpoint folders are planned at the released or paper size (``variant``)."""
    import torch

    from .checks import pick_device, pick_dtype

    if memory is None:
        memory = "offload" if offload else "auto"
    elif offload and str(memory).strip().lower() not in ("offload", "auto"):
        raise InputError("--offload and --memory both choose how the model is placed",
                         hint="drop --offload: --memory offload is the same plan")
    torch_device = pick_device(device)
    # predicted for the GPU the plan is for; without one (``--plan`` on a laptop), for a bf16 GPU
    torch_dtype = pick_dtype(dtype, torch_device) if torch_device.type == "cuda" else (
        torch.bfloat16 if dtype == "auto" else pick_dtype(dtype, torch_device))
    name = "tiny" if model == "tiny" else ("paper" if variant == "paper" else "released")
    sizes = component_sizes(name, dtype=str(torch_dtype).replace("torch.", ""), device_type="cuda",
                            variant=variant if name == "tiny" else None)
    free = None
    if torch_device.type == "cuda":
        free = torch.cuda.mem_get_info(torch_device)[0]
    elif str(memory).strip().lower() == "auto":
        memory = "full"
    return choose_plan(sizes, memory, free, frames, height, width), sizes


# ------------------------------------------------------------------------------------------------ applying
def apply_plan(pipe, plan: Plan, device) -> None:
    """Set ``plan``'s mechanisms on ``pipe`` (its components on the CPU or already on ``device``)."""
    import torch

    device = torch.device(device)
    transformer = pipe.transformer
    if plan.transformer_fp8:
        compute = next(transformer.parameters()).dtype
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute,
                                             skip_modules_pattern=FP8_SKIP_PATTERNS)
    if plan.group_offload:
        stream = device.type == "cuda"
        options = dict(onload_device=device, offload_device=torch.device("cpu"), offload_type=plan.group_offload,
                       use_stream=stream, non_blocking=stream)
        if plan.group_offload == "block_level":
            options["num_blocks_per_group"] = 1
        from diffusers.hooks import apply_group_offloading

        for name in ("transformer", "text_encoder", "vae"):  # the partition _groups() predicts
            module = getattr(pipe, name)
            module.to("cpu")
            blocks = list(GROUP_BLOCK_MODULES.get(name, ())) if plan.group_offload == "block_level" else None
            apply_group_offloading(module, block_modules=blocks or None, **options)
        if getattr(pipe, "identity_encoder", None) is not None:
            pipe.identity_encoder.to(device)
    elif plan.model_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
        if plan.t5_off:
            from accelerate import cpu_offload_with_hook

            pipe.text_encoder.to("cpu")
            _, hook = cpu_offload_with_hook(pipe.text_encoder, device)
            transformer.register_forward_pre_hook(lambda *_: hook.offload())
    if plan.vae_tiling:
        pipe.vae.enable_slicing()
        pipe.vae.enable_tiling()
