"""Facial traits measured on a FLAME mesh: where they are measured (surface points) and how (the trait table).

Every trait is a differentiable function of a few points fixed on the mesh surface, so the shape editor can take
its gradient with respect to FLAME's shape coefficients. The points are the 68 facial landmarks of the iBUG / 300-W
convention (0-based here: 0–16 jaw contour from the subject's right temple round the chin (8) to the left one,
17–26 eyebrows, 27–30 nose bridge, 31–35 nose base, 36–47 eyes, 48–67 lips) plus one mid-cheek point per side.

Where the points come from (:meth:`TraitMeter.for_template`):

* FLAME's landmark embedding (DECA ships it as ``landmark_embedding.npy``: ``full_lmk_faces_idx`` (1, 68) triangle
  indices and ``full_lmk_bary_coords`` (1, 68, 3) barycentric coordinates). The ``.npy`` holds a pickled dict; it is
  read by :func:`load_landmark_embedding` with an allow-list (numpy arrays only), never with
  ``np.load(allow_pickle=True)``. An ``.npz`` with the same two arrays is accepted too.
* Without it, a geometric fallback: a canonical frontal layout of the 68 points (:func:`canonical_landmarks_2d`)
  is laid over the template seen from the front (FLAME: front is +z, up is +y, metres) and each point is cast along
  −z onto the frontmost triangle under it. This is what the synthetic sphere models use; on the real FLAME head it is
  only a rough stand-in for the embedding.

The mid-cheek points are cast the same way in both cases, under the midpoint (seen from the front) of the jaw
contour point 3 / 13 and the nose wing 31 / 35 of the template.

Traits (:data:`TRAITS`; lengths in millimetres, angles in degrees, measured in FLAME's canonical orientation):

==============  =====  ==========================================================================================
face_width      mm     cheek to cheek: distance between contour points 1 and 15 (cheekbone level)
jaw_width       mm     across the jaw corners: distance between contour points 4 and 12
jaw_sharpness   deg    how sharp the jaw corner is: 180° − the angle at contour point 4 (12) between the contour up
                       to point 1 (15) and the jawline down to the chin (8), seen from the front, mean of both sides;
                       0° is a straight, round contour, larger is a more angular jaw
chin_length     mm     from the bottom of the lower lip (57) to the chin (8)
face_length     mm     from the nasion (27, top of the nose bridge) to the chin (8)
cheek_fullness  mm     how far the mid-cheek point bulges out of the straight line from the cheekbone contour point
                       (2 / 14) to the mouth corner (48 / 54), outwards from the head's centre; mean of both sides
                       (negative: a hollow cheek)
nose_width      mm     between the nose wings (31 and 35)
==============  =====  ==========================================================================================

The traits are chosen so that none is a function of the others: any one can move while the rest are held.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fantasyid.errors import CheckpointError, InputError, UnsafeFileError, WeightsNotFoundError
from fantasyid.safe_pickle import AllowListUnpickler, numpy_globals

__all__ = [
    "LANDMARK_COUNT",
    "SurfacePoints",
    "Trait",
    "TRAITS",
    "TRAIT_NAMES",
    "TraitMeter",
    "canonical_landmarks_2d",
    "cast_points",
    "get_trait",
    "load_landmark_embedding",
]

LANDMARK_COUNT = 68
#: Indices of the two mid-cheek points after the 68 landmarks (subject's right, then left).
CHEEK_RIGHT, CHEEK_LEFT = 68, 69
#: Landmark pairs whose frontal midpoint defines the mid-cheek points (jaw contour, nose wing).
CHEEK_ANCHORS = ((3, 31), (13, 35))
#: Polylines of the landmark layout (used for drawing): (indices, closed).
LANDMARK_LINES: tuple[tuple[tuple[int, ...], bool], ...] = (
    (tuple(range(0, 17)), False),
    (tuple(range(17, 22)), False),
    (tuple(range(22, 27)), False),
    (tuple(range(27, 31)), False),
    (tuple(range(31, 36)), False),
    (tuple(range(36, 42)), True),
    (tuple(range(42, 48)), True),
    (tuple(range(48, 60)), True),
    (tuple(range(60, 68)), True),
)

_EMBEDDING_HINT = (
    "use DECA's data/landmark_embedding.npy (it sits next to generic_model.pkl in DECA's data folder) or an .npz "
    "with full_lmk_faces_idx (1, 68) and full_lmk_bary_coords (1, 68, 3)"
)


# ----------------------------------------------------------------------------------------------------------------
# Points on the surface


@dataclass(frozen=True)
class SurfacePoints:
    """Points fixed on a triangle mesh: the triangle of each point and its barycentric coordinates there."""

    face_idx: np.ndarray  #: (P,) int64 triangle indices
    bary: np.ndarray  #: (P, 3) float64 barycentric coordinates (rows sum to 1)

    def __post_init__(self) -> None:
        if self.face_idx.ndim != 1 or self.bary.shape != (len(self.face_idx), 3):
            raise InputError(f"surface points need (P,) triangles and (P, 3) weights, got "
                             f"{self.face_idx.shape} and {self.bary.shape}")  # fmt: skip

    def __len__(self) -> int:
        return len(self.face_idx)

    def concat(self, other: SurfacePoints) -> SurfacePoints:
        return SurfacePoints(np.concatenate([self.face_idx, other.face_idx]), np.concatenate([self.bary, other.bary]))

    def weights(self, faces: np.ndarray, num_vertices: int) -> np.ndarray:
        """The dense (P, V) matrix W with ``points = W @ vertices``."""
        matrix = np.zeros((len(self), num_vertices))
        corners = np.asarray(faces)[self.face_idx]  # (P, 3) vertex indices
        np.add.at(matrix, (np.repeat(np.arange(len(self)), 3), corners.reshape(-1)), self.bary.reshape(-1))
        return matrix

    def locate(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """The points (P, 3) on a mesh with these ``vertices`` (V, 3)."""
        corners = np.asarray(vertices)[np.asarray(faces)[self.face_idx]]  # (P, 3 corners, 3)
        return np.einsum("pc,pck->pk", self.bary, corners)


def load_landmark_embedding(path: str | os.PathLike[str], faces: np.ndarray) -> SurfacePoints:
    """FLAME's 68-landmark embedding from DECA's ``landmark_embedding.npy`` (pickled dict, read with an allow-list)
    or an ``.npz``; checked against the mesh's ``faces`` (F, 3)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"landmark embedding not found: {path}", hint=_EMBEDDING_HINT)
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                content = {key: np.asarray(data[key]) for key in data.files}
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path} as an .npz file ({exc})", hint=_EMBEDDING_HINT) from exc
    else:
        content = _read_pickled_npy(path)
    for faces_key, bary_key in (("full_lmk_faces_idx", "full_lmk_bary_coords"), ("lmk_faces_idx", "lmk_bary_coords")):
        if faces_key in content and bary_key in content:
            break
    else:
        raise CheckpointError(f"{path} has no full_lmk_faces_idx / full_lmk_bary_coords", hint=_EMBEDDING_HINT)
    try:
        face_idx = np.asarray(content[faces_key]).astype(np.int64).reshape(-1)
        bary = np.asarray(content[bary_key], dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the landmark arrays are not numeric ({exc})", hint=_EMBEDDING_HINT) from exc
    if len(face_idx) != LANDMARK_COUNT or bary.shape != (LANDMARK_COUNT, 3):
        raise CheckpointError(f"{path}: expected {LANDMARK_COUNT} landmarks, got {len(face_idx)} triangles and "
                              f"{bary.shape[0]} weights", hint=_EMBEDDING_HINT)  # fmt: skip
    if face_idx.min() < 0 or face_idx.max() >= len(faces):
        raise CheckpointError(f"{path}: landmark triangles lie outside the FLAME mesh's {len(faces)} triangles",
                              hint="use the embedding that belongs to this FLAME model")  # fmt: skip
    if not np.all(np.isfinite(bary)) or np.abs(bary.sum(axis=1) - 1.0).max() > 1e-3:
        raise CheckpointError(f"{path}: landmark barycentric coordinates do not sum to 1", hint=_EMBEDDING_HINT)
    return SurfacePoints(face_idx, bary)




def _read_pickled_npy(path: Path) -> dict[str, Any]:
    """The dict inside an ``.npy`` written by ``np.save(path, dict)`` (an object array of shape ())."""
    fmt = np.lib.format
    with open(path, "rb") as stream:
        try:
            version = fmt.read_magic(stream)
            reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = reader(stream)
        except ValueError as exc:
            raise CheckpointError(f"{path} is not an .npy file ({exc})", hint=_EMBEDDING_HINT) from exc
        if dtype != np.dtype(object):
            raise CheckpointError(f"{path} holds a plain {dtype} array, not the embedding's dict", hint=_EMBEDDING_HINT)
        try:
            unpickler = AllowListUnpickler(stream, str(path), numpy_globals(), "a landmark embedding", _EMBEDDING_HINT)
            content = unpickler.load()
        except UnsafeFileError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}", hint=_EMBEDDING_HINT) from exc
    if isinstance(content, np.ndarray) and content.dtype == object and content.size == 1:
        content = content.reshape(-1)[0]
    if not isinstance(content, dict) or shape not in ((), (1,)):
        raise CheckpointError(f"{path} does not hold a dict of arrays", hint=_EMBEDDING_HINT)
    return {str(key): value for key, value in content.items()}


