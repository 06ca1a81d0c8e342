"""DECA's coarse encoder (ResNet-50 → 236 FLAME parameters) and the face → vertices step of FantasyID's 3D branch.

DECA (Feng et al., SIGGRAPH 2021) regresses FLAME codes from a 224 × 224 RGB image in [0, 1] (no mean/std):
a ResNet-50 trunk (torchvision's layout without ``fc``; 2048-d average-pooled features) and an MLP
2048 → 1024 → ReLU → 236, split as shape 100, tex 50, exp 50, pose 6 (global + jaw, axis-angle), cam 3 and
light 27 (9 × 3). ``deca_model.tar`` is a ``torch.save``'d dict whose ``"E_flame"`` entry is this encoder's state
dict (``encoder.*`` ResNet keys, ``layers.*`` MLP keys); it is read with ``torch.load(weights_only=True)``, which
handles both the zip and the legacy (pre-1.6) torch formats and refuses pickled code.

Input images for the two modes (:class:`DecaFlame`):

* ``"paper"``: DECA's own test-time crop around the detected face box (``TestData``: box size
  ``(w + h) / 2``, centre moved down by 0.12 of it, square of 1.25 × that, resampled to 224), shape-only FLAME.
* ``"released"``: the authors' ``process_pcd.py``: the whole image resized to 224 × 224 (PIL bilinear), no
  detection or crop, FLAME with shape, expression and pose.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.errors import CheckpointError, InputError, WeightsNotFoundError, require
from fantasyid.face.assets import torch_load_weights
from fantasyid.face.flame import DecodeMode, FlameLayer, decode_vertices, load_flame_model

torch = require("torch", "face", "the DECA encoder")
nn = torch.nn

#: DECA's code layout (decalib/utils/config.py: n_shape, n_tex, n_exp, n_pose, n_cam, n_light).
DECA_CODE_SIZES = (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
DECA_CODE_DIM = sum(size for _, size in DECA_CODE_SIZES)  # 236
DECA_IMAGE_SIZE = 224
#: DECA's TestData crop: scale of the square around the detector box, and the downward shift of its centre.
DECA_CROP_SCALE = 1.25
DECA_BOX_CENTER_SHIFT = 0.12

_DECA_HINT = (
    "DECA is licensed: register at https://deca.is.tue.mpg.de (FLAME licence), download deca_model.tar and pass "
    "its path (fantasyid never downloads or ships it)"
)


@dataclass
class DecaCodes:
    """DECA's 236 parameters, split. All (B, n) float tensors; ``light`` is (B, 9, 3)."""

    shape: torch.Tensor
    tex: torch.Tensor
    exp: torch.Tensor
    pose: torch.Tensor
    cam: torch.Tensor
    light: torch.Tensor

    @classmethod
    def split(cls, parameters: torch.Tensor) -> DecaCodes:
        if parameters.ndim != 2 or parameters.shape[1] != DECA_CODE_DIM:
            raise InputError(f"DECA parameters must be (B, {DECA_CODE_DIM}), got {tuple(parameters.shape)}")
        parts = dict(zip([n for n, _ in DECA_CODE_SIZES], parameters.split([s for _, s in DECA_CODE_SIZES], dim=1)))
        parts["light"] = parts["light"].reshape(parameters.shape[0], 9, 3)  # (B, 27) → (B, 9 SH bands, RGB)
        return cls(**parts)


