"""``fantasyid study report``: the answers → Table 1 of the paper (mean score per method and criterion).

Each cell is the mean of every counted score of that method and criterion, with a 95 % percentile bootstrap
interval over those scores (:func:`scipy.stats.bootstrap`, seeded). Attention-check repeats never count; a rater
fails a check when their scores of the repeat differ from those of the original by more than ``tolerance`` points
on average (over criteria and videos). Failed raters are always listed, and left out with ``exclude_failed``.

Writes ``table.md``, ``table.tex``, ``table.csv`` (long format: one row per method and criterion), ``answers.csv``
(every answer with its method), ``attention.csv``, ``summary.json`` and ``plot.png`` (means with their intervals).
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.errors import InputError, require
from fantasyid.io import atomic_path, write_json, write_text

from .build import CRITERIA, KEY_FILE, load_study
from .serve import ANSWERS_FILE, connect

__all__ = [
    "StudyReport", "answers_frame", "attention_frame", "bootstrap_ci", "report_study", "summarise", "wide_table",
]

CONFIDENCE = 0.95
RESAMPLES = 10_000


@dataclass
class StudyReport:
    table: Any  #: pandas DataFrame, long format: method, criterion, mean, ci_low, ci_high, answers, raters, items
    attention: Any  #: pandas DataFrame: rater, position, original, difference, passed
    failed_raters: list[str]
    excluded: list[str]
    raters: int
    files: dict[str, Path] = field(default_factory=dict)


def bootstrap_ci(scores: np.ndarray, *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """The percentile bootstrap interval of the mean of ``scores`` (NaN for fewer than two scores; the value itself
    when they are all equal)."""
    from scipy.stats import bootstrap

    scores = np.asarray(scores, dtype=np.float64)
    if scores.size < 2:
        return float("nan"), float("nan")
    if np.all(scores == scores[0]):
        return float(scores[0]), float(scores[0])
    result = bootstrap((scores,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                       rng=np.random.default_rng(seed), vectorized=True)  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def answers_frame(folder: str | Path) -> Any:
    """Every answer of the study with the method of its video and whether it is an attention-check repeat."""
    pd = require("pandas", "data", "the study report")
    folder = Path(folder)
    study = load_study(folder)
    key_path = folder / KEY_FILE
    if not key_path.is_file():
        raise InputError(f"'{folder}' has no {KEY_FILE}: the methods cannot be unblinded",
                         hint="run the report on the study folder that study build wrote")  # fmt: skip
    key = json.loads(key_path.read_text(encoding="utf-8"))
    if not (folder / ANSWERS_FILE).is_file():
        raise InputError(f"'{folder}' has no answers yet ({ANSWERS_FILE})", hint="serve it: fantasyid study serve")
    with closing(connect(folder)) as connection:
        frame = pd.read_sql_query("SELECT rater, position, item, slot, criterion, score FROM answers", connection)
    checks = {(rater["id"], int(position)) for rater in study["raters"] for position in rater["checks"]}
    frame["method"] = [key["items"][item]["methods"][slot] for item, slot in zip(frame["item"], frame["slot"])]
    frame["group"] = [key["items"][item]["group"] for item in frame["item"]]
    frame["check"] = [(rater, position) in checks for rater, position in zip(frame["rater"], frame["position"])]
    return frame


def attention_frame(folder: str | Path, answers: Any, tolerance: float = 2.0) -> Any:
    """One row per answered attention check: the mean absolute difference from the original and pass/fail."""
    pd = require("pandas", "data", "the study report")
    study = load_study(folder)
    scores = answers.set_index(["rater", "position", "slot", "criterion"])["score"].sort_index()
    rows = []
    for rater in study["raters"]:
        for position, original in rater["checks"].items():
            try:
                repeat = scores.loc[(rater["id"], int(position))]
                first = scores.loc[(rater["id"], int(original))]
            except KeyError:
                continue  # not answered (yet)
            difference = float((repeat - first).abs().mean())
            rows.append({"rater": rater["id"], "position": int(position), "original": int(original),
                         "difference": difference, "passed": difference <= tolerance})  # fmt: skip
    return pd.DataFrame(rows, columns=["rater", "position", "original", "difference", "passed"])


def summarise(answers: Any, methods: list[str], *, seed: int = 0) -> Any:
    """Long table: per method and criterion the mean, its bootstrap interval and the counts."""
    pd = require("pandas", "data", "the study report")
    counted = answers[~answers["check"]]
    rows = []
    for method in methods:
        mine = counted[counted["method"] == method]
        for criterion in CRITERIA:
            scores = mine.loc[mine["criterion"] == criterion, "score"].to_numpy(dtype=np.float64)
            low, high = bootstrap_ci(scores, seed=seed)
            rows.append({
                "method": method, "criterion": criterion, "mean": float(scores.mean()) if scores.size else np.nan,
                "ci_low": low, "ci_high": high, "answers": int(scores.size),
                "raters": int(mine["rater"].nunique()), "items": int(mine["group"].nunique()),
            })  # fmt: skip
    return pd.DataFrame(rows)


def _latex_escape(text: str) -> str:
    return "".join("\\" + char if char in "&%$#_{}" else char for char in str(text))


def wide_table(table: Any, latex: bool) -> Any:
    """Table 1's layout: a row per method, a column per criterion (``mean [low, high]``), raters and items; the
    best mean of each criterion in bold."""
    pd = require("pandas", "data", "the study report")
    best = table.groupby("criterion")["mean"].max()
    rows = []
    for method, mine in table.groupby("method", sort=False):
        row: dict[str, Any] = {"Method": _latex_escape(method) if latex else method}
        for record in mine.itertuples():
            cell = "—" if np.isnan(record.mean) else f"{record.mean:.2f} [{record.ci_low:.2f}, {record.ci_high:.2f}]"
            if not np.isnan(record.mean) and record.mean == best[record.criterion]:
                cell = f"\\textbf{{{cell}}}" if latex else f"**{cell}**"
            row[CRITERIA[record.criterion]] = cell
        row["Raters"], row["Items"] = int(mine["raters"].iloc[0]), int(mine["items"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def _plot(table: Any, path: Path) -> Path:
    matplotlib = require("matplotlib", "metrics", "the study plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(table["method"]))
    width = 0.8 / max(1, len(methods))
    figure, axes = plt.subplots(figsize=(7.5, 3.6), dpi=120)
    x = np.arange(len(CRITERIA))
    for i, method in enumerate(methods):
        mine = table[table["method"] == method].set_index("criterion").loc[list(CRITERIA)]
        means = mine["mean"].to_numpy()
        errors = np.vstack([means - mine["ci_low"].to_numpy(), mine["ci_high"].to_numpy() - means])
        axes.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=np.nan_to_num(errors), capsize=3,
                 label=method)  # fmt: skip
    axes.set_xticks(x, list(CRITERIA.values()))
    axes.set_ylim(0, 10)
    axes.set_ylabel("mean score (0–10), 95 % CI")
    axes.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


def report_study(
    folder: str | Path,
    out: str | Path | None = None,
    *,
    exclude_failed: bool = False,
    tolerance: float = 2.0,
    seed: int = 0,
) -> StudyReport:
    """Table 1 from the study's answers, written to ``out`` (default ``STUDY/report``)."""
    folder = Path(folder)
    out = Path(out) if out is not None else folder / "report"
    if tolerance < 0:
        raise InputError(f"--tolerance must be 0 or more, got {tolerance}")
    key = json.loads((folder / KEY_FILE).read_text(encoding="utf-8")) if (folder / KEY_FILE).is_file() else None
    answers = answers_frame(folder)
    if answers.empty:
        raise InputError(f"no answers in '{folder / ANSWERS_FILE}' yet", hint="share the rater links first")
    attention = attention_frame(folder, answers, tolerance)
    failed = sorted(set(attention.loc[~attention["passed"], "rater"]))
    excluded = failed if exclude_failed else []
    counted = answers[~answers["rater"].isin(excluded)]
    table = summarise(counted, key["methods"], seed=seed)
    report = StudyReport(table, attention, failed, excluded, int(counted["rater"].nunique()))

    out.mkdir(parents=True, exist_ok=True)
    caption = ("Mean score (0–10) per method and criterion with 95 % percentile bootstrap intervals over the scores; "
               f"{report.raters} raters" + (f" ({len(excluded)} excluded for failed attention checks)" if excluded
                                            else "") + ".")  # fmt: skip
    markdown = wide_table(table, latex=False).to_markdown(index=False)
    report.files["table.md"] = write_text(out / "table.md", f"{markdown}\n\n{caption}\n")
    latex = wide_table(table, latex=True).to_latex(index=False, escape=False, caption=caption.replace("%", r"\%"),
                                              label="tab:user-study", column_format="l" + "c" * 6)  # fmt: skip
    report.files["table.tex"] = write_text(out / "table.tex", latex)
    report.files["table.csv"] = write_text(out / "table.csv", table.to_csv(index=False))
    report.files["answers.csv"] = write_text(out / "answers.csv", counted.to_csv(index=False))
    report.files["attention.csv"] = write_text(out / "attention.csv", attention.to_csv(index=False))
    report.files["plot.png"] = _plot(table, out / "plot.png")
    report.files["summary.json"] = write_json(out / "summary.json", {
        "methods": key["methods"], "raters": report.raters, "failed_attention": failed, "excluded": excluded,
        "tolerance": tolerance, "confidence": CONFIDENCE, "resamples": RESAMPLES, "seed": seed,
        "table": json.loads(table.to_json(orient="records")),
    })  # fmt: skip
    return report
