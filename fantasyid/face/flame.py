"""FLAME in plain PyTorch, loaded from the licensed ``generic_model.pkl`` without chumpy and without trusting pickle.

FLAME (Li et al., SIGGRAPH Asia 2017) maps shape β, expression ψ and pose θ to a 5023-vertex head mesh::

    v_shaped = T̄ + S·[β; ψ]                        (linear blend shapes)
    v_posed  = v_shaped + P·vec(R(θ)[1:] − I)       (pose-corrective blend shapes)
    v        = LBS(v_posed, joints(v_shaped), θ, W)  (linear blend skinning over 5 joints)

The layout of the model file and the LBS conventions follow DECA (``decalib/models/FLAME.py`` and ``lbs.py``,
itself from FLAME_PyTorch/SMPL-X): the first ``n_shape`` of the 300 identity components and the first ``n_exp`` of
the 100 expression components (which start at index 300), pose = [global rotation (3), jaw (3)] with neck and eyes
fixed at zero, axis-angle rotations.

Two ways to decode DECA's codes (:func:`decode_vertices`):

* ``"paper"``: shape only (expression and pose zero). The mesh is then exactly ``T̄ + S_shape·β``.
* ``"released"``: shape, expression and pose, as the authors' ``decalib/process_pcd.py`` does.

``generic_model.pkl`` is a Python 2 pickle whose arrays may be chumpy ``Ch`` objects and whose ``J_regressor`` is a
scipy sparse matrix. :func:`load_flame_model` unpickles it with an allow-list: numpy arrays, dtypes, scalars, sets,
chumpy ``Ch`` (replaced by a stand-in that keeps only its ``x`` array; chumpy is never imported) and scipy CSC/CSR
matrices (replaced by a stand-in that keeps only ``data``, ``indices``, ``indptr`` and the shape). Any other global
makes it raise :class:`~fantasyid.errors.UnsafeFileError` before anything is constructed.
"""

from __future__ import annotations

import copyreg
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fantasyid.errors import CheckpointError, InputError, UnsafeFileError, WeightsNotFoundError, require
from fantasyid.safe_pickle import AllowListUnpickler, numpy_globals

torch = require("torch", "face", "the FLAME layer")
nn = torch.nn

#: Identity components stored before the expression components in FLAME's ``shapedirs`` (FLAME 2017/2020/2023).
FLAME_SHAPE_COMPONENTS = 300
#: DECA's configuration: 100 shape and 50 expression components.
DECA_N_SHAPE = 100
DECA_N_EXP = 50

DecodeMode = Literal["paper", "released"]

_FLAME_HINT = (
    "FLAME is licensed: register at https://flame.is.tue.mpg.de, download FLAME 2020 and pass the path of "
    "generic_model.pkl (fantasyid never downloads or ships it)"
)


# ----------------------------------------------------------------------------------------------------------------
# Restricted unpickling


class _ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps only the ndarray in its state's ``x``."""

    __slots__ = ("array",)

    def __setstate__(self, state: Any) -> None:
        value = state.get("x") if isinstance(state, dict) else None
        if not isinstance(value, np.ndarray):
            raise UnsafeFileError(f"a chumpy object in the file holds no array in 'x' (found {type(value).__name__})")
        self.array = value


