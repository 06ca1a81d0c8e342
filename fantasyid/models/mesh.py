"""Mesh data for the vertex branch: the down/up-sampling hierarchy and SpiralNet++ spiral indices.

FantasyID's vertex branch works on the FLAME topology (5023 vertices) and two coarser levels (1256, 314).
The release ships that hierarchy as ``assets/transform.pkl`` (COMA's "mesh sampling" layout: vertices, faces,
adjacency, down- and up-sampling matrices per level) and recomputes the spiral neighbourhoods with OpenMesh at
start-up. This module

* loads ``transform.pkl`` through a restricted unpickler (numpy arrays and scipy sparse matrices only),
* stores the hierarchy in our own pickle-free ``.npz`` format,
* computes SpiralNet++ spirals with a small half-edge structure that reproduces OpenMesh's connectivity
  rules and circulator order, so that the spirals equal the ones the release computes, and
* builds an equivalent hierarchy from any triangle mesh by quadric decimation (``fast-simplification``).

torch is imported only inside :func:`sparse_to_torch`.
"""

from __future__ import annotations

import codecs
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from fantasyid.errors import CheckpointError, InputError, UnsafeFileError, WeightsNotFoundError, require
from fantasyid.safe_pickle import AllowListUnpickler, numpy_globals

if TYPE_CHECKING:
    import torch

__all__ = [
    "HalfEdgeMesh",
    "MeshHierarchy",
    "build_mesh_hierarchy",
    "icosphere",
    "load_mesh_hierarchy",
    "sparse_to_torch",
    "spiral_indices",
]

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
    from ..io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


# ---------------------------------------------------------------------------------------------------------------
# Loading transform.pkl safely
# ---------------------------------------------------------------------------------------------------------------


class _SparseRecord:
    """Stand-in for a pickled scipy sparse matrix: it only records the pickled state.

    The unpickler never instantiates scipy classes; :meth:`to_scipy` rebuilds a fresh matrix from the recorded
    arrays through scipy's public constructor and validates it. This also keeps old pickles readable when scipy
    renames its private modules (``scipy.sparse.csc`` → ``scipy.sparse._csc``).
    """

    fmt = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_scipy(self, where: str) -> sp.spmatrix:
        state = getattr(self, "state", None)
        if not isinstance(state, dict):
            raise CheckpointError(f"{where}: pickled {self.fmt} matrix has no attribute dictionary")
        shape = state.get("_shape", state.get("shape"))
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError as exc:
            raise CheckpointError(f"{where}: pickled {self.fmt} matrix has no valid shape") from exc
        if len(shape) != 2 or min(shape) < 0:
            raise CheckpointError(f"{where}: pickled {self.fmt} matrix has shape {shape}")
        try:
            if self.fmt in ("csc", "csr"):
                parts = [_numeric_array(state[key], f"{where}.{key}") for key in ("data", "indices", "indptr")]
                cls = sp.csc_matrix if self.fmt == "csc" else sp.csr_matrix
                matrix = cls(tuple(parts), shape=shape)
                matrix.check_format(full_check=True)
            else:
                if "coords" in state:  # scipy >= 1.13 stores a tuple of index arrays
                    row, col = state["coords"]
                else:
                    row, col = state["row"], state["col"]
                data = _numeric_array(state["data"], f"{where}.data")
                row = _numeric_array(row, f"{where}.row")
                col = _numeric_array(col, f"{where}.col")
                matrix = sp.coo_matrix((data, (row, col)), shape=shape)
        except KeyError as exc:
            raise CheckpointError(f"{where}: pickled {self.fmt} matrix lacks {exc.args[0]!r}") from exc
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{where}: malformed {self.fmt} matrix: {exc}") from exc
        return matrix


class _CscRecord(_SparseRecord):
    fmt = "csc"


class _CsrRecord(_SparseRecord):
    fmt = "csr"


class _CooRecord(_SparseRecord):
    fmt = "coo"


