"""The study end to end in a real browser: two raters answer through `fantasyid study serve`, the server is killed
mid-study and restarted, every answer is still there, each rater resumes where they were, and the report equals a
hand computation from the database."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fantasyid.study import CRITERIA, build_study
from fantasyid.study.report import report_study

METHOD_NAMES = ("Ours", "Baseline")


def _start(study: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-m", "fantasyid_cli.main", "study", "serve", str(study), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):  # noqa: S310 - our local server
                return process
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"server exited: {process.stdout.read()}") from None
            time.sleep(0.3)
    process.kill()
    raise AssertionError("server did not start")


def _stop(process: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _answer(driver, link: str, scores: list[int]) -> str:
    """Open the rater's link and submit ``scores`` (criterion by criterion); returns the page's progress line."""
    from selenium.webdriver.common.by import By

    driver.get(link)
    progress = driver.find_element(By.ID, "progress").text
    for key, score in zip(CRITERIA, scores):
        field = driver.find_element(By.NAME, f"s0_{key}")
        field.clear()
        field.send_keys(str(score))
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element(By.ID, "submit")
    button.click()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(button))  # the answer is in: next page
    return progress


@pytest.mark.slow
def test_two_raters_kill_restart_report(tmp_path, chrome, free_port, screenshot):
    from study_runs import make_runs
    from selenium.webdriver.common.by import By

    runs = make_runs(tmp_path / "runs", methods=("ours", "baseline"), references=2)
    plan = build_study(runs, tmp_path / "study", names=list(METHOD_NAMES), raters=2, attention_checks=1, seed=4,
                       title="Which video keeps the face?")  # fmt: skip
    study = json.loads((plan.folder / "study.json").read_text())
    links = {rater["id"]: f"/r/{rater['token']}" for rater in study["raters"]}
    assert plan.per_rater == 5
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    given: dict[tuple[str, int], list[int]] = {}

    server = _start(plan.folder, port)
    try:
        # rater 1 answers two items, rater 2 one item, interleaved
        for rater, position in (("rater01", 0), ("rater02", 0), ("rater01", 1)):
            scores = rng.integers(0, 11, len(CRITERIA)).tolist()
            progress = _answer(chrome, base + links[rater], scores)
            assert progress.startswith(f"Item {position + 1} of 5")
            given[rater, position] = scores
        chrome.get(base + links["rater02"])
        page = chrome.page_source
        assert all(name.lower() not in page.lower() for name in (*METHOD_NAMES, "ours", "baseline"))
        video = chrome.find_element(By.TAG_NAME, "video")
        deadline = time.monotonic() + 30  # the browser plays the blinded mp4
        while chrome.execute_script("return arguments[0].readyState", video) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert chrome.execute_script("return arguments[0].duration > 0 && arguments[0].error === null", video)
        screenshot(chrome, "study.png")
        _stop(server, signal.SIGKILL)  # killed mid-study: no clean shutdown
        with sqlite3.connect(plan.folder / "answers.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 3 * len(CRITERIA)

        server = _start(plan.folder, port)
        # each resumes where they were
        for rater, position in (("rater01", 2), ("rater02", 1), ("rater01", 3), ("rater01", 4), ("rater02", 2),
                                ("rater02", 3), ("rater02", 4)):  # fmt: skip
            scores = rng.integers(0, 11, len(CRITERIA)).tolist()
            progress = _answer(chrome, base + links[rater], scores)
            assert progress.startswith(f"Item {position + 1} of 5"), progress
            given[rater, position] = scores
        chrome.get(base + links["rater01"])
        assert "Thank you" in chrome.find_element(By.ID, "thanks").text
    finally:
        _stop(server)

    # every submitted answer is in the database, as given
    with sqlite3.connect(plan.folder / "answers.sqlite") as db:
        rows = db.execute("SELECT rater, position, item, slot, criterion, score FROM answers").fetchall()
    stored = {}
    for rater, position, item, slot, criterion, score in rows:
        assert slot == 0
        stored.setdefault((rater, position), {})[criterion] = score
    assert stored == {k: dict(zip(CRITERIA, v)) for k, v in given.items()}

    # the report equals a hand computation from the database (repeats of attention checks left out)
    key = json.loads((plan.folder / "key.json").read_text())
    checks = {(r["id"], int(p)) for r in study["raters"] for p in r["checks"]}
    hand: dict[tuple[str, str], list[int]] = {}
    for rater, position, item, slot, criterion, score in rows:
        if (rater, position) not in checks:
            hand.setdefault((key["items"][item]["methods"][slot], criterion), []).append(score)
    table = report_study(plan.folder).table.set_index(["method", "criterion"])
    assert len(table) == len(hand) == 2 * len(CRITERIA)
    for (method, criterion), scores in hand.items():
        assert table.loc[(method, criterion), "mean"] == pytest.approx(sum(scores) / len(scores), abs=1e-12)
        assert table.loc[(method, criterion), "answers"] == len(scores) == 4
        assert table.loc[(method, criterion), "raters"] == 2
