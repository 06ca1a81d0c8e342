"""What `fantasyid --help` shows a user: defaults for the size options, no `<bool>` after flags, no stray spaces,
examples everywhere; `python -m fantasyid` works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fantasyid_cli.main import app

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ([], ["generate"], ["eval"], ["edit-shape"], ["models"], ["models", "fetch"])


def _help(command: list[str]) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "240", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fantasyid")
def test_help_has_no_bool_metavar_and_no_stray_spaces(command):
    text = _help(command)
    assert "<bool>" not in text
    assert not re.search(r"\w \.(\s|$)", text), re.search(r".{30}\w \.(\s|$)", text)
    assert not re.search(r"\w ,", text)
    assert "Examples:" in text or command == ["models"] and "fantasyid models fetch" in text


def test_size_and_step_defaults_are_shown():
    text = " ".join(_help(["generate"]).split())
    for option, default in (("--steps", "50; tiny: 4; a saved model: its own"), ("--frames", "49; tiny: 9"),
                            ("--height", "480; tiny: 64"), ("--width", "720; tiny: 64"),
                            ("--fps", "8; a saved model: its own")):
        assert re.search(rf"{option} <int> [^│]*\[default: \({default}\)\]", text), option
    assert re.search(r"--guidance <float> [^│]*\[default: \(6; a saved model: its own\)\]", text)
    assert re.search(r"--offload --no-offload Model CPU offload", text)  # a flag: no type column


def test_models_fetch_has_examples_and_the_offline_way():
    text = " ".join(_help(["models", "fetch"]).split())
    assert "fantasyid models fetch --model acvlab/FantasyID" in text
    assert "hf download acvlab/FantasyID --local-dir FantasyID" in text


def test_python_dash_m_fantasyid():
    done = subprocess.run([sys.executable, "-m", "fantasyid", "--version"], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("fantasyid ")


def _commands():
    """Every command line of the app, as argv prefixes (the prep group's default command included)."""
    import typer

    def walk(command, path):
        if hasattr(command, "commands"):  # a group
            if path == ["prep"]:
                yield path  # `prep --help` is the prep command's own help
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path

    return list(walk(typer.main.get_command(app), []))


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_word_of_every_option_help_is_shown(command):
    """Rich markup ate '[default: $SLURM_ARRAY_TASK_ID …]' from prep's --shard help: every word written in a help
    string must reach the screen, and the usage line names arguments as CONFIG / [RUNS]..., never {config}."""
    import typer

    text = _flat(_help(command))
    click_command = typer.main.get_command(app)
    for name in command:
        click_command = click_command.commands[name]
    if command == ["prep"]:
        from fantasyid_cli.commands.prep_cmd import _prep_app

        click_command = typer.main.get_command(_prep_app)
    ctx = click_command.context_class(click_command)
    for param in click_command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        for word in (param.help or "").split():
            assert word in text, (param.name, word)
        if isinstance(param.show_default, str):
            assert param.show_default in text, param.name
    usage = re.search(r"Usage: (.*?)(\s{2}|$)", text).group(1)
    assert "{" not in usage and "}" not in usage, usage


def test_choices_are_listed_not_str():
    wanted = {
        ("prep",): ("--clips <fixed|scenes>", "--engine <local|ray>"),
        ("generate",): ("--dtype <auto|bf16|fp16|fp32>", "--variant <released|paper>"),
        ("edit-shape",): ("--mode <released|paper>", "--dtype <auto|bf16|fp16|fp32>"),
        ("eval",): (
            "--flow <farneback|dis>", "--fid-backend <auto|ort-fp32|torchscript|torch-fp16|torch-bf16|onnxruntime>",
        ),
        ("study", "build"): ("--design <single|pair>",),
    }
    for command, shown in wanted.items():
        text = _flat(_help(list(command)))
        for option in shown:
            assert option in text, (command, option)


def test_prep_merge_is_a_subcommand_and_prep_keeps_its_options():
    merge = _flat(_help(["prep", "merge"]))
    assert "Usage: fantasyid prep merge [OPTIONS] OUT" in merge and "--clips" not in merge
    prep = _flat(_help(["prep"]))
    assert "Usage: fantasyid prep [OPTIONS] VIDEOS..." in prep and "--clips <fixed|scenes>" in prep


def test_a_folder_named_merge_can_be_prepped_and_prep_merge_merges(tmp_path, run_main, monkeypatch):
    import fantasyid.data.report as report
    import fantasyid.data.runner as runner_module

    seen = {}

    def fake_run_prep(inputs, out, settings, **kwargs):
        seen["prep"] = (list(inputs), out)
        raise SystemExit(0)

    def fake_merge(out):
        seen["merge"] = out
        raise SystemExit(0)

    monkeypatch.setattr(runner_module, "run_prep", fake_run_prep)
    monkeypatch.setattr(report, "merge_shards", fake_merge)
    assert run_main(["prep", "./merge", "--out", str(tmp_path)])[0] == 0
    assert seen.pop("prep") == (["./merge"], tmp_path)
    assert run_main(["prep", "merge", str(tmp_path)])[0] == 0
    assert seen.pop("merge") == tmp_path and not seen
    code, _, err = run_main(["prep", "merge", str(tmp_path), "--out", str(tmp_path)])
    assert code == 2 and "No such option: --out" in _flat(err)


def test_train_usage_and_flags():
    text = _flat(_help(["train"]))
    assert "Usage: fantasyid train [OPTIONS] CONFIG" in text
    for meaningless in ("--no-export-only", "--no-precompute", "--no-show-config"):
        assert meaningless not in text
    assert "--show-config" in text


def test_train_show_config_lists_every_key_with_its_default_and_doc():
    import dataclasses

    import yaml

    from fantasyid.training.config import TrainConfig, config_to_dict

    result = CliRunner().invoke(app, ["train", "--show-config"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output) == config_to_dict(TrainConfig())  # every key, every default
    lines = result.output.splitlines()
    assert lines[lines.index("  lr: 3.0e-06") - 1] == "  # AdamW learning rate (the same whatever the number of devices)"
    doc = lines[lines.index("  timestep_range: [0, 1000]") - 1]  # a comment of two lines above the key: one line
    assert doc.startswith("  # timesteps are drawn uniformly") and doc.endswith("as the identity test uses")
    assert lines[lines.index("  beta2: 0.95") - 1] == "  beta1: 0.9"  # undocumented keys get no one else's comment
    sections = [f.name for f in dataclasses.fields(TrainConfig) if f.default_factory is not dataclasses.MISSING]
    assert [line[:-1] for line in lines if line.endswith(":") and not line.startswith(" ")] == sections


def test_edit_shape_names_its_output_mesh_out_mesh_and_its_seed_is_the_video_s():
    text = _flat(_help(["edit-shape"]))
    assert "--out-mesh <path> Also write the edited mesh" in text
    assert not re.search(r"--mesh(?![\w-])", text)  # the old name is a hidden alias: --mesh means transform.pkl elsewhere
    assert "--seed <int> Seed of the video (with --generate)." in text and "batch" not in text
    assert "--mesh <path> The release's transform.pkl" in _flat(_help(["generate"]))
