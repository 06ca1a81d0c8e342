"""The manifest schema both prep and training test against: round trip, version and column checks."""

from __future__ import annotations

import json

import pytest

from fantasyid.data.manifest import (
    MANIFEST_COLUMNS,
    MANIFEST_VERSION,
    ManifestError,
    clip_id,
    kept_clips,
    new_row,
    read_manifest,
    resolve_asset,
    write_manifest,
)


def _view(frame: int, yaw: float) -> dict:
    return {"frame": frame, "crop": f"assets/c/{frame}.png", "yaw": yaw, "pitch": 1.5, "roll": -2.0,
            "score": 0.93, "landmarks": [float(i) for i in range(10)]}


def _rows():
    kept = new_row(clip_id=clip_id("a.mp4", 0, 49), source_path="a.mp4", clip_start=0, clip_end=49, fps=8.0,
                   keep=True, views=[_view(3, -1.0), _view(40, 30.0)], stages=["probe", "face", "views"],
                   caption="a man talks", caption_source="file", face_score_min=0.95)
    rejected = new_row(clip_id=clip_id("b.mp4", 0, 49), source_path="b.mp4", keep=False,
                       reject_reason="face score 0.52 < 0.9", face_score_min=0.52)
    return [kept, rejected]


def test_round_trip_keeps_every_column_and_value(tmp_path):
    path = write_manifest(_rows(), tmp_path / "manifest.parquet", settings={"min_face_score": 0.9})
    frame = read_manifest(path)
    assert list(frame.columns) == list(MANIFEST_COLUMNS)
    assert len(frame) == 2
    first = frame.iloc[0]
    assert first["caption"] == "a man talks" and bool(first["keep"]) is True
    assert [v["frame"] for v in first["views"]] == [3, 40]
    assert first["views"][1]["yaw"] == pytest.approx(30.0)
    assert list(first["views"][0]["landmarks"]) == [float(i) for i in range(10)]
    assert list(first["stages"]) == ["probe", "face", "views"]
    assert frame.iloc[1]["reject_reason"] == "face score 0.52 < 0.9"
    assert list(kept_clips(frame)["source_path"]) == ["a.mp4"]
    assert not list(tmp_path.glob("*.partial*"))  # atomic write left no temp file


def test_clip_id_is_stable_and_distinct():
    assert clip_id("x/a.mp4", 0, 49) == clip_id("x/a.mp4", 0, 49)
    assert len({clip_id("x/a.mp4", 0, 49), clip_id("x/a.mp4", 49, 98), clip_id("x/b.mp4", 0, 49)}) == 3


def test_new_row_rejects_unknown_columns():
    with pytest.raises(ValueError, match="captoin"):
        new_row(captoin="typo")


def test_missing_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(ManifestError, match="does not exist") as info:
        read_manifest(tmp_path / "nope.parquet")
    assert "fantasyid prep" in info.value.hint


def test_other_version_is_refused(tmp_path):
    import pyarrow.parquet as pq

    path = write_manifest(_rows(), tmp_path / "m.parquet")
    table = pq.read_table(path)
    meta = {b"fantasyid.manifest": json.dumps({"version": MANIFEST_VERSION + 1}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(ManifestError, match=f"version {MANIFEST_VERSION + 1}"):
        read_manifest(path)


def test_plain_parquet_and_non_parquet_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1]}), plain)
    with pytest.raises(ManifestError, match="not a fantasyid manifest"):
        read_manifest(plain)
    junk = tmp_path / "junk.parquet"
    junk.write_text("hello")
    with pytest.raises(ManifestError, match="not a Parquet manifest"):
        read_manifest(junk)


def test_missing_column_is_named(tmp_path):
    import pyarrow.parquet as pq

    path = write_manifest(_rows(), tmp_path / "m.parquet")
    table = pq.read_table(path)
    pq.write_table(table.drop(["caption"]).replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(ManifestError, match="caption"):
        read_manifest(path)


def test_assets_resolve_against_the_manifest_folder(tmp_path):
    manifest = tmp_path / "data" / "manifest.parquet"
    assert resolve_asset(manifest, "assets/x.png") == (tmp_path / "data" / "assets" / "x.png").resolve()
    assert resolve_asset(manifest, "/abs/x.png").as_posix() == "/abs/x.png"