class _SparseMatrix:
    """Stand-in for scipy's CSC/CSR matrices: keeps ``data``, ``indices``, ``indptr`` and the shape."""

    __slots__ = ("data", "format", "indices", "indptr", "shape")
    _format = "csc"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafeFileError("a sparse matrix in the file has no attribute dictionary")
        arrays = {name: state.get(name) for name in ("data", "indices", "indptr")}
        for name, value in arrays.items():
            if not isinstance(value, np.ndarray):
                raise UnsafeFileError(f"a sparse matrix in the file has no array '{name}'")
        shape = state.get("_shape", state.get("shape"))
        if not (isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(n, (int, np.integer)) for n in shape)):
            raise UnsafeFileError(f"a sparse matrix in the file has an invalid shape {shape!r}")
        self.format = self._format
        self.data, self.indices, self.indptr = arrays["data"], arrays["indices"], arrays["indptr"]
        self.shape = (int(shape[0]), int(shape[1]))

    def to_dense(self) -> np.ndarray:
        rows, cols = self.shape
        major = cols if self.format == "csc" else rows
        indptr = self.indptr.astype(np.int64)
        indices = self.indices.astype(np.int64)
        if indptr.shape != (major + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(indices):
            raise CheckpointError("a sparse matrix in the FLAME file has an inconsistent index pointer")
        minor = rows if self.format == "csc" else cols
        if len(indices) and (indices.min() < 0 or indices.max() >= minor) or len(self.data) != len(indices):
            raise CheckpointError("a sparse matrix in the FLAME file has out-of-range indices")
        dense = np.zeros(self.shape, dtype=np.float64)
        owner = np.repeat(np.arange(major), np.diff(indptr))  # column (csc) or row (csr) of every stored value
        if self.format == "csc":
            np.add.at(dense, (indices, owner), self.data)
        else:
            np.add.at(dense, (owner, indices), self.data)
        return dense


class _SparseCsr(_SparseMatrix):
    __slots__ = ()
    _format = "csr"


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed = numpy_globals()
    allowed[("chumpy.ch", "Ch")] = _ChumpyArray
    for module in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"):
        allowed[(module, "csc_matrix")] = _SparseMatrix
    for module in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"):
        allowed[(module, "csr_matrix")] = _SparseCsr
    for module in ("copy_reg", "copyreg"):  # protocol 0/1 new-style objects: _reconstructor(cls, object, None)
        allowed[(module, "_reconstructor")] = copyreg._reconstructor
    for module in ("__builtin__", "builtins"):
        allowed[(module, "object")] = object
        allowed[(module, "set")] = set  # chumpy's _dirty_vars
        allowed[(module, "frozenset")] = frozenset
    return allowed


def _plain(value: Any) -> Any:
    if isinstance(value, _ChumpyArray):
        return value.array
    if isinstance(value, _SparseMatrix):
        return value.to_dense()
    return value


def safe_unpickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Unpickle a FLAME-format model file with the allow-list described in the module docstring.

    Returns the top-level dict with chumpy objects replaced by their arrays and sparse matrices made dense.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"FLAME model not found: {path}", hint=_FLAME_HINT)
    with open(path, "rb") as stream:
        try:
            content = AllowListUnpickler(
                stream, str(path), _allowed_globals(), "a FLAME model file",
                hint="use the original generic_model.pkl from the FLAME website",
            ).load()
        except UnsafeFileError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise CheckpointError(f"cannot read {path} as a FLAME model pickle: {exc}", hint=_FLAME_HINT) from exc
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} holds a {type(content).__name__}, not the dict of a FLAME model")
    return {str(key): _plain(value) for key, value in content.items()}


# ----------------------------------------------------------------------------------------------------------------
# Model data


@dataclass(frozen=True)
class FlameModelData:
    """The arrays of a FLAME model file (V vertices, J joints, K blend shapes, F faces)."""

    v_template: np.ndarray  #: (V, 3) mean head
    shapedirs: np.ndarray  #: (V, 3, K) identity components then expression components
    posedirs: np.ndarray  #: (V, 3, 9·(J−1)) pose-corrective blend shapes
    j_regressor: np.ndarray  #: (J, V) dense joint regressor
    parents: np.ndarray  #: (J,) int64 kinematic parents, −1 for the root
    lbs_weights: np.ndarray  #: (V, J) skinning weights
    faces: np.ndarray  #: (F, 3) int64 triangles

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])


_REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")


