"""Fixtures of the study tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_runs import make_runs


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return make_runs(tmp_path / "runs")
