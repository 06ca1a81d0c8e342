"""One prep run over real-face, no-face, subtitled and broken videos: decisions, views, crops, 3D files, captions,
and the merged manifest and report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fantasyid.data.manifest import MANIFEST_COLUMNS, VIEW_FIELDS, kept_clips, resolve_asset


def rows_of(manifest, name: str):
    rows = manifest[manifest["source_path"].str.endswith(f"/{name}")]
    assert len(rows), f"no row for {name}"
    return rows


def test_real_person_is_kept_with_everything(full_run):
    out, result, manifest = full_run
    rows = rows_of(manifest, "carphone.mp4")
    assert len(rows) == 3  # 120 frames at 29.97 fps → 3 clips of 9 frames at 8 fps (34 source frames each)
    assert rows["keep"].all(), rows["reject_reason"].tolist()
    assert list(rows["clip_start"]) == [0, 34, 68] and list(rows["clip_end"]) == [34, 68, 102]
    first = rows.iloc[0]
    assert first["caption"] == "a man talks on the phone in a car" and first["caption_source"] == "file"
    assert list(first["stages"]) == ["probe", "face", "motion", "text", "views", "3d", "caption"]
    assert first["face_motion"] > 0.2  # a real talking head moves (a still image measures ~0)
    assert first["face_frames"] == 8 and first["face_frames_none"] == 0 and first["face_frames_multi"] == 0
    assert 0.76 <= first["face_score_mean"] <= 1 and first["face_size_min"] >= 32
    assert first["text_fraction"] == 0
    assert first["width"] == 176 and first["height"] == 144 and first["fps"] == pytest.approx(29.97, abs=0.01)
    assert len(first["source_sha256"]) == 64


@pytest.mark.parametrize(
    "name, reason",
    [
        ("carphone_distorted.mp4", "face score"),
        ("carphone_subtitled.mp4", "text in 2 of 2 OCR frames"),
        ("bikes.mp4", "^(no face in|face score)"),
        ("two_faces.mp4", "several faces in 8 of 8"),
        ("short.mp4", "shorter than one clip"),
        ("broken.mp4", "cannot open video"),
        ("empty.mp4", "empty file"),
        ("audio_only.mp4", "no video stream"),
        ("huge.mp4", "resolution 5000x16 over the limit"),
        ("truncated.mp4", ""),
    ],
)
def test_rejects_carry_the_reason(full_run, name, reason):
    _, _, manifest = full_run
    rows = rows_of(manifest, name)
    assert not rows["keep"].any()
    assert all(re.search(reason, r) for r in rows["reject_reason"]), rows["reject_reason"].tolist()
    assert all(r for r in rows["reject_reason"])


def test_every_source_has_rows_and_ids_are_unique(full_run, media):
    _, result, manifest = full_run
    names = {Path(p).name for p in manifest["source_path"]}
    expected = {p.name for p in (media / "videos").iterdir() if p.suffix == ".mp4"}
    assert names == expected
    assert manifest["clip_id"].is_unique
    assert result.clips == len(manifest) and result.kept == int(manifest["keep"].sum())
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)


def test_subtitled_clip_passes_the_face_filter_first(full_run):
    _, _, manifest = full_run
    row = rows_of(manifest, "carphone_subtitled.mp4").iloc[0]
    assert row["face_score_mean"] >= 0.76 and row["text_fraction"] == 1.0 and row["text_area"] > 0.01
    assert list(row["stages"]) == ["probe", "face", "motion", "text"]  # rejected: later stages did not run


def _clip_poses(face_root, media, row):
    """Head pose (eyes and nose) of the main face in every training frame of a clip (the pose grid), detected
    again here."""
    from fantasyid.data.clips import training_indices
    from fantasyid.data.video import FrameReader
    from fantasyid.face import FaceAnalyzer
    from fantasyid.face.pose import rigid_head_pose

    frames = training_indices(int(row["clip_start"]), row["fps"], 9, 8.0, int(row["clip_end"]))
    analyzer = FaceAnalyzer("buffalo_sc", face_root, det_size=(320, 320), recognition=False)
    poses = {}
    for index, frame in FrameReader(media / "videos" / "astronaut_motion.mp4", keep=set(frames)):
        poses[index] = rigid_head_pose(analyzer.detect(frame, crop_512=False)[0].landmarks)
    return poses


@pytest.mark.parametrize("clip, angle, spread", [(0, "roll", 40), (1, "yaw", 8)])
def test_six_views_cover_yaw_and_pitch(full_run, face_root, media, clip, angle, spread):
    _, _, manifest = full_run
    row = rows_of(manifest, "astronaut_motion.mp4").iloc[clip]
    assert row["keep"], row["reject_reason"]
    views = list(row["views"])
    assert len(views) == 6 and len({v["frame"] for v in views}) == 6
    poses = _clip_poses(face_root, media, row)
    chosen = {v["frame"] for v in views}
    for axis in ("yaw", "pitch"):  # the extremes of the viewpoint among the views (roll is no viewpoint)
        values = {index: getattr(pose, axis) for index, pose in poses.items()}
        assert min(values, key=values.get) in chosen and max(values, key=values.get) in chosen
    norms = {index: np.hypot(pose.yaw, pose.pitch) for index, pose in poses.items()}
    assert views[0]["frame"] == min(norms, key=norms.get)  # views[0] is the most frontal
    measured = [getattr(pose, angle) for pose in poses.values()]
    assert max(measured) - min(measured) > spread  # the clip sweeps that angle
    for view in views:  # each view's pose is in the manifest
        assert set(view) == set(VIEW_FIELDS) and len(view["landmarks"]) == 10
        pose = poses[view["frame"]]
        assert [view["yaw"], view["pitch"], view["roll"]] == pytest.approx([pose.yaw, pose.pitch, pose.roll], abs=0.5)


def test_view_crops_are_aligned_faces_of_the_source(full_run, face_root, astronaut):
    from fantasyid.face import FaceAnalyzer, load_image

    out, _, manifest = full_run
    analyzer = FaceAnalyzer("buffalo_sc", face_root)
    source = analyzer.largest_face(astronaut)
    for _, row in rows_of(manifest, "astronaut_motion.mp4").iterrows():
        for view in row["views"]:
            crop = load_image(resolve_asset(out / "manifest.parquet", view["crop"]))
            assert crop.shape == (512, 512, 3)
            face = analyzer.largest_face(crop)
            # the FFHQ template puts the eyes at ~(193, 240) and (319, 240) of the 512-px crop
            assert np.allclose(face.landmarks[:2], [[193, 240], [319, 240]], atol=20)
            assert face.similarity(source) >= 0.8


def test_3d_stage_writes_shape_files(full_run):
    out, _, manifest = full_run
    kept = kept_clips(manifest)
    assert len(kept) >= 4
    for _, row in kept.iterrows():
        assert row["shape_status"] == "done"
        with np.load(resolve_asset(out / "manifest.parquet", row["shape_file"]), allow_pickle=False) as data:
            assert data["shape"].shape == (6, 100) and data["shape"].dtype == np.float32
            assert data["vertices"].dtype == np.float16
            assert data["vertices"].shape[0] == 6 and data["vertices"].shape[2] == 3
            assert np.isfinite(data["vertices"]).all()
            assert not np.allclose(data["shape"][0], data["shape"][1])  # each view has its own codes


def test_captions_from_file_sidecar_and_model(full_run, captioner_dir):
    _, _, manifest = full_run
    kept = kept_clips(manifest)
    sources = dict(zip(kept["source_path"].map(lambda p: Path(p).name), kept["caption_source"]))
    assert sources["carphone.mp4"] == "file" and sources["astronaut_motion.mp4"] == "sidecar"
    assert sources["astronaut_drift.mp4"] == f"model:{captioner_dir.name}"
    assert rows_of(manifest, "astronaut_motion.mp4").iloc[0]["caption"] == "an astronaut smiles in front of a flag"
    assert (kept["caption"] != "").all()


def test_report_and_plots(full_run):
    out, _, manifest = full_run
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "| clips" in text and "face score below threshold" in text and "text / subtitles" in text
    assert "several faces" in text and "unreadable / not a video" in text
    for name in ("face_score", "text_fraction", "view_pose"):
        data = (out / "plots" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "WARNING" not in text  # clips were kept


def test_report_has_timings_models_and_view_poses(full_run, face_root, full_settings):
    from importlib.metadata import version

    from fantasyid.io import sha256_file

    out, _, manifest = full_run
    text = (out / "report.md").read_text(encoding="utf-8")
    # per-stage wall and CPU seconds, per clip, from the rows (one time per stage that ran on the clip)
    for stages, walls, cpus in zip(manifest["stages"], manifest["stage_wall"], manifest["stage_cpu"]):
        assert len(walls) == len(cpus) == len(stages) and min(walls) >= 0 and min(cpus) >= 0
    faced = manifest[manifest["stages"].map(lambda s: "face" in s)]
    assert all(w[list(s).index("face")] > 0 for s, w in zip(faced["stages"], faced["stage_wall"]))
    timings = text.split("## Stage timings")[1].split("##")[0]
    for stage in ("probe", "face", "text", "views", "3d", "caption", "all stages"):
        assert f"| {stage} " in timings
    assert "cpu_per_clip_s" in timings and "wall_per_clip_s" in timings
    # the model files' hashes and the package versions the rows were made with
    pack = face_root / "models" / "buffalo_sc"
    for name in ("w600k_mbf.onnx", "scrfd_500m_bnkps.onnx"):
        assert f"model {name}" in text and sha256_file(pack / name)[:16] in text
    assert sha256_file(full_settings.deca)[:16] in text and sha256_file(full_settings.flame)[:16] in text
    line = next(line for line in text.splitlines() if line.startswith("| package onnxruntime "))
    assert line.split("|")[2].strip() == version("onnxruntime")
    # each chosen view's pose
    view = rows_of(manifest, "astronaut_motion.mp4").iloc[0]["views"][2]
    assert f"{view['yaw']:+.0f}/{view['pitch']:+.0f}/{view['roll']:+.0f}" in text.split("## View poses")[1]
