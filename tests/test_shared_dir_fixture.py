"""The test configuration: the reference fixtures ship in ``tests/fixtures`` (a user's run tests what CI tests; a
missing fixture fails, it never skips); the FLAME-derived golden files, which the repository may not carry, fail in CI
and skip with the reason elsewhere; every test process and its subprocesses compute on one thread whatever the
caller's shell says (the kill -9 + resume test compares losses to the last digit)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parents[1]
CONFTEST = Path(__file__).with_name("conftest.py").read_text(encoding="utf-8")


def test_the_shipped_fixtures_are_the_recorded_ones(shared_dir):
    assert shared_dir == ROOT / "tests" / "fixtures"
    golden = shared_dir / "reference" / "golden"
    table = re.findall(r"^\| `([\w.]+)` \| ([\d,]+) \| `([0-9a-f]{64})` \|", (golden / "README.md").read_text(), re.M)
    recorded = {name: (int(size.replace(",", "")), digest) for name, size, digest in table}
    for name in ("golden_keys.json", "golden_face.safetensors"):  # the golden files free of FLAME data
        data = (golden / name).read_bytes()
        assert recorded[name] == (len(data), hashlib.sha256(data).hexdigest()), name
    assert not (golden / "transform.pkl").exists() and not (golden / "golden_io.safetensors").exists()  # licence
    assert (shared_dir / "reference" / "official_checkpoint_layout.json").is_file()


def _project(pytester: pytest.Pytester, test: str) -> pytest.Pytester:
    """A project with our conftest and one test, nowhere near a shared folder or our fixtures."""
    tests = pytester.mkdir("tests")
    (tests / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (tests / "test_it.py").write_text(test)
    assert not (Path(tests).resolve().parents[1] / "shared" / "reference").exists()
    return pytester


@pytest.mark.parametrize("ci", ["true", None])
def test_missing_fixtures_fail_in_ci_and_outside(pytester: pytest.Pytester, monkeypatch, ci):
    project = _project(pytester, "def test_golden(shared_dir):\n    assert shared_dir.is_dir()\n")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "tests")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the reference fixtures are missing*git checkout -- tests/fixtures*"])


FLAME_TEST = "def test_flame(flame_golden_dir):\n    assert (flame_golden_dir / 'transform.pkl').is_file()\n"


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_missing_flame_golden_files_fail_in_ci(pytester: pytest.Pytester, monkeypatch, value):
    monkeypatch.delenv("FANTASYID_SHARED", raising=False)
    monkeypatch.setenv("CI", value)
    result = _project(pytester, FLAME_TEST).runpytest_subprocess("-p", "no:cacheprovider", "tests")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true: the FLAME-derived golden files*were not found*"])


def test_missing_flame_golden_files_skip_with_the_reason_outside_ci(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.delenv("FANTASYID_SHARED", raising=False)
    monkeypatch.delenv("CI", raising=False)
    result = _project(pytester, FLAME_TEST).runpytest_subprocess("-p", "no:cacheprovider", "-rs", "tests")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*FLAME's licence keeps them out of the repository*"])


def test_flame_golden_files_from_the_environment(pytester: pytest.Pytester, monkeypatch, tmp_path):
    (tmp_path / "shared" / "reference" / "golden").mkdir(parents=True)
    (tmp_path / "shared" / "reference" / "golden" / "transform.pkl").write_bytes(b"x")
    monkeypatch.setenv("FANTASYID_SHARED", str(tmp_path / "shared"))
    monkeypatch.setenv("CI", "true")
    _project(pytester, FLAME_TEST).runpytest_subprocess("-p", "no:cacheprovider", "tests").assert_outcomes(passed=1)


SKIPPING = {
    "module": "import pytest\n\npytest.importorskip('no_such_module_of_fantasyid')\n\n\ndef test_a():\n    pass\n",
    "test": "import pytest\n\n\ndef test_b():\n    pytest.skip('not here')\n",
}


@pytest.mark.parametrize("where", list(SKIPPING))
@pytest.mark.parametrize("ci", ["true", None])
def test_skips_fail_in_ci_and_skip_elsewhere(pytester: pytest.Pytester, monkeypatch, where, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = _project(pytester, SKIPPING[where]).runpytest_subprocess("-p", "no:cacheprovider", "tests")
    if ci is None:
        result.assert_outcomes(skipped=1)
    else:
        result.assert_outcomes(**({"errors": 1} if where == "module" else {"failed": 1}))
        result.stdout.fnmatch_lines(["*CI=true: skipped tests fail in CI*"])


PROBE = '''
import os, subprocess, sys

import torch


def test_one_thread():
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           env={**os.environ}, capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "1"
'''


@pytest.mark.slow  # two xdist workers and a child, each importing torch: ~15 s on a busy 2-core machine
def test_every_worker_and_its_subprocesses_use_one_thread_whatever_the_shell_says(pytester: pytest.Pytester):
    tests = pytester.mkdir("tests")
    (tests / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (tests / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}  # a shell that asks for more
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "tests"],
                          cwd=pytester.path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
