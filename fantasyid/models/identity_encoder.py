"""FantasyID identity encoder: a reference face (EVA-CLIP features + FLAME vertices) → identity tokens.

The encoder runs once per video; the transformer turns its tokens into per-layer keys and values
(:meth:`~fantasyid.models.transformer_fantasyid.FantasyIDTransformer3DModel.prepare_identity`). Three stages:

1. **Face abstractor** (FantasyID Sec. 3.2): EVA-CLIP hidden states → per-depth MLP mapping → C-Abstractor
   (Honeybee: position embedding, RegNet stage, adaptive average pool, RegNet stage, readout MLP) → FFN →
   ``proj_out`` → face tokens ``(B, pool², face_token_dim)``.
2. **Vertex branch and fusion transformer** (Sec. 3.3-3.4): vertex tokens on the coarsest mesh level plus a
   sinusoidal code of each coarse vertex's depth, concatenated with the face tokens mapped to ``vertex_dim``
   (``[vertex tokens; face tokens]``), through pre-norm transformer layers.
3. **ResConv1D** (Sec. 3.4): residual 1-D convolutions lift ``vertex_dim`` to ``identity_dim``.

Two variants share these classes (``variant`` in the config):

* ``"released"`` reproduces the authors' checkpoint (github Fantasy-AMAP/fantasy-id @ c4290929), quirks included.
  Its face abstractor has ten C-Abstractor+FFN layers, two per EVA depth, but a loop bug leaves only the last one
  alive: the output depends on the last EVA hidden state (CLS dropped) through ``feature_mappings[-1]``, the
  position embedding of every other layer of the last group (each C-Abstractor added its own in place to the
  context it shared with them), the whole last layer (its FFN has no residual) and ``proj_out``. The vertex tokens
  are 314 learned queries plus the depth code of the 314 pooled vertices: the input vertices reach the output
  only through the z coordinate of those. After fusion the 314 vertex tokens are decoded to all 5023 vertices
  (SpiralNet++ decoder) and reduced by strided ResConv1D blocks to 79 tokens; the identity tokens are
  ``[36 face tokens; 79 vertex tokens]`` = 115 × 2048. Every released parameter exists here so the checkpoint
  loads completely, but only what the release computes is computed (:meth:`FantasyIDIdentityEncoder.
  dead_parameter_names` lists the rest).
* ``"paper"`` follows the paper's text. One C-Abstractor + FFN (with residual) per EVA depth; the per-depth face
  tokens are averaged. A SpiralNet++ encoder (spiral convolution, ELU, down-pooling per level) turns the input
  vertices into ``vertex_dim`` features on the coarsest level, to which the depth code is added. ResConv1D blocks
  of stride 1 keep the 314 vertex-position tokens: the identity tokens are ``V_F`` = 314 × ``identity_dim``.

The mesh hierarchy (spiral neighbourhoods, down-sampling selections, barycentric up-sampling weights) is data, not
weights: :meth:`FantasyIDIdentityEncoder.load_mesh` fills persistent buffers from a
:class:`~fantasyid.models.mesh.MeshHierarchy`, after which ``save_pretrained``/``from_pretrained`` carry it along.

The stages live in their own modules (:mod:`.face_abstractor`, :mod:`.vertex_branch`, :mod:`.fusion`); this one
assembles them, holds the config and the mesh buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from timm.layers import Mlp
from torch import nn

from ..errors import ConfigError
from .face_abstractor import CAbstractor, FaceAbstractor
from .fusion import FusionTransformer, ResConv1D
from .vertex_branch import UP_SAMPLING_NNZ, SpiralConv, SpiralDecoder, SpiralEncoder, depth_encoding, padded_rows

if TYPE_CHECKING:
    from .mesh import MeshHierarchy

__all__ = [
    "CAbstractor",
    "FaceAbstractor",
    "FantasyIDIdentityEncoder",
    "FusionTransformer",
    "ResConv1D",
    "SpiralConv",
    "SpiralDecoder",
    "SpiralEncoder",
    "depth_encoding",
]

VARIANTS = ("released", "paper")
FACE_ABSTRACTORS = ("c-abstractor", "qformer")


def qformer_abstractor(config) -> nn.Module:
    """The "w/o FA" face abstractor for an encoder ``config``: as many face tokens of the same width."""
    from .qformer import QFormerAbstractor

    return QFormerAbstractor(feature_dim=config.clip_hidden_dim, num_features=config.num_clip_layers,
                             dim=config.abstractor_dim, num_tokens=config.abstractor_pool_size**2,
                             output_dim=config.face_token_dim)


def face_to_identity(config, vertex_tokens: bool) -> nn.Module | None:
    """"w/o FV": the linear map from face tokens to the identity width (``None`` with vertex tokens, or when the
    widths already agree)."""
    if vertex_tokens or config.face_token_dim == config.identity_dim:
        return None
    return nn.Linear(config.face_token_dim, config.identity_dim)


class FantasyIDIdentityEncoder(ModelMixin, ConfigMixin):
    """Reference face → identity tokens ``(B, N_id, identity_dim)``; see the module docstring for the two variants.

    Args:
        variant: ``"released"`` (the authors' checkpoint, quirks included; N_id = pool² + reduced vertex count =
            36 + 79) or ``"paper"`` (the paper's text; N_id = number of coarsest-level vertices = 314).
        clip_hidden_dim: width of the EVA-CLIP hidden states (1024 for EVA02-CLIP-L-14-336).
        num_clip_layers: number of EVA-CLIP hidden states consumed (5: the inputs of blocks 4, 8, 12, 16, 20).
        clip_grid_size: side of EVA-CLIP's patch grid (24: 336 px / 14); hidden states have ``grid² + 1`` tokens,
            CLS first.
        abstractor_dim: width of the face abstractor (mapping output, C-Abstractor input/output, FFN).
        abstractor_hidden_dim: width of the C-Abstractor's RegNet stages.
        abstractor_pool_size: side of the C-Abstractor's pooled grid: ``pool²`` face tokens (6 → 36).
        abstractor_stage_depth: RegNet bottleneck blocks per C-Abstractor stage.
        abstractor_readout_depth: linear layers of the C-Abstractor's readout MLP.
        abstractor_ffn_mult: hidden width of the abstractor FFN as a multiple of ``abstractor_dim``.
        face_abstractor_depth: number of C-Abstractor+FFN layers, a multiple of ``num_clip_layers`` (10 released;
            the paper variant needs exactly one per EVA depth).
        face_token_dim: width of the face tokens (``proj_out``); the released variant hands them to the transformer,
            so there it must equal ``identity_dim``.
        num_latent_queries: released only: size of the release's never-used latent query parameter (144).
        id_embedding_dim: released only: input width of the release's never-used id-embedding mapping (1280 =
            ArcFace 512 + CLIP 768).
        num_id_embedding_tokens: released only: tokens produced by that mapping (5).
        vertex_dim: the vertex feature width C′ of the fusion transformer (128).
        face_to_vertex_dims: output widths of the MLPs (hidden width = input width, GELU) that map the face tokens to
            ``vertex_dim``; the last must be ``vertex_dim`` (1024, 512, 256, 128).
        fusion_num_layers: fusion transformer layers (6).
        fusion_num_heads: attention heads per fusion layer (4).
        fusion_head_dim: width of each head (32).
        fusion_mlp_dim: hidden width of each fusion layer's MLP (256).
        mesh_num_vertices: vertices per mesh level, finest first (5023, 1256, 314): ``len - 1`` down-samplings.
        spiral_length: spiral neighbourhood length of the spiral convolutions (9).
        vertex_encoder_channels: paper only: output widths of the SpiralNet++ encoder levels, one per
            down-sampling, the last being ``vertex_dim`` (e.g. 64, 128); ``None`` for the released variant.
        depth_temperature: temperature of the sinusoidal depth code (10000).
        reducer_channels: output widths of the ResConv1D blocks; the last must be ``identity_dim``.
        reducer_kernel_sizes: kernel of each block's first convolution and shortcut (padding ``kernel // 2``).
        reducer_strides: stride of each block (released: 4, 4, 2, 2 → 5023 → 1256 → 314 → 157 → 79; paper: 1).
        reducer_num_groups: GroupNorm groups in the ResConv1D blocks (8).
        identity_dim: width of the identity tokens handed to the transformer (2048).
        face_abstractor_type: ``"c-abstractor"`` (both variants) or ``"qformer"``, the paper's "w/o FA" ablation
            (:mod:`.qformer`).
        vertex_tokens: ``False`` for the paper's "w/o FV" ablation: the identity tokens are the face tokens alone
            (through ``face_to_identity`` when ``face_token_dim`` differs from ``identity_dim``).

    Call :meth:`load_mesh` once after construction (or load a saved model, which carries the mesh).
    """

    @register_to_config
    def __init__(
        self,
        variant: str = "released",
        clip_hidden_dim: int = 1024,
        num_clip_layers: int = 5,
        clip_grid_size: int = 24,
        abstractor_dim: int = 1024,
        abstractor_hidden_dim: int = 256,
        abstractor_pool_size: int = 6,
        abstractor_stage_depth: int = 3,
        abstractor_readout_depth: int = 2,
        abstractor_ffn_mult: int = 4,
        face_abstractor_depth: int = 10,
        face_token_dim: int = 2048,
        num_latent_queries: int = 144,
        id_embedding_dim: int = 1280,
        num_id_embedding_tokens: int = 5,
        vertex_dim: int = 128,
        face_to_vertex_dims: Sequence[int] = (1024, 512, 256, 128),
        fusion_num_layers: int = 6,
        fusion_num_heads: int = 4,
        fusion_head_dim: int = 32,
        fusion_mlp_dim: int = 256,
        mesh_num_vertices: Sequence[int] = (5023, 1256, 314),
        spiral_length: int = 9,
        vertex_encoder_channels: Sequence[int] | None = None,
        depth_temperature: float = 10000.0,
        reducer_channels: Sequence[int] = (256, 512, 1024, 2048),
        reducer_kernel_sizes: Sequence[int] = (5, 5, 3, 3),
        reducer_strides: Sequence[int] = (4, 4, 2, 2),
        reducer_num_groups: int = 8,
        identity_dim: int = 2048,
        face_abstractor_type: str = "c-abstractor",
        vertex_tokens: bool = True,
    ):
        super().__init__()
        self._check_config()
        released = variant == "released"
        num_levels = len(mesh_num_vertices) - 1

        # 1. Face abstractor (the C-Abstractor; a Q-Former for the "w/o FA" ablation)
        if face_abstractor_type == "qformer":
            self.face_abstractor = qformer_abstractor(self.config)
        else:
            self.face_abstractor = FaceAbstractor(
                variant=variant,
                feature_dim=clip_hidden_dim,
                num_features=num_clip_layers,
                grid_size=clip_grid_size,
                dim=abstractor_dim,
                hidden_dim=abstractor_hidden_dim,
                pool_size=abstractor_pool_size,
                stage_depth=abstractor_stage_depth,
                readout_depth=abstractor_readout_depth,
                ffn_mult=abstractor_ffn_mult,
                num_layers=face_abstractor_depth,
                output_dim=face_token_dim,
                num_latent_queries=num_latent_queries,
                id_embedding_dim=id_embedding_dim,
                num_id_embedding_tokens=num_id_embedding_tokens,
            )

        # 2. Vertex tokens: learned queries (released) or a SpiralNet++ encoder of the input vertices (paper)
        if released:
            self.vertex_queries = nn.Parameter(torch.zeros(1, mesh_num_vertices[-1], vertex_dim))
        else:
            self.vertex_encoder = SpiralEncoder(3, vertex_encoder_channels, spiral_length)

        # 3. Fusion transformer over [vertex tokens; face tokens mapped to vertex_dim]
        widths = [face_token_dim, *face_to_vertex_dims]
        self.face_to_vertex = nn.Sequential(*(Mlp(a, out_features=b) for a, b in pairwise(widths)))
        self.fusion = FusionTransformer(
            vertex_dim, fusion_num_layers, fusion_num_heads, fusion_head_dim, fusion_mlp_dim
        )

        # 4. Released only: decode the fused coarse vertex tokens back to the finest mesh level
        if released:
            self.vertex_decoder = SpiralDecoder(vertex_dim, num_levels, spiral_length)

        # 5. ResConv1D: vertex_dim → identity_dim
        self.reducer = ResConv1D(
            vertex_dim, reducer_channels, reducer_kernel_sizes, reducer_strides, reducer_num_groups
        )

        # 6. Mesh hierarchy buffers (filled by load_mesh); persistent so that save/from_pretrained carry them
        for level in range(num_levels):
            fine, coarse = mesh_num_vertices[level], mesh_num_vertices[level + 1]
            self.register_buffer(f"mesh_spirals_{level}", torch.zeros(fine, spiral_length, dtype=torch.long))
            self.register_buffer(f"mesh_down_index_{level}", torch.zeros(coarse, dtype=torch.long))
            if released:
                self.register_buffer(f"mesh_up_index_{level}", torch.zeros(fine, UP_SAMPLING_NNZ, dtype=torch.long))
                self.register_buffer(f"mesh_up_weight_{level}", torch.zeros(fine, UP_SAMPLING_NNZ))
        self.register_buffer("mesh_loaded", torch.tensor(False))
        # 7. "w/o FV": the face tokens alone, lifted to identity_dim when narrower
        self.face_to_identity = face_to_identity(self.config, vertex_tokens)

    # ------------------------------------------------------------------------------------------ configuration
    def _check_config(self) -> None:
        c = self.config
        if c.variant not in VARIANTS:
            raise ConfigError(f"unknown identity encoder variant {c.variant!r}", hint="use 'released' or 'paper'")
        if c.face_abstractor_type not in FACE_ABSTRACTORS:
            raise ConfigError(f"unknown face_abstractor_type {c.face_abstractor_type!r}",
                              hint=f"use one of {', '.join(FACE_ABSTRACTORS)}")
        if len(c.mesh_num_vertices) < 2:
            raise ConfigError(f"mesh_num_vertices needs at least two levels, got {list(c.mesh_num_vertices)}")
        if c.face_to_vertex_dims[-1] != c.vertex_dim:
            raise ConfigError(
                f"face_to_vertex_dims must end with vertex_dim={c.vertex_dim}, got {list(c.face_to_vertex_dims)}"
            )
        if c.reducer_channels[-1] != c.identity_dim:
            raise ConfigError(
                f"reducer_channels must end with identity_dim={c.identity_dim}, got {list(c.reducer_channels)}"
            )
        if not len(c.reducer_channels) == len(c.reducer_kernel_sizes) == len(c.reducer_strides):
            raise ConfigError("reducer_channels, reducer_kernel_sizes and reducer_strides must have equal lengths")
        if c.face_abstractor_depth < c.num_clip_layers or c.face_abstractor_depth % c.num_clip_layers:
            raise ConfigError(
                f"face_abstractor_depth={c.face_abstractor_depth} must be a positive multiple of "
                f"num_clip_layers={c.num_clip_layers}"
            )
        if c.variant == "released":
            if c.face_token_dim != c.identity_dim:
                raise ConfigError(
                    f"the released variant concatenates face and vertex tokens: face_token_dim={c.face_token_dim} "
                    f"must equal identity_dim={c.identity_dim}"
                )
            if c.vertex_encoder_channels is not None:
                raise ConfigError("vertex_encoder_channels is a paper-variant key; the released variant has none")
        else:
            if c.face_abstractor_depth != c.num_clip_layers:
                raise ConfigError(
                    f"the paper variant has one C-Abstractor per EVA depth: face_abstractor_depth must be "
                    f"num_clip_layers={c.num_clip_layers}, got {c.face_abstractor_depth}"
                )
            channels = c.vertex_encoder_channels
            if channels is None or len(channels) != len(c.mesh_num_vertices) - 1 or channels[-1] != c.vertex_dim:
                raise ConfigError(
                    f"vertex_encoder_channels needs one width per down-sampling "
                    f"({len(c.mesh_num_vertices) - 1}), the last being vertex_dim={c.vertex_dim}; got {channels}"
                )
            if any(stride != 1 for stride in c.reducer_strides):
                raise ConfigError(
                    f"the paper variant keeps every vertex token: reducer_strides must be 1, got "
                    f"{list(c.reducer_strides)}"
                )

    @property
    def num_levels(self) -> int:
        """Number of mesh down-samplings."""
        return len(self.config.mesh_num_vertices) - 1

    @property
    def num_face_tokens(self) -> int:
        return self.config.abstractor_pool_size**2

    @property
    def num_identity_tokens(self) -> int:
        """N_id: ``pool² + reduced vertex count`` (released, 115) or the coarsest vertex count (paper, 314); the
        face tokens alone (36) with ``vertex_tokens=False``."""
        c = self.config
        if not c.vertex_tokens:
            return self.num_face_tokens
        if c.variant == "released":
            return self.num_face_tokens + ResConv1D.output_length(c.mesh_num_vertices[0], c.reducer_strides)
        return c.mesh_num_vertices[-1]

    # --------------------------------------------------------------------------------------------- mesh data
    def mesh_buffer_names(self) -> list[str]:
        """Names of the mesh buffers in :meth:`state_dict` (filled by :meth:`load_mesh`, not by checkpoints of the
        authors)."""
        return [name for name, _ in self.named_buffers() if name.startswith("mesh_")]

    def _mesh(self, kind: str) -> list[torch.Tensor]:
        return [getattr(self, f"mesh_{kind}_{level}") for level in range(self.num_levels)]

    @torch.no_grad()
    def load_mesh(self, hierarchy: MeshHierarchy) -> None:
        """Fill the mesh buffers from a mesh hierarchy (levels finest first) whose vertex counts match the config.

        Computes the spiral neighbourhoods of levels ``0 … L-1`` and stores the down-sampling selections (one vertex
        per coarse vertex) and, for the released variant, the barycentric up-sampling weights.
        """
        c = self.config
        sizes = hierarchy.num_vertices()
        if sizes[: len(c.mesh_num_vertices)] != list(c.mesh_num_vertices):
            raise ConfigError(
                f"mesh hierarchy has levels of {sizes} vertices; this encoder needs {list(c.mesh_num_vertices)}",
                hint="use the mesh the checkpoint was trained with (the release: assets/transform.pkl)",
            )
        device = self.mesh_loaded.device
        for level in range(self.num_levels):
            spirals = hierarchy.spirals(level, seq_length=c.spiral_length)  # (V_level, S)
            getattr(self, f"mesh_spirals_{level}").copy_(torch.as_tensor(spirals, device=device))
            down = hierarchy.coarse_indices(level)  # (V_{level+1},)
            getattr(self, f"mesh_down_index_{level}").copy_(torch.as_tensor(down, device=device))
            if c.variant == "released":
                index, weight = padded_rows(hierarchy.up[level], UP_SAMPLING_NNZ, f"up[{level}]")
                getattr(self, f"mesh_up_index_{level}").copy_(torch.as_tensor(index, device=device))
                getattr(self, f"mesh_up_weight_{level}").copy_(torch.as_tensor(weight, device=device))
        self.mesh_loaded.fill_(True)
        self.mesh_hierarchy = hierarchy  # kept so that a checkpoint can save it (fantasyid.pipelines.checkpoint)

    def _require_mesh(self) -> None:
        if self.mesh_loaded.is_meta:  # shape-only runs (parameter and FLOP counts on the meta device)
            return
        if not bool(self.mesh_loaded):
            raise ConfigError(
                "the identity encoder has no mesh hierarchy",
                hint="call encoder.load_mesh(load_mesh_hierarchy('transform.pkl')) once after building it",
            )

    def pool_vertices(self, vertices: torch.Tensor) -> torch.Tensor:
        """``(B, V_0, C)`` → ``(B, V_L, C)``: follow the down-sampling selections to the coarsest level."""
        self._require_mesh()
        for index in self._mesh("down_index"):
            vertices = vertices[:, index]
        return vertices

    # ---------------------------------------------------------------------------------------------- forward
    def encode_face(self, clip_hidden_states: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """EVA-CLIP hidden states (``num_clip_layers`` × ``(B, grid² + 1, clip_hidden_dim)``, CLS first; or one
        tensor stacked on dim 0) → face tokens ``(B, pool², face_token_dim)``."""
        c = self.config
        if len(clip_hidden_states) != c.num_clip_layers:
            raise ValueError(f"expected {c.num_clip_layers} EVA-CLIP hidden states, got {len(clip_hidden_states)}")
        expected = (c.clip_grid_size**2 + 1, c.clip_hidden_dim)
        for hidden in clip_hidden_states:
            if hidden.ndim != 3 or tuple(hidden.shape[1:]) != expected:
                raise ValueError(
                    f"EVA-CLIP hidden states must be (B, {expected[0]}, {expected[1]}), got {tuple(hidden.shape)}"
                )
        dtype = next(self.face_abstractor.parameters()).dtype  # bf16 on a GPU for the release (release_precision)
        return self.face_abstractor([hidden.to(dtype) for hidden in clip_hidden_states])

    def encode_vertices(self, vertices: torch.Tensor, face_tokens: torch.Tensor) -> torch.Tensor:
        """FLAME vertices ``(B, V_0, 3)`` and face tokens → fused vertex features.

        Released: ``(B, V_0, vertex_dim)`` (fused coarse tokens decoded to the finest level); paper:
        ``(B, V_L, vertex_dim)`` (the fused coarse vertex tokens).
        """
        c = self.config
        if vertices.ndim != 3 or tuple(vertices.shape[1:]) != (c.mesh_num_vertices[0], 3):
            raise ValueError(f"vertices must be (B, {c.mesh_num_vertices[0]}, 3), got {tuple(vertices.shape)}")
        self._require_mesh()
        batch, num_coarse = vertices.shape[0], c.mesh_num_vertices[-1]
        vertices = vertices.to(next(self.fusion.parameters()).dtype)  # the vertex branch stays fp32

        # 1. Vertex tokens on the coarsest level, plus the sinusoidal code of each coarse vertex's depth
        coarse = self.pool_vertices(vertices)  # (B, V_L, 3)
        depth_code = depth_encoding(0.5 * coarse[..., 2] + 0.5, c.vertex_dim, c.depth_temperature)  # (B, V_L, C′)
        if c.variant == "released":
            vertex_tokens = self.vertex_queries.expand(batch, -1, -1) + depth_code
        else:
            features = self.vertex_encoder(vertices, self._mesh("spirals"), self._mesh("down_index"))
            vertex_tokens = features + depth_code  # X_V = X′_V + E_dep

        # 2. Fusion transformer over [vertex tokens; face tokens mapped to C′]
        face = self.face_to_vertex(face_tokens.to(vertex_tokens.dtype))  # (B, pool², C′)
        fused = self.fusion(torch.cat([vertex_tokens, face], dim=1))[:, :num_coarse]  # (B, V_L, C′)
        if c.variant == "paper":
            return fused

        # 3. Released: decode to the finest level
        return self.vertex_decoder(fused, self._mesh("spirals"), self._mesh("up_index"), self._mesh("up_weight"))

    def reduce_vertices(self, vertex_features: torch.Tensor) -> torch.Tensor:
        """ResConv1D: ``(B, N, vertex_dim)`` → vertex tokens ``(B, N', identity_dim)``."""
        return self.reducer(vertex_features)

    def forward(
        self,
        clip_hidden_states: Sequence[torch.Tensor] | torch.Tensor,
        vertices: torch.Tensor,
        id_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Identity tokens ``(B, N_id, identity_dim)``; compute once per video.

        Args:
            clip_hidden_states: the ``num_clip_layers`` EVA-CLIP hidden states ``(B, grid² + 1, clip_hidden_dim)``
                (CLS first), as a sequence or stacked on dim 0.
            vertices: FLAME vertices ``(B, V_0, 3)`` (metres).
            id_embedding: ArcFace + CLIP embedding ``(B, id_embedding_dim)`` as the release's pipeline passes it.
                Neither variant depends on it (in the release it only feeds a mapping whose output is discarded);
                accepted for interface parity and shape-checked.

        Released: ``[face tokens; vertex tokens]`` = ``(B, 36 + 79, 2048)``; paper: ``V_F`` = ``(B, 314, 2048)``.
        """
        if id_embedding is not None and tuple(id_embedding.shape[1:]) != (self.config.id_embedding_dim,):
            raise ValueError(
                f"id_embedding must be (B, {self.config.id_embedding_dim}), got {tuple(id_embedding.shape)}"
            )
        face_tokens = self.encode_face(clip_hidden_states)  # (B, pool², face_token_dim)
        if not self.config.vertex_tokens:  # "w/o FV"
            return face_tokens if self.face_to_identity is None else self.face_to_identity(face_tokens)
        vertex_tokens = self.reduce_vertices(self.encode_vertices(vertices, face_tokens))  # (B, N', identity_dim)
        if self.config.variant == "released":
            return torch.cat([face_tokens, vertex_tokens.to(face_tokens.dtype)], dim=1)
        return vertex_tokens

    # ------------------------------------------------------------------------------------------------ training
    def dead_parameter_names(self) -> list[str]:
        """Parameters that cannot influence the output: in the released variant, every face-abstractor parameter
        except the last EVA depth's mapping, the last layer, the position embeddings leaked into it and
        ``proj_out``; none in the paper variant. Useful to leave them out of an optimiser."""
        if self.config.variant != "released":
            return []
        fa = self.face_abstractor
        last = len(fa.layers) - 1
        live_prefixes = [f"face_abstractor.feature_mappings.{fa.num_features - 1}.", f"face_abstractor.layers.{last}."]
        live = {"face_abstractor.proj_out"}
        live |= {
            f"face_abstractor.layers.{i}.abstractor.pos_embed" for i in range(last + 1 - fa.layers_per_feature, last)
        }
        return [
            name
            for name, _ in self.named_parameters()
            if name.startswith("face_abstractor.") and name not in live and not name.startswith(tuple(live_prefixes))
        ]