class DecaEncoder(nn.Module):
    """DECA's ``E_flame``: ResNet-50 features (2048) → Linear 1024 → ReLU → Linear 236."""

    def __init__(self) -> None:
        super().__init__()
        models = require("torchvision.models", "face", "the DECA encoder")
        trunk = models.resnet50(weights=None)
        trunk.fc = nn.Identity()  # DECA's ResNet has no classifier: 7×7 average pool → 2048 features
        self.encoder = trunk
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, DECA_CODE_DIM))

    def forward(self, images: torch.Tensor) -> DecaCodes:
        """``images`` (B, 3, 224, 224) RGB in [0, 1] → :class:`DecaCodes`."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, DECA_IMAGE_SIZE, DECA_IMAGE_SIZE):
            raise InputError(f"DECA expects images of shape (B, 3, 224, 224), got {tuple(images.shape)}")
        reference = self.layers[0].weight
        features = self.encoder(images.to(device=reference.device, dtype=reference.dtype))  # (B, 2048)
        return DecaCodes.split(self.layers(features))


def read_deca_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``E_flame`` state dict of ``deca_model.tar``, read with ``torch.load(weights_only=True)``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"DECA model not found: {path}", hint=_DECA_HINT)
    checkpoint = torch_load_weights(path, hint=_DECA_HINT)
    if not isinstance(checkpoint, Mapping) or "E_flame" not in checkpoint:
        found = sorted(map(str, checkpoint))[:5] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(f"{path} is not a DECA model: no 'E_flame' entry (found {found})", hint=_DECA_HINT)
    state = checkpoint["E_flame"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'E_flame' is a {type(state).__name__}, not a state dict")
    if state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}  # saved from DataParallel
    return dict(state)


def load_deca_encoder(path: str | os.PathLike[str], *, device: Any = "cpu") -> DecaEncoder:
    """DECA's coarse encoder with the weights of ``deca_model.tar``, in eval mode.

    Every parameter and BatchNorm statistic must be present with the right shape (BatchNorm's
    ``num_batches_tracked`` counters, unused at inference, may be absent).
    """
    state = read_deca_checkpoint(path)
    model = DecaEncoder()
    expected = model.state_dict()
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: E_flame.{bad[0]} is not a tensor")
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        detail = [f"{len(items)} {what} (e.g. {items[0]})" for what, items in
                  (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", wrong)) if items]  # fmt: skip
        raise CheckpointError(f"{path}: E_flame does not match DECA's encoder: {', '.join(detail)}", hint=_DECA_HINT)
    converted = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(converted, strict=False)
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------------------
# Input images


def deca_crop(image: np.ndarray, bbox: np.ndarray, size: int = DECA_IMAGE_SIZE) -> np.ndarray:
    """DECA's test-time face crop (``TestData`` with a detector box): (size, size, 3) float32 RGB in [0, 1].

    ``bbox`` = x1, y1, x2, y2 in pixels. Square of side ``int(1.25 · (w + h) / 2)`` centred on the box centre moved
    down by ``0.12 · (w + h) / 2``, mapped onto [0, size − 1] and resampled bilinearly with a black border.
    """
    cv2 = require("cv2", "face", "the DECA face crop")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"deca_crop expects an (H, W, 3) RGB image, got {image.shape}")
    left, top, right, bottom = (float(v) for v in np.asarray(bbox).reshape(-1)[:4])
    old_size = (right - left + bottom - top) / 2.0
    if old_size <= 0:
        raise InputError(f"invalid face box {bbox}")
    center_x = right - (right - left) / 2.0
    center_y = bottom - (bottom - top) / 2.0 + old_size * DECA_BOX_CENTER_SHIFT
    side = int(old_size * DECA_CROP_SCALE)
    scale = (size - 1) / side  # corner (c − side/2) ↦ 0 and (c + side/2) ↦ size − 1, as DECA's DST_PTS
    matrix = np.array([[scale, 0.0, -(center_x - side / 2.0) * scale], [0.0, scale, -(center_y - side / 2.0) * scale]])
    source = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    return cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def deca_resize_whole(image: np.ndarray, size: int = DECA_IMAGE_SIZE) -> np.ndarray:
    """The release's DECA input: the whole RGB uint8 image resized to size × size with PIL's bilinear filter
    (``transforms.Resize((224, 224))`` on a PIL image), as float32 in [0, 1]."""
    pil_image = require("PIL.Image", "face", "the DECA input resize")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"deca_resize_whole expects an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    resized = pil_image.fromarray(image).resize((size, size), pil_image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


def to_tensor_batch(images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """(H, W, 3) float [0, 1] image(s) → (B, 3, H, W) float32 tensor."""
    array = np.stack(images) if isinstance(images, list) else np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(0, 3, 1, 2)  # (B, 3, H, W)


class DecaFlame(nn.Module):
    """Face image → FLAME vertices (the 3D branch's input), in the ``paper`` or ``released`` mode.

    Build with :meth:`from_files` from the user's licensed ``deca_model.tar`` and ``generic_model.pkl``.
    """

    def __init__(self, encoder: DecaEncoder, flame: FlameLayer):
        super().__init__()
        self.encoder = encoder
        self.flame = flame

    @classmethod
    def from_files(
        cls, deca_path: str | os.PathLike[str], flame_path: str | os.PathLike[str], *, device: Any = "cpu"
    ) -> DecaFlame:
        flame = FlameLayer(load_flame_model(flame_path)).to(device)  # the cheaper file first: fail fast
        encoder = load_deca_encoder(deca_path, device=device)
        return cls(encoder, flame).eval()

    def prepare(self, image: np.ndarray, *, mode: DecodeMode = "paper", bbox: np.ndarray | None = None) -> torch.Tensor:
        """The (1, 3, 224, 224) DECA input for an RGB uint8 image: a face crop (``paper``, needs ``bbox``) or the
        whole image resized (``released``)."""
        if mode == "paper":
            if bbox is None:
                raise InputError("the paper mode crops the face: pass its bbox (e.g. FaceAnalyzer's Face.bbox)")
            return to_tensor_batch(deca_crop(image, bbox))
        if mode == "released":
            return to_tensor_batch(deca_resize_whole(image))
        raise InputError(f"unknown DECA mode {mode!r}; use 'paper' or 'released'")

    @torch.no_grad()
    def vertices(
        self, image: np.ndarray, *, mode: DecodeMode = "paper", bbox: np.ndarray | None = None
    ) -> torch.Tensor:
        """FLAME vertices (1, V, 3) in FLAME's world space for one RGB uint8 image."""
        codes = self.encoder(self.prepare(image, mode=mode, bbox=bbox))
        return decode_vertices(self.flame, codes.shape, codes.exp, codes.pose, mode=mode)
