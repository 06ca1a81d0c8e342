"""How ``fantasyid eval`` uses the machine: the device, how many videos are evaluated at once, threads per video.

The shared pass evaluates whole videos in parallel, ``workers`` at a time, on threads of one process: decoding
(FFmpeg), detection and recognition (ONNX Runtime), alignment and flow (OpenCV) and the FID features (ONNX Runtime or
PyTorch) all run outside the GIL, so threads overlap them across videos without copying models or frames between
processes. Each worker gets ``cores // workers`` threads in every library, so the cores are not oversubscribed.
Every video's numbers are computed by the same code in the same order whatever ``workers`` is; only FID's float64
sums are added video by video (differences ~1e-12 relative).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fantasyid.errors import ConfigError, require

T = TypeVar("T")
R = TypeVar("R")

#: Devices ``fantasyid eval --device`` accepts (``cuda:N`` too).
DEVICES = ("cpu", "cuda", "auto")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _cuda_status() -> tuple[bool, bool]:
    """(onnxruntime has its CUDA provider, PyTorch sees a CUDA GPU)."""
    ort = require("onnxruntime", "face", "face detection and recognition")
    import torch

    return "CUDAExecutionProvider" in ort.get_available_providers(), bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``cpu``, ``cuda[:N]`` or ``auto`` → ``cpu`` or ``cuda[:N]``, checked before anything slow.

    ``cuda`` needs ``onnxruntime-gpu`` (detection, recognition and the FID Inception run on its CUDA provider) and a
    GPU; without them this is one :class:`ConfigError`. ``auto`` takes CUDA when both are there, else the CPU.
    """
    name = str(device).strip().lower()
    if name == "cpu":
        return "cpu"
    if name != "auto" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"unknown device {device!r}", hint="use cpu, cuda, cuda:N or auto")
    has_provider, has_gpu = _cuda_status()
    if name == "auto":
        return "cuda" if has_provider and has_gpu else "cpu"
    if not has_provider or not has_gpu:
        missing = " and ".join(
            what for what, ok in (("onnxruntime-gpu (its CUDAExecutionProvider)", has_provider),
                                  ("a CUDA GPU visible to PyTorch", has_gpu)) if not ok
        )
        raise ConfigError(
            f"--device {name} needs {missing}, which this machine lacks",
            hint="pip install onnxruntime-gpu on a machine with an NVIDIA GPU, or use --device cpu",
        )
    return name


@dataclass(frozen=True)
class Execution:
    """Where and how wide the shared pass runs."""

    device: str  #: ``cpu`` or ``cuda[:N]``
    workers: int  #: videos evaluated at once
    threads: int  #: threads per worker in ONNX Runtime, PyTorch and OpenCV

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime providers of the face models."""
        if self.device.startswith("cuda"):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def describe(self) -> dict[str, Any]:
        """For the summary's provenance (the numbers do not depend on it)."""
        return {"device": self.device, "workers": self.workers, "threads_per_worker": self.threads}


def plan_execution(device: str = "cpu", workers: int | None = None, jobs: int | None = None,
                   threads: int | None = None) -> Execution:
    """The :class:`Execution` for ``jobs`` videos: ``workers`` defaults to every core (at most one per video), and
    ``threads`` to an equal share of the cores per worker. One worker on a GPU is enough (the GPU is the bottleneck)."""
    resolved = resolve_device(device)
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads per worker must be at least 1, got {threads}")
    cores = available_cores()
    count = workers if workers is not None else cores
    if jobs is not None:
        count = max(1, min(count, jobs))
    return Execution(resolved, count, threads if threads is not None else max(1, cores // count))


@contextmanager
def thread_budget(threads: int) -> Iterator[int]:
    """Limit PyTorch's and OpenCV's own thread pools to ``threads`` per call while the pass runs; restored after."""
    import torch

    cv2 = require("cv2", "metrics", "face alignment and flow")
    torch_before, cv2_before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads if threads > 1 else 0)  # 0: OpenCV runs its loops on the calling thread
    try:
        yield threads
    finally:
        torch.set_num_threads(torch_before)
        cv2.setNumThreads(cv2_before)


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """``(item, function(item))`` in the order of ``items``, computed ``workers`` at a time on threads (inline for
    one worker). An exception in ``function`` is raised when its item's turn comes; pending items are cancelled."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield item, function(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fantasyid-eval") as pool:
        futures: list[Future] = [pool.submit(function, item) for item in items]
        try:
            for item, future in zip(items, futures):
                yield item, future.result()
        finally:
            for future in futures:
                future.cancel()
