"""Which samples each process reads at each step: a pure function of (seed, step), so runs resume exactly.

The sample stream is the manifest's training rows in a fresh seeded permutation per epoch, endlessly. Optimizer step
``s`` (1-based) uses stream positions ``[(s-1)·G, s·G)`` with ``G`` the global batch; process ``r`` of ``P`` takes,
at accumulation micro-step ``a``, positions ``(a·P + r)·m … +m`` (``m`` the micro-batch) of that slice. The same
global batch thus reads the same samples whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["StepBatchSampler"]


class StepBatchSampler(torch.utils.data.Sampler):
    """Micro-batches of ``(row, position)`` keys for one process, from step ``start_step + 1`` to ``max_steps``."""

    def __init__(self, num_rows: int, *, seed: int, global_batch: int, micro_batch: int, num_processes: int,
                 rank: int, start_step: int, max_steps: int):
        self.num_rows, self.seed = num_rows, seed
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.num_processes, self.rank = num_processes, rank
        self.start_step, self.max_steps = start_step, max_steps
        self.accumulation = global_batch // (micro_batch * num_processes)
        self._epoch, self._order = -1, None

    def row(self, position: int) -> int:
        epoch = position // self.num_rows
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 97 + epoch)
            self._order, self._epoch = torch.randperm(self.num_rows, generator=generator).tolist(), epoch
        return self._order[position % self.num_rows]

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.accumulation

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step + 1, self.max_steps + 1):
            base = (step - 1) * self.global_batch
            for micro in range(self.accumulation):
                first = base + (micro * self.num_processes + self.rank) * self.micro_batch
                yield [(self.row(p), p) for p in range(first, first + self.micro_batch)]
