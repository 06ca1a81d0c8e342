"""`fantasyid generate --model tiny`: real mp4s, sidecars, batch resume, failures that don't stop the batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from typer.testing import CliRunner

from fantasyid_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("gen")
    PIL.Image.fromarray(data.astronaut()).save(root / "astronaut.png")
    PIL.Image.new("RGB", (200, 200), (90, 140, 200)).save(root / "sky.png")
    (root / "broken.png").write_bytes(b"not an image at all")
    return root


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path_factory.getbasetemp() / "fantasyid-home"))


def _frames(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(path, plugin="pyav")


def test_one_video(files, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", "--model", "tiny", "--ref", str(files / "astronaut.png"),
                                 "--prompt", "a woman smiles", "--out", str(out), "--seed", "5"])
    assert result.exit_code == 0, result.output
    videos = list(out.glob("*.mp4"))
    assert len(videos) == 1
    frames = _frames(videos[0])
    assert frames.shape == (9, 64, 64, 3)
    sidecar = json.loads(videos[0].with_suffix(".json").read_text())
    assert sidecar["status"] == "done" and sidecar["seed"] == 5 and sidecar["prompt"] == "a woman smiles"
    assert sidecar["model"]["model"] == "tiny" and sidecar["model"]["random_weights"] is True
    assert len(sidecar["ref_sha256"]) == 64 and sidecar["settings"]["steps"] == 4
    assert "random" in result.output
    assert not list(out.glob(".*partial*"))


def test_batch_goes_on_past_failures_and_resumes(files, tmp_path):
    prompts = tmp_path / "batch.csv"
    prompts.write_text(
        "ref,prompt,seed,name\n"
        f"{files / 'astronaut.png'},a woman smiles,1,first\n"
        "missing.png,a woman smiles,2,\n"
        f"{files / 'sky.png'},no face here,3,\n"
        f"{files / 'broken.png'},unreadable,4,\n"
        f"{files / 'astronaut.png'},,5,\n"
        f"{files / 'astronaut.png'},the same woman walks,six,\n"
        f"{files / 'astronaut.png'},../../escape attempt,7,../../evil\n"
    )
    out = tmp_path / "runs"
    result = runner.invoke(app, ["generate", "--model", "tiny", "--prompts", str(prompts), "--out", str(out)])
    assert result.exit_code == 1
    names = sorted(p.name for p in out.glob("*.mp4"))
    assert names == ["evil.mp4", "first.mp4"]  # the path in `name` is made safe, never followed
    assert "2 made" in result.output and "5 failed" in result.output
    assert "no face" in result.output and "does not exist" in result.output
    assert not (tmp_path.parent / "evil.mp4").exists()

    again = runner.invoke(app, ["generate", "--model", "tiny", "--prompts", str(prompts), "--out", str(out)])
    assert "0 made, 2 already done" in again.output
    assert again.exit_code == 1


def test_jsonl_batch_and_bad_json(files, tmp_path):
    prompts = tmp_path / "batch.jsonl"
    prompts.write_text(json.dumps({"ref": str(files / "astronaut.png"), "prompt": "a woman turns", "seed": 9}) + "\n{oops\n")
    result = runner.invoke(app, ["generate", "--model", "tiny", "--prompts", str(prompts), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "not valid JSON" in result.output
    assert len(list((tmp_path / "o").glob("*.mp4"))) == 1


def test_misuse_and_missing_reference(tmp_path):
    assert runner.invoke(app, ["generate", "--model", "tiny"]).exit_code == 2
    assert runner.invoke(app, ["generate", "--model", "tiny", "--ref", "x.png"]).exit_code == 2
    result = runner.invoke(app, ["generate", "--model", "tiny", "--ref", str(tmp_path / "nope.png"), "--prompt", "hi"])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_released_model_missing_says_how_to_get_it(files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from fantasyid_cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["generate", "--ref", str(files / "astronaut.png"), "--prompt", "hi", "--out", str(tmp_path)])
    assert exc.value.code == 1


def test_rerun_remakes_only_what_changed(files, tmp_path):
    out = tmp_path / "out"
    base = ["generate", "--model", "tiny", "--ref", str(files / "astronaut.png"), "--out", str(out), "--steps", "2"]
    first = runner.invoke(app, base + ["--prompt", "", "--guidance", "0.5"])
    assert first.exit_code == 0, first.output
    assert "empty prompt" in first.output and "guidance is off" in first.output
    (video,) = out.glob("*.mp4")

    same = runner.invoke(app, base + ["--prompt", "", "--guidance", "0.5"])
    assert same.exit_code == 0 and "0 made, 1 already done" in same.output
    assert "random" not in same.output  # a finished batch loads no model

    refused = runner.invoke(app, base + ["--prompt", "", "--guidance", "0.5", "--steps", "3", "--no-overwrite"])
    assert refused.exit_code == 1
    assert "refused" in refused.output and "steps 2 → 3" in refused.output

    changed = runner.invoke(app, base + ["--prompt", "a woman laughs", "--guidance", "0.5"])
    assert changed.exit_code == 0, changed.output
    assert 'request changed: prompt "" → "a woman laughs"' in changed.output and "1 made" in changed.output
    assert json.loads(video.with_suffix(".json").read_text())["prompt"] == "a woman laughs"
    assert _frames(video).shape == (9, 64, 64, 3)

    status = runner.invoke(app, base + ["--prompt", "a woman laughs", "--guidance", "0.5", "--status"])
    assert status.exit_code == 0 and "1 done, 0 claimed, 0 failed, 0 stale, 0 missing" in status.output
    video.write_bytes(video.read_bytes()[:-300])  # truncated: the last frames are gone
    status = runner.invoke(app, base + ["--prompt", "a woman laughs", "--guidance", "0.5", "--status"])
    assert status.exit_code == 1 and "1 stale" in status.output and "broken" in status.output


def _main(argv, capsys) -> tuple[int, str]:
    from fantasyid_cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    return exc.value.code, captured.out + captured.err


def test_bad_batches_fail_before_anything_runs(files, tmp_path, capsys):
    ref = files / "astronaut.png"
    code, text = _main(["generate", "--model", "tiny", "--ref", str(ref), "--prompt", "hi", "--steps", "0",
                        "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 1 and "--steps must be ≥ 1, got 0" in text
    prompts = tmp_path / "batch.csv"
    prompts.write_text(f"ref,prompt,name\n{ref},one,same\n{ref},two,other\n{ref},three,same\n")
    code, text = _main(["generate", "--model", "tiny", "--prompts", str(prompts), "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "line 2 and line 4 both write 'same.mp4'" in text
    prompts.write_text(f'ref,prompt\n{ref},"one\n{ref},two\n')
    code, text = _main(["generate", "--model", "tiny", "--prompts", str(prompts), "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "batch.csv:2: malformed CSV: a quote opened on line 2 is never closed" in text
    assert not (tmp_path / "o").exists()
    code, text = _main(["generate", "--model", "tiny", "--ref", str(ref), "--prompt", "hi", "--shard", "1"], capsys)
    assert code == 1 and "give both --shard I and --num-shards N" in text


@pytest.mark.parametrize("index", [None, "{}"], ids=["empty", "empty-index"])
def test_a_folder_that_is_not_a_model_says_so(files, tmp_path, capsys, index):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    if index is not None:
        (folder / "model_index.json").write_text(index)
    code, text = _main(["generate", "--model", str(folder), "--ref", str(files / "astronaut.png"), "--prompt", "hi",
                        "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 1, text
    error, hint = text.strip().splitlines()  # one line, and its hint
    assert error.startswith(f"error: '{folder}' is not a model folder: ")
    assert ("it is empty" in error) == (index is None)
    assert "transform.pkl" not in text and "Traceback" not in text
    assert "model_index.json" in hint and "transformer/" in hint and "--model tiny" in hint
