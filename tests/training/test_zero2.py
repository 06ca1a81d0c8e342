"""DeepSpeed ZeRO-2 started by the shipped accelerate YAML (examples/train/accelerate/zero2-8gpu.yaml), 2 CPU
processes over gloo: the same losses, per-step gradient norms and parameters as one plain process with the same
global batch, the clip value and micro batch from the training config, optimizer states partitioned over the ranks,
resume exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import tiny_config

from fantasyid.training.config import dump_config
from fantasyid.training.model import build_components, trainable_parameters

pytest.importorskip("deepspeed", reason="install the `deepspeed` extra (part of `all`)")  # in CI: a failure (conftest)

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
YAML = ROOT / "examples" / "train" / "accelerate" / "zero2-8gpu.yaml"


def _run(args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _launch(config_path: Path, out: Path, *extra: str) -> None:
    """What the README runs on a GPU node, scaled down: the shipped YAML, 2 processes, no bf16 on a CPU."""
    _run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(YAML), "--num_processes", "2",
          "--mixed_precision", "no", "--main_process_port", "29547", str(WORKER), str(config_path), str(out),
          *extra])


@pytest.mark.slow
def test_zero2_from_the_shipped_yaml_equals_one_process(identity_data, tmp_path):
    config = tiny_config(identity_data, tmp_path / "z2", train={"global_batch": 2, "micro_batch": 1, "max_steps": 3},
                         optim={"max_grad_norm": 0.05}, checkpoint={"every": 2, "total_limit": 0})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    _launch(path, tmp_path / "two")
    config.output_dir = str(tmp_path / "one-run")
    one = tmp_path / "config-one.yaml"
    one.write_text(dump_config(config))
    _run([sys.executable, str(WORKER), str(one), str(tmp_path / "one")])

    # DeepSpeed really ran, with the training config's values (not accelerate's "auto" / 1.0)
    ds = json.loads((tmp_path / "two" / "deepspeed-rank0.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["gradient_clipping"] == 0.05 and ds["train_micro_batch_size_per_gpu"] == 1
    assert ds["gradient_accumulation_steps"] == 1 and ds["train_batch_size"] == 2

    # the same global losses and final parameters as one process (clipping active in both: 0.05 is tiny)
    losses_two = [float(x) for x in (tmp_path / "two" / "losses-rank0.txt").read_text().split()]
    losses_one = [float(x) for x in (tmp_path / "one" / "losses-rank0.txt").read_text().split()]
    assert losses_two == pytest.approx(losses_one, rel=1e-4)
    # and the same global gradient norm (DeepSpeed's, before clipping) at every step: a gradient-scale error shows
    norms_two = [float(x) for x in (tmp_path / "two" / "grad_norms-rank0.txt").read_text().split()]
    norms_one = [float(x) for x in (tmp_path / "one" / "grad_norms-rank0.txt").read_text().split()]
    assert len(norms_two) == 3 and all(n > 0.05 for n in norms_two)  # so clipping at 0.05 really acted
    assert norms_two == pytest.approx(norms_one, rel=1e-4)
    rank0 = load_file(str(tmp_path / "two" / "params-rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "two" / "params-rank1.safetensors"))
    single = load_file(str(tmp_path / "one" / "params-rank0.safetensors"))
    initial = dict(build_components(config.model, seed=config.train.seed).module.named_parameters())
    moved = 0
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        torch.testing.assert_close(rank0[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
        moved += not torch.equal(rank0[key], initial[key].detach())
    trained = {name for name, _ in trainable_parameters(build_components(config.model, seed=0).module)}
    assert moved >= 0.9 * len(trained)

    # optimizer states partitioned: one file per rank, each about half of Adam's fp32 state (master, m, v)
    n = sum(initial[name].numel() for name in trained)
    files = sorted((tmp_path / "z2" / "checkpoints" / "checkpoint-2" / "pytorch_model").glob("*optim_states.pt"))
    assert len(files) == 2, files
    for file in files:
        assert 0.35 * 12 * n < file.stat().st_size < 0.65 * 12 * n, (file.stat().st_size, 12 * n)

    # resume exact: from checkpoint-2 to step 3 gives the uninterrupted run's parameters and last loss
    _launch(path, tmp_path / "resumed", str(tmp_path / "z2" / "checkpoints" / "checkpoint-2"))
    resumed = load_file(str(tmp_path / "resumed" / "params-rank0.safetensors"))
    for key in rank0:
        torch.testing.assert_close(resumed[key], rank0[key], rtol=0, atol=0, msg=key)
    losses_resumed = [float(x) for x in (tmp_path / "resumed" / "losses-rank0.txt").read_text().split()]
    assert losses_resumed == pytest.approx(losses_two[2:], rel=1e-6)
