"""Claims (who makes an item), shards (which items a process takes) and GPU choice from the launcher's environment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from fantasyid.batch import Claim, ClaimInfo, pick_gpu, resolve_shard, try_claim
from fantasyid.batch.claims import claim_is_stale, lock_path, read_claim
from fantasyid.batch.shards import local_rank
from fantasyid.errors import InputError


def _write_lock(path, host, pid, age=0.0, proc_start=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"host": host, "pid": pid, "started": time.time() - age, "token": "t", "proc_start": proc_start}
    path.write_text(json.dumps(data))
    os.utime(path, (time.time() - age, time.time() - age))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_one_claim_per_item_released_on_exit(tmp_path):
    first = try_claim(tmp_path, "a")
    assert isinstance(first, Claim)
    second = try_claim(tmp_path, "a")
    assert isinstance(second, ClaimInfo) and second.pid == os.getpid() and second.host == socket.gethostname()
    assert isinstance(try_claim(tmp_path, "b"), Claim)
    first.release()
    assert not lock_path(tmp_path, "a").exists()
    with try_claim(tmp_path, "a") as again:
        assert isinstance(again, Claim)
    assert not lock_path(tmp_path, "a").exists()


def test_claim_of_a_dead_process_is_taken_over(tmp_path):
    pid = _dead_pid()
    _write_lock(lock_path(tmp_path, "a"), socket.gethostname(), pid)
    assert claim_is_stale(read_claim(lock_path(tmp_path, "a"))) == f"process {pid} on this host is gone"
    claim = try_claim(tmp_path, "a")
    assert isinstance(claim, Claim) and claim.took_over == f"process {pid} on this host is gone"
    assert read_claim(lock_path(tmp_path, "a")).pid == os.getpid()
    claim.release()


def test_reused_pid_is_a_dead_claim(tmp_path):
    # our own pid, but recorded with another process start time: the pid now belongs to another process
    _write_lock(lock_path(tmp_path, "a"), socket.gethostname(), os.getpid(), proc_start=1)
    claim = try_claim(tmp_path, "a")
    assert isinstance(claim, Claim) and "belongs to another process" in claim.took_over
    claim.release()


def test_claims_from_other_hosts_expire_after_the_timeout(tmp_path):
    _write_lock(lock_path(tmp_path, "a"), "some-other-node", 1, age=5.0)
    owner = try_claim(tmp_path, "a", timeout=60.0)
    assert isinstance(owner, ClaimInfo) and owner.host == "some-other-node"  # live: heartbeat 5 s ago
    _write_lock(lock_path(tmp_path, "a"), "some-other-node", 1, age=120.0)
    claim = try_claim(tmp_path, "a", timeout=60.0)
    assert isinstance(claim, Claim) and "no heartbeat from some-other-node:1" in claim.took_over
    claim.release()


def test_heartbeat_keeps_a_long_item_alive(tmp_path):
    claim = try_claim(tmp_path, "a", timeout=0.5)  # heartbeat every 0.1 s
    path = lock_path(tmp_path, "a")
    os.utime(path, (time.time() - 100, time.time() - 100))
    time.sleep(0.4)
    assert claim_is_stale(read_claim(path), timeout=0.5) is None
    claim.release()


def test_empty_lock_file_is_live_for_a_moment_then_stale(tmp_path):
    path = lock_path(tmp_path, "a")
    path.write_text("")
    assert isinstance(try_claim(tmp_path, "a"), ClaimInfo)
    os.utime(path, (time.time() - 100, time.time() - 100))
    claim = try_claim(tmp_path, "a")
    assert isinstance(claim, Claim) and "unreadable claim" in claim.took_over
    claim.release()


def test_a_takeover_in_progress_is_not_doubled(tmp_path):
    _write_lock(lock_path(tmp_path, "a"), socket.gethostname(), _dead_pid())
    guard = lock_path(tmp_path, "a").with_name("a.lock.takeover")
    guard.write_text("{}")  # another process is replacing the stale claim right now
    assert isinstance(try_claim(tmp_path, "a"), ClaimInfo)
    os.utime(guard, (time.time() - 100, time.time() - 100))  # ... and died doing it: its guard is cleared
    claim = try_claim(tmp_path, "a")
    assert isinstance(claim, Claim)
    claim.release()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (0, 1)),
        ({"RANK": "3", "WORLD_SIZE": "8", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, (3, 8)),  # torchrun wins
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "4"}, (1, 4)),
        ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "10"}, (5, 10)),
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
          "SLURM_ARRAY_TASK_STEP": "2"}, (3, 4)),  # --array=1-7:2
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_PROCID": "1", "SLURM_NTASKS": "4"},
         (9, 12)),  # an array of 3 jobs with 4 tasks each
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"},
         (2, 3)),
    ],
)
def test_shard_from_the_environment(env, expected):
    shard = resolve_shard(None, None, env)
    assert (shard.index, shard.count) == expected
    assert resolve_shard(1, 2, env).source == "--shard/--num-shards"  # options win


def test_shards_split_every_item_exactly_once():
    shares = [resolve_shard(i, 3, {}).take(10) for i in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_bad_shards_are_one_line_errors():
    with pytest.raises(InputError, match="give both --shard I and --num-shards N"):
        resolve_shard(1, None, {})
    with pytest.raises(InputError, match="shard 3 of 3"):
        resolve_shard(3, 3, {})
    with pytest.raises(InputError, match=r"\$WORLD_SIZE must be an integer"):
        resolve_shard(None, None, {"RANK": "0", "WORLD_SIZE": "many"})


def test_local_rank_picks_the_gpu():
    assert local_rank({"LOCAL_RANK": "2"}) == 2 and local_rank({"SLURM_LOCALID": "1"}) == 1 and local_rank({}) is None
    assert pick_gpu("auto", 2, 8) == "cuda:2" and pick_gpu("cuda", 5, 8) == "cuda:5"
    assert pick_gpu("auto", 3, 1) == "cuda:0"  # one visible GPU per process (CUDA_VISIBLE_DEVICES per task)
    assert pick_gpu("cuda:1", 3, 8) == "cuda:1" and pick_gpu("cpu", 3, 8) == "cpu"  # explicit choices win
    assert pick_gpu("auto", 3, 0) == "auto" and pick_gpu("auto", None, 8) == "auto"
    with pytest.raises(InputError, match="LOCAL_RANK=4 but this process sees only 2 GPUs"):
        pick_gpu("auto", 4, 2)
