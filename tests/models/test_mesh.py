"""Mesh hierarchy, safe loading of transform.pkl, and SpiralNet++ spirals with OpenMesh's ordering."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from fantasyid.errors import CheckpointError, InputError, UnsafeFileError
from fantasyid.models.mesh import (
    HalfEdgeMesh,
    MeshHierarchy,
    build_mesh_hierarchy,
    icosphere,
    load_mesh_hierarchy,
    sparse_to_torch,
    spiral_indices,
)

# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def _one_rings(faces: np.ndarray, num_vertices: int) -> list[set[int]]:
    """One-ring neighbour sets straight from the face list (independent of the half-edge code)."""
    rings: list[set[int]] = [set() for _ in range(num_vertices)]
    for a, b, c in faces.tolist():
        rings[a] |= {b, c}
        rings[b] |= {a, c}
        rings[c] |= {a, b}
    return rings


def _assert_same_sparse(a: sp.spmatrix, b: sp.spmatrix) -> None:
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    assert (a != b).nnz == 0
    assert a.nnz == b.nnz  # explicit zeros survive too


def _assert_same_hierarchy(a: MeshHierarchy, b: MeshHierarchy) -> None:
    assert a.num_vertices() == b.num_vertices()
    for x, y in zip(a.vertices, b.vertices):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    for x, y in zip(a.faces, b.faces):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    for x, y in zip(a.down + a.up, b.down + b.up):
        _assert_same_sparse(x, y)


def _sparse_sha256(m: sp.spmatrix) -> str:
    """Hash convention of official_checkpoint_layout.json: (row, col) sorted, int64 rows, int64 cols, f32 values."""
    coo = sp.coo_matrix(m)
    order = np.lexsort((coo.col, coo.row))
    payload = (
        coo.row[order].astype(np.int64).tobytes()
        + coo.col[order].astype(np.int64).tobytes()
        + coo.data[order].astype(np.float32).tobytes()
    )
    return hashlib.sha256(payload).hexdigest()


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray]:
    return icosphere(3)  # 642 vertices, 1280 faces


@pytest.fixture(scope="module")
def sphere_hierarchy(sphere) -> MeshHierarchy:
    return build_mesh_hierarchy(*sphere, factors=(4, 4))


def _layout_pickle(hierarchy: MeshHierarchy) -> dict:
    """The release's transform.pkl layout: lists over levels of float64 / uint32 arrays and csc matrices."""
    return {
        "vertices": [v.copy() for v in hierarchy.vertices],
        "face": [f.astype(np.uint32) for f in hierarchy.faces],
        "adj": [sp.csc_matrix(np.ones((n, n), dtype=np.float32)) for n in hierarchy.num_vertices()],
        "down_transform": [sp.csc_matrix(m) for m in hierarchy.down],
        "up_transform": [sp.csc_matrix(m) for m in hierarchy.up],
    }