def canonical_landmarks_2d() -> np.ndarray:
    """A frontal layout of the 68 landmarks, (68, 2): x to the subject's left, y up, in units of half the face width
    at the temples, origin between the eyes. A stand-in for the landmark embedding on meshes that have none."""
    points = np.zeros((LANDMARK_COUNT, 2))
    # jaw contour 0–16: a superellipse (exponent 2.6: a jaw with corners) from the right temple round the chin
    angle = np.linspace(np.pi, 2.0 * np.pi, 17)
    cos, sin = np.cos(angle), np.sin(angle)
    points[0:17, 0] = np.sign(cos) * np.abs(cos) ** (2.0 / 2.6)
    points[0:17, 1] = -0.1 + 1.15 * np.sign(sin) * np.abs(sin) ** (2.0 / 2.6)
    arch = np.linspace(0.0, 1.0, 5)
    points[17:22] = np.stack([-0.85 + 0.65 * arch, 0.35 + 0.12 * np.sin(np.pi * arch)], axis=1)  # right brow
    points[22:27] = np.stack([0.2 + 0.65 * arch, 0.35 + 0.12 * np.sin(np.pi * arch)], axis=1)  # left brow
    points[27:31] = [[0.0, 0.2], [0.0, 0.0], [0.0, -0.18], [0.0, -0.36]]  # nose bridge, nasion to tip
    points[31:36] = [[-0.22, -0.45], [-0.11, -0.49], [0.0, -0.51], [0.11, -0.49], [0.22, -0.45]]  # nose base
    right_eye = [[-0.63, 0.1], [-0.52, 0.16], [-0.38, 0.16], [-0.27, 0.1], [-0.38, 0.05], [-0.52, 0.05]]
    points[36:42] = right_eye
    points[42:48] = [[-x, y] for x, y in (right_eye[3], right_eye[2], right_eye[1], right_eye[0], right_eye[5],
                                          right_eye[4])]  # fmt: skip
    points[48:60] = [[-0.4, -0.8], [-0.26, -0.72], [-0.1, -0.68], [0.0, -0.7], [0.1, -0.68], [0.26, -0.72],
                     [0.4, -0.8], [0.26, -0.9], [0.12, -0.95], [0.0, -0.96], [-0.12, -0.95], [-0.26, -0.9]]  # fmt: skip
    points[60:68] = [[-0.3, -0.8], [-0.1, -0.77], [0.0, -0.77], [0.1, -0.77], [0.3, -0.8], [0.1, -0.83],
                     [0.0, -0.83], [-0.1, -0.83]]  # fmt: skip
    return points


