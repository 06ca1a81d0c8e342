"""Face motion (FM): dense optical flow inside the face region between consecutive frames (FantasyID Sec. 4.1).

For a pair of frames ``(t, t+1)`` the same square window around frame ``t``'s face box (the box's long side plus a
margin on every side, so the flow has context at the face's border) is cut from both frames and resized to
``size × size`` pixels. Dense flow is computed between the two grey crops, and FM is the mean flow magnitude over
the pixels inside the face box. Cutting the *same* window from both frames keeps the face's own movement in the
flow; resizing the window to a fixed size makes FM independent of the video resolution and the face size. Its
unit is pixels of the ``size``-px crop per frame: with the default 128 px and margin 0.25, a face box 100 px wide
that moves 3 px per frame in the video gives FM ≈ 3 × 128 / 150 ≈ 2.6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fantasyid.errors import ConfigError, require

#: Flow methods available without extra weights (OpenCV). TV-L1 needs opencv-contrib and is not offered.
FLOW_METHODS = ("farneback", "dis")


@dataclass(frozen=True)
class FlowSettings:
    """How FM is computed; recorded in every summary so that numbers can be compared."""

    method: str = "farneback"  #: ``farneback`` (default, as in the paper's setting) or ``dis``
    size: int = 128  #: side of the resized face window, pixels
    margin: float = 0.25  #: context added on each side of the face box, as a fraction of its long side
    # Farneback parameters: OpenCV's reference values (samples/python/opt_flow.py)
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2

    def __post_init__(self) -> None:
        if self.method not in FLOW_METHODS:
            raise ConfigError(
                f"unknown flow method {self.method!r}", hint=f"use one of: {', '.join(FLOW_METHODS)}"
            )
        if self.size < 16:
            raise ConfigError(f"the FM crop size must be at least 16 px, got {self.size}")
        if not 0.0 <= self.margin <= 2.0:
            raise ConfigError(f"the FM crop margin must lie in [0, 2], got {self.margin}")

    def describe(self) -> dict:
        """The settings as a plain dict (only the parameters the chosen method uses)."""
        values = asdict(self)
        if self.method != "farneback":
            for key in ("pyr_scale", "levels", "winsize", "iterations", "poly_n", "poly_sigma"):
                values.pop(key)
            values["preset"] = "medium"
        return values


@dataclass(frozen=True)
class FaceWindow:
    """The square window cut from both frames: integer pixel box in the frame and its scale to the crop."""

    x0: int
    y0: int
    side: int
    scale: float  #: crop pixels per frame pixel (``size / side``)
    mask: np.ndarray  #: (size, size) bool, True inside the face box


def face_window(bbox: np.ndarray, size: int = 128, margin: float = 0.25) -> FaceWindow:
    """The square window around a face box ``(x1, y1, x2, y2)`` and the face-box mask in crop coordinates."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(bbox, dtype=np.float64)[:4])
    long_side = max(x2 - x1, y2 - y1, 1.0)
    side = max(round(long_side * (1.0 + 2.0 * margin)), 2)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    scale = size / side
    # face box in crop coordinates; a crop pixel belongs to it when its centre lies inside
    centres = (np.arange(size) + 0.5) / scale
    inside_x = (centres >= x1 - x0) & (centres <= x2 - x0)
    inside_y = (centres >= y1 - y0) & (centres <= y2 - y0)
    mask = inside_y[:, None] & inside_x[None, :]  # (size, size)
    return FaceWindow(x0=x0, y0=y0, side=side, scale=scale, mask=mask)


def crop_window(grey: np.ndarray, window: FaceWindow, size: int) -> np.ndarray:
    """Cut ``window`` from a grey frame (edge pixels repeated where it leaves the frame) and resize it to ``size``."""
    cv2 = require("cv2", "metrics", "face motion")
    height, width = grey.shape[:2]
    x0, y0, x1, y1 = window.x0, window.y0, window.x0 + window.side, window.y0 + window.side
    pad_left, pad_top = max(0, -x0), max(0, -y0)
    pad_right, pad_bottom = max(0, x1 - width), max(0, y1 - height)
    patch = grey[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if patch.size == 0:  # the window lies entirely outside the frame: nothing to measure
        patch = np.zeros((1, 1), dtype=grey.dtype)
        pad_left = pad_top = pad_right = pad_bottom = 0
    if pad_left or pad_top or pad_right or pad_bottom:
        patch = cv2.copyMakeBorder(patch, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    # area averaging when shrinking (no aliasing), bilinear when enlarging
    interpolation = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def to_grey(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB → ``(H, W)`` uint8 grey (a grey frame is returned as is)."""
    if frame.ndim == 2:
        return frame
    cv2 = require("cv2", "metrics", "face motion")
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class FaceMotion:
    """Computes the FM value of frame pairs with fixed :class:`FlowSettings`."""

    def __init__(self, settings: FlowSettings | None = None):
        self.settings = settings or FlowSettings()
        self._cv2 = require("cv2", "metrics", "face motion")
        self._dis = None
        if self.settings.method == "dis":
            self._dis = self._cv2.DISOpticalFlow_create(self._cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def flow(self, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
        """Dense flow ``(size, size, 2)`` from one grey crop to the next."""
        s = self.settings
        if self._dis is not None:
            return self._dis.calc(previous, following, None)
        return self._cv2.calcOpticalFlowFarneback(
            previous, following, None, s.pyr_scale, s.levels, s.winsize, s.iterations, s.poly_n, s.poly_sigma, 0
        )

    def pair(self, previous: np.ndarray, following: np.ndarray, bbox: np.ndarray) -> float:
        """Mean flow magnitude inside ``previous``'s face box ``bbox``, in pixels of the fixed-size crop.

        ``previous`` and ``following`` are consecutive frames (RGB or grey, same size).
        """
        s = self.settings
        window = face_window(bbox, s.size, s.margin)
        a = crop_window(to_grey(previous), window, s.size)
        b = crop_window(to_grey(following), window, s.size)
        flow = self.flow(a, b)  # (size, size, 2)
        magnitude = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
        return float(magnitude[window.mask].mean()) if window.mask.any() else float(magnitude.mean())