class _Payload:
    """A pickled object that runs a shell command when unpickled by an unrestricted loader."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Custom:
    """Any application class: not allowed in a mesh file."""

    def __init__(self):
        self.value = 1


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


# ---------------------------------------------------------------------------------------------------------------
# synthetic mesh
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subdivisions", [0, 1, 3])
def test_icosphere_is_a_closed_outward_unit_sphere(subdivisions):
    vertices, faces = icosphere(subdivisions)
    assert vertices.shape == (10 * 4**subdivisions + 2, 3) and vertices.dtype == np.float64
    assert faces.shape == (20 * 4**subdivisions, 3) and faces.dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 1.0, atol=1e-12)
    # Closed and consistently oriented: every directed edge appears once, and its reverse once.
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    assert len({tuple(e) for e in directed.tolist()}) == len(directed)
    assert {tuple(e) for e in directed.tolist()} == {tuple(e) for e in directed[:, ::-1].tolist()}
    # Counter-clockwise seen from outside: normals point away from the centre.
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(np.einsum("ij,ij->i", normals, tri.mean(axis=1)) > 0)


def test_icosphere_rejects_negative_subdivisions():
    with pytest.raises(InputError):
        icosphere(-1)


# ---------------------------------------------------------------------------------------------------------------
# spirals
# ---------------------------------------------------------------------------------------------------------------


def test_spirals_are_the_vertex_then_its_rings(sphere):
    vertices, faces = sphere
    num = len(vertices)
    spirals = spiral_indices(faces, num, seq_length=9, dilation=1, vertices=vertices)
    assert spirals.shape == (num, 9) and spirals.dtype == np.int64
    np.testing.assert_array_equal(spirals[:, 0], np.arange(num))
    rings = _one_rings(faces, num)
    for v, row in enumerate(spirals.tolist()):
        assert len(set(row)) == 9, f"vertex {v} repeats an entry: {row}"
        degree = len(rings[v])
        assert set(row[1 : 1 + degree]) == rings[v]
        two_ring = set().union(*(rings[u] for u in rings[v])) - rings[v] - {v}
        assert set(row[1 + degree :]) <= two_ring


def test_one_ring_runs_clockwise_around_the_outward_normal(sphere):
    # OpenMesh's vertex-vertex circulator turns clockwise (h -> next(opposite(h))).
    vertices, faces = sphere
    spirals = spiral_indices(faces, len(vertices), vertices=vertices)
    rings = _one_rings(faces, len(vertices))
    for v in range(0, len(vertices), 17):
        ring = spirals[v, 1 : 1 + len(rings[v])]
        edges = vertices[ring] - vertices[v]  # (degree, 3)
        turn = np.einsum("ij,j->i", np.cross(edges[:-1], edges[1:]), vertices[v])
        assert np.all(turn < 0)


def test_spiral_dilation_strides_a_longer_spiral(sphere):
    vertices, faces = sphere
    long = spiral_indices(faces, len(vertices), seq_length=18, vertices=vertices)
    dilated = spiral_indices(faces, len(vertices), seq_length=9, dilation=2, vertices=vertices)
    np.testing.assert_array_equal(dilated, long[:, ::2])


def test_spiral_falls_back_to_nearest_vertices():
    # Two separate triangles: the rings run out after two neighbours, so the spiral is the 4 nearest vertices.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 0, 0], [6, 0, 0], [5, 1, 0]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    spirals = spiral_indices(faces, 6, seq_length=4, vertices=vertices)
    assert spirals[0, 0] == 0 and set(spirals[0, 1:3]) == {1, 2} and spirals[0, 3] == 3
    assert spirals[4].tolist() == [4, 3, 5, 1]
    with pytest.raises(InputError):
        spiral_indices(faces, 6, seq_length=4)  # the fallback needs positions


def test_half_edge_mesh_refuses_faces_like_openmesh():
    # "complex edge": the half-edge 0->1 already belongs to a face.
    mesh = HalfEdgeMesh(np.array([[0, 1, 2], [0, 1, 3]]), 4)
    assert mesh.rejected == [1]
    # "complex vertex": vertex 0 of a closed icosahedron has no boundary left.
    vertices, faces = icosphere(0)
    extra = np.array([[0, 12, 13]])
    mesh = HalfEdgeMesh(np.concatenate([faces, extra]), 14)
    assert mesh.rejected == [len(faces)]
    # Degenerate faces are refused as well.
    assert HalfEdgeMesh(np.array([[0, 0, 1]]), 2).rejected == [0]


def test_spiral_input_errors():
    faces = np.array([[0, 1, 2]])
    with pytest.raises(InputError):
        spiral_indices(faces, 2)  # index 2 out of range
    with pytest.raises(InputError):
        spiral_indices(faces.astype(np.float32), 3)
    with pytest.raises(InputError):
        spiral_indices(faces, 3, seq_length=0)


# ---------------------------------------------------------------------------------------------------------------
# building a hierarchy
# ---------------------------------------------------------------------------------------------------------------


def test_built_hierarchy_shapes_and_selection(sphere, sphere_hierarchy):
    h = sphere_hierarchy
    assert h.num_vertices() == [642, 161, 41]  # ceil(V / 4) per level, as in COMA
    assert [len(m) for m in (h.vertices, h.faces, h.down, h.up)] == [3, 3, 2, 2]
    np.testing.assert_array_equal(h.vertices[0], sphere[0])
    for level in range(2):
        fine, coarse = h.num_vertices()[level], h.num_vertices()[level + 1]
        down, up = h.down[level], h.up[level]
        assert down.shape == (coarse, fine) and up.shape == (fine, coarse)
        # down: one-hot rows selecting distinct fine vertices
        np.testing.assert_array_equal(np.diff(down.indptr), 1)
        np.testing.assert_array_equal(down.data, 1.0)
        kept = h.coarse_indices(level)
        assert len(np.unique(kept)) == coarse
        np.testing.assert_array_equal(h.vertices[level + 1], h.vertices[level][kept])
        # up: 3 entries per row, barycentric (sum 1), exact at the kept vertices
        np.testing.assert_array_equal(np.diff(up.indptr), 3)
        np.testing.assert_allclose(np.asarray(up.sum(axis=1)).ravel(), 1.0, atol=1e-5)
        round_trip = up @ (down @ h.vertices[level])  # (V_l, 3)
        np.testing.assert_array_equal(round_trip[kept], h.vertices[level][kept])
        # and a fair approximation elsewhere on the unit sphere
        assert np.abs(round_trip - h.vertices[level]).max() < 0.25
        # coarse faces are valid triangles of the coarse level
        faces = h.faces[level + 1]
        assert faces.min() >= 0 and faces.max() < coarse
        assert np.all((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2]))


def test_built_hierarchy_is_deterministic(sphere, sphere_hierarchy):
    _assert_same_hierarchy(build_mesh_hierarchy(*sphere, factors=(4, 4), seed=0), sphere_hierarchy)


def test_built_hierarchy_spirals_cover_every_level(sphere_hierarchy):
    for level, count in enumerate(sphere_hierarchy.num_vertices()):
        spirals = sphere_hierarchy.spirals(level)
        assert spirals.shape == (count, 9)
        np.testing.assert_array_equal(spirals[:, 0], np.arange(count))
        assert spirals.min() >= 0 and spirals.max() < count


def test_build_rejects_bad_factor(sphere):
    with pytest.raises(InputError):
        build_mesh_hierarchy(*sphere, factors=(1,))


def test_hierarchy_validates_level_shapes(sphere_hierarchy):
    h = sphere_hierarchy
    with pytest.raises(CheckpointError):
        MeshHierarchy(vertices=h.vertices, faces=h.faces, down=[h.down[0].T, h.down[1]], up=h.up)
    with pytest.raises(CheckpointError):
        MeshHierarchy(vertices=h.vertices, faces=h.faces, down=h.down[:1], up=h.up[:1])
    with pytest.raises(CheckpointError):
        MeshHierarchy(vertices=h.vertices, faces=[h.faces[0] + 10_000, *h.faces[1:]], down=h.down, up=h.up)
    with pytest.raises(CheckpointError):
        MeshHierarchy(vertices=h.vertices, faces=h.faces, down=h.up, up=h.down).coarse_indices(0)


# ---------------------------------------------------------------------------------------------------------------
# storage and safe loading
# ---------------------------------------------------------------------------------------------------------------


def test_npz_round_trip_is_exact(tmp_path, sphere_hierarchy):
    path = tmp_path / "hierarchy.npz"
    sphere_hierarchy.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hierarchy.npz"]  # no temp file left behind
    _assert_same_hierarchy(MeshHierarchy.load_npz(path), sphere_hierarchy)
    _assert_same_hierarchy(load_mesh_hierarchy(path), sphere_hierarchy)
    # The file needs no pickle support.
    with np.load(path, allow_pickle=False) as npz:
        assert "vertices_0" in npz.files


def test_npz_from_elsewhere_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(CheckpointError):
        load_mesh_hierarchy(path)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_loads_transform_pkl_layout(tmp_path, sphere_hierarchy, protocol):
    path = tmp_path / "transform.pkl"
    path.write_bytes(pickle.dumps(_layout_pickle(sphere_hierarchy), protocol=protocol))
    loaded = load_mesh_hierarchy(path)
    assert loaded.num_vertices() == sphere_hierarchy.num_vertices()
    for a, b in zip(loaded.vertices + loaded.faces, sphere_hierarchy.vertices + sphere_hierarchy.faces):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(loaded.down + loaded.up, sphere_hierarchy.down + sphere_hierarchy.up):
        _assert_same_sparse(a, b)


def test_pickle_with_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    layout = {"vertices": [_Payload(f"echo pwned > {marker}")], "face": [], "down_transform": [], "up_transform": []}
    path.write_bytes(pickle.dumps(layout, protocol=2))
    with pytest.raises(UnsafeFileError, match="system") as info:
        load_mesh_hierarchy(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_pickle_with_eval_is_refused(tmp_path):
    path = tmp_path / "eval.pkl"
    path.write_bytes(pickle.dumps({"vertices": [_Eval()]}, protocol=2))
    with pytest.raises(UnsafeFileError, match="eval"):
        load_mesh_hierarchy(path)


def test_pickle_with_custom_class_is_refused(tmp_path):
    path = tmp_path / "custom.pkl"
    path.write_bytes(pickle.dumps({"vertices": [_Custom()]}, protocol=4))
    with pytest.raises(UnsafeFileError, match="_Custom"):
        load_mesh_hierarchy(path)


def test_malformed_pickles_raise_checkpoint_error(tmp_path, sphere_hierarchy):
    missing = tmp_path / "missing_keys.pkl"
    missing.write_bytes(pickle.dumps({"vertices": sphere_hierarchy.vertices}, protocol=2))
    with pytest.raises(CheckpointError, match="face"):
        load_mesh_hierarchy(missing)

    bad_shape = _layout_pickle(sphere_hierarchy)
    bad_shape["down_transform"][0] = sp.csc_matrix(np.ones((3, 3), dtype=np.float32))
    path = tmp_path / "bad_shape.pkl"
    path.write_bytes(pickle.dumps(bad_shape, protocol=2))
    with pytest.raises(CheckpointError, match="down"):
        load_mesh_hierarchy(path)

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(CheckpointError):
        load_mesh_hierarchy(garbage)


# ---------------------------------------------------------------------------------------------------------------
# torch bridge and import hygiene
# ---------------------------------------------------------------------------------------------------------------


def test_sparse_to_torch_matches_dense(sphere_hierarchy):
    import torch

    up = sphere_hierarchy.up[0]
    tensor = sparse_to_torch(up)
    assert tensor.is_sparse and tensor.is_coalesced() and tensor.dtype == torch.float32
    assert tuple(tensor.shape) == up.shape
    np.testing.assert_array_equal(tensor.to_dense().numpy(), up.toarray())
    assert sparse_to_torch(sp.csc_matrix(up), dtype=torch.float64).dtype == torch.float64


def test_module_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None; import fantasyid.models.mesh as m; print(m.icosphere(1)[0].shape)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------------------------
# golden: the release's transform.pkl and the spirals OpenMesh 1.2.1 computed from it
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden(shared_dir, flame_golden_dir):
    folder = flame_golden_dir  # transform.pkl and its spirals: FLAME-derived, outside the repository
    layout = json.loads((shared_dir / "reference" / "official_checkpoint_layout.json").read_text())
    return folder, layout["mesh_hierarchy"]


def test_golden_transform_pkl_loads(golden):
    folder, layout = golden
    h = load_mesh_hierarchy(folder / "transform.pkl")
    assert h.num_vertices() == [5023, 1256, 314, 79, 20]
    assert [len(f) for f in h.faces] == [9976, 2464, 597, 139, 34]
    np.testing.assert_array_equal(h.coarse_indices(0), layout["coarse_vertex_indices_level0_to_1"])
    np.testing.assert_array_equal(h.coarse_indices(1), layout["coarse_vertex_indices_level1_to_2"])
    expected = layout["sparse_sha256_sorted_row_col_int64_then_values_f32"]
    for level in range(2):
        assert _sparse_sha256(h.down[level]) == expected["down_transform"][level]
        assert _sparse_sha256(h.up[level]) == expected["up_transform"][level]
    # Same matrices as a plain (trusted) unpickling of this reference file gives.
    with open(folder / "transform.pkl", "rb") as handle:
        raw = pickle.load(handle, encoding="latin1")
    for level in range(4):
        _assert_same_sparse(h.down[level], raw["down_transform"][level])
        _assert_same_sparse(h.up[level], raw["up_transform"][level])
        np.testing.assert_array_equal(h.vertices[level], raw["vertices"][level])
        np.testing.assert_array_equal(h.faces[level], raw["face"][level])


def test_golden_spirals_match_openmesh(golden):
    from safetensors.numpy import load_file

    folder, layout = golden
    h = load_mesh_hierarchy(folder / "transform.pkl")
    reference = load_file(str(folder / "golden_spirals.safetensors"))
    for level in range(2):
        spirals = h.spirals(level)
        np.testing.assert_array_equal(spirals, reference[f"spiral_indices_level{level}"])
    # Levels 2 and 3 (unused by the release) against the recorded hashes, including OpenMesh's refused faces.
    for level in range(4):
        spirals = h.spirals(level)
        assert spirals[0].tolist() == layout["spiral_first_row"][str(level)]
        assert hashlib.sha256(spirals.tobytes()).hexdigest() == layout["spiral_sha256_int64_rowmajor"][str(level)]
        rejected = HalfEdgeMesh(h.faces[level], h.num_vertices()[level]).rejected
        assert len(rejected) == layout["openmesh_rejected_faces"][str(level)]
