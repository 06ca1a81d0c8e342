"""RS and IFS: the arithmetic, and the shared pass against a direct insightface computation on the same frames."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from fantasyid.metrics.identity import IdentityTrack, consecutive_similarities, cosine


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_track_skips_frames_without_face_and_breaks_pairs():
    a, b, c = _unit([1, 0, 0]), _unit([1, 1, 0]), _unit([0, 0, 1])
    track = IdentityTrack(reference=a)
    for e in (a, b, None, c, c):
        track.add(e)
    assert track.rs_values == pytest.approx([1.0, np.sqrt(0.5), 0.0, 0.0], abs=1e-6)
    # pairs (a, b) and (c, c): the faces on both sides of the gap are not compared
    assert track.ifs_values == pytest.approx([np.sqrt(0.5), 1.0], abs=1e-6)
    assert track.rs == pytest.approx((1 + np.sqrt(0.5)) / 4, abs=1e-6)


def test_track_without_faces_gives_none():
    track = IdentityTrack(reference=_unit([1, 0]))
    track.add(None)
    assert track.rs is None and track.ifs is None
    assert consecutive_similarities([_unit([1, 0])]) == []


def _insightface_embeddings(path, face_root):
    """Independent reference: decode with imageio-ffmpeg (not PyAV), detect and embed with insightface's own
    FaceAnalysis (not fantasyid.face), largest face per frame."""
    import imageio.v2 as imageio
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(
        name="buffalo_sc", root=str(face_root), allowed_modules=["detection", "recognition"],
        providers=["CPUExecutionProvider"],
    )
    app.prepare(ctx_id=-1, det_size=(640, 640))
    embeddings = []
    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        for frame in reader:
            faces = app.get(np.ascontiguousarray(frame[:, :, ::-1]))  # insightface wants BGR
            if not faces:
                embeddings.append(None)
                continue
            largest = max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
            embeddings.append(largest.normed_embedding)
    return app, embeddings


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("stem", ["move3", "gap"])
def test_rs_ifs_equal_direct_insightface(identity_motion_eval, video_result, media, face_root, stem):
    from skimage import data

    app, embeddings = _insightface_embeddings(media / f"{stem}.mp4", face_root)
    reference = max(app.get(np.ascontiguousarray(data.astronaut()[:, :, ::-1])),
                    key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])).normed_embedding
    rs = np.mean([cosine(reference, e) for e in embeddings if e is not None])
    ifs = np.mean([cosine(a, b) for a, b in pairwise(embeddings) if a is not None and b is not None])

    video = video_result(identity_motion_eval, stem)
    assert video.frames == len(embeddings)
    assert video.frames_without_face == sum(e is None for e in embeddings)
    print(f"{stem}: RS ours {video.rs:.5f} insightface {rs:.5f}; IFS ours {video.ifs:.5f} insightface {ifs:.5f}")
    assert video.rs == pytest.approx(rs, abs=1e-3)
    assert video.ifs == pytest.approx(ifs, abs=1e-3)


def test_gap_counts(identity_motion_eval, video_result):
    gap = video_result(identity_motion_eval, "gap")
    assert (gap.frames, gap.frames_without_face) == (10, 3)
    assert gap.ifs_pairs == 4 + 1  # frames 0-4 and 8-9 are consecutive faces; the coffee frames break the chain
    # FM takes the same pairs as IFS (both frames with a face); (4, 5), (5, 6), (6, 7), (7, 8) are left out
    assert (gap.fm_pairs, gap.pairs_skipped) == (4 + 1, 4)
    assert gap.status == "ok"
    # the face is still: a face-to-cup pair counted in FM would add a large flow to a zero motion
    assert gap.fm == pytest.approx(0.0, abs=0.02)
    run = identity_motion_eval.runs[0]
    assert run.pairs_skipped == 4 + 5  # gap's four and noface's five (6 frames, no face)
    assert "9 frame pairs (t, t+1) left out of IFS/FM: a frame of the pair has no face" in run.warnings


def test_still_video_ifs_is_one(identity_motion_eval, video_result):
    still = video_result(identity_motion_eval, "still")
    assert still.ifs == pytest.approx(1.0, abs=1e-4)
    assert still.rs > 0.9  # the reference is the full photo the frames are cut from
