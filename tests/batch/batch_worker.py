"""A batch process for the multi-process tests: the real ``generate_batch`` (claims, shards, rerun checks, mp4 and
sidecar writes) with a cheap runner in place of the model, so that many processes fit in seconds on two cores.

    python batch_worker.py PROMPTS OUT LOG [--go FILE] [--delay S] [--fail NAME] [--hang NAME --marker FILE]

The runner appends ``NAME PID SHARD`` to LOG (one ``O_APPEND`` write: lines of racing processes never mix) each time
it is asked to make an item, and returns frames computed from the seed. ``--go``: wait until FILE exists (all workers
start together). ``--fail NAME``: that item raises an InputError. ``--hang NAME``: that item opens its mp4's partial
file (as a write in progress does), touches ``--marker`` and sleeps, to be killed. The summary is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from fantasyid.batch import resolve_shard, sigterm_as_interrupt
from fantasyid.errors import InputError
from fantasyid.generation import GenerateSettings, generate_batch, read_prompt_file
from fantasyid.io import atomic_path

#: the cheap items of the tests: 9 frames (the smallest count CogVideoX makes besides 1) at 32×32
SETTINGS = GenerateSettings(steps=2, frames=9, height=32, width=32, fps=8)
MODEL_INFO = {"model": "worker"}


def frames_for(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(SETTINGS.frames, SETTINGS.height, SETTINGS.width, 3), dtype=np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("prompts")
    parser.add_argument("out")
    parser.add_argument("log")
    parser.add_argument("--go")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--fail")
    parser.add_argument("--hang")
    parser.add_argument("--marker")
    args = parser.parse_args()

    items, bad = read_prompt_file(args.prompts)
    shard = resolve_shard(None, None)  # from RANK/WORLD_SIZE or SLURM_* when the test sets them
    if args.go:
        Path(args.out, f".ready-{os.getpid()}").touch()
        while not Path(args.go).exists():
            time.sleep(0.02)

    def runner(item, seed):
        fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{item.name} {os.getpid()} {shard.index}\n".encode())
        os.close(fd)
        if item.name == args.hang:
            with atomic_path(Path(args.out) / f"{item.name}.mp4") as partial:
                partial.write_bytes(b"\x00" * 1000)  # a write in progress
                Path(args.marker).touch()
                time.sleep(600)
        time.sleep(args.delay)
        if item.name == args.fail:
            raise InputError(f"{item.name} cannot be made", hint="test failure")
        return frames_for(seed), {"worker": os.getpid()}

    with sigterm_as_interrupt():
        summary = generate_batch(runner, items, SETTINGS, args.out, MODEL_INFO, shard=shard, claim_timeout=60.0)
    json.dump({status: summary.count(status) for status in ("done", "skipped", "failed", "busy", "refused")},
              sys.stdout)  # fmt: skip


if __name__ == "__main__":
    main()
