"""Which share of a batch this process makes, and which GPU it uses, from options or the launcher's environment.

Shard ``I`` of ``N`` takes items ``I, I + N, I + 2N, …`` of the prompt file (round robin: every shard gets a mix of
early and late rows, and adding rows at the end never moves an item to another shard's folder names).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["Shard", "resolve_shard", "pick_gpu", "local_rank"]


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1
    source: str = "default"  #: where the numbers came from ("--shard", "RANK/WORLD_SIZE", …)

    def take(self, total: int) -> list[int]:
        """The item indices (of ``total``) this shard makes."""
        return list(range(self.index, total, self.count))

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count} ({self.source})"


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"${name} must be an integer, got {value!r}") from None


def _from_env(env: Mapping[str, str]) -> Shard | None:
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and world is not None:  # torchrun, accelerate launch
        return Shard(rank, world, "RANK/WORLD_SIZE")
    proc, ntasks = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
    task, tasks = _int(env, "SLURM_ARRAY_TASK_ID"), _int(env, "SLURM_ARRAY_TASK_COUNT")
    array = None
    if task is not None and tasks is not None:  # sbatch --array: ids may start anywhere and step by more than 1
        first, step = _int(env, "SLURM_ARRAY_TASK_MIN") or 0, _int(env, "SLURM_ARRAY_TASK_STEP") or 1
        array = Shard((task - first) // step, tasks, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
    tasks_shard = Shard(proc, ntasks, "SLURM_PROCID/SLURM_NTASKS") if proc is not None and ntasks else None
    if array and tasks_shard and tasks_shard.count > 1:  # an array of multi-task jobs: every task of every job
        return Shard(array.index * tasks_shard.count + tasks_shard.index, array.count * tasks_shard.count,
                     "SLURM array × SLURM_PROCID")  # fmt: skip
    return array or tasks_shard


def resolve_shard(index: int | None, count: int | None, env: Mapping[str, str] | None = None) -> Shard:
    """The shard from ``--shard/--num-shards``, else from the environment (``RANK``/``WORLD_SIZE``;
    ``SLURM_PROCID``/``SLURM_NTASKS``; ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``), else the whole batch."""
    if index is not None or count is not None:
        if index is None or count is None:
            raise InputError("give both --shard I and --num-shards N (or neither)")
        shard = Shard(index, count, "--shard/--num-shards")
    else:
        shard = _from_env(os.environ if env is None else env) or Shard()
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        raise InputError(
            f"shard {shard.index} of {shard.count} ({shard.source}) is out of range",
            hint="the shard index runs from 0 to N-1",
        )
    return shard


def local_rank(env: Mapping[str, str] | None = None) -> int | None:
    """The launcher's per-node process index: ``LOCAL_RANK`` (torchrun, accelerate), else ``SLURM_LOCALID``."""
    env = os.environ if env is None else env
    value = _int(env, "LOCAL_RANK")
    return value if value is not None else _int(env, "SLURM_LOCALID")


def pick_gpu(device: str, rank: int | None, gpus: int) -> str:
    """The device a process uses: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` when a launcher started several processes
    on a node with several GPUs; ``cuda:0`` when each process sees one GPU (``CUDA_VISIBLE_DEVICES`` per task);
    ``device`` unchanged otherwise (an explicit ``cuda:N`` or ``cpu`` always wins)."""
    if rank is None or device not in ("auto", "cuda") or gpus == 0:
        return device
    if gpus == 1:
        return "cuda:0"
    if rank >= gpus:
        raise InputError(
            f"LOCAL_RANK={rank} but this process sees only {gpus} GPUs",
            hint="start at most one process per GPU, or pass --device cuda:N",
        )
    return f"cuda:{rank}"
