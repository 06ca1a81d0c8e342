"""The 3D branch's input as the pipeline consumes it: the DECA + FLAME shape estimator, the tiny model's synthetic
FLAME-format model, and reading a shape file (``SHAPE.npz`` from ``edit-shape`` or a ``.ply`` point cloud).

The estimator's ``mode`` is the variant's (METHOD.md §3): ``paper`` decodes shape only from DECA's face crop,
``released`` decodes shape, expression and pose from the whole photo resized to 224. A ``SHAPE.npz`` records the mode
it was written for; :func:`check_shape_mode` refuses it for a model of the other mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fantasyid.errors import ConfigError, InputError, require

__all__ = ["SHAPE_MODES", "ShapeEstimator", "synthetic_flame_model", "load_shape_file", "shape_file_mode",
           "check_shape_mode"]

SHAPE_MODES = ("released", "paper")


class ShapeEstimator:
    """DECA + FLAME as the pipeline's ``shape_estimator``: ``(rgb_photo, face) -> vertices (1, V, 3)``.

    ``mode``: ``"released"`` (the whole photo resized to 224; shape, expression and pose) or ``"paper"`` (the face
    crop; shape only). ``licensed``: whether DECA/FLAME are the user's licensed files (never saved into a checkpoint)
    or made by code (the tiny model's, saved with it).
    """

    def __init__(self, deca_flame, mode: str = "released", *, licensed: bool = True):
        if mode not in SHAPE_MODES:
            raise ConfigError(f"unknown shape mode {mode!r}; use 'released' or 'paper'")
        self.deca_flame = deca_flame
        self.mode = mode
        self.licensed = licensed

    @classmethod
    def from_files(cls, deca_path: str | os.PathLike[str], flame_path: str | os.PathLike[str], mode: str = "released",
                   *, device="cpu") -> ShapeEstimator:
        """From the user's licensed ``deca_model.tar`` and FLAME ``generic_model.pkl`` (never saved with a model)."""
        from fantasyid.face.deca import DecaFlame

        return cls(DecaFlame.from_files(deca_path, flame_path, device=device), mode=mode)

    @classmethod
    def synthetic(cls, mode: str = "released") -> ShapeEstimator:
        """The tiny model's, made by code: a randomly initialised DECA encoder (drawn from torch's global generator)
        and :func:`synthetic_flame_model` (saved with a checkpoint, since nothing about it is licensed)."""
        from fantasyid.face.deca import DecaEncoder, DecaFlame
        from fantasyid.face.flame import FlameLayer

        return cls(DecaFlame(DecaEncoder(), FlameLayer(synthetic_flame_model())).eval(), mode=mode, licensed=False)

    def __call__(self, rgb: np.ndarray, face):
        return self.deca_flame.vertices(rgb, mode=self.mode, bbox=np.asarray(face.bbox))

    def to(self, device):
        self.deca_flame.to(device)
        return self


def synthetic_flame_model(seed: int = 0):
    """A FLAME-format model on the tiny mesh's finest level (a 642-vertex sphere of head size), made by code.

    Same arrays and layout as FLAME 2020 (300 shape + 100 expression blend shapes, 5-joint skeleton), random
    blend shapes: the tiny model's stand-in for the licensed ``generic_model.pkl``.
    """
    from fantasyid.face.flame import FlameModelData
    from fantasyid.models.configs import tiny_mesh_hierarchy

    mesh = tiny_mesh_hierarchy()
    vertices, faces = mesh.vertices[0] * 0.1, mesh.faces[0]  # radius 10 cm, like a head
    rng = np.random.default_rng(seed)
    count = len(vertices)
    joints = 5  # root, neck, jaw, left eye, right eye
    regressor = np.zeros((joints, count))
    order = np.argsort(vertices[:, 1])  # joints regressed from bands of the sphere, bottom to top
    for joint, band in enumerate(np.array_split(order, joints)):
        regressor[joint, band] = 1.0 / len(band)
    weights = np.zeros((count, joints))
    weights[:, 0] = 1.0
    # Smooth blend shapes, like FLAME's: each moves the surface along its normal by a random smooth field (64
    # low-frequency random Fourier features of the position, about 1 mm per unit coefficient), so random codes give
    # a lumpy head, not a spiky ball.
    unit = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)  # (V, 3) normals of the sphere
    frequencies = rng.normal(0.0, 2.0, (3, 64))
    phases = rng.uniform(0.0, 2 * np.pi, 64)
    basis = np.cos(unit @ frequencies + phases)  # (V, 64)
    fields = basis @ rng.normal(0.0, 1e-3 / 8, (64, 400))  # (V, 400) normal displacement per component
    shapedirs = unit[:, :, None] * fields[:, None, :]  # (V, 3, 400)
    return FlameModelData(
        v_template=vertices,
        shapedirs=shapedirs,
        posedirs=rng.normal(0.0, 1e-4, (count, 3, 9 * (joints - 1))),
        j_regressor=regressor,
        parents=np.array([-1, 0, 1, 1, 1]),
        lbs_weights=weights,
        faces=np.asarray(faces, dtype=np.int64),
    )


def load_shape_file(path: str | os.PathLike[str]):
    """Vertices ``(1, V, 3)`` (a float32 tensor) from a ``SHAPE.npz`` (key ``vertices``; e.g. written by ``fantasyid
    edit-shape``) or an ASCII/binary ``.ply`` point cloud as the release uses."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"shape file '{path}' does not exist")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "vertices" not in data:
                    raise InputError(f"'{path}' has no 'vertices' array",
                                     hint="use a file written by fantasyid edit-shape")
                vertices = np.asarray(data["vertices"], dtype=np.float32)
        except (OSError, ValueError) as exc:
            raise InputError(f"'{path}' is not a readable .npz file ({exc})") from exc
    elif path.suffix.lower() == ".ply":
        trimesh = require("trimesh", "mesh", "reading .ply shapes")
        cloud = trimesh.load(path, process=False)
        vertices = np.asarray(cloud.vertices, dtype=np.float32)
    else:
        raise InputError(f"unknown shape file type '{path.suffix}'", hint="use a .npz from edit-shape or a .ply")
    if vertices.ndim == 2:
        vertices = vertices[None]
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise InputError(f"'{path}': vertices must be (V, 3), got {vertices.shape}")
    return torch.from_numpy(vertices)


def shape_file_mode(path: str | os.PathLike[str]) -> str | None:
    """The mode a ``SHAPE.npz`` records (``paper`` or ``released``); ``None`` for files that record none (``.ply``)."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["mode"]) if "mode" in data.files else None
    except (OSError, ValueError) as exc:
        raise InputError(f"'{path}' is not a readable .npz file ({exc})") from exc


def check_shape_mode(path: str | os.PathLike[str], mode: str) -> None:
    """Refuse a shape file written for the other mode than the model's (its vertices mean something else)."""
    recorded = shape_file_mode(path)
    if recorded is not None and recorded != mode:
        raise InputError(
            f"'{Path(path).name}' was written for the {recorded} mode, but this model is the {mode} variant",
            hint=f"make the shape again with: fantasyid edit-shape ... --mode {mode}",
        )
