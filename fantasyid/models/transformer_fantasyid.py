"""FantasyID transformer: diffusers' CogVideoX DiT plus a per-layer identity cross-attention.

Layer-aware control signal injection (FantasyID, Sec. 3.5): after DiT block ``l`` the video tokens attend to the
identity tokens ``V_F`` through a cross-attention with weights of their own,

    Ẑ_l = Z_l + F_l(Attention(Q = LN(Z_l) W_q^l, K = LN(V_F) W_k^l, V = LN(V_F) W_v^l)).

The released checkpoint has no ``F_l`` (identity); the ``paper`` configuration adds a light convolution over the
(frames, height, width) token grid followed by a LayerNorm whose gain starts at zero, so that a freshly initialised
adapter leaves the backbone's output unchanged.

The CogVideoX blocks, embeddings and attention processors are diffusers' own (this class subclasses
:class:`diffusers.CogVideoXTransformer3DModel`, so base weights keep their diffusers key names); only the block loop
is rewritten here to interleave the identity attention. The identity keys/values depend only on the identity: compute
them once per video with :meth:`FantasyIDTransformer3DModel.prepare_identity` and pass the returned
:class:`IdentityKVCache` to every denoising step.

Each block and the identity attention that follows it run as one call of :class:`FantasyIDBlock` (a CogVideoX block
that takes the injection as an argument; the identity weights stay in ``identity_attention``), so that diffusers'
block-level cache hooks (First-Block Cache) and regional compilation see the injected output of a block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from diffusers.utils import apply_lora_scale
from torch import nn

from ..errors import ConfigError

__all__ = [
    "FantasyIDBlock",
    "FantasyIDTransformer3DModel",
    "IdentityAttention",
    "IdentityKVCache",
    "LayerAwareRefiner",
]


class LayerAwareRefiner(nn.Module):
    """The paper's ``F_l``: depthwise 3-D convolution over the token grid, SiLU, then a zero-gain LayerNorm.

    Input and output are token sequences ``(B, F·H·W, C)`` in CogVideoX's frame-major order. The LayerNorm's gain
    and bias start at zero, so a fresh refiner outputs exactly zero and the identity branch starts as a no-op.
    """

    def __init__(self, dim: int, kernel_size: int = 3, eps: float = 1e-5):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ConfigError(f"identity_refiner_kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv3d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        frames, height, width = grid
        batch, tokens, dim = x.shape
        if tokens != frames * height * width:
            raise ValueError(f"expected {frames}×{height}×{width} video tokens, got {tokens}")
        x = x.transpose(1, 2).reshape(batch, dim, frames, height, width)  # (B, C, F, H, W)
        x = F.silu(self.conv(x))
        x = x.flatten(2).transpose(1, 2)  # (B, F·H·W, C)
        return self.norm(x)


class IdentityAttention(nn.Module):
    """Cross-attention of the video tokens (queries) onto the identity tokens (keys and values).

    Released layout (``layer_attention.{l}`` in the authors' checkpoint): LayerNorm on both inputs, ``to_q``
    ``dim → heads·head_dim``, ``to_kv`` ``identity_dim → 2·heads·head_dim`` (keys first), ``to_out`` back to
    ``dim``, no biases; softmax attention with scale ``head_dim**-0.5``. The module returns the residual increment;
    the caller adds it to the video tokens.
    """

    def __init__(
        self,
        dim: int,
        identity_dim: int,
        num_heads: int,
        head_dim: int,
        refiner: str | None = None,
        refiner_kernel_size: int = 3,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner_dim = num_heads * head_dim
        self.norm_kv = nn.LayerNorm(identity_dim, eps=eps)
        self.norm_hidden = nn.LayerNorm(dim, eps=eps)
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(identity_dim, 2 * inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, dim, bias=False)
        if refiner is None:
            self.refiner = None
        elif refiner == "conv":
            self.refiner = LayerAwareRefiner(dim, refiner_kernel_size, eps=eps)
        else:
            raise ConfigError(f"unknown identity_refiner {refiner!r}; use None (released) or 'conv' (paper)")

    def project_kv(self, identity_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the identity tokens, each ``(B, heads, N_id, head_dim)``."""
        batch, tokens, _ = identity_tokens.shape
        kv = self.to_kv(self.norm_kv(identity_tokens))  # (B, N_id, 2·heads·head_dim)
        key, value = kv.chunk(2, dim=-1)
        key = key.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
        value = value.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
        return key, value

    def forward(
        self,
        hidden_states: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        grid: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        """Residual increment ``(B, N_video, dim)`` for the video tokens ``hidden_states``."""
        batch, tokens, _ = hidden_states.shape
        query = self.to_q(self.norm_hidden(hidden_states))
        query = query.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)
        key, value = kv
        if key.shape[0] != batch:
            # One identity for the whole batch (e.g. both halves of classifier-free guidance).
            if key.shape[0] != 1:
                raise ValueError(f"identity batch {key.shape[0]} does not match video batch {batch}")
            key = key.expand(batch, -1, -1, -1)
            value = value.expand(batch, -1, -1, -1)
        key = key.to(query.dtype)
        value = value.to(query.dtype)
        if query.dtype == torch.float32:
            out = F.scaled_dot_product_attention(query, key, value)  # (B, h, N, d)
        else:
            # The release computes this softmax in fp32 even when the model runs in bf16 (reference/
            # official_code_notes.md §3, LayerAttention): scores in the working dtype with the scale 1/√d split
            # over queries and keys, softmax in fp32, back to the working dtype for the values. In fp32 that is
            # the softmax SDPA computes, so fp32 keeps SDPA.
            scale = self.head_dim**-0.25
            scores = (query * scale) @ (key * scale).transpose(-1, -2)  # (B, h, N, N_id)
            out = scores.float().softmax(dim=-1).to(query.dtype) @ value  # (B, h, N, d)
        out = out.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim)
        out = self.to_out(out)
        if self.refiner is not None:
            if grid is None:
                raise ValueError("the paper's layer-aware refiner needs the (frames, height, width) token grid")
            out = self.refiner(out, grid)
        return out


