"""The shared pass end to end: outputs, counts, provenance, references, frame selection and bad input."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fantasyid.errors import ConfigError, InputError, NoFaceError
from fantasyid.metrics.evaluate import evaluate_runs, parse_metrics, resolve_reference


def test_parse_metrics():
    assert parse_metrics("fm, RS,ifs") == ("rs", "ifs", "fm")  # the paper's column order
    assert parse_metrics(["fid"]) == ("fid",)
    with pytest.raises(ConfigError, match="unknown metric name: psnr"):
        parse_metrics("rs,psnr")
    with pytest.raises(ConfigError):
        parse_metrics(" , ")


# ---- the full pass --------------------------------------------------------------------------------------------


def test_all_outputs_written(full_eval):
    _, out = full_eval
    for name in ("summary.json", "per_video.csv", "table.md", "table.tex", "identity_vs_motion.png"):
        assert (out / name).is_file(), name
    # atomic writes (fantasyid.io.atomic_path: ".{stem}.XXXX.partial{suffix}") leave no temporary file behind
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.json", "per_video.csv", "table.md", "table.tex", "identity_vs_motion.png", "pose_split.png"])
    assert not list(out.glob(".*.partial*"))
    assert (out / "identity_vs_motion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_json(full_eval):
    summary, out = full_eval
    data = json.loads((out / "summary.json").read_text())
    assert data == json.loads(summary.to_json())
    moving, static = data["runs"]
    for key in ("rs", "ifs", "fid", "fm", "videos", "frames", "frames_without_face"):
        assert key in moving
    assert (moving["videos"], moving["videos_unreadable"], moving["frames"]) == (3, 1, 10)
    assert moving["fid"] > 0 and (moving["fid_reference_crops"], moving["fid_generated_crops"]) == (2, 10)
    assert 0.9 < moving["rs"] <= 1 and 0.9 < moving["ifs"] <= 1 and moving["fm"] > 1
    # one reference for the whole run: FID cannot be computed, and the summary says why
    assert static["fid"] is None and static["fid_reference_crops"] == 1
    assert any("at least 2 reference" in w for w in static["warnings"])
    assert static["frames_without_face"] == 1  # gap.mp4's frame 7 (a coffee cup) of the evaluated [0, 2, 4, 7, 9]
    provenance = data["provenance"]
    assert provenance["face_pack"]["pack"] == "buffalo_sc"
    assert len(provenance["inception"]["sha256"]) == 64
    assert provenance["flow"]["method"] == "farneback" and provenance["flow"]["size"] == 128
    assert provenance["fantasyid_version"] == data["fantasyid_version"]
    assert data["settings"]["frames"] == 5


def test_frame_selection_and_motion_pairs(full_eval, identity_motion_eval, video_result):
    summary, _ = full_eval
    move3 = video_result(summary, "move3")
    # frames [0, 2, 4, 7, 9]: IFS between consecutive evaluated frames; FM on (t, t+1) for each evaluated t
    assert (move3.frames, move3.ifs_pairs, move3.fm_pairs) == (5, 4, 4)
    # FM is per source frame, so it does not change with --frames
    assert move3.fm == pytest.approx(video_result(identity_motion_eval, "move3").fm, rel=0.05)
    gap = video_result(summary, "gap")  # coffee frames are 5, 6, 7: of the evaluated ones only 7 has no face
    assert (gap.frames, gap.frames_without_face) == (5, 1)


def test_per_video_csv(full_eval):
    _, out = full_eval
    rows = list(csv.DictReader((out / "per_video.csv").open()))
    by_name = {Path(r["video"]).name: r for r in rows}
    assert set(by_name) == {"move3.mp4", "move6.mp4", "broken.mp4", "still.mp4", "gap.mp4"}
    assert by_name["broken.mp4"]["status"] == "unreadable" and by_name["broken.mp4"]["rs"] == ""
    assert "cannot open video" in by_name["broken.mp4"]["message"]
    assert float(by_name["still.mp4"]["ifs"]) == pytest.approx(1.0, abs=1e-4)
    assert by_name["move3.mp4"]["reference"].endswith("ref_astronaut.png")


def test_tables_in_paper_layout(full_eval):
    _, out = full_eval
    md = (out / "table.md").read_text()
    # pandas' to_markdown pads each cell to its column's width: compare the cells
    assert [cell.strip() for cell in md.splitlines()[0].strip("|").split("|")] == [
        "Method", "FID ↓", "RS ↑", "IFS ↑", "FM ↑"]
    assert re.search(r"^\| moving +\|", md, re.M) and re.search(r"^\| static +\|", md, re.M) and "**" in md
    assert "buffalo_sc" in md and "Inception" in md and "farneback" in md
    tex = (out / "table.tex").read_text()
    assert "FID $\\downarrow$ & RS $\\uparrow$ & IFS $\\uparrow$ & FM $\\uparrow$" in tex
    assert "\\textbf{" in tex and "\\toprule" in tex and "buffalo\\_sc" in tex


def test_unreadable_and_faceless_videos_are_counted(identity_motion_eval, video_result):
    run = identity_motion_eval.runs[0]
    assert run.videos_unreadable == 3  # broken, empty, truncated
    for stem, status in (("broken", "unreadable"), ("empty", "unreadable"), ("truncated", "unreadable"),
                         ("noface", "no_face")):
        assert video_result(identity_motion_eval, stem).status == status
    noface = video_result(identity_motion_eval, "noface")
    assert (noface.frames, noface.frames_without_face, noface.rs) == (6, 6, None)
    # run means skip videos without a value; every video weighs the same
    values = [v.rs for v in run.videos if v.rs is not None]
    assert run.rs == pytest.approx(np.mean(values))
    assert run.frames_without_face == 6 + 3


# ---- references ------------------------------------------------------------------------------------------------


def test_reference_precedence(tmp_path, media):
    video = tmp_path / "clip.mp4"
    shutil.copyfile(media / "still.mp4", video)
    refs = tmp_path / "refs"
    refs.mkdir()
    shutil.copyfile(media / "ref_bright.png", refs / "clip.png")
    (tmp_path / "sidecar_ref.png").write_bytes((media / "ref_flipped.png").read_bytes())
    video.with_suffix(".json").write_text(json.dumps({"ref": "sidecar_ref.png"}))  # relative to the sidecar

    assert resolve_reference(video, None, None) == tmp_path / "sidecar_ref.png"
    assert resolve_reference(video, None, refs) == refs / "clip.png"
    assert resolve_reference(video, media / "ref_astronaut.png", refs) == media / "ref_astronaut.png"
    video.with_suffix(".json").unlink()
    with pytest.raises(InputError, match="no reference image"):
        resolve_reference(video, None, None)


def test_sidecar_pointing_nowhere(tmp_path, media):
    video = tmp_path / "clip.mp4"
    shutil.copyfile(media / "still.mp4", video)
    video.with_suffix(".json").write_text(json.dumps({"ref": "missing.png"}))
    with pytest.raises(InputError, match="does not exist"):
        resolve_reference(video, None, None)


# ---- bad input: one-line errors before any long work ----------------------------------------------------------


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no videos in"):
        evaluate_runs([tmp_path], "rs")


def test_folder_of_run_folders_says_what_to_pass(tmp_path, media):
    (tmp_path / "method_a").mkdir()
    shutil.copyfile(media / "still.mp4", tmp_path / "method_a" / "a.mp4")
    with pytest.raises(InputError) as caught:
        evaluate_runs([tmp_path], "rs")
    assert "method_a" in caught.value.hint


def test_reference_without_face(tmp_path, media, face_root):
    shutil.copyfile(media / "still.mp4", tmp_path / "still.mp4")
    with pytest.raises(NoFaceError, match="no face found in the reference image"):
        evaluate_runs([tmp_path], "rs", ref=media / "coffee.png", face_root=face_root)


def test_missing_reference(tmp_path, media, face_root):
    shutil.copyfile(media / "still.mp4", tmp_path / "still.mp4")
    with pytest.raises(InputError, match="no reference image"):
        evaluate_runs([tmp_path], "rs", face_root=face_root)


def test_ifs_and_fm_need_no_reference(tmp_path, media, face_root):
    shutil.copyfile(media / "still.mp4", tmp_path / "still.mp4")
    summary = evaluate_runs([tmp_path / "still.mp4"], "ifs,fm", face_root=face_root)
    assert summary.runs[0].name == "still" and summary.runs[0].ifs == pytest.approx(1.0, abs=1e-4)
    assert summary.runs[0].rs is None and "onnx_sha256" in summary.provenance["face_pack"]


def test_run_names(tmp_path, media):
    shutil.copyfile(media / "still.mp4", tmp_path / "still.mp4")
    with pytest.raises(ConfigError, match="2 run names for 1 run folders"):
        evaluate_runs([tmp_path], "rs", names=["a", "b"])



# ---- --frames N: IFS and FM over consecutive video frames -------------------------------------------------------


def test_sampled_ifs_takes_the_next_video_frame(tmp_path, astronaut, face_root):
    """Frames alternate a face and its mirror image, so every pair of consecutive video frames is (face, mirror).
    With --frames 5 of 9 the evaluated frames are 0, 2, 4, 6, 8 (all the same image): IFS must still compare each
    with the video frame after it, never two evaluated frames with each other (that would give 1.0)."""
    from fantasyid.io import write_video

    face = np.ascontiguousarray(astronaut[0:256, 120:376])
    mirror = np.ascontiguousarray(face[:, ::-1])
    write_video(tmp_path / "alternating.mp4", np.stack([face, mirror] * 4 + [face]), fps=8, quality=9)
    every = evaluate_runs([tmp_path / "alternating.mp4"], "ifs,fm", face_root=face_root).runs[0].videos[0]
    sampled = evaluate_runs([tmp_path / "alternating.mp4"], "ifs,fm", frames=5, face_root=face_root).runs[0].videos[0]
    assert (every.frames, every.ifs_pairs, every.fm_pairs) == (9, 8, 8)
    assert (sampled.frames, sampled.ifs_pairs, sampled.fm_pairs, sampled.pairs_skipped) == (5, 4, 4, 0)
    assert every.ifs < 0.99  # a face and its mirror image are not the same embedding
    assert sampled.ifs == pytest.approx(every.ifs, abs=2e-3)
    assert sampled.fm == pytest.approx(every.fm, rel=0.1)
