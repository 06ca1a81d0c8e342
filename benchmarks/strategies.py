"""DDP, FSDP and DeepSpeed ZeRO-2 side by side on CPU processes: the helper of ``train_step.py --strategies`` and
``train_memory.py --strategies``.

Each strategy is started exactly as training is: ``accelerate launch --config_file`` the shipped YAML
(examples/train/accelerate/{ddp,fsdp,zero2}-8gpu.yaml) with ``--num_processes 2 --mixed_precision no`` (gloo on the
CPU), and each process builds the accelerator as ``fantasyid train`` does (``_make_state``, ``enable_cpu_fsdp``,
``configure_deepspeed``, ``prepare``). The step is the loop's: the loop's loss on random encoder outputs of the
benchmark's size (``train_step.build``), ``backward``, clipping at 1.0, AdamW. Measured per process after the warm-up
steps: wall and CPU seconds per step (median), the bytes of all live tensors right after a backward (weights,
gradients, optimizer states, buffers and inputs; each storage once; a DTensor by its local shard) and the peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YAMLS = {"DDP": "ddp-8gpu.yaml", "FSDP": "fsdp-8gpu.yaml", "ZeRO-2": "zero2-8gpu.yaml"}


def live_tensor_bytes() -> int:
    """Bytes of every tensor storage alive in this process (each storage once; DTensors by their local shard)."""
    import gc

    import torch
    from torch.distributed.tensor import DTensor

    seen, total = set(), 0
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, torch.Tensor) or obj.device.type == "meta":
                continue
            storage = (obj._local_tensor if isinstance(obj, DTensor) else obj).untyped_storage()
        except (RuntimeError, ReferenceError):  # a tensor without storage (a view of a freed one)
            continue
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def worker(size: str, steps: int, out: str) -> None:
    """One process of one strategy (under ``accelerate launch``): time the step, count the memory, write JSON."""
    import torch
    from accelerate import Accelerator

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_step import build

    from fantasyid.training.config import TrainConfig
    from fantasyid.training.fsdp import enable_cpu_fsdp
    from fantasyid.training.loop import _deepspeed_requested, _make_state, configure_deepspeed
    from fantasyid.training.step import compute_loss

    state = _make_state()
    accelerator = Accelerator(cpu=state.num_processes > 1 and not _deepspeed_requested())
    enable_cpu_fsdp(accelerator)
    module, inputs, components = build(size, "full", accelerator.device, torch.float32)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    config = TrainConfig()
    config.train.micro_batch, config.optim.max_grad_norm = 1, 1.0
    configure_deepspeed(accelerator, config)
    module, optimizer = accelerator.prepare(module, optimizer)
    params = [p for p in module.parameters() if p.requires_grad]
    walls, cpus, state_bytes = [], [], 0
    for i in range(steps + 1):  # the first step warms up
        wall, cpu = time.perf_counter(), time.process_time()
        loss = compute_loss(module, components, inputs)
        accelerator.backward(loss)
        if i == steps:  # gradients kept by C++ (DDP's buckets) get a Python object here, so that gc sees them
            grads = [p.grad for p in module.parameters()]  # noqa: F841
            state_bytes = live_tensor_bytes()  # after backward: weights, gradients and (from step 1) Adam's moments
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    record = {"rank": accelerator.process_index, "processes": accelerator.num_processes,
              "distributed_type": str(accelerator.distributed_type), "wall": statistics.median(walls),
              "cpu": statistics.median(cpus), "state_bytes": state_bytes,
              "params": sum(p.numel() for p in params),
              "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    Path(out).with_suffix(f".rank{accelerator.process_index}.json").write_text(json.dumps(record))
    accelerator.end_training()


def run(strategy: str, size: str, steps: int, port: int = 29581) -> list[dict]:
    """Launch ``strategy`` on 2 CPU processes; one record per process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "record"
        done = subprocess.run(
            [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
             str(ROOT / "examples" / "train" / "accelerate" / YAMLS[strategy]), "--num_processes", "2",
             "--mixed_precision", "no", "--main_process_port", str(port), __file__, "--worker", size, str(steps),
             str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{strategy} {size} failed:\n{done.stderr[-3000:]}")
        return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("record.rank*.json"))]


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
