"""`fantasyid edit-shape --model tiny`: photo → edited SHAPE.npz, mesh, preview and a video; saved shapes; errors."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from typer.testing import CliRunner

from fantasyid_cli import main as cli_main
from fantasyid_cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path_factory.getbasetemp() / "fantasyid-home"))
    monkeypatch.delenv("FANTASYID_DEBUG", raising=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    PIL.Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def end_to_end(photo, tmp_path_factory):
    """One run of the whole command (the tiny pipeline loads twice: DECA, then generation)."""
    out = tmp_path_factory.mktemp("edit")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FANTASYID_HOME", str(tmp_path_factory.getbasetemp() / "fantasyid-home"))
        result = runner.invoke(app, [
            "edit-shape", "--model", "tiny", "--ref", str(photo), "--face-width", "+5%", "--out",
            str(out / "wide.npz"), "--out-mesh", str(out / "wide.obj"), "--preview", str(out / "wide.png"),
            "--generate", "--prompt", "a woman smiles", "--seed", "3", "--device", "cpu",
        ])  # fmt: skip
    return result, out


def _frames(path):
    import imageio.v3 as iio

    return iio.imread(path, plugin="pyav")


def test_photo_to_edited_shape_mesh_preview_and_video(end_to_end):
    result, out = end_to_end
    assert result.exit_code == 0, result.output
    with np.load(out / "wide.npz", allow_pickle=False) as data:
        names = list(data["trait_names"])
        before, after = data["traits_before"], data["traits_after"]
        width = names.index("face_width")
        assert after[width] / before[width] - 1.0 == pytest.approx(0.05, abs=0.005)
        held = np.delete(np.abs(after - before), width)
        assert held.max() < 1e-3
        assert str(data["model"]) == "tiny" and str(data["mode"]) == "released"
        assert data["vertices"].shape == (1, 642, 3)
    import trimesh

    assert trimesh.load(out / "wide.obj", process=False).vertices.shape == (642, 3)
    assert PIL.Image.open(out / "wide.png").size[0] > 300
    frames = _frames(out / "wide.mp4")
    assert frames.shape == (9, 64, 64, 3)
    sidecar = json.loads((out / "wide.json").read_text())
    assert sidecar["status"] == "done" and sidecar["model"]["shape_file"] == str((out / "wide.npz").resolve())
    assert "face_width" in result.output and "+5%" in result.output and "video:" in result.output


def test_generate_uses_the_edited_shape(end_to_end, photo, tmp_path):
    """The same photo, prompt and seed with the unedited shape (a zero edit of the saved one) gives another video;
    the unedited shape is exactly what the tiny pipeline estimates from the photo itself."""
    _, out = end_to_end
    zero = runner.invoke(app, ["edit-shape", "--shape", str(out / "wide.npz"), "--face-width", "+0%",
                               "--out", str(tmp_path / "same.npz"), "--device", "cpu"])  # fmt: skip
    assert zero.exit_code == 0, zero.output
    np.testing.assert_array_equal(np.load(tmp_path / "same.npz")["vertices"], np.load(out / "wide.npz")["vertices"])
    with np.load(out / "wide.npz") as data:
        arrays = dict(data)
    arrays["vertices"] = arrays["vertices_before"]
    np.savez(tmp_path / "original.npz", **arrays)
    plain = runner.invoke(app, ["generate", "--model", "tiny", "--ref", str(photo), "--prompt", "a woman smiles",
                                "--seed", "3", "--out", str(tmp_path / "plain"), "--device", "cpu"])  # fmt: skip
    original = runner.invoke(app, ["generate", "--model", "tiny", "--ref", str(photo), "--prompt", "a woman smiles",
                                   "--seed", "3", "--shape", str(tmp_path / "original.npz"), "--out",
                                   str(tmp_path / "original"), "--device", "cpu"])  # fmt: skip
    assert plain.exit_code == 0 and original.exit_code == 0, plain.output + original.output
    plain_frames = _frames(next((tmp_path / "plain").glob("*.mp4")))
    original_frames = _frames(next((tmp_path / "original").glob("*.mp4")))
    edited_frames = _frames(out / "wide.mp4")
    np.testing.assert_array_equal(original_frames, plain_frames)  # unedited shape file = estimating from the photo
    assert np.abs(edited_frames.astype(int) - original_frames).max() > 0  # the edit changes the video


def test_list_traits():
    result = runner.invoke(app, ["edit-shape", "--list-traits"])
    assert result.exit_code == 0
    for option in ("--face-width", "--jaw-sharpness", "--chin-length", "--cheek-fullness"):
        assert option in result.output


def _one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        cli_main.main(argv)
    assert info.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return err


def test_bad_requests_are_one_line_errors(end_to_end, capsys, tmp_path):
    _, out = end_to_end
    shape = str(out / "wide.npz")
    err = _one_line_error(capsys, ["edit-shape", "--shape", shape, "--edit", "nose_length=+1mm",
                                   "--out", str(tmp_path / "x.npz")])  # fmt: skip
    assert "unknown trait 'nose_length'" in err
    err = _one_line_error(capsys, ["edit-shape", "--shape", shape, "--face-width", "+400%",
                                   "--out", str(tmp_path / "x.npz"), "--device", "cpu"])  # fmt: skip
    assert "goes past the plausible range" in err and "hint:" in err
    err = _one_line_error(capsys, ["edit-shape", "--shape", shape, "--chin-length", "-2",
                                   "--jaw-sharpness", "+1mm", "--out", str(tmp_path / "x.npz")])  # fmt: skip
    assert "measured in deg, not mm" in err
    assert not (tmp_path / "x.npz").exists()


def test_usage_errors_exit_2(photo, tmp_path):
    missing_face = runner.invoke(app, ["edit-shape", "--face-width", "+5%"])
    assert missing_face.exit_code == 2 and "--ref PHOTO or --shape" in missing_face.output
    no_generate = runner.invoke(app, ["edit-shape", "--ref", str(photo), "--prompt", "hi"])
    assert no_generate.exit_code == 2 and "--generate" in no_generate.output
    no_prompt = runner.invoke(app, ["edit-shape", "--ref", str(photo), "--generate"])
    assert no_prompt.exit_code == 2
