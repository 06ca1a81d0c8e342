"""``fantasyid eval`` on the command line: files written, exit codes and one-line errors."""

from __future__ import annotations

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


def test_eval_writes_everything(run_dir, home, tmp_path, monkeypatch):
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
    assert run["fid"] is None and run["fm"] > 0


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
