"""The motion stage: reject static clips by the face motion that ``eval`` measures, and record each clip's face
signature for duplicate detection (:mod:`fantasyid.data.dedup`).

A still image repeated as a video (or a frozen stream) has the right face, size and score, so the face stage keeps
it; trained on, such clips teach the copy-paste shortcut FantasyID's face-motion metric exists to catch. This stage
measures face motion exactly as :class:`fantasyid.metrics.motion.FaceMotion` does for eval's FM (Farneback flow in
the face box, in pixels of a 128-px crop) between ``motion_pairs`` pairs of consecutive *training* frames (at the
training ``fps``, as a generated video's frames are), each placed by the face stage's box on its first frame. The
clip's value is the median over the pairs (one blink or cut-away does not decide it); below ``min_face_motion`` the
clip is rejected as static.

Signature: a 16×16 grey thumbnail of each face-sampled frame, saved as ``signature.npy`` (float16,
``(sample_frames, 16, 16)``) in the clip's asset folder, for :mod:`fantasyid.data.dedup`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fantasyid.data.clips import ClipRecord, asset_dir
from fantasyid.data.settings import PrepSettings

#: File name of a clip's face signature in its asset folder.
SIGNATURE_FILE = "signature.npy"


class MotionStage:
    """Face motion over frame pairs (eval's FM); rejects static clips; writes the clip's face signature."""

    name = "motion"

    def __init__(self, settings: PrepSettings, out_dir: Path | None = None):
        from fantasyid.metrics.motion import FaceMotion

        self.settings = settings
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.motion = FaceMotion()

    def __call__(self, records: list[ClipRecord]) -> list[ClipRecord]:
        for record in records:
            if record.keep and "motion" in self.settings.stages:
                self.run(record)
        return records

    def face_motion(self, record: ClipRecord) -> list[float]:
        """FM of each pair whose first frame has the main person's face (box in source pixels)."""
        boxes = {f["frame"]: np.asarray(f["bbox_det"], np.float64) / f["factor"] for f in record.faces}
        return [self.motion.pair(record.frames[a], record.frames[b], boxes[a])
                for a, b in record.motion_pairs if a in boxes]  # fmt: skip

    def run(self, record: ClipRecord) -> None:
        values = self.face_motion(record)
        value = float(np.median(values)) if values else 0.0
        record.row["face_motion"] = value
        record.ran("motion")
        if self.out_dir is not None:
            write_signature(asset_dir(self.out_dir, record.id) / SIGNATURE_FILE, record)
        limit = self.settings.min_face_motion
        if not values:
            record.reject("no face of the main person on the frames paired for face motion")
        elif value < limit:
            record.reject(f"static face: face motion {value:.3f} < {limit:g} (a still image or frozen video)")


#: Side of the grey thumbnails of a clip's signature, pixels.
SIGNATURE_SIDE = 16


def signature(record: ClipRecord) -> np.ndarray:
    """``(len(face_indices), 16, 16)`` float16: grey thumbnails (area-averaged) of the face-sampled frames."""
    import cv2

    from fantasyid.metrics.motion import to_grey

    side = SIGNATURE_SIDE
    thumbs = [cv2.resize(to_grey(record.frames[i]), (side, side), interpolation=cv2.INTER_AREA)
              for i in record.face_indices]  # fmt: skip
    return np.stack(thumbs).astype(np.float16)  # (F, 16, 16)


def write_signature(path: Path, record: ClipRecord) -> None:
    from fantasyid.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, signature(record), allow_pickle=False)
