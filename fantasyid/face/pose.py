"""Head pose from the detector's five landmarks, and the multi-view face collection.

The paper (Sec. 4.1, multi-view face collection) takes head pose from the detector's landmark geometry and keeps
the 6 faces with the most different viewpoints. We fit a scaled-orthographic camera that maps a generic 3D model of
the five points onto the detected landmarks (the affine-camera fit insightface uses for its 68-point pose,
``estimate_affine_matrix_3d23d`` + ``P2sRt``), take the nearest rotation and read off Euler angles.

Conventions (image coordinates, x to the right, y down):

* **yaw** > 0: the face turns towards the image's right side (the subject's left);
* **pitch** > 0: the face looks up;
* **roll** > 0: the head tilts clockwise in the image.

All three are in degrees and zero for landmarks that match insightface's frontal ArcFace template. Because the
3D model is exactly left/right symmetric and the fit is closed-form, mirroring an image negates yaw and roll
exactly and keeps pitch.

Five points constrain pose only roughly. Yaw and roll are reliable to a few degrees; pitch is not: the mouth
corners move with expression and nose length varies between people, so a broad smile on a frontal face reads as
20-30° of looking down (scikit-image's astronaut: yaw −1°, pitch −27°, roll 3°). That is good enough to spread
the multi-view collection over viewpoints, not to measure head pitch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from fantasyid.errors import InputError

# Generic 3D positions of the five landmarks (left eye, right eye, nose tip, left and right mouth corner, in image
# order), in a head frame with x right, y down, z towards the camera, in pixels of the 112-px ArcFace crop.
# x and y are insightface's ArcFace template (the frontal layout these detectors are trained to), made exactly
# left/right symmetric, so a face whose landmarks match the template has zero pose. Depth comes from insightface's
# 68-point mean shape (insightface/data/objects/meanshape_68.pkl: eye centres = means of points 36-41 and 42-47,
# nose tip = point 30, mouth corners = points 48 and 54), scaled to the template's eye distance: the nose tip is
# 18.8 px and the mouth corners 4.2 px in front of the eyes.
LANDMARK_MODEL_3D = np.array(
    [
        [-17.6186, 51.5989, 0.0],
        [17.6186, 51.5989, 0.0],
        [0.0, 71.7366, 18.8184],
        [-14.5903, 92.2848, 4.1647],
        [14.5903, 92.2848, 4.1647],
    ],
    dtype=np.float64,
)


class HeadPose(NamedTuple):
    """Head orientation in degrees (see the module docstring for the sign conventions)."""

    yaw: float
    pitch: float
    roll: float

    def as_array(self) -> np.ndarray:
        """``[yaw, pitch, roll]`` as float64."""
        return np.array([self.yaw, self.pitch, self.roll], dtype=np.float64)


def rotation_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """The 3×3 rotation (model frame → camera frame) of a scaled-orthographic fit to five 2D landmarks."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise InputError(f"head pose needs five finite (x, y) landmarks, got an array of shape {points.shape}")
    model = LANDMARK_MODEL_3D - LANDMARK_MODEL_3D.mean(axis=0)  # (5, 3)
    image = points - points.mean(axis=0)  # (5, 2)
    # least-squares affine camera: image ≈ model @ A.T with A (2, 3)
    solution, *_ = np.linalg.lstsq(model, image, rcond=None)  # (3, 2)
    affine = solution.T  # (2, 3)
    # nearest pair of orthonormal rows (polar decomposition): A = U S Vt → U Vt; equivariant under mirroring
    u, singular, vt = np.linalg.svd(affine, full_matrices=False)
    if singular[-1] <= 1e-9 * max(singular[0], 1e-12):
        raise InputError("the five landmarks are degenerate (collinear or identical); no head pose can be fitted")
    rows = u @ vt  # (2, 3)
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])  # (3, 3), det +1
    return rotation