def _numeric_array(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
        raise CheckpointError(f"{where} must be a numeric numpy array")
    return value


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Protocol 0/1 stand-in for ``copyreg._reconstructor``, limited to our sparse records."""
    if not (isinstance(cls, type) and issubclass(cls, _SparseRecord)) or base is not object or state is not None:
        raise UnsafeFileError("refusing copyreg._reconstructor for anything but a sparse matrix")
    return cls()


_SPARSE_MODULES = {
    "scipy.sparse",
    "scipy.sparse.csc",
    "scipy.sparse._csc",
    "scipy.sparse.csr",
    "scipy.sparse._csr",
    "scipy.sparse.coo",
    "scipy.sparse._coo",
    "scipy.sparse._arrays",
}
_SPARSE_RECORDS = {
    "csc_matrix": _CscRecord,
    "csc_array": _CscRecord,
    "csr_matrix": _CsrRecord,
    "csr_array": _CsrRecord,
    "coo_matrix": _CooRecord,
    "coo_array": _CooRecord,
}


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """numpy arrays and scalars, and record-only stand-ins for scipy's sparse matrices; nothing else."""
    allowed = numpy_globals()
    allowed[("_codecs", "encode")] = codecs.encode  # py3-written numpy data; decoding str → bytes runs no code
    for module in _SPARSE_MODULES:
        for name, record in _SPARSE_RECORDS.items():
            allowed[(module, name)] = record
    for module in ("copyreg", "copy_reg"):
        allowed[(module, "_reconstructor")] = _safe_reconstructor
    for module in ("builtins", "__builtin__"):
        allowed[(module, "object")] = object
        allowed[(module, "bytes")] = bytes  # Python 3 pickles empty byte strings as bytes(); runs no code
    return allowed


def _restricted_load(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            # transform.pkl was written under Python 2: its byte strings decode as latin-1.
            return AllowListUnpickler(
                handle, str(path), _allowed_globals(), "a mesh hierarchy (numpy arrays and scipy sparse matrices)",
                hint="load only mesh files from a source you trust, or convert them to .npz",
            ).load()
    except UnsafeFileError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
    ) as exc:
        raise CheckpointError(f"cannot unpickle {path}: {type(exc).__name__}: {exc}") from exc


def _convert_records(value: Any, where: str) -> Any:
    """Replace every sparse record in a nested list/tuple/dict by a validated scipy matrix."""
    if isinstance(value, _SparseRecord):
        return value.to_scipy(where)
    if isinstance(value, (list, tuple)):
        return [_convert_records(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _convert_records(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        raise CheckpointError(f"{where} is an object array; only numeric arrays are allowed")
    return value


def load_mesh_hierarchy(path: str | os.PathLike) -> MeshHierarchy:
    """Load a mesh hierarchy: the release's ``transform.pkl`` (COMA layout) or our own ``.npz``.

    The pickle is a dict with lists ``vertices``, ``face``, ``adj``, ``down_transform`` and ``up_transform``
    (``adj`` is not needed and is dropped). It is read with a restricted unpickler; a pickle that names any other
    global raises :class:`~fantasyid.errors.UnsafeFileError` without running it. A structurally wrong file raises
    :class:`~fantasyid.errors.CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"mesh hierarchy not found: {path}",
            hint="point to the release's assets/transform.pkl or a .npz written by MeshHierarchy.save",
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == b"PK\x03\x04":  # a zip archive: np.savez output
        return MeshHierarchy.load_npz(path)

    content = _convert_records(_restricted_load(path), "transform")
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a dict at the top level, got {type(content).__name__}")
    missing = [key for key in ("vertices", "face", "down_transform", "up_transform") if key not in content]
    if missing:
        raise CheckpointError(f"{path}: mesh hierarchy lacks {', '.join(missing)}")
    for key in ("vertices", "face", "down_transform", "up_transform"):
        if not isinstance(content[key], list):
            raise CheckpointError(f"{path}: '{key}' must be a list over levels")
    return MeshHierarchy(
        vertices=content["vertices"],
        faces=content["face"],
        down=content["down_transform"],
        up=content["up_transform"],
    )


# ---------------------------------------------------------------------------------------------------------------
# Half-edge connectivity with OpenMesh's rules, and SpiralNet++ spirals
# ---------------------------------------------------------------------------------------------------------------


class HalfEdgeMesh:
    """Half-edge connectivity built face by face with the rules of OpenMesh's ``PolyConnectivity::add_face``.

    Spiral order depends on details of OpenMesh (Botsch et al., RWTH Aachen) that a generic half-edge structure
    does not share: which outgoing half-edge each vertex stores (a boundary one if it has any), how boundary
    loops are re-linked when a face closes a gap, and which faces are refused as "complex vertex" (the vertex is
    already surrounded by faces) or "complex edge" (the half-edge already has a face). This class reproduces those
    rules so that :meth:`vertex_neighbours` lists the same vertices in the same order as OpenMesh's
    vertex-vertex circulator (clockwise: ``h → next(opposite(h))``, starting at the stored half-edge).

    Half-edges come in pairs: ``h`` and its opposite ``h ^ 1``; ``to[h]`` is the vertex ``h`` points to.
    Faces with a repeated vertex are refused as well (OpenMesh does not check for them).
    """

    def __init__(self, faces: np.ndarray, num_vertices: int):
        self.num_vertices = int(num_vertices)
        self.to: list[int] = []
        self.next: list[int] = []
        self.prev: list[int] = []
        self.face: list[int] = []  # -1 on boundary half-edges
        self.vertex_halfedge: list[int] = [-1] * self.num_vertices
        self.rejected: list[int] = []  # indices of the input faces OpenMesh would refuse
        self.num_faces = 0
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.dtype.kind not in "iu":
            raise InputError(f"faces must be an (F, n) integer array, got {faces.dtype} {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= self.num_vertices):
            raise InputError(f"faces index vertices outside 0..{self.num_vertices - 1}")
        for index, corners in enumerate(faces.astype(np.int64).tolist()):
            if len(set(corners)) != len(corners) or not self._add_face(corners):
                self.rejected.append(index)

    # -- OpenMesh primitives --------------------------------------------------------------------------------------

    def _vertex_is_boundary(self, v: int) -> bool:
        h = self.vertex_halfedge[v]
        return h == -1 or self.face[h] == -1

    def _find_halfedge(self, start: int, end: int) -> int:
        # Outgoing half-edges of `start` in circulator order; OpenMesh's find_halfedge.
        h0 = self.vertex_halfedge[start]
        if h0 == -1:
            return -1
        h = h0
        while True:
            if self.to[h] == end:
                return h
            h = self.next[h ^ 1]
            if h == h0:
                return -1

    def _adjust_outgoing_halfedge(self, v: int) -> None:
        # Make the stored half-edge a boundary one if the vertex has any (first found in circulator order).
        h0 = self.vertex_halfedge[v]
        if h0 == -1:
            return
        h = h0
        while True:
            if self.face[h] == -1:
                self.vertex_halfedge[v] = h
                return
            h = self.next[h ^ 1]
            if h == h0:
                return

    def _new_edge(self, start: int, end: int) -> int:
        h = len(self.to)
        self.to += [end, start]
        self.next += [-1, -1]
        self.prev += [-1, -1]
        self.face += [-1, -1]
        return h

    def _add_face(self, corners: list[int]) -> bool:
        """OpenMesh's add_face for one polygon; returns False (and changes nothing) when it is refused."""
        n = len(corners)
        halfedges = [-1] * n
        is_new = [False] * n
        needs_adjust = [False] * n

        # 1. Topology checks.
        for i in range(n):
            if not self._vertex_is_boundary(corners[i]):
                return False  # "complex vertex"
            halfedges[i] = self._find_halfedge(corners[i], corners[(i + 1) % n])
            is_new[i] = halfedges[i] == -1
            if not is_new[i] and self.face[halfedges[i]] != -1:
                return False  # "complex edge"

        # 2. Re-link boundary patches where two consecutive existing half-edges are not yet linked.
        next_cache: list[tuple[int, int]] = []
        for i in range(n):
            ii = (i + 1) % n
            if is_new[i] or is_new[ii]:
                continue
            inner_prev, inner_next = halfedges[i], halfedges[ii]
            if self.next[inner_prev] == inner_next:
                continue
            outer_prev = inner_next ^ 1
            boundary_prev = outer_prev
            while True:  # search a free gap around the shared vertex
                boundary_prev = self.next[boundary_prev] ^ 1
                if self.face[boundary_prev] == -1:
                    break
            boundary_next = self.next[boundary_prev]
            if boundary_prev == inner_prev:
                return False  # "patch re-linking failed"
            patch_start = self.next[inner_prev]
            patch_end = self.prev[inner_next]
            next_cache += [(boundary_prev, patch_start), (patch_end, boundary_next), (inner_prev, inner_next)]

        # 3. Missing edges and the face.
        for i in range(n):
            if is_new[i]:
                halfedges[i] = self._new_edge(corners[i], corners[(i + 1) % n])
        face_index = self.num_faces
        self.num_faces += 1

        # 4. Outer and inner links per corner.
        for i in range(n):
            ii = (i + 1) % n
            v = corners[ii]
            inner_prev, inner_next = halfedges[i], halfedges[ii]
            case = (1 if is_new[i] else 0) | (2 if is_new[ii] else 0)
            if case:
                outer_prev, outer_next = inner_next ^ 1, inner_prev ^ 1
                if case == 1:  # prev is new, next is old
                    next_cache.append((self.prev[inner_next], outer_next))
                    self.vertex_halfedge[v] = outer_next
                elif case == 2:  # next is new, prev is old
                    boundary_next = self.next[inner_prev]
                    next_cache.append((outer_prev, boundary_next))
                    self.vertex_halfedge[v] = boundary_next
                elif self.vertex_halfedge[v] == -1:  # both new, isolated vertex
                    self.vertex_halfedge[v] = outer_next
                    next_cache.append((outer_prev, outer_next))
                else:  # both new, vertex already has a fan: splice into its boundary gap
                    boundary_next = self.vertex_halfedge[v]
                    boundary_prev = self.prev[boundary_next]
                    next_cache += [(boundary_prev, outer_next), (outer_prev, boundary_next)]
                next_cache.append((inner_prev, inner_next))
            else:
                needs_adjust[ii] = self.vertex_halfedge[v] == inner_next
            self.face[halfedges[i]] = face_index

        # 5. Apply the links (next and its stored inverse prev), then fix the stored outgoing half-edges.
        for h, h_next in next_cache:
            self.next[h] = h_next
            self.prev[h_next] = h
        for i in range(n):
            if needs_adjust[i]:
                self._adjust_outgoing_halfedge(corners[i])
        return True

    # -- queries --------------------------------------------------------------------------------------------------

    def vertex_neighbours(self, v: int) -> list[int]:
        """Neighbours of ``v`` in OpenMesh's vertex-vertex circulator order (empty for an isolated vertex)."""
        h0 = self.vertex_halfedge[v]
        ring: list[int] = []
        if h0 == -1:
            return ring
        h = h0
        while True:
            ring.append(self.to[h])
            h = self.next[h ^ 1]  # clockwise rotation
            if h == h0:
                return ring


def _next_ring(neighbours: list[list[int]], last_ring: list[int], taken: list[int]) -> list[int]:
    """The ring after ``last_ring``: for each of its vertices, the new neighbours that follow the last-ring ones
    in circulator order, then those before the first last-ring neighbour (the SpiralNet++ reference procedure)."""
    in_last = set(last_ring)
    seen = set(taken)
    ring: list[int] = []

    def take(v: int) -> None:
        if v not in in_last and v not in seen:
            ring.append(v)
            seen.add(v)

    for v1 in last_ring:
        around = neighbours[v1]
        after_last_ring = False
        for v2 in around:
            if after_last_ring:
                take(v2)
            if v2 in in_last:
                after_last_ring = True
        for v2 in around:
            if v2 in in_last:
                break
            take(v2)
    return ring


def spiral_indices(
    faces: np.ndarray,
    num_vertices: int,
    seq_length: int = 9,
    dilation: int = 1,
    vertices: np.ndarray | None = None,
) -> np.ndarray:
    """SpiralNet++ spiral of every vertex, ``(V, seq_length)`` int64.

    Each spiral is the vertex itself, then its one ring, then successive rings, all in OpenMesh's circulator
    order, cut to ``seq_length * dilation`` entries and strided by ``dilation``. When the rings run out before
    that length (tiny or fragmented meshes), the spiral is replaced by the vertex's ``seq_length * dilation``
    nearest vertices by Euclidean distance, which needs ``vertices``. On the FLAME hierarchy of the release this
    reproduces the spirals OpenMesh 1.2.1 gives, entry for entry.
    """
    # SpiralNet++ (Gong et al. 2019) spiral ordering, as computed by its reference code with OpenMesh.
    if seq_length < 1 or dilation < 1:
        raise InputError(f"seq_length and dilation must be >= 1, got {seq_length} and {dilation}")
    num_vertices = int(num_vertices)
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise InputError(f"faces must be a (F, 3) integer array, got {faces.dtype} {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise InputError(f"faces index vertices outside 0..{num_vertices - 1}")
    if vertices is not None:
        vertices = np.asarray(vertices, dtype=np.float64)
        if vertices.shape != (num_vertices, 3):
            raise InputError(f"vertices must have shape ({num_vertices}, 3), got {vertices.shape}")

    mesh = HalfEdgeMesh(faces, num_vertices)
    neighbours = [mesh.vertex_neighbours(v) for v in range(num_vertices)]
    length = seq_length * dilation
    tree = None
    spirals = np.empty((num_vertices, seq_length), dtype=np.int64)
    for v in range(num_vertices):
        spiral = [v]
        last_ring = list(neighbours[v])
        next_ring = _next_ring(neighbours, last_ring, spiral)
        spiral.extend(last_ring)
        while len(spiral) + len(next_ring) < length and next_ring:
            last_ring = next_ring
            next_ring = _next_ring(neighbours, last_ring, spiral)
            spiral.extend(last_ring)
        if next_ring:
            spiral.extend(next_ring)
        else:
            # Rings exhausted: fall back to the nearest vertices in space, as the reference code does.
            if vertices is None:
                raise InputError(
                    f"the rings of vertex {v} run out before {length} entries",
                    hint="pass `vertices` so that the nearest-vertex fallback can be used",
                )
            if length > num_vertices:
                raise InputError(f"a spiral of {length} entries needs at least {length} vertices, got {num_vertices}")
            if tree is None:
                from scipy.spatial import cKDTree

                tree = cKDTree(vertices)
            _, nearest = tree.query(vertices[v], k=length)
            spiral = [int(i) for i in np.atleast_1d(nearest)]
        spirals[v] = spiral[:length:dilation]
    return spirals


# ---------------------------------------------------------------------------------------------------------------
# Building a hierarchy from any triangle mesh
# ---------------------------------------------------------------------------------------------------------------

# Aggressiveness values of fast-simplification tried in turn until the decimation lands on the exact vertex count
# (its default 7 first).
_DECIMATION_AGGRESSIVENESS = (7.0, 6.0, 8.0, 5.0, 9.0)


def _collapse_state(num_vertices: int, faces: np.ndarray, collapses: np.ndarray, k: int):
    """Mesh after the first ``k`` edge collapses, on original vertex ids.

    Returns (referenced vertices sorted ascending, faces on original ids without degenerate or duplicate ones).
    """
    parent = np.arange(num_vertices)
    parent[collapses[:k, 1]] = collapses[:k, 0]  # collapses[i] = (kept, removed)
    while True:  # follow merge chains to their surviving vertex (pointer jumping)
        hop = parent[parent]
        if np.array_equal(hop, parent):
            break
        parent = hop
    mapped = parent[faces]  # (F, 3)
    keep = (mapped[:, 0] != mapped[:, 1]) & (mapped[:, 1] != mapped[:, 2]) & (mapped[:, 0] != mapped[:, 2])
    mapped = mapped[keep]
    _, first = np.unique(np.sort(mapped, axis=1), axis=0, return_index=True)
    mapped = mapped[np.sort(first)]
    return np.unique(mapped), mapped


def _decimate_selection(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to ``target`` vertices that keeps a subset of the original vertices.

    fast-simplification (Garland-Heckbert quadrics, Forstmann's fast variant) records its edge collapses; the
    vertices that no collapse removed are original vertices, so the coarse level is a selection, as COMA's
    mesh sampling requires. The number of collapses is chosen by bisection so that exactly ``target`` vertices
    still belong to a triangle (vertices left without any triangle are dropped).
    Returns (kept fine indices ascending, (V_target,), coarse faces on coarse ids, (F', 3)).
    """
    fast_simplification = require("fast_simplification", "mesh", "building a mesh hierarchy")

    num_vertices = len(vertices)
    for aggressiveness in _DECIMATION_AGGRESSIVENESS:
        _, _, collapses = fast_simplification.simplify(
            vertices, faces.astype(np.int64), target_count=0, agg=aggressiveness, return_collapses=True
        )
        collapses = np.asarray(collapses, dtype=np.int64).reshape(-1, 2)
        # The count of vertices still in a triangle never grows with more collapses: bisect for the largest
        # prefix that keeps at least `target` of them.
        lo, hi = 0, min(len(collapses), num_vertices - target)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(_collapse_state(num_vertices, faces, collapses, mid)[0]) >= target:
                lo = mid
            else:
                hi = mid - 1
        kept, coarse_faces = _collapse_state(num_vertices, faces, collapses, lo)
        if len(kept) == target:
            remap = np.full(num_vertices, -1, dtype=np.int64)
            remap[kept] = np.arange(target)
            return kept, remap[coarse_faces]
    raise InputError(
        f"quadric decimation could not reduce the mesh from {num_vertices} to exactly {target} vertices",
        hint="use a smaller reduction factor or a cleaner (manifold) input mesh",
    )


def _closest_triangles(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Index of the triangle closest to each point (exact; ties go to the lowest index), ``(N,)``.

    The nearest few centroids give an upper bound d on each point's distance. A triangle within d of the point
    has its centroid within d + r (r: the triangle's centroid-to-corner radius), so searching each radius class
    of triangles (radii within a factor 2) with its own bound yields every candidate; only those are measured.
    """
    from scipy.spatial import cKDTree

    closest_point = require("trimesh.triangles", "mesh", "building a mesh hierarchy").closest_point

    def distances(point_ids: np.ndarray, tri_ids: np.ndarray) -> np.ndarray:
        nearest = closest_point(triangles[tri_ids], points[point_ids])
        return np.linalg.norm(nearest - points[point_ids], axis=1)

    num_points = len(points)
    centroids = triangles.mean(axis=1)  # (T, 3)
    radius = np.linalg.norm(triangles - centroids[:, None], axis=2).max(axis=1)  # (T,)

    # 1. Upper bound from the nearest centroids.
    k = min(8, len(triangles))
    _, first = cKDTree(centroids).query(points, k=k)
    first = first.reshape(num_points, k)  # (N, k)
    bound = distances(np.repeat(np.arange(num_points), k), first.reshape(-1)).reshape(num_points, k).min(axis=1)

    # 2. Complete candidate sets, one radius class at a time.
    classes = np.floor(np.log2(np.maximum(radius, 1e-300) / max(float(radius.max()), 1e-300))).astype(np.int64)
    classes = np.maximum(classes, -30)  # radii below 2^-30 of the largest share one class
    pair_points: list[np.ndarray] = []
    pair_tris: list[np.ndarray] = []
    for cls in np.unique(classes):
        members = np.flatnonzero(classes == cls)
        balls = cKDTree(centroids[members]).query_ball_point(points, bound + radius[members].max())
        counts = np.fromiter((len(b) for b in balls), dtype=np.int64, count=num_points)
        point_ids = np.repeat(np.arange(num_points), counts)
        tri_ids = members[np.fromiter((t for b in balls for t in b), dtype=np.int64, count=int(counts.sum()))]
        centre_dist = np.linalg.norm(centroids[tri_ids] - points[point_ids], axis=1)
        close = centre_dist <= bound[point_ids] + radius[tri_ids]
        pair_points.append(point_ids[close])
        pair_tris.append(tri_ids[close])
    point_ids = np.concatenate(pair_points)
    tri_ids = np.concatenate(pair_tris)

    # 3. Exact distances; per point the nearest, then the lowest triangle index.
    dist = distances(point_ids, tri_ids)
    order = np.lexsort((tri_ids, dist, point_ids))
    point_ids, tri_ids = point_ids[order], tri_ids[order]
    first_of_point = np.flatnonzero(np.r_[True, point_ids[1:] != point_ids[:-1]])
    result = np.full(num_points, -1, dtype=np.int64)
    result[point_ids[first_of_point]] = tri_ids[first_of_point]
    return result


def _upsampling_matrix(
    fine_vertices: np.ndarray, coarse_vertices: np.ndarray, coarse_faces: np.ndarray, kept: np.ndarray
) -> sp.csr_matrix:
    """Barycentric up-sampling ``(V_fine, V_coarse)``: each fine vertex in its closest coarse triangle.

    As in COMA's mesh sampling (Ranjan et al. 2018), the weights are the barycentric coordinates of the fine
    vertex projected onto the plane of its closest coarse triangle: they sum to 1 and may fall outside [0, 1]
    when the projection leaves the triangle. A kept vertex gets weight exactly 1 on its own coarse copy (and two
    stored zeros), so up @ down reproduces it exactly.
    """
    points_to_barycentric = require("trimesh.triangles", "mesh", "building a mesh hierarchy").points_to_barycentric

    num_fine, num_coarse = len(fine_vertices), len(coarse_vertices)
    corners = coarse_vertices[coarse_faces]  # (F, 3, 3)
    doubled_area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    scale = float(np.ptp(coarse_vertices, axis=0).max()) or 1.0
    usable = np.flatnonzero(doubled_area > 1e-12 * scale * scale)
    if len(usable) == 0:
        raise InputError("the decimated mesh has no non-degenerate triangle to up-sample from")

    columns = np.empty((num_fine, 3), dtype=np.int64)
    weights = np.empty((num_fine, 3), dtype=np.float64)
    nearest = usable[_closest_triangles(fine_vertices, corners[usable])]  # (V_fine,)
    columns[:] = coarse_faces[nearest]
    weights[:] = points_to_barycentric(corners[nearest], fine_vertices, method="cross")

    # Kept vertices: one-hot on their own coarse vertex, inside a triangle that contains it.
    coarse_of_fine = np.full(num_fine, -1, dtype=np.int64)
    coarse_of_fine[kept] = np.arange(num_coarse)
    incident = np.full(num_coarse, -1, dtype=np.int64)  # first usable face of each coarse vertex
    flat = coarse_faces[usable].reshape(-1)  # (3 F_usable,)
    owners, first = np.unique(flat, return_index=True)
    incident[owners] = usable[first // 3]
    for fine in kept:
        coarse = coarse_of_fine[fine]
        face = incident[coarse] if incident[coarse] >= 0 else nearest[fine]
        tri = coarse_faces[face]
        if coarse not in tri:  # no usable incident triangle: pair it with two other vertices of the closest one
            tri = np.array([coarse, *[c for c in coarse_faces[nearest[fine]] if c != coarse][:2]])
        columns[fine] = tri
        weights[fine] = (tri == coarse).astype(np.float64)

    rows = np.repeat(np.arange(num_fine), 3)
    up = sp.csr_matrix(
        (weights.reshape(-1).astype(np.float32), (rows, columns.reshape(-1))), shape=(num_fine, num_coarse)
    )
    return up


def build_mesh_hierarchy(
    vertices: np.ndarray, faces: np.ndarray, factors: tuple[int, ...] = (4, 4), seed: int = 0
) -> MeshHierarchy:
    """Down-sampling hierarchy of a triangle mesh, in the layout of the release's ``transform.pkl``.

    Level ``l + 1`` keeps ``ceil(V_l / factors[l])`` vertices of level ``l`` chosen by quadric decimation
    (``fast-simplification``); ``down[l]`` selects them and ``up[l]`` holds barycentric weights of each fine
    vertex in its closest coarse triangle (COMA's mesh sampling, Ranjan et al. 2018). The construction is
    deterministic and draws no random numbers; ``seed`` is accepted so that callers can pass one uniformly and is
    not used.
    """
    del seed  # deterministic construction: nothing to seed
    level_vertices = [_as_input_vertices(vertices)]
    level_faces = [_as_input_faces(faces, len(level_vertices[0]))]
    down: list[sp.csr_matrix] = []
    up: list[sp.csr_matrix] = []
    for factor in factors:
        if not (isinstance(factor, (int, np.integer)) and factor >= 2):
            raise InputError(f"each down-sampling factor must be an integer >= 2, got {factor!r}")
        fine_v, fine_f = level_vertices[-1], level_faces[-1]
        target = math.ceil(len(fine_v) / int(factor))  # COMA: ceil(V / factor)
        if target < 4:
            raise InputError(f"down-sampling {len(fine_v)} vertices by {factor} leaves fewer than 4 vertices")
        kept, coarse_f = _decimate_selection(fine_v, fine_f, target)
        coarse_v = fine_v[kept]  # (V_coarse, 3): the selection keeps original positions
        down.append(
            sp.csr_matrix(
                (np.ones(target, dtype=np.float32), (np.arange(target), kept)), shape=(target, len(fine_v))
            )
        )
        up.append(_upsampling_matrix(fine_v, coarse_v, coarse_f, kept))
        level_vertices.append(coarse_v)
        level_faces.append(coarse_f)
    return MeshHierarchy(vertices=level_vertices, faces=level_faces, down=down, up=up)


def _as_input_vertices(vertices: Any) -> np.ndarray:
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.all(np.isfinite(vertices)):
        raise InputError(f"vertices must be a finite (V, 3) array, got shape {vertices.shape}")
    return vertices


def _as_input_faces(faces: Any, num_vertices: int) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise InputError(f"faces must be a (F, 3) integer array, got {faces.dtype} {faces.shape}")
    faces = faces.astype(np.int64)
    if faces.size == 0 or faces.min() < 0 or faces.max() >= num_vertices:
        raise InputError(f"faces must be non-empty and index vertices 0..{num_vertices - 1}")
    return faces


# ---------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: ``(10 * 4**s + 2, 3)`` float64 vertices and ``(20 * 4**s, 3)`` int64 faces.

    Faces are counter-clockwise seen from outside. A closed, regular test mesh made by code, so tests need no
    downloaded assets.
    """
    if not isinstance(subdivisions, (int, np.integer)) or subdivisions < 0:
        raise InputError(f"subdivisions must be a non-negative integer, got {subdivisions!r}")
    t = (1.0 + math.sqrt(5.0)) / 2.0
    vertices = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0],
         [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
         [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        dtype=np.float64,
    )  # fmt: skip
    faces = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
         [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
         [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
         [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=np.int64,
    )  # fmt: skip
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    for _ in range(int(subdivisions)):
        # Split every triangle into four through its edge midpoints, shared between neighbouring faces.
        edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)  # (3F, 2): ab, bc, ca per face
        unique_edges, edge_of = np.unique(edges, axis=0, return_inverse=True)
        midpoints = vertices[unique_edges].mean(axis=1)
        midpoints /= np.linalg.norm(midpoints, axis=1, keepdims=True)
        mid = edge_of.reshape(-1, 3) + len(vertices)  # (F, 3): midpoint of ab, bc, ca
        a, b, c = faces.T
        ab, bc, ca = mid.T
        faces = np.concatenate(
            [np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1), np.stack([c, ca, bc], 1), np.stack([ab, bc, ca], 1)]
        )
        vertices = np.concatenate([vertices, midpoints])
    return vertices, faces


def sparse_to_torch(m: sp.spmatrix, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A scipy sparse matrix as a coalesced torch COO tensor (``float32`` unless ``dtype`` says otherwise)."""
    import torch

    coo = sp.coo_matrix(m)
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))  # (2, nnz)
    values = torch.from_numpy(np.asarray(coo.data)).to(torch.float32 if dtype is None else dtype)
    return torch.sparse_coo_tensor(indices, values, size=coo.shape, check_invariants=True).coalesce()
