"""prep's face-size filter: a clip whose face is smaller than --min-face-size is rejected with the reason."""

from __future__ import annotations

import shutil

from fantasyid.data.manifest import read_manifest


def test_a_face_under_the_minimum_size_is_rejected(tmp_path, media, face_root, run_main):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(media / "videos" / "astronaut_drift.mp4", videos / "astronaut_drift.mp4")
    common = ["--frames", "9", "--sample-frames", "4", "--min-face-score", "0.7", "--det-size", "320",
              "--face-root", str(face_root), "--stages", "face"]  # fmt: skip
    for size, kept in (("32", True), ("5000", False)):  # the same clip passes with a small minimum: the size decides
        out = tmp_path / f"data{size}"
        code, _, stderr = run_main(["prep", str(videos), "--out", str(out), "--min-face-size", size, *common])
        assert code == 0, stderr
        assert run_main(["prep", "merge", str(out)])[0] == 0
        rows = read_manifest(out / "manifest.parquet")
        assert bool(rows["keep"].all()) is kept, rows["reject_reason"].tolist()
        if not kept:
            assert all(r.startswith("face size") and "< 5000 px" in r for r in rows["reject_reason"])
