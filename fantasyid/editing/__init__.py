"""Shape editing: move facial traits of a FLAME face (width, jawline, chin, …) and generate with the result.

* :mod:`~fantasyid.editing.traits` — where traits are measured (FLAME's landmark embedding or a geometric
  fallback) and how (:data:`~fantasyid.editing.traits.TRAITS`).
* :mod:`~fantasyid.editing.edit` — :class:`ShapeEditor`: the minimal-norm change of the shape coefficients that
  reaches the requested traits while holding the others, within a plausible range.
* :mod:`~fantasyid.editing.files` — ``SHAPE.npz`` and mesh (.obj/.ply) files.
* :mod:`~fantasyid.editing.render` — the before/after preview (numpy + PIL, no pytorch3d).
* :mod:`~fantasyid.editing.run` — what ``fantasyid edit-shape`` runs.
"""

from .edit import (
    DEFAULT_BOUND,
    DEFAULT_MAX_CHANGE,
    EditResult,
    ShapeEditor,
    ShapeState,
    TraitEdit,
    parse_assignment,
    parse_edit,
)
from .traits import TRAIT_NAMES, TRAITS, Trait, TraitMeter, get_trait, load_landmark_embedding

__all__ = [
    "DEFAULT_BOUND",
    "DEFAULT_MAX_CHANGE",
    "EditResult",
    "ShapeEditor",
    "ShapeState",
    "TRAITS",
    "TRAIT_NAMES",
    "Trait",
    "TraitEdit",
    "TraitMeter",
    "get_trait",
    "load_landmark_embedding",
    "parse_assignment",
    "parse_edit",
]
