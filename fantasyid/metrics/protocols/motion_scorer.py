"""OpenS2V's MotionScore as a protocol metric: Farneback flow over every frame of the video
(``PKU-YuanGroup/OpenS2V-Nexus eval/get_motionscore.py``, ``motion_fb``); the arithmetic lives in
:func:`fantasyid.metrics.protocols.arithmetic.motion_score`. No weights."""

from __future__ import annotations

from typing import Any

from fantasyid.metrics.protocols.arithmetic import motion_score, sample_indices
from fantasyid.metrics.protocols.definitions import MetricSpec, Protocol
from fantasyid.metrics.protocols.scorer import ProtocolScorer, VideoSample, register


@register
class FarnebackMotionScorer(ProtocolScorer):
    """``|mean(flow)|`` of the time-averaged, 16-px-wide Farneback flow maps (signed; see ``motion_score``)."""

    model_key = "farneback"
    needs_reference = False  # reads the generated frames only

    def provenance(self) -> dict[str, Any]:
        return {"model": self.model_key, "flow": "cv2.calcOpticalFlowFarneback(0.5, 3, 15, 3, 5, 1.2, 0)",
                "preprocessing": "COLOR_BGR2GRAY on RGB frames (as the authors' decord frames); flow resized to 16 px "
                "wide (INTER_AREA)"}

    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        indices = sample_indices(spec.frames, len(sample.frames), spec.count)
        if not indices:
            return None
        return motion_score([sample.frames[i] for i in indices])
