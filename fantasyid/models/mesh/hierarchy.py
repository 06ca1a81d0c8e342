"""The mesh hierarchy container (levels, faces, down/up matrices), its pickle-free ``.npz`` form, and
:func:`sparse_to_torch`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from fantasyid.errors import CheckpointError, WeightsNotFoundError

from .spirals import spiral_indices

if TYPE_CHECKING:
    import torch

__all__ = ["MeshHierarchy", "sparse_to_torch"]

# Version tag written into our .npz files; bump when the layout changes.
_NPZ_FORMAT = "fantasyid.mesh_hierarchy.v1"


# ---------------------------------------------------------------------------------------------------------------
# The hierarchy container
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class MeshHierarchy:
    """A mesh at several resolutions with the sparse maps between consecutive levels.

    Level 0 is the finest. ``down[l]`` maps level ``l`` to level ``l + 1`` (a 0/1 selection of fine vertices,
    as in COMA), ``up[l]`` maps level ``l + 1`` back to level ``l`` (barycentric weights of each fine vertex in a
    coarse triangle, 3 stored entries per row). Arrays are normalised on construction (float64 vertices, int64
    faces, CSR matrices) and the level structure is validated; a malformed hierarchy raises
    :class:`~fantasyid.errors.CheckpointError`.
    """

    vertices: list[np.ndarray]  # per level, (V_l, 3) float64
    faces: list[np.ndarray]  # per level, (F_l, 3) int64
    down: list[sp.csr_matrix]  # down[l]: (V_{l+1}, V_l); rows are one-hot selections
    up: list[sp.csr_matrix]  # up[l]: (V_l, V_{l+1}); barycentric, 3 stored entries per row

    def __post_init__(self) -> None:
        self.vertices = [_as_vertices(v, f"vertices[{i}]") for i, v in enumerate(self.vertices)]
        self.faces = [_as_faces(f, f"faces[{i}]") for i, f in enumerate(self.faces)]
        self.down = [_as_csr(m, f"down[{i}]") for i, m in enumerate(self.down)]
        self.up = [_as_csr(m, f"up[{i}]") for i, m in enumerate(self.up)]
        self._validate()

    def _validate(self) -> None:
        levels = len(self.vertices)
        if levels == 0:
            raise CheckpointError("mesh hierarchy has no levels")
        if len(self.faces) != levels:
            raise CheckpointError(f"mesh hierarchy has {levels} vertex levels but {len(self.faces)} face levels")
        if len(self.down) != levels - 1 or len(self.up) != levels - 1:
            raise CheckpointError(
                f"mesh hierarchy with {levels} levels needs {levels - 1} down and up matrices, "
                f"got {len(self.down)} down and {len(self.up)} up"
            )
        counts = self.num_vertices()
        for level, (faces, count) in enumerate(zip(self.faces, counts)):
            if faces.size and (faces.min() < 0 or faces.max() >= count):
                raise CheckpointError(f"faces[{level}] index a vertex outside 0..{count - 1}")
        for level in range(levels - 1):
            fine, coarse = counts[level], counts[level + 1]
            if self.down[level].shape != (coarse, fine):
                raise CheckpointError(
                    f"down[{level}] has shape {self.down[level].shape}, expected {(coarse, fine)} "
                    f"(levels have {counts} vertices)"
                )
            if self.up[level].shape != (fine, coarse):
                raise CheckpointError(
                    f"up[{level}] has shape {self.up[level].shape}, expected {(fine, coarse)} "
                    f"(levels have {counts} vertices)"
                )

    def num_vertices(self) -> list[int]:
        """Vertex count per level, finest first (FLAME: ``[5023, 1256, 314, 79, 20]``)."""
        return [int(v.shape[0]) for v in self.vertices]

    def coarse_indices(self, level: int) -> np.ndarray:
        """For the selection ``down[level]``: index of the kept fine vertex for each coarse vertex, ``(V_{l+1},)``.

        Raises :class:`~fantasyid.errors.CheckpointError` when ``down[level]`` is not a one-hot selection.
        """
        if not 0 <= level < len(self.down):
            raise IndexError(f"level {level} out of range: the hierarchy has {len(self.down)} down matrices")
        down = self.down[level]
        per_row = np.diff(down.indptr)
        if not (np.all(per_row == 1) and np.all(down.data == 1)):
            raise CheckpointError(f"down[{level}] is not a vertex selection (each row must hold a single 1)")
        return down.indices.astype(np.int64)

    def spirals(self, level: int, seq_length: int = 9, dilation: int = 1) -> np.ndarray:
        """SpiralNet++ indices of one level, ``(V_level, seq_length)`` int64 (see :func:`spiral_indices`)."""
        return spiral_indices(
            self.faces[level], self.num_vertices()[level], seq_length, dilation, vertices=self.vertices[level]
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the hierarchy as a pickle-free ``.npz`` (``np.savez``), atomically (temp file + ``os.replace``)."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_NPZ_FORMAT),
            "num_levels": np.array(len(self.vertices), dtype=np.int64),
        }
        for level, (verts, faces) in enumerate(zip(self.vertices, self.faces)):
            arrays[f"vertices_{level}"] = verts
            arrays[f"faces_{level}"] = faces
        for name, mats in (("down", self.down), ("up", self.up)):
            for level, mat in enumerate(mats):
                arrays[f"{name}_{level}_data"] = mat.data
                arrays[f"{name}_{level}_indices"] = mat.indices.astype(np.int64)
                arrays[f"{name}_{level}_indptr"] = mat.indptr.astype(np.int64)
                arrays[f"{name}_{level}_shape"] = np.asarray(mat.shape, dtype=np.int64)
        _atomic_savez(Path(path), arrays)

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> MeshHierarchy:
        """Read a file written by :meth:`save` (``allow_pickle=False``)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except FileNotFoundError as exc:
            raise WeightsNotFoundError(f"mesh hierarchy not found: {path}") from exc
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read mesh hierarchy {path}: {exc}") from exc
        if "format" not in arrays or str(arrays["format"]) != _NPZ_FORMAT:
            raise CheckpointError(f"{path} is not a fantasyid mesh hierarchy ({_NPZ_FORMAT})")
        try:
            levels = int(arrays["num_levels"])
            vertices = [arrays[f"vertices_{level}"] for level in range(levels)]
            faces = [arrays[f"faces_{level}"] for level in range(levels)]
            mats: dict[str, list[sp.csr_matrix]] = {}
            for name in ("down", "up"):
                mats[name] = [
                    sp.csr_matrix(
                        (
                            arrays[f"{name}_{level}_data"],
                            arrays[f"{name}_{level}_indices"],
                            arrays[f"{name}_{level}_indptr"],
                        ),
                        shape=tuple(int(s) for s in arrays[f"{name}_{level}_shape"]),
                    )
                    for level in range(levels - 1)
                ]
        except KeyError as exc:
            raise CheckpointError(f"mesh hierarchy {path} lacks the array {exc.args[0]}") from exc
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"mesh hierarchy {path} holds a malformed sparse matrix: {exc}") from exc
        return cls(vertices=vertices, faces=faces, down=mats["down"], up=mats["up"])


