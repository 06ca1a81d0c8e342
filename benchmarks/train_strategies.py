"""One training step per distributed strategy, 2 processes (CPU, gloo) or every GPU of a node: seconds per step,
memory held per process (parameters, optimizer state) and peak memory. ``train_step.py --strategies`` and
``train_memory.py --strategies`` print its tables; ``gpu_train.sh`` runs it at full size on GPUs.

    python benchmarks/train_strategies.py --size tiny            # DDP, ZeRO-2 and FSDP, 2 CPU processes each
    python benchmarks/train_strategies.py --size full --device cuda   # every GPU of the node, bf16 (gpu_train.sh)

Each strategy is started the way the README starts training: DDP with ``torchrun``, DeepSpeed ZeRO-2 and FSDP with
``accelerate launch --config_file examples/train/accelerate/{zero2,fsdp}-8gpu.yaml`` (the shipped files; FSDP on CPU
processes as ``fantasyid train`` runs it: accelerate's FSDP2 plugin over gloo, ``fantasyid.training.fsdp``). Every
process builds the benchmark's trainable module (``train_step.build``: transformer + identity branch, random weights,
gradient checkpointing, random frozen-encoder outputs), prepares it and AdamW with accelerate as the training loop
does (``fantasyid.training.loop``: the same process-group setup and DeepSpeed values), and times ``--steps`` optimizer
steps of the loop's loss after one warm-up step (whose FLOPs are counted for the MFU). Memory "held" is what this
process's tensors take: its parameters (ZeRO-2: replicated; FSDP: its shard) and optimizer state (ZeRO-2: its
partition of the fp32 master weights and AdamW moments; FSDP: the moments of its shard); gradients are not listed
(ZeRO-2 frees them inside its step). Peak is the process's peak RSS on a CPU, peak allocated GPU memory on a GPU. Add
a strategy: an entry in ``STRATEGIES`` (how it is launched).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = ROOT / "examples" / "train" / "accelerate"

#: name → launcher arguments before the script (``{n}``: processes, ``{port}``: rendezvous port)
STRATEGIES = {
    "DDP": ["-m", "torch.distributed.run", "--nproc_per_node", "{n}", "--master_port", "{port}"],
    "ZeRO-2": ["-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE / "zero2-8gpu.yaml"),
               "--num_processes", "{n}", "--main_process_port", "{port}"],
    "FSDP": ["-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE / "fsdp-8gpu.yaml"),
             "--num_processes", "{n}", "--main_process_port", "{port}"],
}


def _bytes(tensors) -> int:
    """Bytes this process holds: a DTensor (FSDP) by its local shard."""
    from torch.distributed.tensor import DTensor

    return sum((t.to_local() if isinstance(t, DTensor) else t).numel() * t.element_size()
               for t in tensors if t is not None)


def _optimizer_state_bytes(optimizer) -> int:
    """Bytes of optimizer state this process holds: AdamW moments, plus ZeRO's fp32 master partition."""
    import torch

    total, inner = 0, optimizer
    while hasattr(inner, "optimizer"):  # accelerate's wrapper → DeepSpeed's ZeRO optimizer → torch AdamW
        masters = getattr(inner, "single_partition_of_fp32_groups", None)
        total += _bytes(masters or [])
        inner = inner.optimizer
    for state in inner.state.values():
        total += _bytes(v for v in state.values() if isinstance(v, torch.Tensor) and v.dim() > 0)
    return total


