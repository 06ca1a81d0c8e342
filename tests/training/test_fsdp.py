"""FSDP2 started by the shipped accelerate YAML (examples/train/accelerate/fsdp-8gpu.yaml), 2 CPU processes over gloo:
the parameters really are sharded; losses, validation videos and the export equal one plain process with the same
global batch; a tiny `optim.max_grad_norm` clips the sharded gradients (an unclipped run is the control); resume from
a sharded checkpoint is exact; the export is a whole model `fantasyid generate --model` loads, and a sharded
checkpoint exports without training."""

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

from fantasyid.data.clip_reader import read_frames
from fantasyid.training.config import dump_config

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
YAML = ROOT / "examples" / "train" / "accelerate" / "fsdp-8gpu.yaml"
#: FSDP (2 shards, sums of 2 half-batches) against one process: float32 reduction order only (seen: ≤ 2.4e-7)
RTOL, ATOL = 1e-5, 1e-6


def _run(args: list[str], home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "FANTASYID_HOME": str(home)}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    # a hang (a collective that one process skips) fails at the timeout; SIGTERM lets torchrun end its workers
    with subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=420)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.communicate(timeout=60)
            raise
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]


def _launch(config_path: Path, out: Path, home: Path, *extra: str) -> None:
    """What the README runs on a GPU node, scaled down: the shipped YAML, 2 processes, no bf16 on a CPU."""
    _run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(YAML), "--num_processes", "2",
          "--mixed_precision", "no", "--main_process_port", "29561", str(WORKER), str(config_path), str(out),
          *extra], home)


def _config(identity_data, output_dir: Path, path: Path, max_grad_norm: float, validation: int = 3):
    config = tiny_config(identity_data, output_dir, data={"holdout": 1},
                         train={"global_batch": 2, "micro_batch": 1, "max_steps": 3},
                         optim={"max_grad_norm": max_grad_norm},
                         checkpoint={"every": 2, "total_limit": 0, "export": True},
                         validation={"every": validation, "references": 1, "steps": 2})
    path.write_text(dump_config(config))
    return config


def _losses(out: Path) -> list[float]:
    return [float(x) for x in (out / "losses-rank0.txt").read_text().split()]