def _as_vertices(array: Any, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind not in "fiu":
        raise CheckpointError(f"{name} must be a (V, 3) numeric array, got {array.dtype} {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise CheckpointError(f"{name} holds non-finite coordinates")
    return array


def _as_faces(array: Any, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind not in "iu":
        raise CheckpointError(f"{name} must be a (F, 3) integer array, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _as_csr(matrix: Any, name: str) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise CheckpointError(f"{name} must be a scipy sparse matrix, got {type(matrix).__name__}")
    if matrix.dtype.kind not in "fiu":
        raise CheckpointError(f"{name} has non-numeric dtype {matrix.dtype}")
    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    if not np.all(np.isfinite(csr.data)):
        raise CheckpointError(f"{name} holds non-finite values")
    return csr


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` into a temp file beside ``path`` and move it into place, so readers never see half a file."""
    from fantasyid.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)



def sparse_to_torch(m: sp.spmatrix, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A scipy sparse matrix as a coalesced torch COO tensor (``float32`` unless ``dtype`` says otherwise)."""
    import torch

    coo = sp.coo_matrix(m)
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))  # (2, nnz)
    values = torch.from_numpy(np.asarray(coo.data)).to(torch.float32 if dtype is None else dtype)
    return torch.sparse_coo_tensor(indices, values, size=coo.shape, check_invariants=True).coalesce()
