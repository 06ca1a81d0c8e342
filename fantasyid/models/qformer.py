"""The Q-Former face abstractor of the paper's "w/o FA" ablation (Table 3): learned queries cross-attend to the
EVA-CLIP features (IP-Adapter-Plus's Perceiver resampler), giving the C-Abstractor's number of face tokens of its
width. :class:`~fantasyid.models.identity_encoder.FantasyIDIdentityEncoder` builds it for
``face_abstractor_type="qformer"``, so a trained ablation saves and loads like any identity encoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PerceiverLayer", "QFormerAbstractor"]


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