def cast_points(points_xy: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> SurfacePoints:
    """Cast each (x, y) point along −z onto the frontmost triangle of the mesh under it (orthographic, from +z)."""
    triangles = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]  # (F, 3, 3)
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    e1, e2 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2]  # (F, 2)
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]  # (F,)
    usable = np.abs(det) > 1e-14
    safe = np.where(usable, det, 1.0)
    offset = points_xy[:, None, :] - a[None, :, :2]  # (P, F, 2)
    w1 = (offset[..., 0] * e2[:, 1] - e2[:, 0] * offset[..., 1]) / safe  # (P, F)
    w2 = (e1[:, 0] * offset[..., 1] - offset[..., 0] * e1[:, 1]) / safe
    w0 = 1.0 - w1 - w2
    eps = 1e-9
    inside = (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps) & usable[None]
    depth = np.where(inside, w0 * a[:, 2] + w1 * b[:, 2] + w2 * c[:, 2], -np.inf)  # (P, F)
    best = depth.argmax(axis=1)  # (P,)
    missed = ~inside[np.arange(len(points_xy)), best]
    if missed.any():
        x, y = points_xy[np.flatnonzero(missed)[0]]
        raise InputError(
            f"the mesh has no surface in front at x={x:.4f}, y={y:.4f}: cannot place face points on it",
            hint="the geometric fallback needs a head facing +z; pass FLAME's landmark embedding",
        )
    rows = np.arange(len(points_xy))
    bary = np.stack([w0[rows, best], w1[rows, best], w2[rows, best]], axis=1).clip(0.0, 1.0)
    return SurfacePoints(best.astype(np.int64), bary / bary.sum(axis=1, keepdims=True))


