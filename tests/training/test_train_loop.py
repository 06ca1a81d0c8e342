"""The loop: kill -9 + resume equals an uninterrupted run step for step; Ctrl-C saves; the limit prunes; a
checkpoint of another config is refused; a NaN loss stops the run; logs and TensorBoard are written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from train_fixtures import tiny_config

from fantasyid.errors import CheckpointError
from fantasyid.training.config import dump_config
from fantasyid.training.loop import TrainingError, train

ROOT = Path(__file__).resolve().parents[2]


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def _launch(config, tmp_path: Path, *args: str) -> subprocess.Popen:
    path = tmp_path / f"{Path(config.output_dir).name}.yaml"
    path.write_text(dump_config(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "fantasyid_cli", "train", str(path), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, process: subprocess.Popen, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"training ended early (rc {process.returncode}):\n{process.stdout.read()}")
        if time.monotonic() > end:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.02)


def _schedule(**extra):
    return {"optim": {"lr": 2e-3, "scheduler": "cosine_with_restarts", "warmup_steps": 2, "num_cycles": 2}, **extra}


@pytest.mark.slow
def test_kill_9_and_resume_equals_an_uninterrupted_run(identity_data, tmp_path):
    steps = {"train": {"max_steps": 7}, "checkpoint": {"every": 2, "total_limit": 0}}
    reference = train(tiny_config(identity_data, tmp_path / "whole", **_schedule(**steps)))
    assert reference.status == "finished" and len(reference.losses) == 7

    config = tiny_config(identity_data, tmp_path / "killed", **_schedule(**steps))
    process = _launch(config, tmp_path)
    checkpoint = tmp_path / "killed" / "checkpoints" / "checkpoint-2"
    _wait_for(checkpoint.is_dir, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "checkpoints" / "checkpoint-7").exists()  # really killed mid-run

    resumed = train(config, resume="latest")
    assert resumed.start_step >= 2 and resumed.step == 7
    assert _losses(tmp_path / "killed") == _losses(tmp_path / "whole")  # every step, exactly
    assert resumed.losses == reference.losses[resumed.start_step:]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(identity_data, tmp_path):
    config = tiny_config(identity_data, tmp_path / "run", train={"max_steps": 500}, checkpoint={"every": 0})
    process = _launch(config, tmp_path)
    log = tmp_path / "run" / "log.jsonl"
    _wait_for(lambda: log.is_file() and len(log.read_text().splitlines()) >= 2, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    text = " ".join(output.split())  # Rich wraps long lines
    assert "interrupted at step" in text and "--resume latest" in text
    last = max(_losses(tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoints" / f"checkpoint-{last}" / "trainer_state.json").is_file()
    assert "Traceback" not in output


def test_limit_prunes_logs_and_refuses_another_config(identity_data, tmp_path):
    config = tiny_config(identity_data, tmp_path / "run", train={"max_steps": 3},
                         checkpoint={"every": 1, "total_limit": 2}, log={"tensorboard": True})
    result = train(config)
    folders = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert folders == ["checkpoint-2", "checkpoint-3"]
    assert result.checkpoint.name == "checkpoint-3"
    assert sorted(_losses(tmp_path / "run")) == [1, 2, 3]
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "config.yaml").read_text().count("max_steps: 3") == 1

    other = tiny_config(identity_data, tmp_path / "run", optim={"lr": 0.5}, train={"max_steps": 5})
    with pytest.raises(CheckpointError, match="optim.lr"):
        train(other, resume="latest")
    done = tiny_config(identity_data, tmp_path / "run", train={"max_steps": 3})
    with pytest.raises(TrainingError, match="nothing to do"):
        train(done, resume="latest")
    with pytest.raises(CheckpointError, match="does not exist"):
        train(done, resume=str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match="already holds checkpoints of a run \\(up to step 3\\)") as info:
        train(done)  # a fresh start would mix its checkpoints with this run's
    assert "--resume latest" in info.value.hint
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-3"]


def test_a_nan_loss_stops_the_run_naming_the_step(data_copy, tmp_path):
    for shape in (data_copy.parent / "shapes").glob("*.npz"):
        with np.load(shape) as data:
            vertices = data["vertices"].copy()
        vertices[:] = np.nan
        np.savez(shape, shape=np.zeros((6, 100), np.float32), vertices=vertices)
    config = tiny_config(data_copy, tmp_path / "run", train={"max_steps": 3})
    with pytest.raises(TrainingError, match="at step 1") as info:
        train(config)
    assert "no checkpoint was saved" in info.value.message


@pytest.mark.slow
def test_a_manifest_without_captions_warns_once(data_copy, tmp_path):
    from rich.console import Console

    from fantasyid.data.manifest import read_manifest, write_manifest

    rows = read_manifest(data_copy).to_dict("records")
    assert all(row["caption"] for row in rows) and len(rows) > 2
    rows[1]["caption"] = ""
    write_manifest(rows, data_copy)
    console = Console(record=True, width=400)
    train(tiny_config(data_copy, tmp_path / "run", train={"max_steps": 1}), console=console)
    text = console.export_text()
    assert text.count(f"1 of {len(rows)} kept clips have no caption") == 1, text  # counted right, said once
    assert "unconditional" in text and "--captioner" in text
