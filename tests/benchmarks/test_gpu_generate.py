"""benchmarks/gpu_generate.py: the full-size benchmark's code path at toy size on the CPU, its refusals, its imports."""

from __future__ import annotations

import json

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_generate.py"
# What the GPU machine lacks (it has torch, transformers, accelerate, safetensors, numpy, and diffusers as a wheel).
NOT_ON_THE_GPU_MACHINE = ("timm", "torchvision", "insightface", "onnxruntime", "cv2", "av", "imageio", "rich",
                          "typer", "trimesh", "scipy", "pandas", "skimage", "sklearn", "torchmetrics", "decord")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_generate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _rows(text: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_tiny_run_prints_every_table(bench, capsys, tmp_path):
    code = bench.main(["--size", "tiny", "--device", "cpu", "--no-compile", "--repeat", "1", "--warmup", "0",
                       "--cache-steps", "4", "--json", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert code == 0
    models = _rows(out, "| model |")
    assert [r[0] for r in models] == ["CogVideoX-5B-I2V", "FantasyID (released)", "FantasyID (paper)"]
    numbers = json.loads((tmp_path / "out.json").read_text())["models"]  # unrounded: the table rounds
    assert [r["model"] for r in numbers] == [r[0] for r in models]
    for row, exact in zip(models, numbers):
        assert exact["step_s"] > 0 and float(row[2]) == pytest.approx(exact["step_s"], abs=5e-4)
        assert float(row[3]) == pytest.approx(1 / exact["step_s"], abs=5e-3)
        assert exact["denoise_50_s"] == pytest.approx(exact["identity_once_s"] + 50 * exact["step_s"])
    assert models[0][4] == "–" and float(models[1][4]) > 0 and float(models[2][4]) > 0
    caches = _rows(out, "| setting |")
    assert [r[0] for r in caches] == ["none", "fbc", "pab", "fastercache", "taylorseer"]
    assert caches[0][5] == "0"
    # PAB (2 of 4 steps in its window), FasterCache, TaylorSeer skip at this size and move the latents; the counts
    # are the pipeline's own
    for row in caches[2:]:
        assert row[4].startswith("skipped ") and "self-attention calls" in row[4] and float(row[5]) > 0
    assert "unconditional CFG halves" in caches[3][4]
    pipelines = _rows(out, "| model CPU offload |")
    assert [(r[0], r[1]) for r in pipelines] == [("off", "off"), ("off", "on"), ("on", "off"), ("on", "on")]
    assert all(r[2] == "–" and float(r[4]) > 0 for r in pipelines)  # no GPU memory on a CPU; decode timed
    assert "identity encoder + keys/values" in out
    assert (tmp_path / "out.json").is_file()


@pytest.mark.parametrize("args, says", [(["--device", "cpu"], "need a CUDA GPU"), (["--size", "tiny"], "no CUDA GPU")])
def test_refusals_are_one_line(bench, capsys, monkeypatch, args, says):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU machine, also where a GPU is
    assert bench.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert says in err and "--size tiny --device cpu" in err and len(err.splitlines()) == 1


def test_runs_without_the_packages_the_gpu_machine_lacks(tmp_path):
    """``--quick`` in a fresh interpreter where timm, insightface, OpenCV, rich, … cannot be imported: it runs, and
    the identity row says the encoder was left out."""
    guard = "import sys\nfor name in %r:\n    sys.modules[name] = None\n" % (NOT_ON_THE_GPU_MACHINE,)
    run = guard + (f"sys.argv = [{str(SCRIPT)!r}, '--size', 'tiny', '--device', 'cpu', '--quick']\n"
                   "import runpy\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, env=env, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [r[0] for r in _rows(result.stdout, "| model |")] == ["FantasyID (released)"]  # --quick
    assert [r[0] for r in _rows(result.stdout, "| setting |")] == ["none", "fbc"]
    assert [(r[0], r[1]) for r in _rows(result.stdout, "| model CPU offload |")] == [("off", "on")]
    assert "keys/values only; identity encoder not timed: timm is not installed" in result.stdout


@pytest.mark.slow
def test_full_size_models_build_on_meta(bench):
    """The full-size configurations construct (on ``meta``: no memory) with the expected sizes."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    size, meta = bench.full_size(), torch.device("meta")

    def billions(model):
        return sum(p.numel() for p in model.parameters()) / 1e9

    t5 = bench.materialise(lambda: T5EncoderModel(T5Config(**size.text_encoder)), meta, size.dtype, 0)
    assert billions(t5) == pytest.approx(4.76, abs=0.01)  # T5-XXL encoder; shared embedding counted once
    assert billions(bench.materialise(lambda: AutoencoderKLCogVideoX(**size.vae), meta, size.dtype, 0)) == \
        pytest.approx(0.2156, abs=0.001)
    assert billions(bench.build_transformer(size, "cogvideox", meta)) == pytest.approx(5.570, abs=0.001)
    released = bench.build_transformer(size, "released", meta)
    assert released.dtype == torch.bfloat16 and billions(released) == pytest.approx(6.452, abs=0.001)
    encoder, why = bench.build_identity_encoder(size, "released", meta)
    assert why is None and encoder.num_identity_tokens == bench.identity_token_count(size.encoder["released"]) == 115


@pytest.mark.slow
def test_memory_sweep_runs_each_plan_without_the_gpu_machines_missing_packages(tmp_path):
    """``--memory`` at toy size where timm & co. cannot be imported: one row per plan; plans that only move weights
    reproduce the ``full`` plan's video exactly, fp8 storage does not."""
    guard = "import sys\nfor name in %r:\n    sys.modules[name] = None\n" % (NOT_ON_THE_GPU_MACHINE,)
    run = guard + (f"sys.argv = [{str(SCRIPT)!r}, '--size', 'tiny', '--device', 'cpu', '--memory', "
                   "'--memory-steps', '2', '--plans', 'full,fp8,group-block', '--json', 'out.json']\n"
                   "import runpy\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, env=env, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(result.stdout, "| plan |")
    assert [(r[0], r[1]) for r in rows] == [("full", "off"), ("fp8", "off"), ("group-block", "on")]
    assert rows[0][9] == "inf" and rows[2][9] == "inf" and 20 < float(rows[1][9]) < 200
    numbers = json.loads((tmp_path / "out.json").read_text())["memory"]
    for row in numbers:
        assert row["video_50_s"] == pytest.approx(row["encode_s"] + 50 * row["step_s"] + row["decode_s"])
