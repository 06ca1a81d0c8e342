"""The ``shared_dir`` fixture: golden and reference tests fail in CI when the shared folder is missing, and skip
(with the reason) in a user's clone."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

CONFTEST = Path(__file__).with_name("conftest.py").read_text(encoding="utf-8")


@pytest.fixture
def isolated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with our conftest and one test that needs the shared folder, nowhere near a shared folder."""
    monkeypatch.delenv("FANTASYID_SHARED", raising=False)
    tests = pytester.mkdir("tests")
    (tests / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (tests / "test_golden.py").write_text("def test_golden(shared_dir):\n    assert shared_dir.is_dir()\n")
    assert not (Path(tests).resolve().parents[1] / "shared" / "reference").exists()
    return pytester


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_missing_shared_folder_fails_in_ci(isolated, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result = isolated.runpytest_subprocess("-p", "no:cacheprovider", "tests")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true: the shared reference folder (golden fixtures) was not found*"])


def test_missing_shared_folder_skips_with_reason_outside_ci(isolated, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = isolated.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "tests")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*the shared reference folder (golden fixtures) was not found*"])


def test_shared_folder_from_the_environment(isolated, monkeypatch, tmp_path):
    (tmp_path / "shared" / "reference").mkdir(parents=True)
    monkeypatch.setenv("FANTASYID_SHARED", str(tmp_path / "shared"))
    monkeypatch.setenv("CI", "true")
    isolated.runpytest_subprocess("-p", "no:cacheprovider", "tests").assert_outcomes(passed=1)
