"""CurricularFace IR-101 face recognition backbone in plain PyTorch, loading the released ``.pth``/``.bin`` state dict
(``glint360k_curricular_face_r101_backbone.bin``, used by ConsisID's and OpenS2V's FaceSim-Cur) with
``torch.load(weights_only=True)``.

Layout (so that the released keys load): TFace's ``Backbone(input_size=112, num_layers=100, mode="ir")`` as vendored
in ``PKU-YuanGroup/OpenS2V-Nexus eval/utils/curricularface/model_irse.py``: ``input_layer`` (3×3 conv, BN, PReLU),
``body`` of basic IR blocks (stages of 3, 13, 30, 3 units, widths 64, 128, 256, 512, the first unit of each stage
strided by 2; ``shortcut_layer`` a 1×1-stride max-pool when widths match, else 1×1 conv + BN; ``res_layer`` BN, 3×3
conv, BN, PReLU, 3×3 conv (strided), BN), and ``output_layer`` (BN, dropout, flatten, linear to 512, BN1d without
affine). Input: the 224-px ArcFace-aligned crop resized to 112 (``cv2.resize``, bilinear), RGB, ``(x/255 − 0.5) /
0.5`` (get_facesim.py ``inference``); output L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fantasyid.errors import CheckpointError


@dataclass(frozen=True)
class IRConfig:
    """Stage depths and widths; :data:`IR_101` is the released model, tests use a tiny one."""

    units: tuple[int, ...] = (3, 13, 30, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: int = 64
    embedding: int = 512
    input_size: int = 112


IR_101 = IRConfig()


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)  # (B, C, 7, 7) -> (B, C*49)


class BasicBlockIR(nn.Module):
    """One IR unit: ``res_layer(x) + shortcut_layer(x)``."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """The IR backbone (see the module docstring)."""

    def __init__(self, config: IRConfig = IR_101):
        super().__init__()
        self.config = config
        self.input_layer = nn.Sequential(nn.Conv2d(3, config.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(config.stem),
                                         nn.PReLU(config.stem))
        units = []
        channels = config.stem
        for count, width in zip(config.units, config.widths):
            for index in range(count):
                units.append(BasicBlockIR(channels, width, 2 if index == 0 else 1))
                channels = width
        self.body = nn.Sequential(*units)
        side = config.input_size // 2 ** len(config.units)  # 112 / 16 = 7
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(channels), nn.Dropout(0.4), _Flatten(), nn.Linear(channels * side * side, config.embedding),
            nn.BatchNorm1d(config.embedding, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 112, 112) -> (B, 512)
        return self.output_layer(self.body(self.input_layer(x)))


def config_from_state_dict(state: dict[str, torch.Tensor]) -> IRConfig:
    """The :class:`IRConfig` a state dict was saved from: a stage starts at the first unit and at every unit with a
    conv shortcut (a width change), so a file of any depth loads into the right shape (stages after the first must
    widen, as in every IR model)."""
    stem = int(state["input_layer.0.weight"].shape[0])
    indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    units: list[int] = []
    widths: list[int] = []
    for i in indices:
        width = int(state[f"body.{i}.res_layer.1.weight"].shape[0])
        if not units or f"body.{i}.shortcut_layer.0.weight" in state:
            units.append(1)
            widths.append(width)
        else:
            units[-1] += 1
    channels = widths[-1]
    linear = state["output_layer.3.weight"]  # (512, C * side²)
    side = int(round((linear.shape[1] / channels) ** 0.5))
    return IRConfig(tuple(units), tuple(widths), stem, int(linear.shape[0]), side * 2 ** len(units))


def load_curricularface(path: str | Path) -> IRBackbone:
    """The backbone with the weights of ``path`` (a torch state dict, read with ``weights_only=True``), in eval mode."""
    from fantasyid.face.assets import torch_load_weights

    path = Path(path)
    hint = "use glint360k_curricular_face_r101_backbone.bin from BestWishYsh/ConsisID-preview (face_encoder/)"
    state = torch_load_weights(path, hint=hint)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "input_layer.0.weight" not in state:
        raise CheckpointError(f"{path} is not a CurricularFace IR backbone state dict", hint=hint)
    model = IRBackbone(config_from_state_dict(state))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: keys do not match the IR backbone (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})", hint=hint)
    return model.eval()


def preprocess(crops_224: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """224-px aligned RGB crops ``(N, 224, 224, 3)`` uint8 → the model input ``(N, 3, 112, 112)`` as the authors make
    it: ``cv2.resize`` to 112 (bilinear), ``(x / 255 − 0.5) / 0.5``."""
    import cv2

    small = np.stack([cv2.resize(np.ascontiguousarray(c), (112, 112)) for c in crops_224])  # (N, 112, 112, 3)
    tensor = torch.from_numpy(small).permute(0, 3, 1, 2).float()  # (N, 3, 112, 112)
    return tensor.div(255).sub(0.5).div(0.5)


@torch.no_grad()
def embed(model: IRBackbone, crops_224: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """L2-normalised embeddings ``(N, 512)`` of 224-px aligned RGB crops."""
    features = model(preprocess(crops_224)).double().numpy()  # (N, 512)
    return features / np.linalg.norm(features, axis=1, keepdims=True)
