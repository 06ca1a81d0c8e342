"""``fantasyid eval`` on the command line: files written, exit codes and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fantasyid_cli import main as cli_main

runner = CliRunner()


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    from fantasyid.io import write_video

    write_video(path, np.stack(frames), fps=8, quality=9)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    from fantasyid.face.assets import install_buffalo_sc

    root = tmp_path_factory.mktemp("home")
    install_buffalo_sc(root)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder: a face moving 4 px per frame, a still face, a corrupt file; one reference for all."""
    import imageio.v2 as imageio
    from skimage import data

    photo = data.astronaut()
    folder = tmp_path_factory.mktemp("cli_run")
    _write_video(folder / "moving.mp4", [photo[:192, 140 - 4 * t : 332 - 4 * t].copy() for t in range(6)])
    _write_video(folder / "still.mp4", [photo[:192, 140:332].copy()] * 6)
    (folder / "corrupt.mp4").write_bytes(b"\x00not a video" * 30)
    imageio.imwrite(folder.parent / "ref.png", photo)
    imageio.imwrite(folder.parent / "coffee.png", data.coffee())
    return folder


def _main(argv, capsys):
    """Run the real entry point (typed errors → one line + hint, exit 1); return (code, stdout, stderr)."""
    with pytest.raises(SystemExit) as caught:
        cli_main.main(argv)
    captured = capsys.readouterr()
    return caught.value.code, captured.out, captured.err


def test_help_shows_examples():
    result = runner.invoke(cli_main.app, ["eval", "--help"])
    assert result.exit_code == 0
    assert "fantasyid eval outputs/ --metrics rs,ifs,fid,fm" in result.output
    assert "--face-pack" in result.output and "--frames" in result.output


