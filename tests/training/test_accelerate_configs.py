"""The config-to-model contract: every shipped accelerate YAML goes through accelerate's own launch code, and what it
hands the training processes fits the model (FSDP's units are the model's blocks; DeepSpeed on several nodes uses
the standard launcher); every YAML really starts the tiny model's training (`accelerate launch --config_file YAML`,
2 CPU processes over gloo: here, or in test_fsdp.py / test_zero2.py with their equalities); the Slurm script passes
arguments through intact."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import tiny_config

from fantasyid.models.transformer_fantasyid import FantasyIDBlock
from fantasyid.training.config import ModelConfig, dump_config
from fantasyid.training.model import build_components

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "examples" / "train" / "accelerate").glob("*.yaml"))
#: YAMLs launched by their own tests, which assert more (sharding, partitioned optimizer states, resume, export)
DEDICATED = {"fsdp-8gpu.yaml": "test_fsdp.py", "zero2-8gpu.yaml": "test_zero2.py"}
#: what accelerate must end up running on 2 CPU processes, per YAML launched here
LAUNCHED = {"cpu-ddp-2proc.yaml": ("DistributedType.MULTI_CPU", 2), "ddp-8gpu.yaml": ("DistributedType.MULTI_CPU", 2),
            "single-gpu.yaml": ("DistributedType.NO", 1)}


def _launch_args(yaml: Path, *extra: str):
    """``accelerate launch --config_file YAML …`` parsed and completed by accelerate itself."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(yaml), *extra, "-m", "fantasyid_cli", "train",
                                               "c.yaml"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # as launch_command does before it starts DeepSpeed
        fields = list(defaults.deepspeed_config.keys()) if defaults else []
        args.deepspeed_fields_from_accelerate_config = ",".join(fields + (["mixed_precision"] if mp_from_config else []))
    return args


def test_there_are_shipped_yamls_of_each_kind():
    kinds = {path.name: path.read_text().split("distributed_type:")[1].split()[0].strip('"') for path in YAMLS}
    assert {"FSDP", "DEEPSPEED", "MULTI_GPU", "NO"} <= set(kinds.values()), kinds


@pytest.mark.parametrize("yaml", YAMLS, ids=[p.name for p in YAMLS])
def test_every_yaml_loads_and_fits_the_tiny_model(yaml, monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(yaml))
    if config.distributed_type != DistributedType.FSDP:
        return
    # what `accelerate launch` puts in the environment of every process, then the plugin each process builds
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from accelerate.utils.launch import prepare_multi_gpu_env

    env = prepare_multi_gpu_env(_launch_args(yaml))
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    module = build_components(ModelConfig(init="tiny", gradient_checkpointing=False)).module
    policy = fsdp2_prepare_auto_wrap_policy(plugin, module)  # raises for a class the model does not hold
    units = [m for m in module.modules() if policy(m)]
    blocks = list(module.transformer.transformer_blocks)
    assert all(isinstance(b, FantasyIDBlock) for b in blocks)
    assert all(any(b is u for u in units) for b in blocks)  # every block is its own FSDP unit


def test_two_node_deepspeed_uses_the_standard_launcher():
    """As the Slurm script launches node 1 of 2: torchrun on each node, not DeepSpeed's pdsh runner."""
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    yaml = ROOT / "examples" / "train" / "accelerate" / "zero2-8gpu.yaml"
    args = _launch_args(yaml, "--num_machines", "2", "--num_processes", "16", "--machine_rank", "1",
                        "--main_process_ip", "10.0.0.1", "--main_process_port", "29500")
    cmd, env = prepare_deepspeed_cmd_env(args)
    assert cmd is None, cmd  # no `deepspeed --launcher pdsh …` command: accelerate runs torchrun on this node
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"


def test_slurm_script_passes_arguments_intact(tmp_path):
    """The sbatch script under stand-in srun/scontrol/accelerate: each node's launcher gets the arguments as given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv"
    scripts = {
        "srun": '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nSLURM_NODEID=1 exec "$@"\n',
        "scontrol": "#!/usr/bin/env bash\nprintf 'node-a\\nnode-b\\n'\n",
        "accelerate": f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" > {record}\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755 | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node-[a-b]",
           "SLURM_NNODES": "2", "DISTRIBUTED": "deepspeed"}
    done = subprocess.run(["bash", "examples/train/slurm/train.sbatch", "examples/train/fantasyid-5b.yaml",
                           "--set", "output_dir=runs/a b", "--set", "train.seed=3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    argv = record.read_text().split("\0")[:-1]
    assert argv == [
        "launch", "--config_file", "examples/train/accelerate/zero2-8gpu.yaml", "--num_machines", "2",
        "--num_processes", "16", "--machine_rank", "1", "--main_process_ip", "node-a", "--main_process_port", "29500",
        "-m", "fantasyid_cli", "train", "examples/train/fantasyid-5b.yaml", "--resume", "auto",
        "--set", "output_dir=runs/a b", "--set", "train.seed=3",
    ]


def test_every_yaml_is_launched_by_a_test():
    """A new YAML cannot ship without a test that starts training from it."""
    assert {p.name for p in YAMLS} == set(DEDICATED) | set(LAUNCHED)
    for name, test in DEDICATED.items():
        assert name in (Path(__file__).with_name(test)).read_text(), (name, test)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LAUNCHED))
def test_yaml_starts_the_tiny_training(name, identity_data, tmp_path):
    """`accelerate launch --config_file YAML --num_processes 2 --mixed_precision no` (bf16 needs a GPU): accelerate
    runs what the YAML says (DDP over gloo, or one process), the step trains, and every rank ends equal."""
    config = tiny_config(identity_data, tmp_path / "run", train={"global_batch": 2, "micro_batch": 1, "max_steps": 1},
                         checkpoint={"every": 0, "total_limit": 0})
    (tmp_path / "config.yaml").write_text(dump_config(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(ROOT / "examples" / "train" / "accelerate" / name), "--num_processes", "2",
                           "--mixed_precision", "no", "--main_process_port", str(29571 + sorted(LAUNCHED).index(name)),
                           str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path / "config.yaml"),
                           str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    kind, processes = LAUNCHED[name]
    assert json.loads((tmp_path / "out" / "accelerate-rank0.json").read_text()) == {
        "distributed_type": kind, "num_processes": processes}
    ranks = sorted((tmp_path / "out").glob("params-rank*.safetensors"))
    assert len(ranks) == processes
    first = load_file(str(ranks[0]))
    initial = dict(build_components(config.model, seed=config.train.seed).module.named_parameters())
    assert sum(not torch.equal(first[k], initial[k].detach()) for k in first) > 0.5 * len(first)  # it trained
    for other in ranks[1:]:
        assert all(torch.equal(v, first[k]) for k, v in load_file(str(other)).items())
