"""`fantasyid app` and `fantasyid study` on the command line: help, the real command serving the tiny model on
127.0.0.1, one-line errors, and study build → report without a browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fantasyid_cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_app_and_study_and_imports_neither_gradio_nor_fastapi():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and " app " in result.output and " study " in result.output
    for command in (["app", "--help"], ["study", "--help"], ["study", "build", "--help"], ["study", "serve", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0 and "Examples" in result.output, command
    code = ("import sys\nfrom fantasyid_cli.main import main\ntry:\n    main(['study', '--help'])\nexcept SystemExit:\n"
            "    pass\nassert not {'torch', 'gradio', 'fastapi'} & set(sys.modules), 'heavy import'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   capture_output=True)  # fmt: skip


def test_study_errors_are_one_line(tmp_path):
    from fantasyid_cli.main import main

    for argv, message in ((["study", "report", str(tmp_path)], "is not a study folder"),
                          (["study", "build", str(tmp_path / "none"), "--out", str(tmp_path / "s")], "does not exist"),
                          (["study", "serve", str(tmp_path)], "is not a study folder")):  # fmt: skip
        process = subprocess.run([sys.executable, "-m", "fantasyid_cli.main", *argv], cwd=ROOT, text=True,
                                 capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        assert process.returncode == 1, process.stderr
        assert message in process.stderr and "Traceback" not in process.stderr
    assert callable(main)


def test_study_build_and_report_commands(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "study"))
    from study_runs import make_runs

    runs = make_runs(tmp_path / "runs", methods=("a", "b"), references=2)
    study = tmp_path / "study"
    result = runner.invoke(app, ["study", "build", *map(str, runs), "--out", str(study), "--names", "Ours,Theirs",
                                 "--raters", "3", "--attention-checks", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 methods, 2 references, 4 items; 3 raters × 5 items" in result.output
    from contextlib import closing

    from fantasyid.study.serve import connect

    with closing(connect(study)) as db:
        db.execute("INSERT INTO answers VALUES ('rater01', 0, ?, 0, 'overall_quality', 7, 'now')",
                   (__import__("json").loads((study / "study.json").read_text())["raters"][0]["sequence"][0],))
    result = runner.invoke(app, ["study", "report", str(study)])
    assert result.exit_code == 0, result.output
    assert "Overall Quality" in result.output and (study / "report" / "table.tex").is_file()


@pytest.mark.slow
def test_fantasyid_app_serves_the_tiny_model(tmp_path, free_port):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FANTASYID_HOME": str(tmp_path / "home"),
           "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "fantasyid_cli.main", "app", "--model", "tiny", "--device", "cpu", "--port", str(port),
         "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline, page = time.monotonic() + 180, None
        while time.monotonic() < deadline and page is None:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:  # noqa: S310
                    page = response.read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None and "FantasyID" in page
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert f"serving on http://127.0.0.1:{port}" in output
