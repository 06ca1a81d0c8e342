"""Fixtures for the shape-editing tests: a smooth, head-shaped FLAME-format model written in the real
``generic_model.pkl`` format (chumpy arrays, old scipy sparse) with the face-stack tests' writer, and its editor."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

FACE_TESTS = Path(__file__).resolve().parents[1] / "face"


def face_fixtures():
    """The face-stack tests' ``flame_fixtures`` module (FLAME-format writers), imported from its file."""
    name = "flame_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FACE_TESTS / "flame_fixtures.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def head_flame_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """FLAME-format arrays on a 642-vertex head: an ellipsoid (15 × 20 × 18 cm) with a nose, facing +z, and smooth
    blend shapes (cubic vector fields, a few mm per unit coefficient, decaying like a PCA spectrum)."""
    fixtures = face_fixtures()
    rng = np.random.default_rng(seed)
    unit, faces = fixtures.icosphere(3)
    x, y, z = unit.T
    head = unit * np.array([0.075, 0.1, 0.09])
    head[:, 2] += 0.03 * np.exp(-(x / 0.18) ** 2 - ((y + 0.15) / 0.22) ** 2) * np.clip(z, 0.0, None) ** 4  # nose
    count, joints, blend = len(head), len(fixtures.PARENTS), fixtures.NUM_BLEND_SHAPES
    powers = [(i, j, k) for i in range(4) for j in range(4) for k in range(4) if i + j + k <= 3]  # 20 monomials
    monomials = np.stack([x**i * y**j * z**k for i, j, k in powers], axis=1)  # (V, 20)
    coefficients = rng.normal(0.0, 1.0, (len(powers), 3, blend)) * (0.003 / (1.0 + np.arange(blend) / 8.0))
    shapedirs = np.einsum("vm,mkl->vkl", monomials, coefficients)  # (V, 3, 400)
    weights = rng.uniform(0.0, 1.0, (count, joints))
    weights /= weights.sum(axis=1, keepdims=True)
    regressor = np.zeros((joints, count))
    for joint in range(joints):
        regressor[joint, rng.choice(count, 4, replace=False)] = 0.25
    parents = fixtures.PARENTS
    return {
        "v_template": head,
        "shapedirs": shapedirs,
        "posedirs": rng.normal(0.0, 1e-4, (count, 3, 9 * (joints - 1))),
        "J_regressor": regressor,
        "kintree_table": np.stack([np.where(parents < 0, 4294967295, parents), np.arange(joints)]).astype(np.uint32),
        "weights": weights,
        "f": faces.astype(np.uint32),
        "J": regressor @ head,
    }


@pytest.fixture(scope="session")
def flame_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("flame") / "generic_model.pkl"
    face_fixtures().write_flame_pickle(path, head_flame_arrays())
    return path


@pytest.fixture(scope="session")
def flame(flame_file):
    from fantasyid.face.flame import FlameLayer, load_flame_model

    return FlameLayer(load_flame_model(flame_file))


@pytest.fixture(scope="session")
def editor(flame):
    from fantasyid.editing import ShapeEditor

    return ShapeEditor(flame)


@pytest.fixture()
def face_state(editor):
    """A DECA-like face: shape coefficients of about half a prior standard deviation."""
    rng = np.random.default_rng(7)
    return editor.state(rng.normal(0.0, 0.5, editor.n_shape), mode="paper")


@pytest.fixture()
def released_state(editor):
    rng = np.random.default_rng(8)
    return editor.state(rng.normal(0.0, 0.5, editor.n_shape), rng.normal(0.0, 0.5, 50),
                        np.array([0.05, -0.2, 0.02, 0.15, 0.0, 0.0]), mode="released")  # fmt: skip
