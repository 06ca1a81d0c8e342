"""Head pose from five landmarks, and farthest-point view selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fantasyid.errors import InputError
from fantasyid.face.pose import (
    LANDMARK_MODEL_3D,
    HeadPose,
    head_pose_from_landmarks,
    rigid_head_pose,
    select_view_indices,
    select_views,
)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _project(yaw: float, pitch: float, roll: float, scale: float = 3.0, shift=(400.0, 250.0)) -> np.ndarray:
    """Scaled-orthographic image of the 3D landmark model at a known pose."""
    return scale * (LANDMARK_MODEL_3D @ _rotation(yaw, pitch, roll).T)[:, :2] + np.asarray(shift)


def _mirror(landmarks: np.ndarray, width: float) -> np.ndarray:
    """Landmarks of the mirrored image: x → width − x, and the left/right labels swap (detectors order by image
    position: left eye first)."""
    mirrored = landmarks.copy()
    mirrored[:, 0] = width - mirrored[:, 0]
    return mirrored[[1, 0, 2, 4, 3]]


@pytest.mark.parametrize("pose", [(0, 0, 0), (30, 0, 0), (-45, 10, 5), (12, -25, -20), (60, 20, 15)])
def test_recovers_the_pose_of_a_projected_model(pose):
    estimate = head_pose_from_landmarks(_project(*pose))
    np.testing.assert_allclose(estimate.as_array(), pose, atol=1e-6)


def test_sign_conventions():
    frontal = _project(0, 0, 0)
    turned = head_pose_from_landmarks(_project(20, 0, 0))
    assert _project(20, 0, 0)[2, 0] > frontal[2, 0] and turned.yaw > 0  # nose to the image's right: yaw > 0
    up = head_pose_from_landmarks(_project(0, 15, 0))
    assert _project(0, 15, 0)[2, 1] < frontal[2, 1] and up.pitch > 0  # nose towards the top: looking up
    tilted = _project(0, 0, 10)
    assert tilted[1, 1] > tilted[0, 1] and head_pose_from_landmarks(tilted).roll > 0  # clockwise tilt


@pytest.mark.parametrize("pose", [(25, 8, 4), (-50, -12, 18), (5, 30, -9)])
def test_mirrored_landmarks_negate_yaw_and_roll_exactly(pose):
    landmarks = _project(*pose) + np.random.default_rng(3).normal(0, 2.0, (5, 2))  # noisy, like a detector
    original = head_pose_from_landmarks(landmarks)
    mirrored = head_pose_from_landmarks(_mirror(landmarks, 800.0))
    assert mirrored.yaw == pytest.approx(-original.yaw, abs=1e-9)
    assert mirrored.roll == pytest.approx(-original.roll, abs=1e-9)
    assert mirrored.pitch == pytest.approx(original.pitch, abs=1e-9)


def test_bad_landmarks():
    with pytest.raises(InputError, match="five"):
        head_pose_from_landmarks(np.zeros((4, 2)))
    with pytest.raises(InputError, match="degenerate"):
        head_pose_from_landmarks(np.ones((5, 2)))
    with pytest.raises(InputError, match="five finite"):
        head_pose_from_landmarks(np.full((5, 2), np.nan))


def _synthetic_poses() -> tuple[list[tuple[float, float, float]], set[int]]:
    rng = np.random.default_rng(7)
    near_frontal = [tuple(rng.uniform(-6, 6, 3)) for _ in range(40)]
    extremes = [(75, 0, 0), (-75, 0, 0), (0, 45, 0), (0, -45, 0), (0, 0, 40), (0, 0, -40)]
    poses = near_frontal[:20] + extremes[:3] + near_frontal[20:] + extremes[3:]
    extreme_indices = {poses.index(e) for e in extremes}
    return poses, extreme_indices


def test_select_views_picks_the_extremes():
    poses, extremes = _synthetic_poses()
    chosen = select_view_indices(poses, k=7)
    frontal = int(np.argmin(np.linalg.norm(np.asarray(poses), axis=1)))
    assert chosen[0] == frontal  # the most frontal face first
    assert set(chosen[1:]) == extremes  # then the six extreme viewpoints
    six = select_view_indices(poses, k=6)
    assert six == chosen[:6] and set(six[1:]) <= extremes  # the paper's k = 6


def test_select_views_is_deterministic_and_accepts_faces():
    poses, _ = _synthetic_poses()
    assert select_view_indices(poses, 6) == select_view_indices(list(poses), 6)

    class FakeFace:
        def __init__(self, pose):
            self.pose = HeadPose(*pose)

    faces = [FakeFace(p) for p in poses]
    picked = select_views(faces, k=6)
    assert [faces.index(f) for f in picked] == select_view_indices(poses, 6)
    assert select_views([HeadPose(*p) for p in poses], k=6) == [
        HeadPose(*poses[i]) for i in select_view_indices(poses, 6)
    ]


def test_select_views_edge_cases():
    assert select_view_indices([], 6) == []
    assert sorted(select_view_indices([(0, 0, 0), (10, 0, 0)], 6)) == [0, 1]  # fewer than k: all of them
    assert select_view_indices([(5, 0, 0), (5, 0, 0), (5, 0, 0)], 2) == [0, 1]  # duplicates: index order
    assert select_view_indices([(30, 0, 0), (1, 1, 1), (-30, 0, 0)], 1) == [1]
    with pytest.raises(InputError, match="k >= 1"):
        select_view_indices([(0, 0, 0)], 0)
    with pytest.raises(InputError, match="pose"):
        select_view_indices([(0, 0)], 1)


@pytest.mark.parametrize("pose", [(0, 0, 0), (25, 0, 0), (0, -20, 0), (-35, 15, 12), (40, 25, -20)])
def test_rigid_pose_from_eyes_and_nose_recovers_the_rotation(pose):
    assert np.allclose(rigid_head_pose(_project(*pose)).as_array(), pose, atol=1e-4)
