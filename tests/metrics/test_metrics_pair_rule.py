"""FM's pair rule on its own (no IFS asked for): a pair (t, t+1) counts only when both frames have a face."""

from __future__ import annotations

import shutil

import pytest


def test_fm_alone_leaves_out_pairs_whose_next_frame_has_no_face(tmp_path, media, face_root):
    from fantasyid.metrics import evaluate_runs

    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(media / "gap.mp4", run / "gap.mp4")  # frames 0-4 face, 5-7 a coffee cup, 8-9 face
    video = evaluate_runs([run], "fm", face_root=face_root).runs[0].videos[0]
    # by hand: (0,1) … (3,4) and (8,9) have faces on both sides; (4,5) has none in its next frame, (5,6), (6,7),
    # (7,8) none in their first: 5 pairs, 4 left out
    assert (video.fm_pairs, video.pairs_skipped) == (5, 4)
    assert video.fm == pytest.approx(0.0, abs=0.02)  # the face is still; a face-to-cup pair adds large flow
