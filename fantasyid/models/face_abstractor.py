"""The identity encoder's face branch (FantasyID Sec. 3.2): EVA-CLIP hidden states → per-depth MLP mapping →
C-Abstractor (Honeybee: position embedding, RegNet stage, adaptive average pool, RegNet stage, readout MLP) → FFN →
``proj_out`` → face tokens ``(B, pool², face_token_dim)``. How the two variants use it: :mod:`.identity_encoder`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import LayerNorm2d
from timm.models.regnet import RegStage
from torch import nn


__all__ = ["AbstractorLayer", "CAbstractor", "FaceAbstractor", "FeedForward", "MappingMLP"]


class MappingMLP(nn.Sequential):
    """``Linear → LayerNorm → LeakyReLU → Linear → LayerNorm → LeakyReLU → Linear``: one EVA depth's feature mapping
    (and the release's unused id-embedding mapping)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden_dim)
        self.norm_1 = nn.LayerNorm(hidden_dim)
        self.act_1 = nn.LeakyReLU()
        self.linear_2 = nn.Linear(hidden_dim, hidden_dim)
        self.norm_2 = nn.LayerNorm(hidden_dim)
        self.act_2 = nn.LeakyReLU()
        self.linear_3 = nn.Linear(hidden_dim, out_dim)


class CAbstractor(nn.Module):
    """Honeybee's C-Abstractor (Cha et al., CVPR 2024): convolutional resampling that keeps spatial locality.

    ``(B, grid², dim)`` patch tokens (no CLS) → + learned position embedding → ``(B, dim, grid, grid)`` → RegNet stage
    (``dim → hidden_dim``) → adaptive average pool to ``pool × pool`` → RegNet stage (``hidden_dim → hidden_dim``) →
    ``(B, pool², hidden_dim)`` → readout MLP (``Linear, SiLU, Linear …``) → ``(B, pool², dim)``.

    The stages are timm's ``RegStage`` of RegNet bottlenecks: 1×1 conv, depthwise 3×3 conv (group size 1),
    squeeze-excitation of width ``0.25 × block input channels``, 1×1 conv, 1×1 conv shortcut where the width changes;
    LayerNorm2d and SiLU.
    """

    def __init__(self, dim: int, hidden_dim: int, grid_size: int, pool_size: int, stage_depth: int, readout_depth: int):
        super().__init__()
        self.grid_size = grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_size * grid_size, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        stage = {
            "stride": 1,
            "dilation": 1,
            "bottle_ratio": 1.0,  # bottleneck width = output width
            "group_size": 1,  # depthwise 3×3
            "se_ratio": 0.25,  # of the block's input channels
            "act_layer": nn.SiLU,
            "norm_layer": LayerNorm2d,
        }
        self.stage1 = RegStage(stage_depth, dim, hidden_dim, **stage)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.stage2 = RegStage(stage_depth, hidden_dim, hidden_dim, **stage)
        readout: list[nn.Module] = [nn.Linear(hidden_dim, dim)]
        for _ in range(readout_depth - 1):
            readout += [nn.SiLU(), nn.Linear(dim, dim)]
        self.readout = nn.Sequential(*readout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, _, dim = tokens.shape
        x = tokens + self.pos_embed
        x = x.transpose(1, 2).reshape(batch, dim, self.grid_size, self.grid_size)  # (B, dim, grid, grid)
        x = self.stage2(self.pool(self.stage1(x)))  # (B, hidden, pool, pool)
        x = x.flatten(2).transpose(1, 2)  # (B, pool², hidden)
        return self.readout(x)


class FeedForward(nn.Module):
    """``LayerNorm → Linear → GELU → Linear`` without biases (the residual, if any, is the caller's)."""

    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mult, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class AbstractorLayer(nn.Module):
    """A C-Abstractor followed by a feed-forward network."""

    def __init__(self, abstractor: CAbstractor, ffn: FeedForward, ffn_residual: bool):
        super().__init__()
        self.abstractor = abstractor
        self.ffn = ffn
        self.ffn_residual = ffn_residual

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.abstractor(tokens)
        return x + self.ffn(x) if self.ffn_residual else self.ffn(x)


class FaceAbstractor(nn.Module):
    """EVA-CLIP hidden states → face tokens ``(B, pool², output_dim)``.

    ``released``: ``num_layers`` C-Abstractor+FFN layers, ``num_layers / num_features`` per EVA depth, of which only
    the last layer (applied to the last depth, after the position embeddings the other layers of its group leaked
    into its input) reaches the output; FFN without residual. The never-used ``latent_queries`` and
    ``id_embedding_mapping`` are kept so that the released checkpoint loads completely.

    ``paper``: one layer per EVA depth, FFN with residual, the per-depth tokens averaged.

    Both end with a product with ``proj_out`` ``(dim, output_dim)``.
    """

    def __init__(
        self,
        variant: str,
        feature_dim: int,
        num_features: int,
        grid_size: int,
        dim: int,
        hidden_dim: int,
        pool_size: int,
        stage_depth: int,
        readout_depth: int,
        ffn_mult: int,
        num_layers: int,
        output_dim: int,
        num_latent_queries: int,
        id_embedding_dim: int,
        num_id_embedding_tokens: int,
    ):
        super().__init__()
        self.variant = variant
        self.num_features = num_features
        self.layers_per_feature = num_layers // num_features
        self.feature_mappings = nn.ModuleList(MappingMLP(feature_dim, feature_dim, dim) for _ in range(num_features))
        self.layers = nn.ModuleList(
            AbstractorLayer(
                CAbstractor(dim, hidden_dim, grid_size, pool_size, stage_depth, readout_depth),
                FeedForward(dim, ffn_mult),
                ffn_residual=variant == "paper",
            )
            for _ in range(num_layers)
        )
        self.proj_out = nn.Parameter(torch.randn(dim, output_dim) * dim**-0.5)
        if variant == "released":
            self.latent_queries = nn.Parameter(torch.randn(1, num_latent_queries, dim) * dim**-0.5)
            self.id_embedding_mapping = MappingMLP(id_embedding_dim, feature_dim, dim * num_id_embedding_tokens)

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.variant == "released":
            # Only the last EVA depth and the last layer are alive; the C-Abstractors of its group added their
            # position embeddings in place to the shared context, so the last layer sees their sum (added in order)
            # before its own.
            context = self.feature_mappings[-1](hidden_states[-1][:, 1:])  # (B, grid², dim), CLS dropped
            group = self.layers[len(self.layers) - self.layers_per_feature :]
            for layer in group[:-1]:
                context = context + layer.abstractor.pos_embed
            tokens = group[-1](context)  # (B, pool², dim)
        else:
            per_depth = [
                layer(mapping(hidden[:, 1:]))
                for mapping, layer, hidden in zip(self.feature_mappings, self.layers, hidden_states)
            ]
            tokens = torch.stack(per_depth).mean(0)  # (B, pool², dim)
        return tokens @ self.proj_out  # (B, pool², output_dim)

