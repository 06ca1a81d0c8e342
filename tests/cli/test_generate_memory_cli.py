"""`fantasyid generate --memory/--plan`: the plan printed before anything loads, refusals in one line, and every
plan generating with the tiny model, named in the sidecar."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from fantasyid.pipelines.memory import PLANS
from fantasyid_cli.main import app, main

runner = CliRunner()


def test_plan_for_a_12_gb_gpu_without_one():
    result = runner.invoke(app, ["generate", "--plan", "--memory", "12"])
    assert result.exit_code == 0, result.output
    assert "released at 49×480×720, --memory 12" in result.output
    plan = re.search(r"memory plan: (\S+)", result.output).group(1)
    peak = float(re.search(r"predicted GPU peak: ([\d.]+) GB", result.output).group(1))
    need = float(re.search(r"with headroom ([\d.]+) GB", result.output).group(1))
    assert plan == "group-block" and peak <= need <= 12
    assert re.search(r"host RAM: [\d.]+ GB", result.output)


def test_a_budget_no_plan_fits_is_refused_naming_the_smallest(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--plan", "--memory", "4"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    smallest = float(re.search(r"the smallest needs ([\d.]+) GB", err).group(1))
    assert 4 < smallest and f"--memory {int(smallest) + 1} or more" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 2  # the error and its hint


pytestmark = pytest.mark.usefixtures("fantasyid_home")


def _generate(ref, out, *args):
    result = runner.invoke(app, ["generate", "--model", "tiny", "--ref", str(ref), "--prompt", "a woman smiles",
                                 "--out", str(out), "--steps", "2", *args])
    assert result.exit_code == 0, result.output
    return json.loads(next(out.glob("*.json")).read_text())


# every preset (on the tiny model each budget fits the fastest plan) and every plan by name
@pytest.mark.parametrize("memory", [None, "auto", "full", "24", "16", "12", "8", "t5-off", "fp8", "offload",
                                    "fp8-offload", "group-block", "group-leaf"])
def test_every_preset_and_plan_generates_and_the_sidecar_names_it(ref, tmp_path, memory):
    sidecar = _generate(ref, tmp_path, *(["--memory", memory] if memory else []))
    named = memory if memory in PLANS else "full"
    assert sidecar["memory"]["name"] == named and sidecar["model"]["memory_plan"] == named
    assert sidecar["memory"]["predicted_peak_gib"] > 0 and "measured_peak_gib" not in sidecar["memory"]  # a CPU


def test_offload_keeps_working_as_the_offload_plan(ref, tmp_path):
    sidecar = _generate(ref, tmp_path, "--offload")
    assert sidecar["memory"]["name"] == "offload" and sidecar["memory"]["model_offload"] is True
