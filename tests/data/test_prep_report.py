"""A run whose filters reject every clip says so loudly, in the CLI and at the top of the report, naming each
filter, its count and the option that loosens it."""

from __future__ import annotations

import shutil


def test_every_clip_rejected_is_a_loud_warning(tmp_path, media, face_root, run_main):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("bikes.mp4", "carphone_distorted.mp4"):  # no face; a heavily compressed face (score ~0.5)
        shutil.copyfile(media / "videos" / name, videos / name)
    out = tmp_path / "out"
    code, stdout, stderr = run_main(["prep", str(videos), "--out", str(out), "--face-root", str(face_root),
                                     "--frames", "9", "--fps", "8", "--sample-frames", "4", "--det-size", "320",
                                     "--min-face-score", "0.76", "--stages", "face,views"])  # fmt: skip
    assert code == 0, stderr
    warning = " ".join(stderr.split())
    assert "warning: every clip was rejected (0 of" in warning, stdout
    assert "no face" in warning and "face score below threshold" in warning and "(--min-face-score)" in warning
    code, stdout, stderr = run_main(["prep", "merge", str(out)])
    assert code == 0, stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    first = report.split("\n## ")[0]  # before the first table
    assert "WARNING: every clip was rejected" in first and "face score below threshold" in first