@dataclass
class IdentityKVCache:
    """Per-injection-layer identity keys and values, computed once per video and reused at every step.

    ``kv[j]`` belongs to ``identity_attention[j]``, which runs after transformer block ``j · interval``.
    """

    kv: list[tuple[torch.Tensor, torch.Tensor]]

    def to(self, *args, **kwargs) -> IdentityKVCache:
        return IdentityKVCache([(k.to(*args, **kwargs), v.to(*args, **kwargs)) for k, v in self.kv])

    def __len__(self) -> int:
        return len(self.kv)


class FantasyIDBlock(CogVideoXBlock):
    """A CogVideoX block followed by FantasyID's identity injection, in one call.

    The block owns no identity weights: the model hands it ``identity = (IdentityAttention, (key, value), grid)``
    for the injection layers and ``None`` for the others (then it is exactly CogVideoX's block). Same parameters and
    key names as :class:`~diffusers.models.transformers.cogvideox_transformer_3d.CogVideoXBlock`.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        identity: tuple[IdentityAttention, tuple[torch.Tensor, torch.Tensor], tuple[int, int, int]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states, encoder_hidden_states = super().forward(
            hidden_states, encoder_hidden_states, temb, image_rotary_emb=image_rotary_emb,
            attention_kwargs=attention_kwargs,
        )
        if identity is not None:
            attention, kv, grid = identity
            hidden_states = hidden_states + attention(hidden_states, kv, grid)
        return hidden_states, encoder_hidden_states


class FantasyIDTransformer3DModel(CogVideoXTransformer3DModel):
    """CogVideoX transformer with FantasyID's layer-aware identity injection.

    Takes every :class:`~diffusers.CogVideoXTransformer3DModel` config key plus:

    Args:
        identity_dim: width of the identity tokens handed in (2048 in the release).
        identity_num_heads: heads of each identity cross-attention (16 in the release).
        identity_head_dim: width of each head (128 in the release).
        identity_interval: inject after every ``identity_interval``-th block, starting with block 0 (1 in the
            release: 42 injection layers for 42 blocks).
        identity_refiner: ``None`` (the release: no ``F_l``) or ``"conv"`` (the paper: a conv block and a
            zero-gain norm after the attention).
        identity_refiner_kernel_size: kernel of the refiner's depthwise 3-D convolution.

    With ``identity_tokens=None`` and no cache, :meth:`forward` computes exactly CogVideoX.
    """

    #: FSDP units (and device-map boundaries): the blocks this model really holds, not CogVideoX's CogVideoXBlock
    _no_split_modules = ["FantasyIDBlock", "CogVideoXPatchEmbed"]

    _repeated_blocks = ["FantasyIDBlock"]  # diffusers' regional compilation (compile_repeated_blocks)

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        identity_dim: int = 2048,
        identity_num_heads: int = 16,
        identity_head_dim: int = 128,
        identity_interval: int = 1,
        identity_refiner: str | None = None,
        identity_refiner_kernel_size: int = 3,
    ):
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            time_embed_dim=time_embed_dim,
            ofs_embed_dim=ofs_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=num_layers,
            dropout=dropout,
            attention_bias=attention_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
            patch_bias=patch_bias,
        )
        if identity_interval < 1:
            raise ConfigError(f"identity_interval must be ≥ 1, got {identity_interval}")
        # FantasyIDBlock adds no state to CogVideoXBlock: re-class the blocks diffusers just built instead of building
        # (and initialising) them a second time.
        for block in self.transformer_blocks:
            block.__class__ = FantasyIDBlock
        inner_dim = num_attention_heads * attention_head_dim
        num_injections = len(range(0, num_layers, identity_interval))
        self.identity_attention = nn.ModuleList(
            IdentityAttention(
                inner_dim,
                identity_dim,
                identity_num_heads,
                identity_head_dim,
                refiner=identity_refiner,
                refiner_kernel_size=identity_refiner_kernel_size,
            )
            for _ in range(num_injections)
        )

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_cogvideox(cls, transformer: CogVideoXTransformer3DModel, **identity_config) -> FantasyIDTransformer3DModel:
        """Build from a loaded CogVideoX transformer, keeping its weights; identity modules are freshly initialised.

        ``identity_config`` takes the ``identity_*`` keys of this class.
        """
        unknown = [key for key in identity_config if not key.startswith("identity_")]
        if unknown:
            raise ConfigError(f"from_cogvideox takes only identity_* keys, got {unknown}")
        base_keys = set(CogVideoXTransformer3DModel.extract_init_dict(dict(transformer.config))[0])
        config = {key: value for key, value in transformer.config.items() if key in base_keys}
        reference = next(transformer.parameters())
        model = cls(**config, **identity_config)
        missing, unexpected = model.load_state_dict(transformer.state_dict(), strict=False)
        if unexpected or any(not key.startswith("identity_attention.") for key in missing):
            raise ConfigError(f"CogVideoX weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if reference.device.type != "cpu" or reference.dtype != torch.float32:
            model = model.to(device=reference.device, dtype=reference.dtype)
        return model

    @property
    def num_identity_layers(self) -> int:
        return len(self.identity_attention)

    def identity_parameters(self):
        """The parameters of the identity injection (for freezing the backbone or separate learning rates)."""
        return self.identity_attention.parameters()

    # ------------------------------------------------------------------ identity cache
    def prepare_identity(self, identity_tokens: torch.Tensor) -> IdentityKVCache:
        """Project identity tokens ``(B, N_id, identity_dim)`` to every injection layer's keys and values.

        Call once per video; the result is valid for every denoising step and both halves of CFG.
        """
        if identity_tokens.ndim != 3 or identity_tokens.shape[-1] != self.config.identity_dim:
            raise ValueError(
                f"identity_tokens must be (B, N, {self.config.identity_dim}), got {tuple(identity_tokens.shape)}"
            )
        dtype = self.identity_attention[0].to_kv.weight.dtype
        identity_tokens = identity_tokens.to(dtype)
        return IdentityKVCache([layer.project_kv(identity_tokens) for layer in self.identity_attention])

    # ------------------------------------------------------------------ forward
    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.LongTensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        identity_tokens: torch.Tensor | None = None,
        identity_cache: IdentityKVCache | None = None,
        return_dict: bool = True,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        """CogVideoX's forward with the identity injected after every ``identity_interval``-th block.

        Args:
            hidden_states: ``(B, F, C, H, W)`` latents (I2V: noise and image latents concatenated on C).
            encoder_hidden_states: ``(B, L_text, text_embed_dim)`` T5 states.
            identity_tokens: ``(B or 1, N_id, identity_dim)``; keys/values are computed here (training).
            identity_cache: precomputed keys/values from :meth:`prepare_identity` (inference); takes precedence
                over ``identity_tokens`` being absent. Give at most one of the two.
        """
        if identity_tokens is not None and identity_cache is not None:
            raise ValueError("give identity_tokens or identity_cache, not both")
        if identity_tokens is not None:
            identity_cache = self.prepare_identity(identity_tokens)
        if identity_cache is not None and len(identity_cache) != self.num_identity_layers:
            raise ValueError(f"identity cache has {len(identity_cache)} layers, model has {self.num_identity_layers}")

        batch_size, num_frames, _, height, width = hidden_states.shape
        p = self.config.patch_size
        p_t = self.config.patch_size_t
        grid = ((num_frames + p_t - 1) // p_t if p_t else num_frames, height // p, width // p)

        # 1. Time embedding (as CogVideoX)
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            ofs_emb = self.ofs_proj(ofs).to(dtype=hidden_states.dtype)
            emb = emb + self.ofs_embedding(ofs_emb)

        # 2. Patch embedding: text tokens first, then video tokens in (frame, row, column) order
        hidden_states = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        text_seq_length = encoder_hidden_states.shape[1]
        encoder_hidden_states = hidden_states[:, :text_seq_length]
        hidden_states = hidden_states[:, text_seq_length:]  # (B, F'·H'·W', D)

        # 3. Transformer blocks, each followed (every `interval` blocks) by the identity attention
        interval = self.config.identity_interval
        for i, block in enumerate(self.transformer_blocks):
            identity = None
            if identity_cache is not None and i % interval == 0:
                j = i // interval
                identity = (self.identity_attention[j], identity_cache.kv[j], grid)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states, encoder_hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, emb, image_rotary_emb, attention_kwargs, identity
                )
            else:
                hidden_states, encoder_hidden_states = block(
                    hidden_states=hidden_states,
                    encoder_hidden_states=encoder_hidden_states,
                    temb=emb,
                    image_rotary_emb=image_rotary_emb,
                    attention_kwargs=attention_kwargs,
                    identity=identity,
                )

        hidden_states = self.norm_final(hidden_states)

        # 4. Final block
        hidden_states = self.norm_out(hidden_states, temb=emb)
        hidden_states = self.proj_out(hidden_states)

        # 5. Unpatchify
        if p_t is None:
            output = hidden_states.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
            output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)  # (B, F, C, H, W)
        else:
            output = hidden_states.reshape(batch_size, grid[0], height // p, width // p, -1, p_t, p, p)
            output = output.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)