def rotation_to_euler(rotation: np.ndarray) -> HeadPose:
    """Euler angles of ``R = Rz(roll) · Ry(yaw) · Rx(pitch)`` (the order of insightface's ``matrix2angle``).

    In our frame (x right, y down, z towards the camera) a positive rotation about y moves the nose to the image's
    right, about x lifts the nose (looking up), and about z turns the eye line clockwise, which gives the signs in
    the module docstring directly.
    """
    r = np.asarray(rotation, dtype=np.float64)
    sy = math.hypot(r[0, 0], r[1, 0])
    if sy > 1e-6:
        about_x = math.atan2(r[2, 1], r[2, 2])
        about_y = math.atan2(-r[2, 0], sy)
        about_z = math.atan2(r[1, 0], r[0, 0])
    else:  # gimbal lock at yaw = ±90°: roll is not observable, put it all in pitch
        about_x = math.atan2(-r[1, 2], r[1, 1])
        about_y = math.atan2(-r[2, 0], sy)
        about_z = 0.0
    return HeadPose(yaw=math.degrees(about_y), pitch=math.degrees(about_x), roll=math.degrees(about_z))


def head_pose_from_landmarks(landmarks: np.ndarray) -> HeadPose:
    """Yaw, pitch and roll in degrees from the detector's five landmarks (pixel coordinates, image order)."""
    return rotation_to_euler(rotation_from_landmarks(landmarks))


#: Eye-to-nose-tip height, nose depth and half the eye distance of :data:`LANDMARK_MODEL_3D` (ArcFace pixels).
_NOSE_HEIGHT = float(LANDMARK_MODEL_3D[2, 1] - LANDMARK_MODEL_3D[0, 1])
_NOSE_DEPTH = float(LANDMARK_MODEL_3D[2, 2])
_HALF_EYES = float(LANDMARK_MODEL_3D[1, 0])


