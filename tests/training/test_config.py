"""Training configs: every shipped config loads, overrides, nearest-key errors, value checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from fantasyid.errors import ConfigError
from fantasyid.training.config import TrainConfig, config_from_dict, config_hash, dump_config, load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "train"
SHIPPED = sorted(EXAMPLES.glob("*.yaml"))


def test_the_shipped_set_is_complete():
    names = {path.stem for path in SHIPPED}
    assert {"tiny", "fantasyid-5b", "ablation-wo-fa", "ablation-wo-mfc", "ablation-wo-fv", "ablation-wo-lacsi"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_its_command(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and f"fantasyid train examples/train/{path.name}" in first


def test_ablation_configs_differ_from_the_paper_config_only_in_their_switch():
    base = load_config(EXAMPLES / "fantasyid-5b.yaml")
    expected = {
        "ablation-wo-fa": ("model", "face_abstractor", "qformer"),
        "ablation-wo-mfc": ("data", "views", 1),
        "ablation-wo-fv": ("model", "vertex_tokens", False),
        "ablation-wo-lacsi": ("model", "layer_refiner", False),
    }
    for name, (section, key, value) in expected.items():
        config = load_config(EXAMPLES / f"{name}.yaml")
        assert getattr(getattr(config, section), key) == value
        setattr(getattr(config, section), key, getattr(getattr(base, section), key))
        config.output_dir = base.output_dir
        assert config == base, name


def test_overrides_are_typed():
    config = load_config(EXAMPLES / "tiny.yaml", ["optim.lr=1e-5", "train.max_steps=3", "model.layer_refiner=null"])
    assert config.optim.lr == 1e-5 and isinstance(config.optim.lr, float)
    assert config.train.max_steps == 3
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(EXAMPLES / "tiny.yaml", ["train.max_steps=many"])


def test_unknown_key_names_the_nearest_valid_one(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match="optim.lrr") as info:
        load_config(path)
    assert "optim.lr" in info.value.hint
    with pytest.raises(ConfigError, match="train.max_step") as info:
        load_config(None, ["train.max_step=3"])
    assert "train.max_steps" in info.value.hint
    with pytest.raises(ConfigError) as info:
        config_from_dict({"optimizer": {"lr": 1}})
    assert "optim" in info.value.hint


@pytest.mark.parametrize("override, message", [
    ("data.frames=48", "1 \\+ a multiple of 4"),
    ("data.views=7", "data.views"),
    ("model.trainable=half", "model.trainable"),
    ("train.global_batch=3", "multiple of train.micro_batch"),
])
def test_bad_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(EXAMPLES / "tiny.yaml", [override, "train.micro_batch=2"] if "global" in override else [override])


def test_dump_round_trips_and_hash_ignores_resumable_fields(tmp_path):
    import yaml

    config = load_config(EXAMPLES / "tiny.yaml")
    text = dump_config(config, "fantasyid train x.yaml")
    assert text.startswith("# fantasyid train x.yaml\n")
    assert config_from_dict(yaml.safe_load(text)) == config
    longer = load_config(EXAMPLES / "tiny.yaml", ["train.max_steps=999", "checkpoint.every=7"])
    assert config_hash(longer) == config_hash(config)
    assert config_hash(load_config(EXAMPLES / "tiny.yaml", ["optim.lr=0.5"])) != config_hash(config)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 1 and config.mixed_precision in ("no", "bf16")
    assert path.read_text().startswith("# accelerate launch --config_file examples/train/accelerate/")


def test_slurm_script_is_valid_bash():
    import subprocess

    script = EXAMPLES / "slurm" / "train.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "accelerate launch" in text and "--machine_rank" in text and "--resume auto" in text