def _geometric_landmarks(v_template: np.ndarray, faces: np.ndarray) -> SurfacePoints:
    """The canonical layout scaled onto the template's front: half-width 0.65 of the mesh's, raised by 0.15 of its
    half-height (the face is the front of a head, not its whole silhouette)."""
    low, high = v_template.min(axis=0), v_template.max(axis=0)
    centre, half = (low + high) / 2.0, (high - low) / 2.0
    scale = 0.65 * half[0]
    layout = canonical_landmarks_2d() * scale + np.array([centre[0], centre[1] + 0.15 * half[1]])
    return cast_points(layout, v_template, faces)


# ----------------------------------------------------------------------------------------------------------------
# The traits


def _distance(points: torch.Tensor, i: int, j: int) -> torch.Tensor:
    return torch.linalg.vector_norm(points[..., i, :] - points[..., j, :], dim=-1)


def _frontal_angle(points: torch.Tensor, corner: int, first: int, second: int) -> torch.Tensor:
    """Angle (degrees) at ``corner`` between the directions to ``first`` and ``second``, seen from the front (x, y)."""
    u = points[..., first, :2] - points[..., corner, :2]
    v = points[..., second, :2] - points[..., corner, :2]
    cross = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    dot = (u * v).sum(dim=-1)
    return torch.rad2deg(torch.atan2(cross.abs(), dot))


