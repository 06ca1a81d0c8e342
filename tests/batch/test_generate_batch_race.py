"""Several processes, one output folder: every item made exactly once, racing, sharded, or after a kill -9.

The workers (``batch_worker.py``) run the real ``generate_batch`` with a cheap runner; the last test runs the real
``fantasyid generate --model tiny`` command twice in parallel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from fantasyid.batch.folder import video_problem

WORKER = Path(__file__).with_name("batch_worker.py")
ROOT = Path(__file__).resolve().parents[2]
NAMES = [f"i{k:02d}" for k in range(12)]


@pytest.fixture
def batch(tmp_path):
    import PIL.Image

    ref = tmp_path / "face.png"
    PIL.Image.new("RGB", (32, 32), (120, 90, 60)).save(ref)
    prompts = tmp_path / "batch.csv"
    rows = [f"face.png,a person number {k} smiles,{k},{name}" for k, name in enumerate(NAMES)]
    prompts.write_text("ref,prompt,seed,name\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    return prompts, out, tmp_path / "made.log"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK") and
           not k.startswith("SLURM_")}  # fmt: skip
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _start(prompts, out, log, *args, env=None):
    return subprocess.Popen([sys.executable, str(WORKER), str(prompts), str(out), str(log), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or _env())  # fmt: skip


def _race(out: Path, procs: list[subprocess.Popen], go: Path) -> list[dict]:
    """Release the workers together once every one is ready; their JSON summaries."""
    deadline = time.monotonic() + 60
    while len(list(out.glob(".ready-*"))) < len(procs):
        assert time.monotonic() < deadline, [p.communicate()[1] for p in procs if p.poll() is not None]
        time.sleep(0.05)
    go.touch()
    summaries = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        summaries.append(json.loads(stdout))
    return summaries


def _start_hanging(prompts, out, log, name: str) -> subprocess.Popen:
    """A worker that stops in the middle of item ``name`` (its partial mp4 open), once it has got there."""
    marker = out.parent / f"hanging-{name}"
    proc = _start(prompts, out, log, "--hang", name, "--marker", str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    return proc


def _log(log: Path) -> list[tuple[str, int, int]]:
    return [(name, int(pid), int(shard)) for name, pid, shard in (line.split() for line in log.read_text().splitlines())]


def _assert_all_made(out: Path, names) -> None:
    for name in names:
        assert video_problem(out / f"{name}.mp4", 9, 32, 32) is None, name
        assert json.loads((out / f"{name}.json").read_text())["status"] == "done"
    assert not list(out.glob(".*.partial*")), "partial files left behind"
    assert not list((out / ".fantasyid" / "claims").glob("*.lock")), "claims left behind"


def test_four_processes_race_for_one_folder(batch):
    prompts, out, log = batch
    go = out.parent / "go"
    procs = [_start(prompts, out, log, "--go", str(go), "--delay", "0.15", "--fail", "i07") for _ in range(4)]
    summaries = _race(out, procs, go)

    made = Counter(name for name, _, _ in _log(log))
    assert made == Counter(NAMES), "every item is asked for exactly once, the failing one included"
    assert len({pid for _, pid, _ in _log(log)}) >= 2, "the work was shared"
    assert sum(s["done"] for s in summaries) == 11
    assert all(sum(s.values()) == 12 for s in summaries), "each process accounts for every item"
    assert all(s["failed"] == 1 for s in summaries), "every process reports the failed item"
    _assert_all_made(out, [n for n in NAMES if n != "i07"])
    assert not (out / "i07.mp4").exists()
    failure = json.loads((out / ".fantasyid" / "failed" / "i07.json").read_text())
    assert "i07 cannot be made" in failure["error"]

    # a rerun (a new run, later) makes the failed item again, and nothing else
    log.unlink()
    rerun = _start(prompts, out, log)
    stdout, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    assert json.loads(stdout) == {"done": 1, "skipped": 11, "failed": 0, "busy": 0, "refused": 0}
    assert [name for name, _, _ in _log(log)] == ["i07"]
    _assert_all_made(out, NAMES)
    assert not (out / ".fantasyid" / "failed" / "i07.json").exists()


def test_three_shards_from_the_launchers_environment(batch):
    prompts, out, log = batch
    go = out.parent / "go"
    envs = [_env(RANK="0", WORLD_SIZE="3"), _env(RANK="1", WORLD_SIZE="3"), _env(SLURM_PROCID="2", SLURM_NTASKS="3")]
    procs = [_start(prompts, out, log, "--go", str(go), "--delay", "0.05", env=env) for env in envs]
    summaries = _race(out, procs, go)

    entries = _log(log)
    assert Counter(name for name, _, _ in entries) == Counter(NAMES)
    assert all(NAMES.index(name) % 3 == shard for name, _, shard in entries), entries
    assert [s["done"] for s in summaries] == [4, 4, 4]
    _assert_all_made(out, NAMES)


def test_kill_minus_nine_mid_item_then_rerun(batch):
    prompts, out, log = batch
    victim = _start_hanging(prompts, out, log, "i05")
    partials = list(out.glob(".i05.*.partial.mp4"))
    assert len(partials) == 1

    # while the victim lives, another process makes everything else and leaves i05 (and its partial file) alone
    helper = _start(prompts, out, log)
    stdout, stderr = helper.communicate(timeout=60)
    assert helper.returncode == 0, stderr
    assert json.loads(stdout) == {"done": 6, "skipped": 5, "failed": 0, "busy": 1, "refused": 0}
    assert partials[0].exists(), "a live process's partial file was deleted"

    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert partials[0].exists() and (out / ".fantasyid" / "claims" / "i05.lock").exists()

    before = _log(log)
    rerun = _start(prompts, out, log)
    stdout, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    assert json.loads(stdout) == {"done": 1, "skipped": 11, "failed": 0, "busy": 0, "refused": 0}
    assert [name for name, _, _ in _log(log)[len(before):]] == ["i05"], "the rerun made only the killed item"
    made_before = Counter(name for name, pid, _ in before if pid != victim.pid or name != "i05")
    assert made_before == Counter(n for n in NAMES if n != "i05"), "nothing else was made twice"
    assert not partials[0].exists()
    _assert_all_made(out, NAMES)


@pytest.mark.slow
def test_two_real_tiny_processes_share_one_folder(tmp_path):
    """The real command, twice in parallel on one folder (the tiny model: ~15 s a process on a busy CPU)."""
    import PIL.Image
    from skimage import data

    PIL.Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    prompts = tmp_path / "batch.csv"
    prompts.write_text("ref,prompt,seed\n" + "".join(f"astronaut.png,a woman smiles {k},{k}\n" for k in range(3)))
    out = tmp_path / "out"

    def command(steps: int = 2) -> list[str]:
        return [sys.executable, "-m", "fantasyid_cli.main", "generate", "--model", "tiny", "--steps", str(steps),
                "--prompts", str(prompts), "--out", str(out)]  # fmt: skip

    env = _env(FANTASYID_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", COLUMNS="200")
    procs = [subprocess.Popen(command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]  # fmt: skip
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    made = [int(text.split(" made")[0].split()[-1]) for text in outputs]
    assert sum(made) == 3, outputs
    for video in sorted(out.glob("*.mp4")):
        assert video_problem(video, 9, 64, 64) is None

    from typer.testing import CliRunner

    from fantasyid_cli.main import app

    status = CliRunner().invoke(app, command()[3:] + ["--status"], env={"COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    assert "3 done, 0 claimed, 0 failed, 0 stale, 0 missing" in status.output
    changed = CliRunner().invoke(app, command(3)[3:] + ["--status"], env={"COLUMNS": "200"})
    assert changed.exit_code == 1
    assert "0 done, 0 claimed, 0 failed, 3 stale, 0 missing" in changed.output
    assert "steps 2 → 3" in changed.output


def test_sigterm_releases_the_claim_and_removes_the_partial_file(batch):
    prompts, out, log = batch
    worker = _start_hanging(prompts, out, log, "i02")
    assert list(out.glob(".i02.*.partial.mp4")) and (out / ".fantasyid" / "claims" / "i02.lock").exists()
    worker.terminate()  # what torchrun does to the other workers when one fails, and Slurm at its time limit
    _, stderr = worker.communicate(timeout=30)
    assert "KeyboardInterrupt" in stderr
    assert not list(out.glob(".i02.*.partial*")) and not (out / ".fantasyid" / "claims" / "i02.lock").exists()
    _assert_all_made(out, ["i00", "i01"])
