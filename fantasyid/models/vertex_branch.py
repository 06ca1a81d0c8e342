"""The identity encoder's 3D branch (FantasyID Sec. 3.3): the depth code of the coarse vertices, SpiralNet++
spiral convolutions (encoder for the ``paper`` variant, decoder for the ``released`` one) and the packing of the mesh
hierarchy's sparse up-sampling matrices into dense buffers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = ["UP_SAMPLING_NNZ", "SpiralConv", "SpiralDecoder", "SpiralEncoder", "SpiralUpBlock", "depth_encoding",
           "padded_rows", "spiral_gather", "up_sample"]

# Each fine vertex of an up-sampling matrix is a barycentric combination of the corners of one coarse triangle.
UP_SAMPLING_NNZ = 3


def depth_encoding(depth: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sinusoidal code ``(..., dim)`` of ``depth`` ``(...)`` (DETR-style, one axis): channel ``2k`` is
    ``sin(2π·depth / T^(2k/dim))`` and channel ``2k+1`` the cosine of the same angle."""
    exponent = 2 * (torch.arange(dim, device=depth.device) // 2) / dim
    frequencies = temperature**exponent  # (dim,), pairs of equal values
    angles = (depth * 2 * math.pi).unsqueeze(-1) / frequencies.to(depth.dtype)  # (..., dim)
    return torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1).flatten(-2)


def spiral_gather(x: torch.Tensor, spirals: torch.Tensor) -> torch.Tensor:
    """``(B, V, C)`` features → ``(B, V, S·C)``: each vertex's spiral neighbourhood, neighbour-major."""
    num_vertices, length = spirals.shape
    gathered = x.index_select(1, spirals.reshape(-1))  # (B, V·S, C)
    return gathered.reshape(x.shape[0], num_vertices, length * x.shape[2])


def up_sample(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``(B, V_coarse, C)`` → ``(B, V_fine, C)``: each fine vertex as a weighted sum of ``index.shape[1]`` coarse
    vertices (barycentric up-sampling of COMA/SpiralNet++)."""
    gathered = x[:, index]  # (B, V_fine, k, C)
    return (gathered * weight.to(x.dtype).unsqueeze(-1)).sum(dim=2)


class SpiralConv(nn.Module):
    """SpiralNet++ convolution (Gong et al., ICCVW 2019): a linear layer over the features of each vertex's spiral
    neighbourhood of length ``spiral_length``."""

    def __init__(self, in_channels: int, out_channels: int, spiral_length: int):
        super().__init__()
        self.linear = nn.Linear(in_channels * spiral_length, out_channels)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, spirals: torch.Tensor) -> torch.Tensor:
        return self.linear(spiral_gather(x, spirals))


class SpiralUpBlock(nn.Module):
    """Up-sample to the next finer level, spiral convolution, ELU."""

    def __init__(self, channels: int, spiral_length: int):
        super().__init__()
        self.conv = SpiralConv(channels, channels, spiral_length)

    def forward(self, x: torch.Tensor, spirals: torch.Tensor, up_index: torch.Tensor, up_weight: torch.Tensor):
        return F.elu(self.conv(up_sample(x, up_index, up_weight), spirals))


class SpiralDecoder(nn.Module):
    """The release's SpiralNet++ decoder: coarsest-level features → finest level, then a linear head.

    ``layers[0 … L-1]`` are up-sampling blocks (coarse to fine), ``layers[L]`` a final spiral convolution on the
    finest level; ``head`` a linear layer.
    """

    def __init__(self, channels: int, num_levels: int, spiral_length: int):
        super().__init__()
        blocks: list[nn.Module] = [SpiralUpBlock(channels, spiral_length) for _ in range(num_levels)]
        blocks.append(SpiralConv(channels, channels, spiral_length))
        self.layers = nn.ModuleList(blocks)
        self.head = nn.Linear(channels, channels)

    def forward(
        self,
        x: torch.Tensor,
        spirals: Sequence[torch.Tensor],
        up_index: Sequence[torch.Tensor],
        up_weight: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """``x`` ``(B, V_L, C)`` → ``(B, V_0, C)``; the mesh lists are indexed by level (0 = finest)."""
        *up_blocks, out_conv = self.layers
        for block, level in zip(up_blocks, reversed(range(len(up_blocks)))):
            x = block(x, spirals[level], up_index[level], up_weight[level])  # (B, V_level, C)
        return self.head(out_conv(x, spirals[0]))


class SpiralEncoder(nn.Module):
    """SpiralNet++ encoder (the paper): per level a spiral convolution and ELU, then down-pooling to the next level.

    ``(B, V_0, in_channels)`` → ``(B, V_L, channels[-1])``.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], spiral_length: int):
        super().__init__()
        widths = [in_channels, *channels]
        self.convs = nn.ModuleList(SpiralConv(a, b, spiral_length) for a, b in pairwise(widths))

    def forward(
        self, x: torch.Tensor, spirals: Sequence[torch.Tensor], down_index: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        for level, conv in enumerate(self.convs):
            x = F.elu(conv(x, spirals[level]))[:, down_index[level]]  # (B, V_{level+1}, C)
        return x



def padded_rows(matrix, width: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A CSR matrix with at most ``width`` entries per row as dense ``(rows, width)`` column indices and weights
    (padding: column 0, weight 0)."""
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) > width:
        raise ConfigError(f"mesh matrix {name} has rows with {counts.max()} entries; at most {width} are supported")
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    slots = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)  # position of each entry in its row
    index = np.zeros((matrix.shape[0], width), dtype=np.int64)
    weight = np.zeros((matrix.shape[0], width), dtype=np.float32)
    index[rows, slots] = matrix.indices
    weight[rows, slots] = matrix.data
    return index, weight