def _numeric(value: Any, key: str, path: Path, *, integer: bool = False) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise CheckpointError(f"{path}: '{key}' is not a numeric array (dtype {array.dtype})")
    if not integer and not np.all(np.isfinite(array)):
        raise CheckpointError(f"{path}: '{key}' contains NaN or infinite values")
    return array


def load_flame_model(path: str | os.PathLike[str]) -> FlameModelData:
    """Read and validate FLAME's ``generic_model.pkl`` (see :func:`safe_unpickle` for what is accepted)."""
    path = Path(path).expanduser()
    content = safe_unpickle(path)
    missing = [k for k in _REQUIRED_KEYS if k not in content]
    if missing:
        raise CheckpointError(f"{path} is not a FLAME model: missing {', '.join(missing)}", hint=_FLAME_HINT)
    v_template = _numeric(content["v_template"], "v_template", path).astype(np.float64)
    shapedirs = _numeric(content["shapedirs"], "shapedirs", path).astype(np.float64)
    posedirs = _numeric(content["posedirs"], "posedirs", path).astype(np.float64)
    j_regressor = _numeric(content["J_regressor"], "J_regressor", path).astype(np.float64)
    kintree = _numeric(content["kintree_table"], "kintree_table", path, integer=True)
    weights = _numeric(content["weights"], "weights", path).astype(np.float64)
    faces = _numeric(content["f"], "f", path, integer=True).astype(np.int64)

    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise CheckpointError(f"{path}: v_template has shape {v_template.shape}, expected (V, 3)")
    count = v_template.shape[0]
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise CheckpointError(f"{path}: kintree_table has shape {kintree.shape}, expected (2, J)")
    joints = kintree.shape[1]
    checks = {
        "shapedirs": (shapedirs.ndim == 3 and shapedirs.shape[:2] == (count, 3), "(V, 3, K)"),
        "posedirs": (posedirs.shape == (count, 3, 9 * (joints - 1)), f"({count}, 3, {9 * (joints - 1)})"),
        "J_regressor": (j_regressor.shape == (joints, count), f"({joints}, {count})"),
        "weights": (weights.shape == (count, joints), f"({count}, {joints})"),
        "f": (faces.ndim == 2 and faces.shape[1] == 3, "(F, 3)"),
    }
    for key, (ok, expected) in checks.items():
        if not ok:
            actual = {"shapedirs": shapedirs, "posedirs": posedirs, "J_regressor": j_regressor,
                      "weights": weights, "f": faces}[key].shape  # fmt: skip
            raise CheckpointError(f"{path}: {key} has shape {actual}, expected {expected}")
    if faces.size and (faces.min() < 0 or faces.max() >= count):
        raise CheckpointError(f"{path}: faces refer to vertices outside 0..{count - 1}")
    # the root's parent is stored as an unsigned -1 (4294967295) in the original file, as DECA notes
    parents = kintree[0].astype(np.int64)
    parents[0] = -1
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, joints)):
        raise CheckpointError(f"{path}: kintree_table must list every joint after its parent")
    return FlameModelData(v_template, shapedirs, posedirs, j_regressor, parents, weights, faces)


# ----------------------------------------------------------------------------------------------------------------
# The layer


