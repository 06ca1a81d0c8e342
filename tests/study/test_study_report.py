"""The report's statistics: means equal a hand computation, bootstrap intervals behave, attention checks exclude."""

from __future__ import annotations

import json
from contextlib import closing

import numpy as np
import pytest
from study_runs import METHODS

from fantasyid.errors import InputError
from fantasyid.study import CRITERIA, build_study
from fantasyid.study.report import bootstrap_ci, report_study
from fantasyid.study.serve import connect


def test_bootstrap_interval_matches_the_normal_one():
    rng = np.random.default_rng(0)
    scores = rng.normal(6.0, 2.0, 400)
    low, high = bootstrap_ci(scores, seed=1)
    half = 1.96 * scores.std(ddof=1) / np.sqrt(scores.size)
    assert low < scores.mean() < high
    assert abs((high - low) / 2 - half) < 0.1 * half
    assert abs((low + high) / 2 - scores.mean()) < 0.2 * half
    assert bootstrap_ci(scores, seed=1) == (low, high)  # seeded
    narrow = bootstrap_ci(rng.normal(6.0, 2.0, 4000), seed=1)
    assert narrow[1] - narrow[0] < (high - low) / 2.5  # ~1/sqrt(10) as wide
    assert bootstrap_ci(np.full(5, 7.0)) == (7.0, 7.0)
    assert all(np.isnan(bootstrap_ci(np.array([3.0]))))


def _answer_everything(study_dir, careless: str | None = None):
    """Answer every item of every rater with known scores: score = (rater + group + method + criterion) % 11;
    the careless rater answers repeats with 10 − score."""
    study = json.loads((study_dir / "study.json").read_text())
    key = json.loads((study_dir / "key.json").read_text())
    criteria = list(CRITERIA)
    expected: dict[tuple[str, str], list[int]] = {}
    with closing(connect(study_dir)) as connection:
        for r, rater in enumerate(study["raters"]):
            for position, item in enumerate(rater["sequence"]):
                repeat = str(position) in rater["checks"]
                for slot, method in enumerate(key["items"][item]["methods"]):
                    for c, criterion in enumerate(criteria):
                        score = (r + key["items"][item]["group"] + METHODS.index(method) + c) % 11
                        if repeat and rater["id"] == careless:
                            score = 10 - score
                        if not repeat:
                            expected.setdefault((method, criterion), []).append(score)
                        connection.execute(
                            "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, 'now')",
                            (rater["id"], position, item, slot, criterion, score),
                        )
    return study, expected


def test_report_equals_hand_computation(runs, tmp_path):
    plan = build_study(runs, tmp_path / "study", raters=4, attention_checks=1, seed=2)
    study, expected = _answer_everything(plan.folder, careless="rater03")
    report = report_study(plan.folder)
    table = report.table.set_index(["method", "criterion"])
    for (method, criterion), scores in expected.items():
        row = table.loc[(method, criterion)]
        assert row["mean"] == pytest.approx(np.mean(scores), abs=1e-12)
        assert row["answers"] == len(scores) == 4 * 4  # 4 raters × 4 references (repeats not counted)
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
        assert row["raters"] == 4 and row["items"] == 4
    assert report.failed_raters == ["rater03"] and report.excluded == []
    # the files
    out = plan.folder / "report"
    markdown = (out / "table.md").read_text()
    assert "| Method" in markdown and "Overall Quality" in markdown and "Facial Dynamics" in markdown
    assert markdown.count("**") >= 8  # the best mean of each criterion in bold
    latex = (out / "table.tex").read_text()
    assert "\\begin{table}" in latex and "\\textbf{" in latex and "95 \\%" in latex
    csv = (out / "table.csv").read_text().splitlines()
    assert csv[0] == "method,criterion,mean,ci_low,ci_high,answers,raters,items" and len(csv) == 1 + 3 * 4
    assert (out / "plot.png").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["failed_attention"] == ["rater03"]

    # excluded on request: the means are those of the other three raters
    excluded = report_study(plan.folder, tmp_path / "excluded", exclude_failed=True)
    assert excluded.excluded == ["rater03"] and excluded.raters == 3
    answers = excluded.table.set_index(["method", "criterion"])["answers"]
    assert set(answers) == {12}


def test_report_refuses_what_it_cannot_use(runs, tmp_path):
    plan = build_study(runs, tmp_path / "study", raters=1)
    with pytest.raises(InputError, match="no answers"):
        report_study(plan.folder)
    with pytest.raises(InputError, match="not a study folder"):
        report_study(tmp_path)
    (plan.folder / "key.json").unlink()
    with pytest.raises(InputError, match="cannot be unblinded"):
        report_study(plan.folder)
