"""Loading the release's ``transform.pkl`` (COMA's "mesh sampling" layout) through a restricted unpickler: numpy
arrays and scipy sparse matrices only, rebuilt through scipy's public constructors; or our own ``.npz``."""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from fantasyid.errors import CheckpointError, UnsafeFileError, WeightsNotFoundError
from fantasyid.safe_pickle import AllowListUnpickler, numpy_globals

from .hierarchy import MeshHierarchy

__all__ = ["load_mesh_hierarchy"]


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