def axis_angle_to_matrix(rotations: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, (N, 3) axis-angle → (N, 3, 3).

    Like SMPL-X / DECA's ``batch_rodrigues``, the angle is the norm of ``r + 1e-8`` so that a zero rotation stays
    finite (it then differs from the identity by about 1e-8).
    """
    angle = torch.norm(rotations + 1e-8, dim=1, keepdim=True)  # (N, 1)
    axis = rotations / angle
    cos = torch.cos(angle)[:, :, None]  # (N, 1, 1)
    sin = torch.sin(angle)[:, :, None]
    rx, ry, rz = axis.unbind(dim=1)
    zeros = torch.zeros_like(rx)
    skew = torch.stack([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], dim=1).view(-1, 3, 3)
    identity = torch.eye(3, dtype=rotations.dtype, device=rotations.device)[None]
    return identity + sin * skew + (1.0 - cos) * torch.bmm(skew, skew)


class FlameLayer(nn.Module):
    """FLAME: (shape, expression, pose) → vertices (B, V, 3), in plain PyTorch.

    Args:
        model: arrays from :func:`load_flame_model`.
        n_shape: identity components used (DECA: 100).
        n_exp: expression components used (DECA: 50); they start at :data:`FLAME_SHAPE_COMPONENTS` in the file.
    """

    def __init__(self, model: FlameModelData, n_shape: int = DECA_N_SHAPE, n_exp: int = DECA_N_EXP):
        super().__init__()
        total = model.shapedirs.shape[2]
        if not 0 < n_shape <= FLAME_SHAPE_COMPONENTS or n_exp < 0 or FLAME_SHAPE_COMPONENTS + n_exp > total:
            raise CheckpointError(
                f"the FLAME model has {total} blend shapes; n_shape={n_shape} and n_exp={n_exp} need "
                f"n_shape <= {FLAME_SHAPE_COMPONENTS} and {FLAME_SHAPE_COMPONENTS} + n_exp <= {total}"
            )
        self.n_shape, self.n_exp = n_shape, n_exp
        f32 = torch.float32
        directions = np.concatenate(
            [
                model.shapedirs[:, :, :n_shape],
                model.shapedirs[:, :, FLAME_SHAPE_COMPONENTS : FLAME_SHAPE_COMPONENTS + n_exp],
            ],
            axis=2,
        )  # (V, 3, n_shape + n_exp)
        poses = model.posedirs.shape[2]
        self.register_buffer("v_template", torch.tensor(model.v_template, dtype=f32))  # (V, 3)
        self.register_buffer("shapedirs", torch.tensor(directions, dtype=f32))  # (V, 3, n_shape + n_exp)
        # (V, 3, P) → (V·3, P) → (P, V·3): one row per pose feature, as DECA stores it
        self.register_buffer("posedirs", torch.tensor(model.posedirs.reshape(-1, poses).T.copy(), dtype=f32))
        self.register_buffer("j_regressor", torch.tensor(model.j_regressor, dtype=f32))  # (J, V)
        self.register_buffer("lbs_weights", torch.tensor(model.lbs_weights, dtype=f32))  # (V, J)
        self.register_buffer("faces", torch.tensor(model.faces, dtype=torch.long))  # (F, 3)
        self.parents: list[int] = [int(p) for p in model.parents]
        self.model_data = model  #: the arrays it was built from (a tiny checkpoint saves them)

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    def _check(self, tensor: torch.Tensor | None, width: int, name: str, batch: int) -> torch.Tensor:
        """``tensor`` as (batch, width) on the layer's device and dtype; zeros when omitted."""
        if tensor is None:
            return self.v_template.new_zeros(batch, width)
        if tensor.ndim != 2 or tensor.shape != (batch, width):
            expected = f"({batch}, {width})" if batch >= 0 else f"(B, {width})"
            raise InputError(f"FLAME {name} must have shape {expected}, got {tuple(tensor.shape)}")
        return tensor.to(self.v_template)

    def shape_only(self, shape: torch.Tensor) -> torch.Tensor:
        """Vertices with expression and pose at zero: exactly ``v_template + S_shape · shape``, (B, V, 3)."""
        shape = self._check(shape, self.n_shape, "shape", shape.shape[0] if shape.ndim == 2 else -1)
        return self.v_template + torch.einsum("bl,vkl->bvk", shape, self.shapedirs[:, :, : self.n_shape])

    def forward(
        self,
        shape: torch.Tensor,
        expression: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        *,
        neck_pose: torch.Tensor | None = None,
        eye_pose: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Vertices (B, V, 3) of FLAME with linear blend skinning.

        ``shape`` (B, n_shape); ``expression`` (B, n_exp); ``pose`` (B, 6) = global rotation then jaw, axis-angle
        (DECA's layout); ``neck_pose`` (B, 3) and ``eye_pose`` (B, 6) default to zero as in DECA. Omitted
        arguments are zero. Requires the standard 5-joint FLAME skeleton.
        """
        batch = shape.shape[0] if shape.ndim == 2 else -1
        shape = self._check(shape, self.n_shape, "shape", batch)
        expression = self._check(expression, self.n_exp, "expression", batch)
        pose = self._check(pose, 6, "pose", batch)
        neck_pose = self._check(neck_pose, 3, "neck_pose", batch)
        eye_pose = self._check(eye_pose, 6, "eye_pose", batch)
        if len(self.parents) != 5:
            raise CheckpointError(
                f"the FLAME skeleton has {len(self.parents)} joints; pose needs 5 (root, neck, jaw, eyes)"
            )
        # full pose: global, neck, jaw, left eye, right eye (DECA's FLAME.forward)
        full_pose = torch.cat([pose[:, :3], neck_pose, pose[:, 3:], eye_pose], dim=1)  # (B, 15)
        betas = torch.cat([shape, expression], dim=1)  # (B, n_shape + n_exp)

        # 1. blend shapes
        v_shaped = self.v_template + torch.einsum("bl,vkl->bvk", betas, self.shapedirs)  # (B, V, 3)
        joints = torch.einsum("bvk,jv->bjk", v_shaped, self.j_regressor)  # (B, J, 3)

        # 2. pose-corrective blend shapes from the non-root joint rotations
        count = len(self.parents)
        rotations = axis_angle_to_matrix(full_pose.reshape(-1, 3)).view(batch, count, 3, 3)  # (B, J, 3, 3)
        identity = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        pose_feature = (rotations[:, 1:] - identity).reshape(batch, -1)  # (B, 9·(J−1))
        v_posed = v_shaped + (pose_feature @ self.posedirs).view(batch, -1, 3)  # (B, V, 3)

        # 3. rigid transforms along the kinematic chain
        relative = joints.clone()
        relative[:, 1:] -= joints[:, self.parents[1:]]
        local = torch.zeros(batch, count, 4, 4, dtype=rotations.dtype, device=rotations.device)
        local[:, :, :3, :3] = rotations
        local[:, :, :3, 3] = relative
        local[:, :, 3, 3] = 1.0
        chain = [local[:, 0]]
        for joint in range(1, count):
            chain.append(chain[self.parents[joint]] @ local[:, joint])
        world = torch.stack(chain, dim=1)  # (B, J, 4, 4)
        # move each transform so that it acts on rest-pose coordinates: T − [0 | T·j]
        rest_offset = (world[:, :, :3, :3] @ joints.unsqueeze(-1)).squeeze(-1)  # (B, J, 3)
        skinning = world.clone()
        skinning[:, :, :3, 3] = world[:, :, :3, 3] - rest_offset

        # 4. linear blend skinning
        blended = torch.einsum("vj,bjrc->bvrc", self.lbs_weights, skinning)  # (B, V, 4, 4)
        return (blended[:, :, :3, :3] @ v_posed.unsqueeze(-1)).squeeze(-1) + blended[:, :, :3, 3]


def decode_vertices(
    flame: FlameLayer,
    shape: torch.Tensor,
    expression: torch.Tensor | None = None,
    pose: torch.Tensor | None = None,
    mode: DecodeMode = "paper",
) -> torch.Tensor:
    """FLAME vertices (B, V, 3) for DECA codes in the ``paper`` (shape only) or ``released`` (shape, expression,
    pose) mode; see the module docstring."""
    if mode == "paper":
        return flame.shape_only(shape)
    if mode == "released":
        return flame(shape, expression, pose)
    raise InputError(f"unknown FLAME decoding mode {mode!r}; use 'paper' or 'released'")
