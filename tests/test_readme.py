"""Every `fantasyid` command in the README's ```bash blocks runs as written, in a fresh copy of the examples.

Blocks that need GPUs or a cluster (torchrun, Slurm, `accelerate launch`, Ray clusters) are fenced ```sh instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    lines = [line.split(" && ", 1)[1] if line.startswith("pip install") and " && " in line else line for line in lines]
    commands = [line for line in lines if not line.startswith(("pip install", "python -m pytest"))]
    assert all(line.startswith(("fantasyid ", "python examples/")) for line in commands), commands
    return commands


def _pip_installs(lines: list[str]) -> list[list[str]]:
    """The ``pip install`` commands among shell lines, as argument lists without ``python -m``, ``--quiet`` and the
    CPU-wheel index (which only picks the CPU build of the same pinned versions)."""
    import shlex

    installs = []
    for line in lines:
        words = shlex.split(line.split(" && ")[0], comments=True)
        words = words[2:] if words[:2] == ["python", "-m"] else words
        if words[:2] != ["pip", "install"] or "--upgrade" in words:
            continue
        kept, skip = [], False
        for word in words:
            if skip or word == "--quiet":
                skip = False
                continue
            skip = word == "--extra-index-url"
            if not skip:
                kept.append(word)
        installs.append(kept)
    return installs


def test_readme_installs_what_ci_installs():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    readme = _pip_installs([line for block in blocks for line in block.splitlines()])
    ci = _pip_installs((ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines())
    assert readme == ci and len(ci) == 2, (readme, ci)
    assert all(words[2:4] == ["-c", ".ci/constraints.txt"] for words in readme)  # the pinned versions, pair included
    assert readme[0][4:] == ["torch", "torchvision"] and readme[1][4:] == ["-e", ".[all]"]
    assert len(readme_commands()) >= 9


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "fantasyid"  # the installed console script, pointing at this checkout
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m fantasyid \"$@\"\n")
    launcher.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FANTASYID_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "120"}
    env.pop("FANTASYID_DEBUG", None)
    for command in readme_commands():
        if command.startswith("python "):  # the example scripts run with this interpreter
            command = f"{sys.executable} {command[len('python '):]}"
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    for folder in ("outputs", "outputs/beach", "outputs/wide", "outputs/edited"):
        assert (tmp_path / folder / "0000_astronaut_s42.mp4").is_file(), folder
    assert {p.name for p in (tmp_path / "runs" / "exp1").glob("*.mp4")} == {"smile.mp4", "turn.mp4"}
    assert (tmp_path / "outputs" / "shapes" / "final.mp4").is_file()
    assert (tmp_path / "outputs" / "eval" / "summary.json").is_file()
    # run in a clone, the examples would leave nothing git sees: everything they wrote is under an ignored folder
    written = sorted(p.name + "/" * p.is_dir() for p in tmp_path.iterdir() if p.name not in ("examples", "bin", "home"))
    seen = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *written], cwd=ROOT,
                          capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    assert written and not [line for line in seen if line.startswith("::")], seen  # "::" = no ignore rule matched
    # prep: the example clip is kept with six views; train: checkpoints, a resume to step 30, an export that generates
    assert (tmp_path / "data" / "prep" / "manifest.parquet").is_file()
    assert len(list((tmp_path / "data" / "prep" / "assets").rglob("view*.png"))) == 6
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "checkpoint-30").is_dir()
    assert (tmp_path / "runs" / "tiny-lr" / "export" / "model_index.json").is_file()
    assert len(list((tmp_path / "outputs" / "trained").glob("*.mp4"))) == 1
