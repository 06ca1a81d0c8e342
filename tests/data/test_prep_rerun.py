"""No silent reuse: a rerun remakes the rows of a source replaced at the same path, and every row when a model file
changed (same name, other bytes), and says which and why; untouched sources are not redone. Source paths are stored
resolved, so the manifest is read from any working folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fantasyid.data.manifest import read_manifest
from fantasyid.data.provenance import environment_changes, source_key
from fantasyid.data.runner import ProgressHook, run_prep
from tests.data.conftest import FAST


class Counting(ProgressHook):
    def __init__(self):
        self.rows = []

    def clip(self, row):
        self.rows.append(row)


@pytest.fixture
def settings(face_root: Path):
    from fantasyid.data.settings import PrepSettings

    return PrepSettings(**FAST, face_root=str(face_root), stages=("face", "views"))


def _rows(out: Path):
    frame = read_manifest(out / "shards" / "00000.parquet")
    return {Path(p).name: row for p, row in zip(frame["source_path"], frame.to_dict("records"))}


def test_replaced_source_is_remade_and_named(tmp_path, media, settings, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(media / "videos" / "carphone.mp4", videos / "a.mp4")
    shutil.copyfile(media / "videos" / "astronaut_drift.mp4", videos / "b.mp4")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    first = run_prep(["videos"], out, settings)  # relative input: stored resolved
    assert first.clips >= 2 and not first.notes
    before = _rows(out)
    assert before["a.mp4"]["source_path"] == (videos / "a.mp4").resolve().as_posix()
    assert before["b.mp4"]["source_key"] == source_key(videos / "b.mp4")

    hook = Counting()
    same = run_prep(["videos"], out, settings, progress=hook)
    assert same.shards_skipped == [0] and not hook.rows and not same.notes  # nothing changed: nothing redone

    shutil.copyfile(media / "videos" / "astronaut_motion.mp4", videos / "b.mp4")  # another video, same path
    hook = Counting()
    again = run_prep(["videos"], out, settings, progress=hook)
    remade = {Path(r["source_path"]).name for r in hook.rows}
    assert remade == {"b.mp4"}  # a.mp4's rows are reused
    assert again.notes == [f"remade {len(hook.rows)} clip{'s' * (len(hook.rows) != 1)}: source changed: b.mp4"]
    after = _rows(out)
    assert after["b.mp4"]["source_sha256"] != before["b.mp4"]["source_sha256"]
    assert after["b.mp4"]["views"][0]["yaw"] != before["b.mp4"]["views"][0]["yaw"]  # made from the new video
    assert after["a.mp4"]["source_sha256"] == before["a.mp4"]["source_sha256"]


def test_changed_model_file_remakes_every_row(tmp_path, media, settings, face_root):
    import onnx

    from fantasyid.data.settings import PrepSettings

    root = tmp_path / "home"
    shutil.copytree(face_root, root)
    settings = PrepSettings(**{**settings.to_dict(), "face_root": str(root)})
    out = tmp_path / "out"
    run_prep([media / "videos" / "astronaut_drift.mp4", media / "videos" / "broken.mp4"], out, settings)
    # the same recognition network re-exported (other bytes, same name): its hash changes
    path = root / "models" / "buffalo_sc" / "w600k_mbf.onnx"
    model = onnx.load(str(path))
    model.doc_string = "re-exported"
    onnx.save(model, str(path))
    hook = Counting()
    result = run_prep([media / "videos" / "astronaut_drift.mp4", media / "videos" / "broken.mp4"], out, settings,
                      progress=hook)  # fmt: skip
    assert len(hook.rows) == result.clips >= 2  # every row made again
    assert result.notes == [f"remade {result.clips} clips: model changed: w600k_mbf.onnx"]


def test_environment_changes_name_models_and_packages():
    old = {"models": {"deca_model.tar": "aa", "w600k_mbf.onnx": "bb"}, "packages": {"torch": "2.13.0"}}
    new = {"models": {"deca_model.tar": "ac", "w600k_mbf.onnx": "bb"}, "packages": {"torch": "2.14.1"}}
    changes = ["model changed: deca_model.tar", "package changed: torch 2.13.0 → 2.14.1"]
    assert environment_changes(old, new) == changes
    assert environment_changes(new, new) == []
    assert environment_changes(None, new) == ["made before models and packages were recorded"]
