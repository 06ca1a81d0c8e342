"""The identity encoder's fusion (FantasyID Sec. 3.4): the pre-norm transformer over ``[vertex tokens; face
tokens]`` and the residual 1-D convolutions (ResConv1D) that lift ``vertex_dim`` to ``identity_dim``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn


__all__ = ["Conv1dNormMish", "FusionAttention", "FusionBlock", "FusionTransformer", "ResConv1D", "ResidualBlock1D"]


class FusionAttention(nn.Module):
    """Multi-head self-attention with a fused bias-free ``to_qkv`` (q, k, v, each heads-major) and a biased
    ``to_out``."""

    def __init__(self, dim: int, num_heads: int, head_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.to_qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=False)
        self.to_out = nn.Linear(num_heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.to_qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        out = F.scaled_dot_product_attention(query, key, value)  # scale head_dim**-0.5
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, -1))


class FusionBlock(nn.Module):
    """Pre-norm transformer layer: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))`` (GELU MLP)."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = FusionAttention(dim, num_heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden_features=mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FusionTransformer(nn.Module):
    """The fusion transformer (Sec. 3.4): ``num_layers`` pre-norm layers over ``[vertex tokens; face tokens]``."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, head_dim: int, mlp_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(FusionBlock(dim, num_heads, head_dim, mlp_dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


# --------------------------------------------------------------------------------------------------------- ResConv1D
class Conv1dNormMish(nn.Module):
    """``Conv1d → GroupNorm → Mish``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, num_groups: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(num_groups, out_channels)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualBlock1D(nn.Module):
    """``conv_in`` (``kernel_size``, ``stride``) → ``conv_out`` (3, stride 1), plus a convolutional ``shortcut`` with
    the same kernel and stride as ``conv_in``. ``(B, C_in, L)`` → ``(B, C_out, ⌊(L - 1) / stride⌋ + 1)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, num_groups: int):
        super().__init__()
        self.conv_in = Conv1dNormMish(in_channels, out_channels, kernel_size, stride, num_groups)
        self.conv_out = Conv1dNormMish(out_channels, out_channels, 3, 1, num_groups)
        self.shortcut = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv_in(x)) + self.shortcut(x)


class ResConv1D(nn.Module):
    """ResConv1D (Sec. 3.4): residual 1-D convolution blocks over the token axis, ``(B, N, C_in)`` →
    ``(B, N', channels[-1])`` (``N' = N`` when every stride is 1)."""

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        kernel_sizes: Sequence[int],
        strides: Sequence[int],
        num_groups: int,
    ):
        super().__init__()
        widths = [in_channels, *channels]
        self.blocks = nn.ModuleList(
            ResidualBlock1D(a, b, k, s, num_groups)
            for a, b, k, s in zip(widths[:-1], widths[1:], kernel_sizes, strides)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, C, N)
        for block in self.blocks:
            x = block(x)
        return x.transpose(1, 2)  # (B, N', C)

    @staticmethod
    def output_length(length: int, strides: Sequence[int]) -> int:
        for stride in strides:
            length = (length - 1) // stride + 1
        return length