def _face_side(frame: np.ndarray, home: Path) -> int:
    """The side of FM's face window (1.5 × the long side of the face box), the box from insightface directly."""
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name="buffalo_sc", root=str(home), allowed_modules=["detection"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    x1, y1, x2, y2 = app.get(np.ascontiguousarray(frame[:, :, ::-1]))[0].bbox
    return round(max(x2 - x1, y2 - y1) * 1.5)


def test_eval_writes_everything(run_dir, home, tmp_path, monkeypatch):
    from skimage import data

    monkeypatch.setenv("FANTASYID_HOME", str(home))
    out = tmp_path / "out"
    result = runner.invoke(
        cli_main.app,
        ["eval", str(run_dir), "--metrics", "rs,ifs,fm", "--ref", str(run_dir.parent / "ref.png"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    for name in ("summary.json", "per_video.csv", "table.md", "table.tex", "identity_vs_motion.png"):
        assert (out / name).is_file(), name
    assert "RS ↑" in result.output and "buffalo_sc" in result.output
    assert "corrupt.mp4" in result.output  # the unreadable video is reported
    summary = json.loads((out / "summary.json").read_text())
    run = summary["runs"][0]
    assert (run["videos"], run["videos_unreadable"], run["frames"]) == (3, 1, 12)
    rows = {Path(r["video"]).stem: r for r in csv.DictReader((out / "per_video.csv").open())}
    moving, still = rows["moving"], rows["still"]
    # the face moves 4 px per frame: FM = 4 × 128 / window side, in pixels of the 128-px crop
    expected_fm = 4 * 128 / _face_side(data.astronaut()[:192, 140:332], home)
    assert float(moving["fm"]) == pytest.approx(expected_fm, rel=0.1)
    assert float(still["fm"]) == pytest.approx(0.0, abs=0.02) and float(still["ifs"]) == pytest.approx(1.0, abs=1e-4)
    assert (int(moving["fm_pairs"]), int(moving["ifs_pairs"]), int(moving["pairs_skipped"])) == (5, 5, 0)
    # the frames are cut from the reference photo itself: the same identity
    assert float(moving["rs"]) > 0.8 and float(still["rs"]) > 0.8
    # run values: the mean over the readable videos of their own means
    for key in ("rs", "ifs", "fm"):
        assert run[key] == pytest.approx((float(moving[key]) + float(still[key])) / 2, abs=1e-12)
    assert run["fid"] is None


def test_json_output(run_dir, home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FANTASYID_HOME", str(home))
    code, out, _ = _main(
        ["eval", str(run_dir / "still.mp4"), "--metrics", "ifs,fm", "--json", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 0
    data = json.loads(out)
    assert data["metrics"] == ["ifs", "fm"]
    assert data["runs"][0]["name"] == "still" and data["runs"][0]["ifs"] == pytest.approx(1.0, abs=1e-4)


def test_unknown_metric_is_one_line(run_dir, capsys):
    code, _, err = _main(["eval", str(run_dir), "--metrics", "rs,psnr"], capsys)
    assert code == 1
    assert err.splitlines()[0] == "error: unknown metric name: psnr"
    assert err.splitlines()[1].startswith("hint:") and len(err.strip().splitlines()) == 2


def test_empty_folder_is_one_line(tmp_path, capsys):
    code, _, err = _main(["eval", str(tmp_path)], capsys)
    assert code == 1 and err.startswith(f"error: no videos in {tmp_path}")
    assert "Traceback" not in err


def test_reference_without_face_is_one_line(run_dir, home, capsys, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(home))
    code, _, err = _main(["eval", str(run_dir), "--metrics", "rs", "--ref", str(run_dir.parent / "coffee.png")],
                         capsys)
    assert code == 1 and err.startswith("error: no face found in the reference image")


def test_all_videos_unreadable_exits_1(tmp_path, home, capsys, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(home))
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 10)
    code, _, err = _main(["eval", str(tmp_path), "--metrics", "ifs", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "no frame of any video could be read" in err
    assert (tmp_path / "o" / "per_video.csv").is_file()


def test_no_face_anywhere_exits_1(tmp_path, home, capsys, monkeypatch):
    from skimage import data

    monkeypatch.setenv("FANTASYID_HOME", str(home))
    run = tmp_path / "cups"
    run.mkdir()
    _write_video(run / "cup.mp4", [data.coffee()[:192, :192].copy()] * 4)
    code, out, err = _main(["eval", str(run), "--metrics", "ifs,fm", "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert err.splitlines()[-2] == "error: no face found in any of the 4 evaluated frames: nothing to measure"
    assert err.splitlines()[-1].startswith(f"hint: see {tmp_path / 'o' / 'per_video.csv'}")
    rows = list(csv.DictReader((tmp_path / "o" / "per_video.csv").open()))
    assert (rows[0]["status"], rows[0]["frames_without_face"]) == ("no_face", "4")


@pytest.mark.parametrize("kind", ["file", "under_a_file"])
def test_out_that_cannot_be_a_folder_is_one_line_before_loading(run_dir, tmp_path, capsys, monkeypatch, kind):
    # an empty model root and a pack that is not there: had a model been loaded first, the error would name it
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "empty_home"))
    (tmp_path / "taken").write_text("x")
    out = tmp_path / "taken" if kind == "file" else tmp_path / "taken" / "sub"
    code, _, err = _main(["eval", str(run_dir), "--metrics", "ifs", "--face-pack", "antelopev2", "--out", str(out)],
                         capsys)
    assert code == 1 and "Traceback" not in err
    expected = (f"error: --out '{out}' is a file, not a folder" if kind == "file"
                else f"error: --out '{out}' cannot be created: '{tmp_path / 'taken'}' is a file")
    assert err.splitlines()[0] == expected
    assert (tmp_path / "taken").read_text() == "x"


def test_det_size_is_used_and_recorded(run_dir, home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FANTASYID_HOME", str(home))
    code, out, _ = _main(["eval", str(run_dir / "still.mp4"), "--metrics", "ifs", "--det-size", "320", "--json",
                          "--out", str(tmp_path / "o")], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["provenance"]["face_pack"]["det_size"] == [320, 320] and data["settings"]["det_size"] == 320
    assert data["runs"][0]["ifs"] == pytest.approx(1.0, abs=1e-4)
    code, _, err = _main(["eval", str(run_dir), "--det-size", "300"], capsys)
    assert code == 1 and err.splitlines()[0] == "error: --det-size must be a multiple of 32 (the detector's stride), got 300"


def test_shards_then_merge_on_the_command_line(run_dir, home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FANTASYID_HOME", str(home))
    parts = tmp_path / "parts"
    for shard in ("0", "1"):
        code, out, _ = _main(["eval", str(run_dir), "--metrics", "ifs,fm", "--shard", shard, "--num-shards", "2",
                              "--out", str(parts)], capsys)
        assert code == 0 and f"fantasyid eval --merge {parts}" in out
    code, out, _ = _main(["eval", "--merge", str(parts), "--json", "--out", str(tmp_path / "tables")], capsys)
    assert code == 0
    merged = json.loads(out)["runs"][0]
    code, out, _ = _main(["eval", str(run_dir), "--metrics", "ifs,fm", "--json", "--out", str(tmp_path / "one")],
                         capsys)
    single = json.loads(out)["runs"][0]
    assert (merged["ifs"], merged["fm"], merged["frames"]) == (single["ifs"], single["fm"], single["frames"])
    assert (tmp_path / "tables" / "table.md").is_file()
    # a shard number out of range, or --merge with --shard: one line
    code, _, err = _main(["eval", str(run_dir), "--shard", "2", "--num-shards", "2"], capsys)
    assert code == 1 and err.startswith("error: --shard 2 --num-shards 2: the shard must lie in 0 … num_shards-1")
    code, _, err = _main(["eval", "--merge", str(parts), "--shard", "0", "--num-shards", "2", "--frames", "3"], capsys)
    message = " ".join(err.replace("│", " ").split())  # Click's usage error in Rich's box, wrapped
    assert code == 2 and "--merge takes every setting from the shards' partials: drop --shard/--num-shards/--frames" in (
        message)
