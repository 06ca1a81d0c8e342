"""One training step's loss: CogVideoX's image-to-video objective with FantasyID's identity tokens.

For every sample (each with its own generator, seeded by its place in the sample stream, so that results do not
depend on how samples are split over processes and accumulation steps):

1. the clip → VAE latents ``x0`` (posterior sample × scaling factor);
2. the drawn view's crop (already stretched to the video size) + CogVideoX's small image noise
   (σ = exp(N(−3, 0.5))) → latent frame 0, other latent frames zero, exactly as the pipeline's
   ``prepare_latents`` builds it at inference (it is called here); all zero with probability ``image_dropout``;
3. caption → T5 states, the empty prompt with probability ``text_dropout`` (the identity is kept);
4. a uniform timestep ``t`` (of ``train.timestep_range``, all 1000 by default) and noise → ``x_t``; the
   transformer predicts ``v`` from ``[x_t; image latents]``,
   the text and the identity tokens (computed with gradients from the frozen EVA-CLIP features and the vertices);
5. loss = mean(w_t · (x̂0 − x0)²) with x̂0 = √ᾱ x_t − √(1−ᾱ) v̂ and w_t = 1 / (1 − ᾱ_t): CogVideoX's weighting,
   equal to the plain v-prediction MSE ‖v̂ − v‖².
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.dataset import item_generator
from .config import DataConfig
from .model import TrainComponents

__all__ = ["StepInputs", "prepare_inputs", "compute_loss", "encode_text", "frozen_dtype", "noisy_latents", "place_frozen"]


@dataclass
class StepInputs:
    model_input: torch.Tensor  #: (B, F', 2C, h, w): noisy latents and image latents
    latents: torch.Tensor  #: (B, F', C, h, w): the clean target x0
    noisy: torch.Tensor  #: (B, F', C, h, w), fp32 (x_t; the model gets it in the frozen dtype)
    timesteps: torch.Tensor  #: (B,)
    text_states: torch.Tensor  #: (B, L, D)
    clip_hidden_states: list[torch.Tensor] | None
    vertices: torch.Tensor | None
    rotary: tuple[torch.Tensor, torch.Tensor] | None
    ofs: torch.Tensor | None


@torch.no_grad()
def prepare_inputs(components: TrainComponents, batch: dict, data: DataConfig, seed: int,
                   device: torch.device, dtype: torch.dtype = torch.float32,
                   timestep_range: tuple[int, int] | None = None, empty_text_states: torch.Tensor | None = None
                   ) -> StepInputs:
    """Everything the trainable module needs for ``batch``, from the frozen components (no gradients).

    A batch from a precomputed cache carries ``latent_dist`` (the VAE posterior's parameters, sampled here with the
    same generator as a live encode) and ``text_states``; ``empty_text_states`` (L, D) stands for a dropped caption.
    """
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import retrieve_latents

    pipe = components.pipe
    scheduler = pipe.scheduler
    gens = [item_generator(seed, position, salt=2) for position in batch["position"]]
    size = len(gens)

    # per-sample draws, in a fixed order
    first, last = timestep_range or (0, scheduler.config.num_train_timesteps)
    timesteps = torch.stack([torch.randint(first, last, (1,), generator=g)[0] for g in gens])
    drop_text = [bool(torch.rand((), generator=g) < data.text_dropout) for g in gens]
    drop_image = [bool(torch.rand((), generator=g) < data.image_dropout) for g in gens]
    sigmas = [float(torch.exp(torch.randn((), generator=g) * data.image_noise_std + data.image_noise_mean))
              for g in gens]

    # 1. Clip latents (B, F', C, h, w)
    if "latent_dist" in batch:
        parameters = batch["latent_dist"].to(device, dtype)  # (B, 2C, F', h, w): posterior mean and logvar
        latents = torch.cat([DiagonalGaussianDistribution(parameters[i : i + 1]).sample(gens[i])
                             for i in range(size)])  # (B, C, F', h, w)
    else:
        video = batch["video"].to(device, dtype)  # (B, F, 3, H, W)
        latents = torch.cat([
            retrieve_latents(pipe.vae.encode(video[i : i + 1].transpose(1, 2)), gens[i])  # (1, C, F', h, w)
            for i in range(size)
        ])
    latents = latents * pipe.vae.config.scaling_factor
    latents = latents.transpose(1, 2).contiguous()  # (B, F', C, h, w)

    # 2. Frame-0 condition with image noise, through the pipeline's own prepare_latents (also draws the noise)
    condition = batch["condition"].to(device, dtype)  # (B, 3, H, W)
    noise_images = torch.stack([torch.randn(condition.shape[1:], generator=g) for g in gens]).to(device, dtype)
    condition = condition + noise_images * torch.tensor(sigmas, device=device, dtype=dtype)[:, None, None, None]
    noise, image_latents = pipe.prepare_latents(
        condition, size, latents.shape[2], data.frames, data.height, data.width, dtype, device, gens, None
    )  # (B, F', C, h, w) each
    keep = torch.tensor([not d for d in drop_image], device=device, dtype=dtype)
    image_latents = image_latents * keep[:, None, None, None, None]

    # 3. Text
    if "text_states" in batch:
        text_states = torch.stack([empty_text_states if drop else states for states, drop in
                                   zip(batch["text_states"], drop_text)]).to(device, dtype)  # (B, L, D)
    else:
        captions = ["" if drop else caption for caption, drop in zip(batch["caption"], drop_text)]
        text_states = encode_text(pipe, captions, device, dtype)  # (B, L, D)

    # 4. Noisy latents
    timesteps = timesteps.to(device)
    noisy = noisy_latents(scheduler, latents, noise, timesteps)  # fp32, as x̂0 in compute_loss
    model_input = torch.cat([noisy.to(dtype), image_latents], dim=2)  # (B, F', 2C, h, w)
    config = pipe.transformer.config
    rotary = (pipe._prepare_rotary_positional_embeddings(data.height, data.width, latents.shape[1], device)
              if config.use_rotary_positional_embeddings else None)
    ofs = None if config.ofs_embed_dim is None else latents.new_full((size,), 2.0)

    # 5. Frozen EVA-CLIP features of the drawn view (identity tokens are computed with gradients later)
    clip_hidden_states = vertices = None
    if components.module.identity is not None:
        pixels = batch["clip_pixels"].to(device, dtype)
        clip_hidden_states = list(components.image_encoder(pixels).hidden_states)
        vertices = batch["vertices"].to(device) if "vertices" in batch else None  # none for w/o FV
    return StepInputs(model_input, latents, noisy, timesteps, text_states, clip_hidden_states, vertices, rotary, ofs)


def noisy_latents(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε in fp32, with the same fp32 ᾱ that :func:`compute_loss` uses for x̂0.

    (``scheduler.add_noise`` casts ᾱ to the latents' dtype: with bf16 latents x_t and x̂0 would use different ᾱ and
    the v-target would be off by 24 % at t = 0.)
    """
    alphas = scheduler.alphas_cumprod.to(device=latents.device, dtype=torch.float32)[timesteps.to(latents.device)]
    alphas = alphas[:, None, None, None, None]  # (B, 1, 1, 1, 1) against (B, F', C, h, w)
    return alphas.sqrt() * latents.float() + (1.0 - alphas).sqrt() * noise.float()