def _face_width(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    return 1000.0 * _distance(points, 1, 15)


def _jaw_width(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    return 1000.0 * _distance(points, 4, 12)


def _jaw_sharpness(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    right = _frontal_angle(points, 4, 1, 8)
    left = _frontal_angle(points, 12, 15, 8)
    return 180.0 - (right + left) / 2.0


def _chin_length(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    return 1000.0 * _distance(points, 57, 8)


def _face_length(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    return 1000.0 * _distance(points, 27, 8)


def _nose_width(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    return 1000.0 * _distance(points, 31, 35)


def _bulge(points: torch.Tensor, centre: torch.Tensor, cheek: int, start: int, end: int) -> torch.Tensor:
    """Signed distance of ``cheek`` from the line ``start``–``end``, positive away from ``centre``."""
    a, b, c = points[..., start, :], points[..., end, :], points[..., cheek, :]
    direction = (b - a) / torch.linalg.vector_norm(b - a, dim=-1, keepdim=True)
    foot = a + ((c - a) * direction).sum(dim=-1, keepdim=True) * direction  # closest point of the line
    outward = foot - centre
    outward = outward - (outward * direction).sum(dim=-1, keepdim=True) * direction  # perpendicular to the line
    outward = outward / torch.linalg.vector_norm(outward, dim=-1, keepdim=True)
    return ((c - foot) * outward).sum(dim=-1)


def _cheek_fullness(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    right = _bulge(points, centre, CHEEK_RIGHT, 2, 48)
    left = _bulge(points, centre, CHEEK_LEFT, 14, 54)
    return 1000.0 * (right + left) / 2.0


@dataclass(frozen=True)
class Trait:
    """One measurable trait: ``measure(points (..., 70, 3) in metres, head centre (..., 3)) -> (...)``."""

    name: str
    unit: str  #: "mm" or "deg"
    description: str
    measure: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    lower: float | None = None  #: values at or below this are not a face (e.g. a width ≤ 0)
    upper: float | None = None

    @property
    def option(self) -> str:
        """The command-line option of the trait, e.g. ``--face-width``."""
        return "--" + self.name.replace("_", "-")


#: Every trait the editor knows, in display order (see the module docstring for the definitions).
TRAITS: tuple[Trait, ...] = (
    Trait("face_width", "mm", "cheek to cheek (contour points 1–15)", _face_width, lower=0.0),
    Trait("jaw_width", "mm", "across the jaw corners (contour points 4–12)", _jaw_width, lower=0.0),
    Trait("jaw_sharpness", "deg", "180° − the jaw-corner angle seen from the front (0 = round)", _jaw_sharpness,
          lower=0.0, upper=180.0),  # fmt: skip
    Trait("chin_length", "mm", "lower lip (57) to chin (8)", _chin_length, lower=0.0),
    Trait("face_length", "mm", "nasion (27) to chin (8)", _face_length, lower=0.0),
    Trait("cheek_fullness", "mm", "mid-cheek bulge out of the cheekbone–mouth-corner line", _cheek_fullness),
    Trait("nose_width", "mm", "between the nose wings (31–35)", _nose_width, lower=0.0),
)
TRAIT_NAMES: tuple[str, ...] = tuple(trait.name for trait in TRAITS)


def get_trait(name: str) -> Trait:
    """The trait called ``name`` (``face_width`` or ``face-width``), or a one-line error listing the known ones."""
    key = name.strip().lower().replace("-", "_")
    for trait in TRAITS:
        if trait.name == key:
            return trait
    raise InputError(f"unknown trait '{name}'; known traits: {', '.join(TRAIT_NAMES)}")


class TraitMeter:
    """Measures :data:`TRAITS` on meshes with a fixed topology, differentiably.

    Args:
        points: the 68 landmarks followed by the two mid-cheek points, on the mesh.
        faces: (F, 3) triangles of the mesh.
        num_vertices: V.
        source: where the landmarks came from (for messages and the saved file).
    """

    def __init__(self, points: SurfacePoints, faces: np.ndarray, num_vertices: int, source: str):
        if len(points) != LANDMARK_COUNT + 2:
            raise InputError(f"a trait meter needs {LANDMARK_COUNT + 2} surface points, got {len(points)}")
        self.points = points
        self.faces = np.asarray(faces, dtype=np.int64)
        self.num_vertices = int(num_vertices)
        self.source = source
        #: (P, V) float64: points = weights @ vertices; the head centre is the mean vertex
        self.weights = points.weights(self.faces, self.num_vertices)

    @classmethod
    def for_template(
        cls, v_template: np.ndarray, faces: np.ndarray, embedding: str | os.PathLike[str] | None = None
    ) -> TraitMeter:
        """Landmarks from FLAME's embedding file if given, else the geometric fallback; mid-cheek points cast onto
        the template (see the module docstring)."""
        v_template = np.asarray(v_template, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        if embedding is not None:
            landmarks = load_landmark_embedding(embedding, faces)
            source = f"FLAME landmark embedding ({Path(embedding).name})"
        else:
            landmarks = _geometric_landmarks(v_template, faces)
            source = "geometric landmarks (frontal layout cast onto the template)"
        located = landmarks.locate(v_template, faces)  # (68, 3)
        anchors = np.array([(located[a, :2] + located[b, :2]) / 2.0 for a, b in CHEEK_ANCHORS])
        cheeks = cast_points(anchors, v_template, faces)
        return cls(landmarks.concat(cheeks), faces, len(v_template), source)

    def locate(self, vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Surface points (..., 70, 3) and head centre (..., 3) of vertices (..., V, 3)."""
        weights = torch.as_tensor(self.weights, dtype=vertices.dtype, device=vertices.device)
        return torch.einsum("pv,...vk->...pk", weights, vertices), vertices.mean(dim=-2)

    @staticmethod
    def measure_points(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """Every trait (..., T) from surface points (..., 70, 3) and the head centre (..., 3)."""
        return torch.stack([trait.measure(points, centre) for trait in TRAITS], dim=-1)

    def measure(self, vertices: torch.Tensor | np.ndarray) -> np.ndarray:
        """Every trait (T,) of one mesh (V, 3) or (1, V, 3), in float64."""
        tensor = torch.as_tensor(np.asarray(vertices, dtype=np.float64).reshape(-1, 3))
        if tensor.shape[0] != self.num_vertices:
            raise InputError(f"the mesh has {tensor.shape[0]} vertices; the traits are defined on {self.num_vertices}")
        points, centre = self.locate(tensor)
        return self.measure_points(points, centre).numpy()
