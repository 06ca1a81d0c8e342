"""FantasyIDPipeline: identity-preserving image-to-video generation on CogVideoX.

One reference photo and a prompt in, a video out, in numbered steps: check inputs → face → identity tokens (once per
video) → text → I2V image latents → denoising loop with classifier-free guidance over the text only → decode.

The text encoder, VAE, scheduler and the CogVideoX helpers (prompt encoding, latent preparation, RoPE, decoding) are
diffusers' :class:`~diffusers.CogVideoXImageToVideoPipeline`'s own; this class adds the identity: the
:class:`~fantasyid.models.identity_encoder.FantasyIDIdentityEncoder` (a diffusers component, saved with the pipeline)
and the face tools, whose weights come in their own formats and are not saved with the pipeline: the insightface
analyzer, the EVA-CLIP vision tower and the DECA + FLAME shape estimator, attached with
:meth:`FantasyIDPipeline.set_face_tools`.

With ``use_identity=False`` the pipeline is exactly CogVideoX image-to-video on the given image.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import CogVideoXDPMScheduler, CogVideoXImageToVideoPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import retrieve_timesteps
from diffusers.utils import BaseOutput

from ..errors import ConfigError, InputError, NoFaceError
from ..models.transformer_fantasyid import IdentityKVCache

logger = logging.getLogger(__name__)

__all__ = ["FantasyIDPipeline", "FantasyIDPipelineOutput", "IdentityInputs"]

#: The reference photo is fitted to this long side before its face is aligned, as the release does.
REFERENCE_LONG_SIDE = 1024
# Release defaults (reference/official_code_notes.md §2).
DEFAULT_HEIGHT, DEFAULT_WIDTH, DEFAULT_FRAMES = 480, 720, 49
DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_FPS = 50, 6.0, 8


@dataclass
class IdentityInputs:
    """What the identity branch consumes, derived from one reference photo.

    Attributes:
        face_image: the aligned 512×512 RGB face crop (FFHQ template): the I2V first frame and the EVA-CLIP input.
        vertices: FLAME vertices ``(1, V, 3)`` of the reference (or of an edited shape).
        num_faces: how many faces the detector found in the photo (the largest is used).
        bbox: the used face's box in the photo, ``(x1, y1, x2, y2)``.
    """

    face_image: PIL.Image.Image
    vertices: torch.Tensor | None  #: None when only the aligned crop was asked for (need_vertices=False)
    num_faces: int = 1
    bbox: tuple[float, float, float, float] | None = None


@dataclass
class FantasyIDPipelineOutput(BaseOutput):
    """``frames``: the video (``np.ndarray`` ``(B, F, H, W, 3)`` in [0, 1], PIL frames, or latents);
    ``identity``: the :class:`IdentityInputs` used (``None`` with ``use_identity=False``);
    ``acceleration``: cache/compile settings and what the cache skipped (``None`` without
    :func:`~fantasyid.pipelines.acceleration.accelerate`)."""

    frames: Any
    identity: IdentityInputs | None = None
    acceleration: dict[str, Any] | None = None


class FantasyIDPipeline(CogVideoXImageToVideoPipeline):
    """Identity-preserving image-to-video generation (FantasyID) on a CogVideoX-I2V backbone.

    Components: ``tokenizer``, ``text_encoder`` (T5), ``vae`` (CogVideoX), ``transformer``
    (:class:`~fantasyid.models.transformer_fantasyid.FantasyIDTransformer3DModel`), ``scheduler`` (CogVideoX DPM),
    and ``identity_encoder`` (optional: without it only ``use_identity=False`` or a precomputed ``identity_cache``
    runs). The face tools are attached with :meth:`set_face_tools`.
    """

    model_cpu_offload_seq = "text_encoder->identity_encoder->transformer->vae"
    _optional_components = ["identity_encoder"]

    def __init__(self, tokenizer, text_encoder, vae, transformer, scheduler, identity_encoder=None):
        super().__init__(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )
        self.register_modules(identity_encoder=identity_encoder)
        self.face_analyzer = None
        self.image_encoder = None
        self.shape_estimator = None
        self.acceleration = None  # set by fantasyid.pipelines.acceleration.accelerate (cache hooks, compile)
        self._truncation_noted = False  # the T5 truncation note is given once per pipeline

    # ------------------------------------------------------------------ text
    def _get_t5_prompt_embeds(self, prompt=None, num_videos_per_prompt=1, max_sequence_length=226, device=None,
                              dtype=None):
        """diffusers' T5 encoding, but a prompt longer than ``max_sequence_length`` tokens gives one line saying how
        many tokens were dropped, once per pipeline, instead of diffusers' warning (with the whole dropped text) per
        prompt and call."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        if not self._truncation_noted and prompts:
            lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False).input_ids]  # incl. </s>
            dropped = max(lengths) - max_sequence_length
            if dropped > 0:
                self._truncation_noted = True
                logger.warning("the text encoder reads %d tokens: %d tokens of a %d-token prompt were dropped "
                               "(said once; longer prompts are cut the same way)", max_sequence_length, dropped,
                               max(lengths))
        cogvideo = logging.getLogger(CogVideoXImageToVideoPipeline.__module__)
        level = cogvideo.level
        cogvideo.setLevel(logging.ERROR)  # its truncation warning, replaced by the note above
        try:
            return super()._get_t5_prompt_embeds(prompt, num_videos_per_prompt, max_sequence_length, device, dtype)
        finally:
            cogvideo.setLevel(level)

    # ------------------------------------------------------------------ identity
    def set_face_tools(self, face_analyzer=None, image_encoder=None, shape_estimator=None) -> None:
        """Attach the face tools.

        Args:
            face_analyzer: ``detect(image) -> list[Face]``, largest first, each with the aligned 512 px crop
                ``crop_512`` (:class:`fantasyid.face.FaceAnalyzer`).
            image_encoder: EVA-CLIP vision tower: ``(1, 3, S, S)`` pixels → an output whose ``hidden_states`` are the
                states the face abstractor consumes (:mod:`fantasyid.face.eva_clip`).
            shape_estimator: ``(rgb_photo, face) -> vertices (1, V, 3)`` (DECA + FLAME).
        """
        self.face_analyzer = face_analyzer
        self.image_encoder = image_encoder
        self.shape_estimator = shape_estimator

    @property
    def uses_vertices(self) -> bool:
        """Whether the identity encoder reads 3D vertices (False for the "w/o FV" ablation: no DECA needed)."""
        return self.identity_encoder is not None and bool(getattr(self.identity_encoder.config, "vertex_tokens", True))

    def identity_inputs(
        self, image: PIL.Image.Image | np.ndarray, vertices: torch.Tensor | None = None, need_vertices: bool = True
    ) -> IdentityInputs:
        """Detect the reference face, align it, and get its 3D vertices (unless ``vertices`` are given or
        ``need_vertices`` is false: then ``vertices`` stays ``None``)."""
        if self.face_analyzer is None:
            raise ConfigError(
                "this pipeline has no face analyzer", hint="call pipe.set_face_tools(FaceAnalyzer(...), ...)"
            )
        import dataclasses

        from ..face import fit_long_side, load_image

        rgb = load_image(image)  # RGB uint8 (H, W, 3) from a PIL image or an array of any common layout
        # The release first fits the photo to a 1024-px long side (resize_numpy_image_long, Lanczos) and aligns the
        # face in that: the 512-px crop (first frame, EVA-CLIP input) comes from the fitted photo, as there.
        fitted = fit_long_side(rgb, REFERENCE_LONG_SIDE)
        faces = self.face_analyzer.detect(fitted)
        if not faces:
            raise NoFaceError(
                "no face found in the reference image", hint="use a photo with one clearly visible, frontal face"
            )
        face = faces[0]
        if face.crop_512 is None:
            raise ConfigError("the face analyzer did not return the aligned 512 px crop")
        face_image = PIL.Image.fromarray(face.crop_512)
        scale = np.array([rgb.shape[1] / fitted.shape[1], rgb.shape[0] / fitted.shape[0]] * 2, dtype=np.float32)
        face = dataclasses.replace(face, bbox=np.asarray(face.bbox, dtype=np.float32) * scale)  # in photo pixels
        if vertices is None and need_vertices:
            if self.shape_estimator is None:
                raise ConfigError(
                    "no 3D face: this pipeline has no shape estimator and no vertices were given",
                    hint="attach DECA + FLAME with set_face_tools(..., shape_estimator=...) or pass --shape SHAPE.npz",
                )
            # DECA reads the photo itself (the release's process_pcd.py does not fit it to 1024 px)
            vertices = self.shape_estimator(rgb, face)
        bbox = tuple(float(v) for v in face.bbox)
        return IdentityInputs(face_image=face_image, vertices=vertices, num_faces=len(faces), bbox=bbox)

    @torch.no_grad()
    def encode_identity(self, identity: IdentityInputs) -> IdentityKVCache:
        """Identity tokens → every injection layer's keys and values, once per video."""
        from ..face.eva_clip import preprocess

        if self.image_encoder is None or self.identity_encoder is None:
            raise ConfigError(
                "this pipeline has no EVA-CLIP image encoder or no identity encoder: it cannot use an identity",
                hint="attach the image encoder with set_face_tools(...) and load the identity encoder",
            )
        device = self._execution_device
        pixels = preprocess(np.asarray(identity.face_image.convert("RGB")), self.image_encoder.config.image_size)
        hidden_states = self.image_encoder(pixels.to(device)).hidden_states  # clip layers × (1, 1 + grid², D)
        vertices = None  # w/o FV: the identity tokens are the face tokens alone
        if self.uses_vertices:
            if identity.vertices is None:
                raise ConfigError("no 3D face: this identity encoder reads vertices and none were given",
                                  hint="attach DECA + FLAME or pass --shape SHAPE.npz")
            vertices = identity.vertices.to(device)
            if vertices.ndim == 2:
                vertices = vertices[None]  # (V, 3) → (1, V, 3)
        tokens = self.identity_encoder(hidden_states, vertices)  # (1, N_id, identity_dim)
        return self.transformer.prepare_identity(tokens.to(self.transformer.dtype))

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def __call__(
        self,
        image: PIL.Image.Image | np.ndarray,
        prompt: str | None = None,
        negative_prompt: str | None = "",
        height: int = DEFAULT_HEIGHT,
        width: int = DEFAULT_WIDTH,
        num_frames: int = DEFAULT_FRAMES,
        num_inference_steps: int = DEFAULT_STEPS,
        timesteps: list[int] | None = None,
        guidance_scale: float = DEFAULT_GUIDANCE,
        use_dynamic_cfg: bool = False,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        use_identity: bool = True,
        vertices: torch.Tensor | None = None,
        identity: IdentityInputs | None = None,
        identity_cache: IdentityKVCache | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[Any, int, int, dict], dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        max_sequence_length: int | None = None,
    ) -> FantasyIDPipelineOutput | tuple:
        """Generate one video of the person in ``image`` doing what ``prompt`` says.

        Args:
            image: the reference photo (any size, RGB). With ``use_identity`` the largest face is detected, aligned
                to 512×512 and used as the first frame and the identity; without, ``image`` itself is the first frame.
            prompt / negative_prompt: the text; the release uses an empty negative prompt.
            height, width, num_frames: output size (release: 480×720, 49 frames).
            num_inference_steps, guidance_scale, use_dynamic_cfg, eta, timesteps: sampler settings (release: 50,
                6.0, off, 0).
            generator: seeds the VAE posterior of the first frame and then the initial noise, as the release.
            vertices: FLAME vertices ``(1, V, 3)`` to use instead of the estimated ones (e.g. an edited shape).
            identity: precomputed :class:`IdentityInputs` (skips detection); identity_cache: precomputed keys and
                values (skips the identity encoder too).
            output_type: ``"np"``, ``"pil"``, ``"pt"`` or ``"latent"``.
            callback_on_step_end: called after each step as ``callback(pipe, step, timestep, tensors)``; may return
                replacements for ``latents``.

        The identity tokens are computed once and reused at every step and in both halves of classifier-free
        guidance (the release gives the unconditional half the identity too).
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs
        if use_identity and identity_cache is None and identity is None and image is None:
            raise InputError("a reference image is needed for the identity")
        self.check_inputs(
            image=image if image is not None else identity.face_image,
            prompt=prompt,
            height=height,
            width=width,
            negative_prompt=negative_prompt,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            latents=latents,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
        )
        if num_frames < 1 or (num_frames - 1) % self.vae_scale_factor_temporal != 0:
            raise InputError(
                f"num_frames must be 1 + a multiple of {self.vae_scale_factor_temporal}, got {num_frames}",
                hint=f"e.g. {DEFAULT_FRAMES}",
            )
        if not isinstance(prompt, str) and prompt is not None:
            raise InputError("one prompt per call: pass a string")
        max_sequence_length = max_sequence_length or self.transformer.config.max_text_seq_length
        self._guidance_scale = guidance_scale
        self._current_timestep = None
        self._attention_kwargs = attention_kwargs
        self._interrupt = False
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        acceleration = self.acceleration
        if acceleration is not None:
            acceleration.start_video()

        # 2. Face: detect, align, 3D shape (skipped when the caller brings them)
        if use_identity and identity is None:
            # with a precomputed cache only the aligned crop is needed: it is still the first frame
            identity = self.identity_inputs(image, vertices, need_vertices=identity_cache is None and self.uses_vertices)
        elif identity is not None and vertices is not None:
            identity.vertices = vertices
        first_frame = identity.face_image if (use_identity and identity is not None) else image

        # 3. Identity tokens → per-layer keys/values, once per video
        if use_identity and identity_cache is None:
            identity_cache = self.encode_identity(identity)
        if not use_identity:
            identity_cache = None

        # 4. Text (CFG: [negative; positive])
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=do_cfg,
            num_videos_per_prompt=1,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        if do_cfg:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
        if identity_cache is not None:
            identity_cache = identity_cache.to(device=device, dtype=prompt_embeds.dtype)

        # 5. Timesteps
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, timesteps)
        self._num_timesteps = len(timesteps)
        latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        patch_size_t = self.transformer.config.patch_size_t
        additional_frames = 0
        if patch_size_t is not None and latent_frames % patch_size_t != 0:
            additional_frames = patch_size_t - latent_frames % patch_size_t
            num_frames += additional_frames * self.vae_scale_factor_temporal

        # 6. I2V latents: the first frame stretched to (height, width), VAE-encoded (sampled), then zero frames
        pixels = self.video_processor.preprocess(first_frame, height=height, width=width)
        pixels = pixels.to(device, dtype=prompt_embeds.dtype)  # (1, 3, H, W)
        latent_channels = self.transformer.config.in_channels // 2
        latents, image_latents = self.prepare_latents(
            pixels, 1, latent_channels, num_frames, height, width, prompt_embeds.dtype, device, generator, latents
        )  # (1, F', C, H/8, W/8) each
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        rotary = (
            self._prepare_rotary_positional_embeddings(height, width, latents.size(1), device)
            if self.transformer.config.use_rotary_positional_embeddings
            else None
        )
        ofs = None if self.transformer.config.ofs_embed_dim is None else latents.new_full((1,), fill_value=2.0)

        # 7. Denoising loop
        num_warmup_steps = max(len(timesteps) - num_inference_steps * self.scheduler.order, 0)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            old_pred_original_sample = None
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                model_input = torch.cat([latents] * 2) if do_cfg else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                image_input = torch.cat([image_latents] * 2) if do_cfg else image_latents
                model_input = torch.cat([model_input, image_input], dim=2)  # (B, F', 2C, h, w)
                timestep = t.expand(model_input.shape[0])

                with acceleration.step_context() if acceleration is not None else contextlib.nullcontext():
                    noise_pred = self.transformer(
                        hidden_states=model_input,
                        encoder_hidden_states=prompt_embeds,
                        timestep=timestep,
                        ofs=ofs,
                        image_rotary_emb=rotary,
                        attention_kwargs=attention_kwargs,
                        identity_cache=identity_cache,
                        return_dict=False,
                    )[0].float()

                if use_dynamic_cfg:
                    progress = ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0
                    self._guidance_scale = 1 + guidance_scale * (1 - np.cos(np.pi * progress)) / 2
                if do_cfg:
                    uncond, text = noise_pred.chunk(2)
                    noise_pred = uncond + self.guidance_scale * (text - uncond)

                if isinstance(self.scheduler, CogVideoXDPMScheduler):
                    latents, old_pred_original_sample = self.scheduler.step(
                        noise_pred,
                        old_pred_original_sample,
                        t,
                        timesteps[i - 1] if i > 0 else None,
                        latents,
                        **extra_step_kwargs,
                        return_dict=False,
                    )
                else:
                    latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                latents = latents.to(prompt_embeds.dtype)

                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "prompt_embeds": prompt_embeds}
                    callback_kwargs = {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                    outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = outputs.pop("latents", latents)
                    prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()
        self._current_timestep = None

        # 8. Decode
        if output_type == "latent":
            video = latents
        else:
            video = self.decode_latents(latents[:, additional_frames:])
            video = self.video_processor.postprocess_video(video=video, output_type=output_type)
        self.maybe_free_model_hooks()

        if not return_dict:
            return (video, identity)
        return FantasyIDPipelineOutput(
            frames=video,
            identity=identity if use_identity else None,
            acceleration=acceleration.report() if acceleration is not None else None,
        )

