"""``SHAPE.npz`` (what ``fantasyid edit-shape`` writes and ``fantasyid generate --shape`` reads) and mesh export.

``SHAPE.npz`` holds only plain arrays (``np.load(path, allow_pickle=False)`` reads it):

==================  ==============  =============================================================================
betas               (1, n) f32      FLAME shape coefficients of the edited face
expression, pose    (1, 50), (1, 6) DECA's expression and pose (zeros in the paper mode)
vertices            (1, V, 3) f32   the edited face as the identity branch consumes it (``mode``), metres
faces               (F, 3) i64      FLAME's triangles
mode                str             ``paper`` (shape only) or ``released`` (shape + expression + pose)
betas_before        (1, n) f32      the input's coefficients
vertices_before     (1, V, 3) f32   the input's vertices
trait_names         (T,) str        :data:`fantasyid.editing.traits.TRAIT_NAMES`
trait_units         (T,) str        ``mm`` / ``deg``
traits_before       (T,) f64        traits of the input (neutral mesh)
traits_after        (T,) f64        traits reached
traits_requested    (T,) f64        requested values, NaN for held traits
edits               (E,) str        the requests as written, e.g. ``face_width +5%``
model               str             ``tiny``, ``released`` or a checkpoint path: which FLAME decodes the betas
source              str             the photo or shape file the input came from
landmarks           str             where the trait landmarks came from
bound               f64             the plausible range ``|β_i| ≤ bound`` used
max_change          f64             the largest edit ``‖Δβ‖`` allowed
format              str             ``fantasyid-shape/1``
==================  ==============  =============================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fantasyid import __version__
from fantasyid.errors import InputError, require
from fantasyid.io import atomic_path

from .edit import EditResult

__all__ = ["SHAPE_FORMAT", "MESH_SUFFIXES", "SavedShape", "save_shape_file", "read_shape_file", "export_mesh"]

SHAPE_FORMAT = "fantasyid-shape/1"
MESH_SUFFIXES = (".obj", ".ply")


def save_shape_file(
    path: str | os.PathLike[str], result: EditResult, faces: np.ndarray, *, model: str, source: str
) -> Path:
    """Write ``result`` as ``SHAPE.npz`` (layout in the module docstring), atomically."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise InputError(f"the shape file must end in .npz, got '{path.name}'")
    before, after = result.before, result.after
    arrays = {
        "format": np.array(SHAPE_FORMAT),
        "betas": after.betas.reshape(1, -1).astype(np.float32),
        "expression": after.expression.reshape(1, -1).astype(np.float32),
        "pose": after.pose.reshape(1, -1).astype(np.float32),
        "vertices": after.vertices.reshape(1, -1, 3).astype(np.float32),
        "faces": np.asarray(faces, dtype=np.int64),
        "mode": np.array(after.mode),
        "betas_before": before.betas.reshape(1, -1).astype(np.float32),
        "vertices_before": before.vertices.reshape(1, -1, 3).astype(np.float32),
        "trait_names": np.array(result.trait_names),
        "trait_units": np.array(result.trait_units),
        "traits_before": np.asarray(result.traits_before, dtype=np.float64),
        "traits_after": np.asarray(result.traits_after, dtype=np.float64),
        "traits_requested": np.asarray(result.targets, dtype=np.float64),
        "edits": np.array([str(edit) for edit in result.edits], dtype=str),
        "model": np.array(str(model)),
        "source": np.array(str(source)),
        "landmarks": np.array(result.landmarks),
        "bound": np.array(float(result.bound)),
        "max_change": np.array(float(result.max_change)),
        "fantasyid_version": np.array(__version__),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a file object: np.savez adds no suffix
        np.savez(handle, **arrays)
    return path


@dataclass
class SavedShape:
    """The FLAME codes of a ``SHAPE.npz`` (batch dimension dropped)."""

    path: Path
    betas: np.ndarray  #: (n,)
    expression: np.ndarray  #: (n_exp,)
    pose: np.ndarray  #: (6,)
    mode: str
    vertices: np.ndarray  #: (V, 3)
    model: str | None  #: which model wrote it, if recorded


def read_shape_file(path: str | os.PathLike[str]) -> SavedShape:
    """Read the codes of a ``SHAPE.npz`` written by ``fantasyid edit-shape`` (no pickles are loaded)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"shape file '{path}' does not exist")
    if path.suffix.lower() != ".npz":
        raise InputError(f"'{path.name}' is not a SHAPE.npz", hint="edit-shape edits files it wrote (SHAPE.npz)")
    try:
        with np.load(path, allow_pickle=False) as data:
            content = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"'{path}' is not a readable .npz file ({' '.join(str(exc).split())})") from exc
    missing = [key for key in ("betas", "vertices") if key not in content]
    if missing:
        raise InputError(
            f"'{path}' has no {' or '.join(missing)}: edit-shape edits FLAME shape coefficients",
            hint="use a SHAPE.npz written by fantasyid edit-shape, or start from the photo with --ref",
        )
    try:
        betas = np.asarray(content["betas"], dtype=np.float32).reshape(-1)
        expression = np.asarray(content.get("expression", np.zeros(0)), dtype=np.float32).reshape(-1)
        pose = np.asarray(content.get("pose", np.zeros(6)), dtype=np.float32).reshape(-1)
        vertices = np.asarray(content["vertices"], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"'{path}' holds non-numeric codes ({exc})") from exc
    if vertices.ndim == 3 and vertices.shape[0] == 1:
        vertices = vertices[0]
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InputError(f"'{path}': vertices must be (V, 3) or (1, V, 3), got {vertices.shape}")
    mode = str(content["mode"]) if "mode" in content else "paper"
    if mode not in ("paper", "released"):
        raise InputError(f"'{path}' has an unknown mode '{mode}'")
    model = str(content["model"]) if "model" in content else None
    return SavedShape(path, betas, expression, pose, mode, vertices, model)


def export_mesh(path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a triangle mesh as Wavefront ``.obj`` or binary ``.ply`` (trimesh; vertex order kept), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(f"cannot write a mesh as '{path.name}': use .obj or .ply")
    trimesh = require("trimesh", "mesh", "writing .obj/.ply meshes")
    mesh = trimesh.Trimesh(
        vertices=np.asarray(vertices, dtype=np.float64).reshape(-1, 3), faces=np.asarray(faces), process=False
    )
    data = mesh.export(file_type=suffix[1:])
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return path