def worker(args) -> None:
    """One process of a strategy: build, prepare, time, write ``rank{R}.json`` into ``args.out``."""
    import torch
    from accelerate import Accelerator

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from flops import count_flops
    from train_step import build

    from fantasyid.training.fsdp import enable_cpu_fsdp
    from fantasyid.training.loop import _deepspeed_requested, _make_state, configure_deepspeed
    from fantasyid.training.step import compute_loss

    state = _make_state()
    cpu = state.device.type == "cpu"
    dtype = torch.float32 if cpu else torch.bfloat16
    accelerator = Accelerator(cpu=cpu and not _deepspeed_requested(), mixed_precision="no" if cpu else "bf16")
    enable_cpu_fsdp(accelerator)  # FSDP on CPU processes: accelerate's FSDP2 plugin over gloo, as training does
    device = accelerator.device
    configure_deepspeed(accelerator, SimpleNamespace(train=SimpleNamespace(micro_batch=1),
                                                     optim=SimpleNamespace(max_grad_norm=1.0)))
    torch.manual_seed(0)
    module, inputs, components = build(args.size, args.trainable, device, torch.float32)
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    module, optimizer = accelerator.prepare(module, optimizer)
    params = [p for p in module.parameters() if p.requires_grad]

    def step():
        with accelerator.autocast():
            loss = compute_loss(module, components, inputs)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    flops = count_flops(step)  # the warm-up step
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    accelerator.wait_for_everyone()
    sync()
    wall, cpu_time = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    sync()
    wall, cpu_time = (time.perf_counter() - wall) / args.steps, (time.process_time() - cpu_time) / args.steps
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    record = {"rank": accelerator.process_index, "processes": accelerator.num_processes, "seconds": wall,
              "cpu_seconds": cpu_time, "flops": flops, "param_bytes": _bytes(module.parameters()),
              "optimizer_bytes": _optimizer_state_bytes(optimizer),
              "trainable": sum(p.numel() for p in trainable), "peak_bytes": peak, "device": str(device)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"rank{accelerator.process_index}.json").write_text(json.dumps(record))
    accelerator.end_training()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:  # a port nothing listens on now (other jobs may hold the usual 29500)
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(strategy: str, size: str, processes: int, steps: int = 2, trainable: str = "full") -> list[dict]:
    """Launch ``strategy`` with ``processes`` processes; the per-rank records (or raise with the launcher's output)."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as out:
        launcher = [a.format(n=processes, port=port) for a in STRATEGIES[strategy]]
        if strategy in ("ZeRO-2", "FSDP") and not _has_cuda():
            launcher += ["--mixed_precision", "no"]  # the YAML's bf16 is for GPUs
        command = [sys.executable, *launcher, str(Path(__file__).resolve()), "--worker", "--size", size,
                   "--trainable", trainable, "--steps", str(steps), "--out", out]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(key, None)
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{strategy} failed (rc {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
        return [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def table(sizes: list[str], processes: int, steps: int, trainable: str = "full", peak_flops: float | None = None,
          strategies=None) -> None:
    """Print one row per (size, strategy): time and memory per process (rank 0; max over ranks for memory)."""
    mib = 1024**2
    print(f"{processes} processes, trainable: {trainable}, batch 1 per process (global batch {processes}); "
          "memory per process\n")
    print("| size | strategy | s / step (wall) | CPU s / step | MFU | parameters | optimizer state | peak |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for strategy in strategies or STRATEGIES:
            try:
                records = run(strategy, size, processes, steps, trainable)
            except RuntimeError as exc:
                print(f"| {size} | {strategy} | failed: {str(exc).splitlines()[0]} | | | | | |")
                continue
            r0 = records[0]
            most = {k: max(r[k] for r in records) for k in ("param_bytes", "optimizer_bytes", "peak_bytes")}
            mfu = f"{100 * r0['flops'] / r0['seconds'] / peak_flops:.1f} %" if peak_flops else "–"
            print(f"| {size} | {strategy} | {r0['seconds']:.3f} | {r0['cpu_seconds']:.3f} | {mfu} "
                  f"| {most['param_bytes'] / mib:.1f} MiB | {most['optimizer_bytes'] / mib:.1f} MiB | {most['peak_bytes'] / mib:.0f} MiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="tiny", choices=("tiny", "small", "full"))
    parser.add_argument("--trainable", default="full", choices=("full", "identity", "lora"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--processes", type=int, default=0, help="default: 2 on a CPU, every GPU on a GPU node")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    processes = args.processes or (torch.cuda.device_count() if torch.cuda.is_available() else 2)
    peak = None
    if torch.cuda.is_available():
        from train_step import matmul_peak

        peak = matmul_peak(torch.device("cuda"), torch.bfloat16)
        print(f"GPU: {torch.cuda.get_device_name()}, measured bf16 matmul peak {peak / 1e12:.0f} TFLOP/s")
    table([args.size], processes, args.steps, args.trainable, peak)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
