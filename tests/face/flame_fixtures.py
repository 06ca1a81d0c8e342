"""Writers for files in the real FLAME / DECA formats, on a small mesh (the licensed files are never needed).

``write_flame_pickle`` produces a ``generic_model.pkl`` look-alike: a protocol-2 pickle of a dict whose
``shapedirs`` and ``posedirs`` are chumpy ``Ch`` objects (pickled from a fake ``chumpy.ch`` module, so the file
refers to ``chumpy.ch.Ch`` exactly as the real one does) and whose ``J_regressor`` is a sparse CSC matrix pickled
under scipy's old module path ``scipy.sparse.csc``.
"""

from __future__ import annotations

import pickle
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np

NUM_BLEND_SHAPES = 400  # FLAME 2020: 300 identity + 100 expression components
PARENTS = np.array([-1, 0, 1, 1, 1])  # root, neck, jaw, left eye, right eye


def icosphere(subdivisions: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: vertices (V, 3) and triangles (F, 3); 42 / 80 for one subdivision."""
    t = (1.0 + 5**0.5) / 2.0
    vertices = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]  # fmt: skip
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
             [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]  # fmt: skip
    points = [np.array(v, float) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        midpoints: dict[tuple[int, int], int] = {}
        refined = []
        for a, b, c in faces:
            corners = []
            for u, v in ((a, b), (b, c), (c, a)):
                key = (min(u, v), max(u, v))
                if key not in midpoints:
                    middle = (points[u] + points[v]) / 2.0
                    points.append(middle / np.linalg.norm(middle))
                    midpoints[key] = len(points) - 1
                corners.append(midpoints[key])
            ab, bc, ca = corners
            refined += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = refined
    return np.array(points), np.array(faces)


def synthetic_flame_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Plain arrays of a FLAME-format model on an icosphere head of radius 0.1 m.

    Skinning weights: vertices with z < −0.03 follow the jaw only, vertices with z > 0.05 the root only, the rest
    are mixed; the joint regressor averages a few vertices per joint.
    """
    rng = np.random.default_rng(seed)
    vertices, faces = icosphere(1)
    v_template = 0.1 * vertices  # (V, 3)
    count, joints = len(v_template), len(PARENTS)
    weights = rng.uniform(0.0, 1.0, (count, joints))
    weights /= weights.sum(axis=1, keepdims=True)
    weights[v_template[:, 2] < -0.03] = np.eye(joints)[2]  # jaw-only vertices
    weights[v_template[:, 2] > 0.05] = np.eye(joints)[0]  # root-only vertices
    regressor = np.zeros((joints, count))
    for joint in range(joints):
        chosen = rng.choice(count, 4, replace=False)
        regressor[joint, chosen] = 0.25
    return {
        "v_template": v_template,
        "shapedirs": rng.normal(0.0, 0.01, (count, 3, NUM_BLEND_SHAPES)),
        "posedirs": rng.normal(0.0, 0.01, (count, 3, 9 * (joints - 1))),
        "J_regressor": regressor,
        "kintree_table": np.stack([np.where(PARENTS < 0, 4294967295, PARENTS), np.arange(joints)]).astype(np.uint32),
        "weights": weights,
        "f": faces.astype(np.uint32),
        "J": regressor @ v_template,
    }


@contextmanager
def fake_modules(**modules: types.ModuleType):
    """Temporarily install modules under the given dotted names (for pickling by reference)."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _fake_chumpy():
    package, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        """Pickles like chumpy's Ch: its __getstate__ returns __dict__ without _parents and _cache."""

        def __init__(self, x):
            self.__dict__.update({"_dirty_vars": {"x"}, "_itr": None, "_depends_on_deps": {},
                                  "_make_dense": False, "_make_sparse": False, "x": x})  # fmt: skip

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    module.Ch, package.ch = Ch, module
    return package, module, Ch


def _fake_old_scipy_csc():
    module = types.ModuleType("scipy.sparse.csc")

    class csc_matrix:
        """Pickles like a py2-era scipy CSC matrix: its attribute dict."""

        def __init__(self, dense: np.ndarray):
            rows, cols = dense.shape
            indptr, indices, data = [0], [], []
            for col in range(cols):
                nonzero = np.flatnonzero(dense[:, col])
                indices += nonzero.tolist()
                data += dense[nonzero, col].tolist()
                indptr.append(len(indices))
            self._shape = (rows, cols)
            self.maxprint = 50
            self.indices = np.array(indices, dtype=np.int32)
            self.indptr = np.array(indptr, dtype=np.int32)
            self.data = np.array(data)

    csc_matrix.__module__, csc_matrix.__qualname__ = "scipy.sparse.csc", "csc_matrix"
    module.csc_matrix = csc_matrix
    return module, csc_matrix


def write_flame_pickle(path: Path, arrays: dict[str, np.ndarray] | None = None, *, protocol: int = 2,
                       extra: dict | None = None, chumpy_keys=("shapedirs", "posedirs")) -> dict[str, np.ndarray]:  # fmt: skip
    """Write a FLAME-format generic_model.pkl; returns the plain arrays written."""
    arrays = arrays or synthetic_flame_arrays()
    package, module, Ch = _fake_chumpy()
    sparse_module, csc_matrix = _fake_old_scipy_csc()
    with fake_modules(**{"chumpy": package, "chumpy.ch": module, "scipy.sparse.csc": sparse_module}):
        content = dict(arrays)
        for key in chumpy_keys:
            content[key] = Ch(arrays[key])
        content["J_regressor"] = csc_matrix(arrays["J_regressor"])
        content["bs_style"], content["bs_type"] = "lbs", "lrotmin"
        content.update(extra or {})
        with open(path, "wb") as stream:
            pickle.dump(content, stream, protocol=protocol)
    return arrays


def pickle_with_fake_chumpy(obj_factory, path: Path, protocol: int = 2) -> None:
    """Pickle whatever ``obj_factory(Ch)`` builds, with the fake chumpy module installed."""
    package, module, Ch = _fake_chumpy()
    with fake_modules(**{"chumpy": package, "chumpy.ch": module}), open(path, "wb") as stream:
        pickle.dump(obj_factory(Ch), stream, protocol=protocol)
