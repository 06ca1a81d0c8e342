"""Issue 19's acceptance test: ``fantasyid prep VIDEOS --out D`` with DEFAULT settings on real footage keeps the
clean talking-head clips (720p and native 176×144) and rejects the no-face, subtitled and two-person ones, each with
its reason in the manifest and in the report of ``prep merge``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fantasyid.data.settings import PrepSettings
from fantasyid.errors import ConfigError
from fantasyid_cli.main import app

def test_face_score_default_is_the_packs_and_unreachable_is_refused():
    assert PrepSettings().min_face_score == 0.6  # buffalo_sc's calibrated default
    assert PrepSettings(face_pack="antelopev2").min_face_score == 0.9  # the paper's
    assert PrepSettings(min_face_score=0.75).min_face_score == 0.75
    with pytest.raises(ConfigError, match="above what the buffalo_sc pack scores"):
        PrepSettings(min_face_score=0.95)
    result = CliRunner().invoke(app, ["prep", "x.mp4", "--out", "o", "--min-face-score", "0.95"])
    assert isinstance(result.exception, ConfigError) and "above what" in str(result.exception)  # before any video


@pytest.fixture(scope="module")
def real_run(real_footage: Path, face_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("real_prep") / "out"
    # defaults only; --face-root points at the session's offline buffalo_sc (the default pack)
    result = CliRunner().invoke(app, ["prep", str(real_footage), "--out", str(out), "--face-root", str(face_root)])
    assert result.exit_code == 0, result.output
    merged = CliRunner().invoke(app, ["prep", "merge", str(out)])
    assert merged.exit_code == 0, merged.output
    frame = pd.concat([pd.read_parquet(p) for p in sorted((out / "shards").glob("*.parquet"))])
    rows: dict[str, list[dict]] = {}  # source name → its rows (a source cut at a shot change has several)
    for path, row in zip(frame["source_path"], frame.to_dict("records")):
        rows.setdefault(Path(path).stem, []).append(row)
    return out, rows


@pytest.mark.slow
def test_defaults_keep_clean_real_clips(real_run):
    _, rows = real_run
    for name in ("carphone_720p", "carphone_native"):
        (row,) = rows[name]  # one shot, one window
        assert row["keep"], (name, row["reject_reason"], row["face_score_mean"])
        assert row["face_frames_other"] == 0
        assert len(row["views"]) == 6


@pytest.mark.slow
@pytest.mark.parametrize("name, reason", [
    ("bikes_720p", "no face"), ("carphone_subtitled", "subtitles"), ("two_people", "another person"),
])  # fmt: skip
def test_defaults_reject_bad_real_clips_with_reason(real_run, name: str, reason: str):
    out, rows = real_run
    assert not any(row["keep"] for row in rows[name])
    assert any(reason in row["reject_reason"] for row in rows[name]), [row["reject_reason"] for row in rows[name]]
    assert reason in (out / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_views_span_the_clips_measured_yaw_range(real_run, face_root: Path):
    """The six views of the real 720p talking head reach the lowest and highest yaw of its clip, measured here on
    EVERY source frame of the clip (not only the frames prep sampled); the report lists each view's pose."""
    from fantasyid.data.video import FrameReader
    from fantasyid.face import FaceAnalyzer
    from fantasyid.face.pose import rigid_head_pose

    out, rows = real_run
    (row,) = rows["carphone_720p"]  # one shot, one window
    analyzer = FaceAnalyzer("buffalo_sc", face_root, recognition=False)
    window = set(range(int(row["clip_start"]), int(row["clip_end"])))
    yaw = {index: rigid_head_pose(analyzer.detect(frame, crop_512=False)[0].landmarks).yaw
           for index, frame in FrameReader(row["source_path"], keep=window)}  # fmt: skip
    assert len(yaw) == len(window) and max(yaw.values()) - min(yaw.values()) > 15  # the man turns his head
    views = [yaw[v["frame"]] for v in row["views"]]  # the chosen frames' yaw, as measured here
    assert min(views) <= min(yaw.values()) + 2 and max(views) >= max(yaw.values()) - 2
    assert [v["yaw"] for v in row["views"]] == pytest.approx(views, abs=0.5)  # the manifest records that pose
    # the native and the 720p carphone are the same footage: the merge keeps one (the better face score), whose views
    # the report lists, and names it in the other's reason
    merged = pd.read_parquet(out / "manifest.parquet")
    carphone = merged[merged["source_path"].str.contains("carphone_(?:720p|native)")]
    assert carphone["keep"].sum() == 1
    kept = carphone[carphone["keep"]].iloc[0]
    assert carphone.loc[~carphone["keep"], "reject_reason"].iloc[0].startswith(f"duplicate of clip {kept['clip_id']}")
    view = kept["views"][1]
    report = (out / "report.md").read_text(encoding="utf-8").split("## View poses")[1]
    assert f"{view['yaw']:+.0f}/{view['pitch']:+.0f}/{view['roll']:+.0f}" in report
