"""SpiralNet++ spiral indices, with a small half-edge structure that reproduces OpenMesh's connectivity rules and
circulator order, so that the spirals equal the ones the release computes with OpenMesh."""

from __future__ import annotations

import numpy as np

from fantasyid.errors import InputError

__all__ = ["HalfEdgeMesh", "spiral_indices"]


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

