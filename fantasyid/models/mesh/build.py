"""Building a mesh hierarchy from any triangle mesh by quadric decimation (``fast-simplification``), with
barycentric up-sampling matrices; and :func:`icosphere`, a closed test mesh made by code."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from fantasyid.errors import InputError, require

from .hierarchy import MeshHierarchy

__all__ = ["build_mesh_hierarchy", "icosphere"]


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

