"""Identity split by head pose: the yaw bins by hand, and the extra columns of a real evaluation (the astronaut's
face, the offline buffalo_sc pack) checked against the video's own RS and face count."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fantasyid.metrics.pose_split import POSE_KEYS, run_pose_split, video_pose_split, yaw_bin


def test_yaw_bins_and_means_by_hand():
    # |yaw| < 30 frontal; 30 ≤ |yaw| ≤ 60 three-quarter; > 60 profile; either side
    assert [yaw_bin(y) for y in (0.0, -29.9, 30.0, -45.0, 60.0, 60.1, -89.0)] == [
        "frontal", "frontal", "three_quarter", "three_quarter", "three_quarter", "profile", "profile"]
    split = video_pose_split([0.9, 0.7, 0.5, 0.3, 0.1], [5.0, -20.0, 40.0, -75.0, 61.0])
    assert split == {"rs_frontal": pytest.approx(0.8), "frames_frontal": 2,
                     "rs_three_quarter": pytest.approx(0.5), "frames_three_quarter": 1,
                     "rs_profile": pytest.approx(0.2), "frames_profile": 2}
    other = video_pose_split([0.6], [10.0])  # frontal only
    run = run_pose_split([split, other, {}])
    assert run["rs_frontal"] == pytest.approx((0.8 + 0.6) / 2)  # every video weighs the same, as RS
    assert run["rs_profile"] == pytest.approx(0.2) and run["frames_frontal"] == 3 and run["frames_profile"] == 2
    assert video_pose_split([], [])["rs_profile"] is None
    with pytest.raises(ValueError):
        video_pose_split([0.5], [])


def test_pose_columns_of_a_real_evaluation(full_eval):
    summary, out = full_eval
    rows = list(csv.DictReader((out / "per_video.csv").open(encoding="utf-8")))
    assert set(POSE_KEYS) <= set(rows[0])
    checked = 0
    for row in rows:
        if not row["rs"]:
            continue
        counts = {name: int(row[f"frames_{name}"]) for name in ("frontal", "three_quarter", "profile")}
        # every evaluated frame with a face falls in exactly one bin, and the bins' weighted means give back RS
        assert sum(counts.values()) == int(row["frames"]) - int(row["frames_without_face"])
        weighted = sum(n * float(row[f"rs_{name}"]) for name, n in counts.items() if n)
        assert weighted / sum(counts.values()) == pytest.approx(float(row["rs"]), abs=1e-9)
        checked += 1
    assert checked >= 3
    data = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for run, entry in zip(summary.runs, data["runs"]):
        means = [v.pose["rs_frontal"] for v in run.videos if v.pose.get("rs_frontal") is not None]
        assert entry["rs_frontal"] == pytest.approx(float(np.mean(means)))
        assert entry["frames_frontal"] == sum(v.pose.get("frames_frontal", 0) for v in run.videos)
    table = (out / "table.md").read_text(encoding="utf-8").split("## Identity by head pose")[1].splitlines()
    header = next(line for line in table if line.startswith("| Method"))
    assert header.count("|") == 5  # Method + three bins: no stray pipe in a title
    assert sum(line.startswith("| ") for line in table) == 1 + len(summary.runs)
    assert (out / "pose_split.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the paper's numbers are untouched: RS is still the plain mean over frames with a face
    assert all(v.rs is None or v.pose for run in summary.runs for v in run.videos)
