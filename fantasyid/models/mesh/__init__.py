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

Parts: :mod:`.hierarchy` (the container and its ``.npz``), :mod:`.release_pickle` (``transform.pkl``),
:mod:`.spirals` (half-edge connectivity and spirals), :mod:`.build` (decimation, :func:`icosphere`).
"""

from __future__ import annotations

from .build import build_mesh_hierarchy, icosphere
from .hierarchy import MeshHierarchy, sparse_to_torch
from .release_pickle import load_mesh_hierarchy
from .spirals import HalfEdgeMesh, spiral_indices

__all__ = [
    "HalfEdgeMesh",
    "MeshHierarchy",
    "build_mesh_hierarchy",
    "icosphere",
    "load_mesh_hierarchy",
    "sparse_to_torch",
    "spiral_indices",
]