def rigid_head_pose(landmarks: np.ndarray) -> HeadPose:
    """Head pose from the eyes and the nose tip only: the points that expression does not move.

    The mouth corners move when the mouth opens or smiles, which the five-point fit reads as pitch (an open mouth
    reads as looking down 30°+). Here roll is the eye line's angle; after undoing it, the eye distance and the nose
    tip's offset from the eye midpoint give scale, yaw and pitch in closed form for the same 3D model and camera as
    :func:`head_pose_from_landmarks` (with ``R = Ry(yaw)·Rx(pitch)``: eye distance ``2·w·s·cos(yaw)``, nose offset
    ``s·ρ·sin(pitch + φ)·sin(yaw)`` across and ``s·ρ·cos(pitch + φ)`` down, ``ρ, φ`` the nose's polar coordinates
    in the model's y–z plane). The same sign conventions; zero on insightface's frontal template.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise InputError(f"head pose needs five finite (x, y) landmarks, got an array of shape {points.shape}")
    eye_left, eye_right, nose = points[0], points[1], points[2]
    across = eye_right - eye_left
    eyes = float(np.hypot(*across))
    if eyes <= 1e-9:
        raise InputError("the two eye landmarks coincide; no head pose can be fitted")
    roll = math.atan2(across[1], across[0])
    cos_r, sin_r = math.cos(roll), math.sin(roll)
    offset = nose - (eye_left + eye_right) / 2.0
    nose_x = cos_r * offset[0] + sin_r * offset[1]  # along the eye line
    nose_y = -sin_r * offset[0] + cos_r * offset[1]  # perpendicular to it, downwards
    rho, phi = math.hypot(_NOSE_HEIGHT, _NOSE_DEPTH), math.atan2(_NOSE_DEPTH, _NOSE_HEIGHT)
    a = 2.0 * _HALF_EYES * nose_x / (rho * eyes)  # sin(u)·tan(yaw), u = pitch + φ
    b = 2.0 * _HALF_EYES * nose_y / (rho * eyes)  # cos(u) / cos(yaw)
    # t = cos²(yaw) solves b²t² − (a² + b² + 1)t + 1 = 0 (sin²u + cos²u = 1); the root in [0, 1]
    total = a * a + b * b + 1.0
    t = 1.0 / total if abs(b) < 1e-9 else (total - math.sqrt(max(total * total - 4 * b * b, 0.0))) / (2 * b * b)
    cos_yaw = math.sqrt(min(max(t, 0.0), 1.0))
    yaw = math.copysign(math.acos(cos_yaw), a)
    pitch = math.acos(min(max(b * cos_yaw, -1.0), 1.0)) - phi
    return HeadPose(yaw=math.degrees(yaw), pitch=math.degrees(pitch), roll=math.degrees(roll))


def _pose_matrix(items: Sequence[Any]) -> np.ndarray:
    rows = []
    for index, item in enumerate(items):
        pose = getattr(item, "pose", item)
        values = np.asarray(pose.as_array() if isinstance(pose, HeadPose) else pose, dtype=np.float64)
        if values.shape != (3,) or not np.all(np.isfinite(values)):
            raise InputError(f"item {index} has no usable (yaw, pitch, roll) pose: {pose!r}")
        rows.append(values)
    return np.stack(rows) if rows else np.zeros((0, 3))  # (N, 3)


def select_view_indices(poses: Sequence[Any], k: int = 6) -> list[int]:
    """Indices of ``k`` poses chosen by farthest-point selection in (yaw, pitch, roll) space, in selection order.

    ``poses`` holds :class:`HeadPose` values, ``(yaw, pitch, roll)`` triples, or objects with a ``.pose``. The first
    pick is the most frontal pose (smallest norm); each next pick maximises its distance (degrees, Euclidean) to the
    nearest pose already picked. Ties go to the lowest index, so the result is deterministic. With ``k`` at least
    the number of poses, every index is returned (still in farthest-point order).
    """
    if k < 1:
        raise InputError(f"select_views needs k >= 1, got {k}")
    matrix = _pose_matrix(poses)  # (N, 3)
    count = matrix.shape[0]
    if count == 0:
        return []
    first = int(np.argmin(np.linalg.norm(matrix, axis=1)))  # argmin/argmax return the lowest index on ties
    chosen = [first]
    nearest = np.linalg.norm(matrix - matrix[first], axis=1)  # (N,) distance to the closest chosen pose
    nearest[first] = -1.0  # chosen poses can never be picked again (every other distance is >= 0)
    while len(chosen) < min(k, count):
        candidate = int(np.argmax(nearest))
        chosen.append(candidate)
        nearest = np.minimum(nearest, np.linalg.norm(matrix - matrix[candidate], axis=1))
        nearest[chosen] = -1.0
    return chosen


def viewpoint_indices(poses: Sequence[Any], k: int = 6) -> list[int]:
    """Indices of ``k`` poses that cover the range of viewpoints, in selection order; roll is ignored (an in-plane
    turn shows the same side of the head).

    The most frontal pose first (smallest ``|(yaw, pitch)|``), then the extremes of yaw (lowest, highest) and of
    pitch (lowest, highest), so that the views span the measured range, then farthest-point picks in (yaw, pitch)
    for the rest. Ties go to the lowest index (deterministic). ``poses`` as for :func:`select_view_indices`.
    """
    if k < 1:
        raise InputError(f"viewpoint selection needs k >= 1, got {k}")
    angles = _pose_matrix(poses)[:, :2]  # (N, 2): yaw, pitch
    if angles.shape[0] == 0:
        return []
    chosen: list[int] = []
    for index in (np.argmin(np.linalg.norm(angles, axis=1)), np.argmin(angles[:, 0]), np.argmax(angles[:, 0]),
                  np.argmin(angles[:, 1]), np.argmax(angles[:, 1])):  # fmt: skip
        if len(chosen) < k and int(index) not in chosen:
            chosen.append(int(index))
    nearest = np.min(np.linalg.norm(angles[:, None] - angles[chosen][None], axis=2), axis=1)  # (N,)
    nearest[chosen] = -1.0
    while len(chosen) < min(k, angles.shape[0]):
        candidate = int(np.argmax(nearest))
        chosen.append(candidate)
        nearest = np.minimum(nearest, np.linalg.norm(angles - angles[candidate], axis=1))
        nearest[chosen] = -1.0
    return chosen


def select_views(faces: Sequence[Any], k: int = 6) -> list[Any]:
    """The ``k`` faces (anything with a ``.pose``, or poses themselves) with the most different viewpoints.

    Farthest-point selection in pose space, deterministic (see :func:`select_view_indices`); this is the paper's
    multi-view face collection, which keeps 6 faces per training clip.
    """
    return [faces[i] for i in select_view_indices(faces, k)]
