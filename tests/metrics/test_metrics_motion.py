"""FM: flow magnitude in the face region matches known motion, is zero for a still video and does not depend on
the video's resolution."""

from __future__ import annotations

import numpy as np
import pytest

from fantasyid.errors import ConfigError
from fantasyid.metrics.motion import FaceMotion, FlowSettings, crop_window, face_window, to_grey

BOX = np.array([200.0, 180.0, 300.0, 280.0])  # a 100 × 100 box on the astronaut's face and suit


def _shifted_pair(photo: np.ndarray, dx: int, dy: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two 400 × 400 windows of ``photo``; the content of the second is moved by (dx, dy) pixels."""
    y, x = 40, 50
    first = photo[y : y + 400, x : x + 400]
    second = photo[y - dy : y - dy + 400, x - dx : x - dx + 400]
    return first, second


def test_window_geometry():
    window = face_window(BOX, size=128, margin=0.25)
    assert window.side == 150 and window.scale == pytest.approx(128 / 150)
    assert (window.x0, window.y0) == (175, 155)
    inside = window.mask.sum()
    assert inside == pytest.approx((100 * 128 / 150) ** 2, rel=0.05)


@pytest.mark.parametrize("method", ["farneback", "dis"])
@pytest.mark.parametrize("dx, dy", [(1, 0), (3, 0), (0, 4), (6, 0)])
def test_known_translation(astronaut, method, dx, dy):
    first, second = _shifted_pair(astronaut, dx, dy)
    fm = FaceMotion(FlowSettings(method=method)).pair(first, second, BOX)
    expected = np.hypot(dx, dy) * 128 / 150  # pixels of the 128-px crop
    assert fm == pytest.approx(expected, rel=0.08), (method, dx, dy, fm, expected)


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_no_motion_gives_zero(astronaut, method):
    first, _ = _shifted_pair(astronaut, 0)
    assert FaceMotion(FlowSettings(method=method)).pair(first, first.copy(), BOX) == pytest.approx(0.0, abs=1e-3)


def test_window_leaving_the_frame_is_padded(astronaut):
    import cv2

    first, second = _shifted_pair(astronaut, 3)
    edge_box = np.array([-20.0, -10.0, 60.0, 70.0])  # partly outside the frame
    window = face_window(edge_box, size=128, margin=0.25)
    assert (window.x0, window.y0, window.side) == (-40, -30, 120)
    # the window's part outside the frame repeats the edge pixels (NumPy's "edge" padding, computed independently)
    grey = to_grey(first)
    expected = np.pad(grey, ((30, 0), (40, 0)), mode="edge")[:120, :120]
    np.testing.assert_array_equal(crop_window(grey, window, 128), cv2.resize(expected, (128, 128)))
    # FM: zero without motion; with the 3-px shift, 3 × 128 / 120 crop px (the still border pulls Farneback less
    # than 30 % off, DIS less than 10 %)
    assert FaceMotion().pair(first, first.copy(), edge_box) == pytest.approx(0.0, abs=1e-3)
    assert FaceMotion(FlowSettings(method="dis")).pair(first, second, edge_box) == pytest.approx(3.2, rel=0.1)
    assert FaceMotion().pair(first, second, edge_box) == pytest.approx(3.2, rel=0.3)


def test_bad_settings():
    with pytest.raises(ConfigError):
        FlowSettings(method="tvl1")
    with pytest.raises(ConfigError):
        FlowSettings(size=8)


# ---- on real videos through the shared pass ------------------------------------------------------------------


def _expected_fm(shift_px: float, face_root, frame: np.ndarray) -> float:
    """shift × (crop size / window side), the window side from insightface's own box of the face."""
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name="buffalo_sc", root=str(face_root), allowed_modules=["detection"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    x1, y1, x2, y2 = app.get(np.ascontiguousarray(frame[:, :, ::-1]))[0].bbox
    side = round(max(x2 - x1, y2 - y1) * 1.5)
    return shift_px * 128 / side


def test_fm_matches_known_motion(identity_motion_eval, video_result, media, face_root):
    from fantasyid.data.video import FrameReader

    _, frame = next(iter(FrameReader(media / "move3.mp4", keep={0})))
    expected = _expected_fm(3, face_root, frame)
    move3 = video_result(identity_motion_eval, "move3")
    move6 = video_result(identity_motion_eval, "move6")
    move3_x2 = video_result(identity_motion_eval, "move3_x2")
    print(f"FM 3 px/frame: {move3.fm:.3f} (expected {expected:.3f}); 6 px/frame: {move6.fm:.3f}; "
          f"3 px/frame at 2x resolution: {move3_x2.fm:.3f}")
    assert move3.fm_pairs == 9
    assert move3.fm == pytest.approx(expected, rel=0.1)
    assert move6.fm == pytest.approx(2 * expected, rel=0.1)
    # the same motion relative to the face, at twice the resolution: the same FM
    assert move3_x2.fm == pytest.approx(move3.fm, rel=0.1)


def test_still_video_has_no_motion(identity_motion_eval, video_result):
    still = video_result(identity_motion_eval, "still")
    print(f"still video: FM {still.fm:.5f}, IFS {still.ifs:.6f}")
    assert still.fm == pytest.approx(0.0, abs=0.02)