def encode_text(pipe, captions: list[str], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """T5 states of ``captions`` as the pipeline encodes prompts: (B, L, D)."""
    return pipe._get_t5_prompt_embeds(prompt=captions, max_sequence_length=pipe.transformer.config.max_text_seq_length,
                                      device=device, dtype=dtype)


def frozen_dtype(mixed_precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the frozen models (VAE, T5, EVA-CLIP): fp32 on CPU, the mixed-precision dtype on GPUs."""
    if device.type == "cpu":
        return torch.float32  # autocast handles the trainable part
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)


def place_frozen(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move a frozen model to ``device`` and ``dtype``.

    diffusers' ``ModelMixin.to(dtype)`` warns on every cast ("modules … that should be kept in float32: []") even
    when the model keeps none in float32 (the CogVideoX VAE): such a model is cast as a plain ``nn.Module``, one that
    keeps some goes through diffusers' own ``to``, and a model already in ``dtype`` is only moved."""
    if getattr(module, "dtype", None) == dtype:
        module.to(device)
    elif getattr(module, "_keep_in_fp32_modules", None):
        module.to(device, dtype)
    else:
        torch.nn.Module.to(module, device, dtype)


def compute_loss(module, components: TrainComponents, inputs: StepInputs) -> torch.Tensor:
    """CogVideoX's weighted x0 loss of one micro-batch (mean over samples)."""
    scheduler = components.pipe.scheduler
    v_pred = module(inputs.model_input, inputs.text_states, inputs.timesteps, inputs.clip_hidden_states,
                    inputs.vertices, inputs.rotary, inputs.ofs)  # (B, F', C, h, w)
    x0_pred = scheduler.get_velocity(v_pred.float(), inputs.noisy.float(), inputs.timesteps)
    alphas = scheduler.alphas_cumprod.to(inputs.timesteps.device)[inputs.timesteps]
    weights = (1.0 / (1.0 - alphas)).float()[:, None, None, None, None]
    per_sample = (weights * (x0_pred - inputs.latents.float()) ** 2).flatten(1).mean(1)  # (B,)
    return per_sample.mean()