def _export(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for part in ("transformer", "identity_encoder"):
        for file in sorted((folder / part).glob("*.safetensors")):
            tensors.update({f"{part}.{k}": v for k, v in load_file(str(file)).items()})
    return tensors


def _video(run: Path) -> torch.Tensor:
    (video,) = (run / "validation" / "step-3").glob("*.mp4")
    return torch.from_numpy(read_frames(video, range(5)).astype("float32"))


@pytest.mark.slow
def test_fsdp_from_the_shipped_yaml_shards_and_equals_one_process(identity_data, tmp_path):
    home = tmp_path / "home"
    _config(identity_data, tmp_path / "fsdp", tmp_path / "fsdp.yaml", 0.05)
    _launch(tmp_path / "fsdp.yaml", tmp_path / "two", home)
    _config(identity_data, tmp_path / "plain", tmp_path / "plain.yaml", 0.05)
    _run([sys.executable, str(WORKER), str(tmp_path / "plain.yaml"), str(tmp_path / "one")], home)
    _config(identity_data, tmp_path / "unclipped", tmp_path / "unclipped.yaml", 0.0, validation=0)
    _run([sys.executable, str(WORKER), str(tmp_path / "unclipped.yaml"), str(tmp_path / "free")], home)

    # 1. really sharded: every trained parameter is a DTensor; each rank holds about half of the elements
    shards = [json.loads((tmp_path / "two" / f"shards-rank{r}.json").read_text()) for r in (0, 1)]
    total = sum(whole for _, whole, _ in shards[0].values())
    held = [sum(local for local, _, _ in rank.values()) for rank in shards]
    kind = json.loads((tmp_path / "two" / "accelerate-rank0.json").read_text())
    assert kind == {"distributed_type": "DistributedType.FSDP", "num_processes": 2}  # accelerate's own FSDP path
    assert all(is_dtensor for _, _, is_dtensor in shards[0].values())
    assert sum(held) == total and all(0.4 * total < h < 0.6 * total for h in held), (held, total)
    assert (tmp_path / "fsdp" / "checkpoints" / "checkpoint-2" / "pytorch_model_fsdp_0").is_dir()  # DCP shards

    # 2. the same global losses as one process with the same global batch
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=RTOL)

    # 3. the export is the whole model and equals the one-process run's; clipping took effect in both
    two, one, free = (_export(tmp_path / run / "export") for run in ("fsdp", "plain", "unclipped"))
    assert two.keys() == one.keys() and len(two) > 100
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=RTOL, atol=ATOL, msg=key)
    gaps = [(one[k].double() - free[k].double()).abs().max().item() for k in one if one[k].is_floating_point()]
    assert max(gaps) > 100 * ATOL and sum(g > 10 * ATOL for g in gaps) > 0.2 * len(gaps)  # unclipped is far off

    # 4. validation under FSDP (every process generates in step) gives the one-process run's video
    assert json.loads((tmp_path / "fsdp" / "validation.jsonl").read_text().splitlines()[0])["step"] == 3
    assert (_video(tmp_path / "fsdp") - _video(tmp_path / "plain")).abs().mean() < 0.5  # of 255 (codec rounding)

    # 5. resume from the sharded checkpoint-2: the uninterrupted run's shards exactly, and its last loss
    _launch(tmp_path / "fsdp.yaml", tmp_path / "resumed", home, str(tmp_path / "fsdp" / "checkpoints" / "checkpoint-2"))
    assert _losses(tmp_path / "resumed") == pytest.approx(_losses(tmp_path / "two")[2:], rel=1e-6)
    for rank in (0, 1):
        before = load_file(str(tmp_path / "two" / f"params-rank{rank}.safetensors"))
        after = load_file(str(tmp_path / "resumed" / f"params-rank{rank}.safetensors"))
        for key in before:
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)

    # 6. a sharded checkpoint exports in one process (--export-only): the plain run's checkpoint at the same step
    from typer.testing import CliRunner

    from fantasyid_cli.main import app

    runner = CliRunner(env={"FANTASYID_HOME": str(home)})
    for run in ("fsdp", "plain"):
        done = runner.invoke(app, ["train", str(tmp_path / f"{run}.yaml"), "--export-only", "--resume",
                                   str(tmp_path / run / "checkpoints" / "checkpoint-2"),
                                   "--output-dir", str(tmp_path / f"{run}-step2")])
        assert done.exit_code == 0, done.output
    sharded, plain = _export(tmp_path / "fsdp-step2" / "export"), _export(tmp_path / "plain-step2" / "export")
    assert sharded.keys() == plain.keys() and any(not torch.equal(plain[k], one[k]) for k in one)  # step 2, not 3
    for key in plain:
        torch.testing.assert_close(sharded[key], plain[key], rtol=RTOL, atol=ATOL, msg=key)

    # 7. `fantasyid generate --model EXPORT` loads the FSDP run's export with the one-process run's weights
    from fantasyid.pipelines.loading import load_pipeline

    loaded, reference = (load_pipeline(str(tmp_path / run / "export"), device="cpu", dtype="fp32",
                                       shape_needed=False).pipe for run in ("fsdp", "plain"))
    for part in ("transformer", "identity_encoder"):
        mine, theirs = getattr(loaded, part).state_dict(), getattr(reference, part).state_dict()
        assert mine.keys() == theirs.keys()
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], rtol=RTOL, atol=ATOL, msg=f"{part}.{key}")
    from skimage import data
    import PIL.Image

    PIL.Image.fromarray(data.astronaut()).save(tmp_path / "me.png")
    run = runner.invoke(app, ["generate", "--model", str(tmp_path / "fsdp" / "export"), "--ref",
                              str(tmp_path / "me.png"), "--prompt", "a woman smiles", "--out", str(tmp_path / "v")])
    assert run.exit_code == 0, run.output
    assert next((tmp_path / "v").glob("*.mp4")).stat().st_size > 0
