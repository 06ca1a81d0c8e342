"""The config-to-model contract: every shipped accelerate YAML goes through accelerate's own launch code, and what it
hands the training processes fits the model (FSDP's units are the model's blocks; DeepSpeed on several nodes uses
the standard launcher); the Slurm script passes arguments through intact."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from fantasyid.models.transformer_fantasyid import FantasyIDBlock
from fantasyid.training.config import ModelConfig
from fantasyid.training.model import build_components

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "examples" / "train" / "accelerate").glob("*.yaml"))


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
    assert {"FSDP", "DEEPSPEED", "MULTI_GPU", "MULTI_CPU"} <= set(kinds.values()), kinds


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
