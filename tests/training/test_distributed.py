"""Two processes (torchrun, gloo on CPU) end with the same parameters on both ranks, equal (to tolerance) to one
process training with the same global batch; every step has the same global loss and the same gradient norm (a
gradient-scale error, which Adam would hide in the parameters, shows there), and the parameters really moved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import tiny_config

from fantasyid.training.config import dump_config
from fantasyid.training.model import build_components

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(identity_data, tmp_path):
    config = tiny_config(identity_data, tmp_path / "run", train={"global_batch": 2, "micro_batch": 1, "max_steps": 3},
                         checkpoint={"every": 0, "total_limit": 1})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
          str(WORKER), str(path), str(tmp_path / "two")], tmp_path)
    config.output_dir = str(tmp_path / "run1")
    path.write_text(dump_config(config))
    _run([sys.executable, str(WORKER), str(path), str(tmp_path / "one")], tmp_path)

    rank0 = load_file(str(tmp_path / "two" / "params-rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "two" / "params-rank1.safetensors"))
    single = load_file(str(tmp_path / "one" / "params-rank0.safetensors"))
    assert rank0.keys() == rank1.keys() == single.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        torch.testing.assert_close(rank0[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
    # the runs really trained: (almost) every trainable parameter moved from its initial value
    initial = dict(build_components(config.model, seed=config.train.seed).module.named_parameters())
    trained = [name for name, p in initial.items() if p.requires_grad]
    moved = sum(not torch.equal(rank0[name], initial[name].detach()) for name in trained)
    assert moved >= 0.9 * len(trained), (moved, len(trained))
    # the same global loss and gradient norm (before clipping) at every step
    assert read_floats(tmp_path / "two" / "losses-rank0.txt") == pytest.approx(
        read_floats(tmp_path / "one" / "losses-rank0.txt"), rel=1e-4)
    norms_two = read_floats(tmp_path / "two" / "grad_norms-rank0.txt")
    assert len(norms_two) == 3 and all(n > 0 for n in norms_two)
    assert norms_two == read_floats(tmp_path / "two" / "grad_norms-rank1.txt")
    assert norms_two == pytest.approx(read_floats(tmp_path / "one" / "grad_norms-rank0.txt"), rel=1e-4)


def read_floats(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()]
