"""``fantasyid study serve``: the raters' web pages (FastAPI + uvicorn) and the answers' SQLite file.

A rater opens ``/r/<token>`` and sees the first item they have not answered: the reference photo, the video (or
videos ``A`` and ``B``) and the four criteria, each scored 0–10. Submitting writes the item's scores to
``answers.sqlite`` in one committed transaction (a killed server loses nothing that was acknowledged) and shows the
next item; coming back later resumes where the rater stopped. Several raters can answer at once. Media are served
only from the study's ``media/`` folder under their random names; ``key.json`` (the methods) is never served.
"""

# no ``from __future__ import annotations``: FastAPI reads the handlers' annotations, and ``fastapi`` is imported
# inside create_server_app (an optional extra), so they must be evaluated where they are written
import html
import re
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fantasyid.errors import InputError, require

from .build import MEDIA_DIR, load_study

__all__ = ["ANSWERS_FILE", "check_study", "connect", "create_server_app", "serve_study", "answered_positions"]

ANSWERS_FILE = "answers.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    rater TEXT NOT NULL,        -- rater id (study.json)
    position INTEGER NOT NULL,  -- place in the rater's sequence, 0-based
    item TEXT NOT NULL,         -- item id (study.json)
    slot INTEGER NOT NULL,      -- which video of the item: 0 (A) or 1 (B)
    criterion TEXT NOT NULL,    -- overall_quality, face_similarity, facial_structure, facial_dynamics
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 10),
    answered_at TEXT NOT NULL,
    PRIMARY KEY (rater, position, slot, criterion)
);
"""
_MEDIA_NAME = re.compile(r"^[0-9a-f]{16}\.[a-z0-9]{2,5}$")


def connect(folder: str | Path) -> sqlite3.Connection:
    """The study's answers database (created when missing); every write is committed at once."""
    connection = sqlite3.connect(Path(folder) / ANSWERS_FILE, timeout=30.0, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(_SCHEMA)
    return connection


def answered_positions(connection: sqlite3.Connection, rater: str) -> set[int]:
    rows = connection.execute("SELECT DISTINCT position FROM answers WHERE rater = ?", (rater,))
    return {row[0] for row in rows}


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1100px;color:#222}
.media{display:flex;gap:1.5rem;align-items:flex-start;flex-wrap:wrap}
figure{margin:0}figcaption{font-weight:600;margin:.3rem 0}
img.ref{width:240px;border:1px solid #ccc}video{width:320px;background:#000}
table{border-collapse:collapse;margin-top:1rem}td,th{padding:.35rem .7rem;border-bottom:1px solid #ddd;text-align:left}
input[type=number]{width:4.5rem}button{margin-top:1rem;padding:.5rem 1.5rem;font-size:1rem}
.progress{color:#555}.error{color:#b00020;font-weight:600}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")  # fmt: skip


def _item_page(study: dict[str, Any], rater: dict[str, Any], position: int, done: int, error: str = "") -> str:
    item = study["items"][rater["sequence"][position]]
    total = len(rater["sequence"])
    letters = "AB"
    single = len(item["videos"]) == 1
    figures = [f"<figure><figcaption>Reference photo</figcaption><img class='ref' src='/media/{item['ref']}' "
               f"alt='reference photo'></figure>"]  # fmt: skip
    for slot, video in enumerate(item["videos"]):
        label = "Video" if single else f"Video {letters[slot]}"
        figures.append(f"<figure><figcaption>{label}</figcaption><video src='/media/{video}' controls loop muted "
                       f"autoplay playsinline></video></figure>")  # fmt: skip
    low, high = study["scale"]
    slots = range(len(item["videos"]))
    header = "".join(f"<th>{'Score' if single else 'Video ' + letters[slot]}</th>" for slot in slots)
    rows = []
    for key, label in study["criteria"].items():
        cells = "".join(
            f"<td><input type='number' name='s{slot}_{key}' id='s{slot}_{key}' min='{low}' max='{high}' step='1' "
            f"required></td>"
            for slot in range(len(item["videos"]))
        )
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    body = (
        f"<h1>{html.escape(study['title'])}</h1>"
        f"<p class='progress' id='progress'>Item {done + 1} of {total}. Score each criterion from {low} (worst) to "
        f"{high} (best). You can stop at any time and come back to this link later.</p>"
        + (f"<p class='error' id='error'>{html.escape(error)}</p>" if error else "")
        + f"<p>Prompt: <em>{html.escape(item['prompt'])}</em></p>"
        f"<div class='media'>{''.join(figures)}</div>"
        f"<form method='post' action='/r/{rater['token']}/answer' id='answer'>"
        f"<input type='hidden' name='position' value='{position}'>"
        f"<table><tr><th>Criterion</th>{header}</tr>{''.join(rows)}</table>"
        f"<button type='submit' id='submit'>Submit and continue</button></form>"
    )
    return _page(study["title"], body)


def check_study(folder: str | Path) -> dict[str, Any]:
    """``study.json`` of ``folder``, after checking that every photo and video its items show is in ``media/``: a
    study whose media were not copied along would hand raters pages whose videos do not load."""
    folder = Path(folder)
    study = load_study(folder)
    needed = sorted({name for item in study["items"].values() for name in (item["ref"], *item["videos"])})
    missing = [name for name in needed if not (folder / MEDIA_DIR / name).is_file()]
    if missing:
        shown = ", ".join(f"{MEDIA_DIR}/{name}" for name in missing[:3]) + (", …" if len(missing) > 3 else "")
        raise InputError(
            f"study '{folder}' lacks {len(missing)} of its {len(needed)} media files ({shown}): not serving it",
            hint=f"copy the whole study folder, {MEDIA_DIR}/ included, or build it again with fantasyid study build",
        )
    return study


def create_server_app(folder: str | Path) -> Any:
    """The FastAPI application serving the study in ``folder`` (checked by :func:`check_study`)."""
    fastapi = require("fastapi", "study", "the study server")
    responses = require("fastapi.responses", "study", "the study server")
    folder = Path(folder)
    study = check_study(folder)
    raters = {rater["token"]: rater for rater in study["raters"]}
    media = (folder / MEDIA_DIR).resolve()
    with closing(connect(folder)):
        pass  # the database exists before the first request
    app = fastapi.FastAPI(title=study["title"], docs_url=None, redoc_url=None, openapi_url=None)

    def rater_for(token: str) -> dict[str, Any]:
        rater = raters.get(token)
        if rater is None:
            raise fastapi.HTTPException(status_code=404, detail="unknown rater link")
        return rater

    def next_position(rater: dict[str, Any]) -> tuple[int | None, int]:
        with closing(connect(folder)) as connection:
            done = answered_positions(connection, rater["id"])
        pending = [p for p in range(len(rater["sequence"])) if p not in done]
        return (pending[0] if pending else None), len(done)

    @app.get("/", response_class=responses.HTMLResponse)
    def index() -> str:
        return _page(study["title"], f"<h1>{html.escape(study['title'])}</h1><p>Open the link you were given.</p>")

    @app.get("/r/{token}", response_class=responses.HTMLResponse)
    def rate(token: str) -> str:
        rater = rater_for(token)
        position, done = next_position(rater)
        if position is None:
            return _page(study["title"], f"<h1 id='thanks'>Thank you!</h1><p>All {done} items are answered.</p>")
        return _item_page(study, rater, position, done)

    @app.post("/r/{token}/answer", response_class=responses.HTMLResponse)
    async def answer(token: str, request: fastapi.Request) -> Any:
        rater = rater_for(token)
        form = await request.form()
        position, done = next_position(rater)
        try:
            asked = int(str(form.get("position", "")))
        except ValueError:
            asked = -1
        if position is None or asked != position:  # a resubmitted or stale page: show the current item
            return responses.RedirectResponse(f"/r/{token}", status_code=303)
        item_id = rater["sequence"][position]
        slots = len(study["items"][item_id]["videos"])
        low, high = study["scale"]
        rows = []
        for slot in range(slots):
            for key in study["criteria"]:
                text = str(form.get(f"s{slot}_{key}", "")).strip()
                if not re.fullmatch(r"\d{1,2}", text) or not low <= int(text) <= high:
                    message = f"every score must be a whole number from {low} to {high}"
                    return responses.HTMLResponse(_item_page(study, rater, position, done, message), status_code=400)
                rows.append((rater["id"], position, item_id, slot, key, int(text)))
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with closing(connect(folder)) as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT OR IGNORE INTO answers (rater, position, item, slot, criterion, score, answered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*row, stamp) for row in rows],
            )
            connection.execute("COMMIT")
        return responses.RedirectResponse(f"/r/{token}", status_code=303)

    @app.get("/media/{name}")
    def media_file(name: str) -> Any:
        path = media / name
        if not _MEDIA_NAME.fullmatch(name) or not path.is_file():
            raise fastapi.HTTPException(status_code=404, detail="not found")
        return responses.FileResponse(path)

    return app


def rater_links(folder: str | Path, base_url: str) -> list[tuple[str, str]]:
    """``(rater id, link)`` of every rater."""
    study = load_study(folder)
    return [(rater["id"], f"{base_url.rstrip('/')}/r/{rater['token']}") for rater in study["raters"]]


def serve_study(folder: str | Path, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Serve the study until interrupted."""
    uvicorn = require("uvicorn", "study", "the study server")
    if not 0 < port < 65536:
        raise InputError(f"--port must be 1–65535, got {port}")
    uvicorn.run(create_server_app(folder), host=host, port=port, log_level=log_level)
