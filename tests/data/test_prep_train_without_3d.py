"""A manifest made without DECA/FLAME (no shape files) trains the configs without vertex tokens ("w/o FV"), from
another working folder than prep ran in; a config that needs vertices is refused in one line before any model is
built."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_without_3d(tmp_path, media, face_root, run_main, monkeypatch) -> Path:
    """carphone prepped WITHOUT DECA files, from a relative input path, merged: the manifest."""
    (tmp_path / "videos").mkdir()
    shutil.copyfile(media / "videos" / "carphone.mp4", tmp_path / "videos" / "carphone.mp4")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["prep", "videos", "--out", "data", "--face-root", str(face_root), "--frames", "9",
                             "--fps", "8", "--sample-frames", "8", "--min-face-size", "32", "--det-size", "320",
                             "--stages", "face,views,3d"])  # fmt: skip
    assert code == 0, err
    assert run_main(["prep", "merge", "data"])[0] == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # training runs from another folder: the manifest's source paths still resolve
    return tmp_path / "data" / "manifest.parquet"


def _train_argv(manifest: Path, run: Path, *extra: str) -> list[str]:
    return ["train", str(REPO / "examples" / "train" / "tiny.yaml"), "--output-dir", str(run), "--max-steps", "2",
            "--set", f"data.manifest={manifest}", "--set", "data.frames=5", "--set", "log.tensorboard=false",
            "--set", "checkpoint.every=2", *extra]  # fmt: skip


@pytest.mark.slow
def test_wo_fv_trains_on_a_manifest_without_3d(data_without_3d, tmp_path, run_main):
    from fantasyid.data.manifest import kept_clips, read_manifest

    kept = kept_clips(read_manifest(data_without_3d))
    assert len(kept) >= 1 and not kept["shape_file"].astype(bool).any()  # no shape file was made
    code, out, err = run_main(_train_argv(data_without_3d, tmp_path / "run", "--set", "model.vertex_tokens=false"))
    assert code == 0, err
    assert (tmp_path / "run" / "log.jsonl").read_text().count('"step"') >= 2  # optimizer steps ran


def test_vertex_config_is_refused_before_any_model_is_built(data_without_3d, tmp_path, run_main, monkeypatch):
    import fantasyid.training.model as model

    def never(*args, **kwargs):
        raise AssertionError("a model was built before the manifest was checked")

    monkeypatch.setattr(model, "build_components", never)
    code, out, err = run_main(_train_argv(data_without_3d, tmp_path / "run"))
    assert code == 1
    message = err.strip().splitlines()[0]
    assert "has no 3D shape files" in message and "model.vertex_tokens=true" in message
    assert "--deca" in err and "--flame" in err  # the prep flags that make them
