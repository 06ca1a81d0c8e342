"""Fixtures for the metric tests: real-face videos made here from scikit-image's astronaut (one real face), the
offline buffalo_sc pack, and evaluations shared across the session so that every model loads once.

Videos (H.264 mp4, 8 fps, written with imageio-ffmpeg):

* ``move3`` / ``move6``: a 256 × 256 window sliding over the astronaut photo, so the face moves exactly 3 (6)
  pixels to the right per frame; ``move3_x2`` is ``move3`` upscaled to 512 × 512 (6 px per frame in pixels, the
  same motion relative to the face);
* ``still``: one frame repeated;
* ``gap``: 5 still face frames, 3 frames of a coffee cup (no face), 2 face frames;
* ``noface``: the coffee cup only; ``broken``: bytes that are no video; ``empty``: 0 bytes;
  ``truncated``: the first half of ``move3``'s file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

FRAMES = 10
SIZE = 256
WINDOW_X0 = 120  # left edge of the window in the 512-px photo at frame 0; the face starts at x ≈ 60 in the window


def write_video(path: Path, frames: list[np.ndarray], fps: int = 8) -> Path:
    """Write RGB frames as an H.264 mp4 with imageio-ffmpeg (high quality, yuv420p)."""
    import imageio.v2 as imageio

    writer = imageio.get_writer(
        str(path), fps=fps, codec="libx264", quality=9, pixelformat="yuv420p", macro_block_size=16
    )
    for frame in frames:
        writer.append_data(np.ascontiguousarray(frame))
    writer.close()
    return path


def sliding_frames(photo: np.ndarray, shift: int, count: int = FRAMES, size: int = SIZE) -> list[np.ndarray]:
    """Windows of ``photo`` moving left by ``shift`` px per frame: the content moves right by ``shift`` px."""
    return [photo[0:size, WINDOW_X0 - t * shift : WINDOW_X0 - t * shift + size].copy() for t in range(count)]


def upscale(frames: list[np.ndarray], factor: int) -> list[np.ndarray]:
    import cv2

    return [cv2.resize(f, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC) for f in frames]


def sidecar(video: Path, ref: Path) -> None:
    """The JSON sidecar ``fantasyid generate`` writes next to a video (only the ``ref`` key matters here)."""
    video.with_suffix(".json").write_text(json.dumps({"ref": str(ref), "prompt": "test"}), encoding="utf-8")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8 RGB


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """All test videos and reference images in one folder (see the module docstring)."""
    import imageio.v2 as imageio
    from skimage import data

    folder = tmp_path_factory.mktemp("media")
    coffee = np.ascontiguousarray(data.coffee()[:SIZE, :SIZE])
    still = sliding_frames(astronaut, 0)
    write_video(folder / "move3.mp4", sliding_frames(astronaut, 3))
    write_video(folder / "move6.mp4", sliding_frames(astronaut, 6))
    write_video(folder / "move3_x2.mp4", upscale(sliding_frames(astronaut, 3), 2))
    write_video(folder / "still.mp4", still)
    write_video(folder / "gap.mp4", still[:5] + [coffee] * 3 + still[:2])
    write_video(folder / "noface.mp4", [coffee] * 6)
    (folder / "broken.mp4").write_bytes(b"this is not a video\n" * 40)
    (folder / "empty.mp4").write_bytes(b"")
    data_bytes = (folder / "move3.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data_bytes[: len(data_bytes) // 2])
    # references: the photo, its mirror image and a brighter copy (three distinct images of one real face)
    imageio.imwrite(folder / "ref_astronaut.png", astronaut)
    imageio.imwrite(folder / "ref_flipped.png", np.ascontiguousarray(astronaut[:, ::-1]))
    imageio.imwrite(folder / "ref_bright.png", np.clip(astronaut.astype(np.int16) + 30, 0, 255).astype(np.uint8))
    imageio.imwrite(folder / "coffee.png", coffee)
    return folder


def make_run(root: Path, name: str, media: Path, videos: dict[str, str | None]) -> Path:
    """A run folder with copies of ``media`` videos; ``videos`` maps a video stem to its sidecar's ref (or None)."""
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    for stem, ref in videos.items():
        target = run / f"{stem}.mp4"
        shutil.copyfile(media / f"{stem}.mp4", target)
        if ref is not None:
            sidecar(target, media / ref)
    return run


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory, media: Path) -> Path:
    """One run with every kind of video, references from sidecars."""
    root = tmp_path_factory.mktemp("runs")
    videos = {stem: "ref_astronaut.png" for stem in ("move3", "move6", "move3_x2", "still", "gap", "noface")}
    videos.update(broken=None, empty=None, truncated=None)
    return make_run(root, "synthetic", media, videos)


@pytest.fixture(scope="session")
def identity_motion_eval(synthetic_run: Path, face_root: Path):
    """RS, IFS and FM of :func:`synthetic_run`, all frames, in one shared pass (no FID: no Inception needed)."""
    from fantasyid.metrics import evaluate_runs

    return evaluate_runs([synthetic_run], "rs,ifs,fm", face_root=face_root)


@pytest.fixture(scope="session")
def full_eval(tmp_path_factory: pytest.TempPathFactory, media: Path, face_root: Path):
    """Two runs (a method and an ablation), every metric, 5 frames per video, outputs written.

    ``moving`` has two distinct references (FID computed); ``static`` has one for both videos (FID cannot be
    computed from a single reference crop, and says so).
    """
    from fantasyid.metrics import evaluate_runs

    root = tmp_path_factory.mktemp("full")
    moving = make_run(root, "moving", media, {"move3": "ref_astronaut.png", "move6": "ref_flipped.png",
                                              "broken": None})
    static = make_run(root, "static", media, {"still": "ref_bright.png", "gap": "ref_bright.png"})
    out = root / "out"
    summary = evaluate_runs([moving, static], "rs,ifs,fid,fm", frames=5, face_root=face_root, out_dir=out)
    return summary, out


@pytest.fixture(scope="session")
def video_result():
    """``video_result(summary, stem)``: the per-video result of the video named ``stem``."""

    def find(summary, stem: str):
        for run in summary.runs:
            for video in run.videos:
                if video.path.stem == stem:
                    return video
        raise KeyError(stem)

    return find
