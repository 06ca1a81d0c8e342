"""``fantasyid study``: the paper's user study (Table 1) — build, serve, report.

* :mod:`~fantasyid.study.build` — run folders → a blinded, randomised, balanced study folder.
* :mod:`~fantasyid.study.serve` — the raters' pages (FastAPI + uvicorn) and the answers' SQLite file.
* :mod:`~fantasyid.study.report` — Table 1 (means with 95 % bootstrap intervals) as Markdown, LaTeX, CSV and a plot.
"""

from .build import CRITERIA, StudyPlan, build_study, load_study

__all__ = ["CRITERIA", "StudyPlan", "build_study", "load_study"]
