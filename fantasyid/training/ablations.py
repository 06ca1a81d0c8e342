"""Table 3's module ablations as swaps on a built identity branch (the data ablation, "w/o MFC", is ``data.views``).

* **w/o FA** — :class:`QFormerAbstractor` replaces the C-Abstractor face abstractor: learned queries cross-attend
  to the EVA-CLIP features (IP-Adapter-Plus's Perceiver resampler, 4 layers), giving the same number of face tokens
  of the same width.
* **w/o FV** — :class:`IdentityBranch` with ``vertex_tokens=False``: the face tokens alone are ``V_F`` (projected to
  the identity width when the face tokens are narrower).
* **w/o LACSI** — :func:`drop_layer_refiner` removes the paper's ``F_l`` after each injection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["IdentityBranch", "QFormerAbstractor", "drop_layer_refiner", "use_qformer"]


class PerceiverLayer(nn.Module):
    """Queries attend to ``[features; queries]`` (pre-norm), then a GELU MLP; both residual."""

    def __init__(self, dim: int, num_heads: int, mlp_mult: int = 4):
        super().__init__()
        self.norm_features = nn.LayerNorm(dim)
        self.norm_queries = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mlp_mult), nn.GELU(),
                                 nn.Linear(dim * mlp_mult, dim))

    def forward(self, queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        q = self.norm_queries(queries)
        context = torch.cat([self.norm_features(features), q], dim=1)  # (B, N_f + N_q, D)
        queries = queries + self.attention(q, context, context, need_weights=False)[0]
        return queries + self.mlp(queries)


class QFormerAbstractor(nn.Module):
    """Drop-in for :class:`~fantasyid.models.identity_encoder.FaceAbstractor`: EVA-CLIP hidden states (CLS first)
    → ``(B, num_tokens, output_dim)`` through learned queries and Perceiver layers."""

    def __init__(self, feature_dim: int, num_features: int, dim: int, num_tokens: int, output_dim: int,
                 num_layers: int = 4, num_heads: int = 8):
        super().__init__()
        heads = max(1, min(num_heads, dim // 8))
        while dim % heads:
            heads -= 1
        self.num_features = num_features
        self.proj_in = nn.Linear(feature_dim, dim)
        self.depth_embed = nn.Parameter(torch.zeros(num_features, 1, dim))
        self.queries = nn.Parameter(torch.randn(1, num_tokens, dim) * dim**-0.5)
        self.layers = nn.ModuleList(PerceiverLayer(dim, heads) for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(dim)
        self.proj_out = nn.Linear(dim, output_dim)

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        # every consumed EVA depth, CLS dropped, tagged with a learned depth embedding, as one token sequence
        features = torch.cat(
            [self.proj_in(hidden[:, 1:]) + self.depth_embed[i] for i, hidden in enumerate(hidden_states)], dim=1
        )  # (B, depths·grid², dim)
        queries = self.queries.expand(features.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, features)
        return self.proj_out(self.norm_out(queries))  # (B, num_tokens, output_dim)


def use_qformer(identity_encoder) -> None:
    """w/o FA: replace the encoder's face abstractor by a :class:`QFormerAbstractor` of the same output shape."""
    c = identity_encoder.config
    identity_encoder.face_abstractor = QFormerAbstractor(
        feature_dim=c.clip_hidden_dim, num_features=c.num_clip_layers, dim=c.abstractor_dim,
        num_tokens=c.abstractor_pool_size**2, output_dim=c.face_token_dim,
    )


def drop_layer_refiner(transformer) -> None:
    """w/o LACSI: no ``F_l`` after the identity attention (the release's injection)."""
    for layer in transformer.identity_attention:
        layer.refiner = None
    transformer.register_to_config(identity_refiner=None)


class IdentityBranch(nn.Module):
    """Identity tokens with gradients: EVA-CLIP hidden states + vertices → ``(B, N_id, identity_dim)``.

    ``vertex_tokens=False`` ("w/o FV") uses the face tokens alone (through ``face_to_identity`` when they are
    narrower than the identity width); the encoder's vertex modules are then unused.
    """

    def __init__(self, identity_encoder, vertex_tokens: bool = True):
        super().__init__()
        self.encoder = identity_encoder
        self.vertex_tokens = vertex_tokens
        c = identity_encoder.config
        self.face_to_identity = (
            nn.Linear(c.face_token_dim, c.identity_dim)
            if not vertex_tokens and c.face_token_dim != c.identity_dim else None
        )

    def vertex_module_names(self) -> list[str]:
        """Encoder parameters that only the vertex path uses (unused, hence frozen, in "w/o FV")."""
        prefixes = ("vertex_queries", "vertex_encoder.", "face_to_vertex.", "fusion.", "vertex_decoder.", "reducer.")
        return [name for name, _ in self.encoder.named_parameters() if name.startswith(prefixes)]

    def forward(self, clip_hidden_states: Sequence[torch.Tensor], vertices: torch.Tensor) -> torch.Tensor:
        if self.vertex_tokens:
            return self.encoder(clip_hidden_states, vertices)
        tokens = self.encoder.encode_face(clip_hidden_states)  # (B, pool², face_token_dim)
        return tokens if self.face_to_identity is None else self.face_to_identity(tokens)
