"""Nothing to do is an error with a hint, for `prep` and `eval` alike: one line, exit 1."""

from __future__ import annotations

import PIL.Image


def test_prep_on_a_folder_without_videos(tmp_path, run_main):
    photos = tmp_path / "photos"
    photos.mkdir()
    PIL.Image.new("RGB", (32, 32)).save(photos / "face.jpg")
    for folder in (photos, tmp_path / "empty"):
        folder.mkdir(exist_ok=True)
        code, stdout, stderr = run_main(["prep", str(folder), "--out", str(tmp_path / "out")])
        assert code == 1 and f"error: no videos in {folder}" in stderr and "hint:" in stderr, stderr
        assert "Traceback" not in stderr and "0 clips" not in stdout
        assert not (tmp_path / "out").exists()


def test_eval_on_an_empty_folder(tmp_path, run_main):
    code, _, stderr = run_main(["eval", str(tmp_path)])
    assert code == 1 and "no videos in" in stderr and "hint:" in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) <= 2  # the error and its hint
