"""``fantasyid study build``: run folders of different methods → a blinded, randomised, balanced user study.

Each run folder is one method; each video in it is tied to its reference photo (and prompt) by its JSON sidecar, as
``fantasyid generate`` writes it. Videos of the methods with the same reference and prompt form a *group*; only
groups every method has are used (the others are reported). The study folder holds:

* ``media/``: copies of the videos and reference photos under random names (nothing in a file name or URL tells
  the method);
* ``study.json``: what the server shows — items (a reference and one video, or two videos ``A``/``B``), and per
  rater a token (the rater's link) and the order of the items;
* ``key.json``: which method each video is, where it came from, which items are attention checks. The server never
  serves it; only the report reads it.

Designs: ``single`` (one video per item, every method's video of every group) and ``pair`` (two videos per item,
every pair of methods of every group). Per rater, groups are shuffled (seeded); the methods of a group follow a row
of a balanced Latin square chosen by rater and group, so every method is shown about equally often in every place
of a group (first, second, …); in pairs, each pair of methods alternates sides each time a rater meets it.
Attention checks repeat earlier items later in a rater's sequence: a careful rater scores the repeat about as before.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.errors import InputError
from fantasyid.io import atomic_path, sha256_file, write_json

__all__ = ["CRITERIA", "DESIGNS", "StudyPlan", "balanced_latin_square", "build_study", "load_study", "collect_groups"]

#: The paper's four criteria (Table 1), in its column order: key → label.
CRITERIA = {
    "overall_quality": "Overall Quality",
    "face_similarity": "Face Similarity",
    "facial_structure": "Facial Structure",
    "facial_dynamics": "Facial Dynamics",
}
DESIGNS = ("single", "pair")
STUDY_FILE, KEY_FILE, MEDIA_DIR = "study.json", "key.json", "media"
SCALE = (0, 10)


@dataclass
class _Video:
    method: str
    path: Path
    ref: Path
    ref_sha256: str
    prompt: str


@dataclass
class StudyPlan:
    """What :func:`build_study` made: the folder, its counts and what was left out."""

    folder: Path
    methods: list[str]
    groups: int
    items: int
    raters: int
    per_rater: int  #: items each rater sees (attention checks included)
    skipped: list[str] = field(default_factory=list)  #: groups not every method has, and other notes


def balanced_latin_square(n: int) -> list[list[int]]:
    """A Williams design: ``n`` rows (``2n`` for odd ``n``) in which every symbol is in every column equally often
    and (for even ``n``) every symbol follows every other once."""
    first = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    rows = [[(value + shift) % n for value in first] for shift in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows


def _read_sidecar(video: Path) -> dict[str, Any] | None:
    sidecar = video.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


Groups = dict[tuple[str, str], dict[str, _Video]]  #: (reference sha256, prompt) → method → video


def collect_groups(run_dirs: list[Path], names: list[str]) -> tuple[Groups, list[str]]:
    """Videos of every run, grouped by (reference hash, prompt): ``{group: {method: video}}``, plus notes."""
    notes: list[str] = []
    groups: Groups = {}
    for run, method in zip(run_dirs, names):
        videos = sorted(run.glob("*.mp4"))
        if not videos:
            raise InputError(f"run folder '{run}' has no .mp4 videos",
                             hint="give folders written by fantasyid generate")  # fmt: skip
        for video in videos:
            sidecar = _read_sidecar(video)
            ref = Path(str(sidecar.get("ref") or "")) if sidecar else None
            if ref is None or not ref.is_file():
                notes.append(f"{method}: {video.name} left out (no sidecar naming an existing reference photo)")
                continue
            ref_hash = str(sidecar.get("ref_sha256") or sha256_file(ref))
            key = (ref_hash, str(sidecar.get("prompt", "")))
            if method in groups.setdefault(key, {}):
                notes.append(f"{method}: {video.name} left out (same reference and prompt as "
                             f"{groups[key][method].path.name})")  # fmt: skip
                continue
            groups[key][method] = _Video(method, video, ref, ref_hash, key[1])
    complete = {key: group for key, group in groups.items() if len(group) == len(names)}
    for key, group in groups.items():
        if len(group) != len(names):
            missing = ", ".join(sorted(set(names) - set(group)))
            notes.append(f"group '{key[1][:40]}' (reference {key[0][:8]}) left out: no video from {missing}")
    return complete, notes


def _media_name(rng: np.random.Generator, suffix: str, used: set[str]) -> str:
    while True:
        name = f"{int(rng.integers(0, 2**63)):016x}{suffix.lower()}"
        if name not in used:
            used.add(name)
            return name


def _copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def build_study(
    run_dirs: list[str | Path],
    out: str | Path,
    *,
    names: list[str] | None = None,
    design: str = "single",
    raters: int = 32,
    attention_checks: int = 0,
    seed: int = 0,
    title: str = "Video study",
) -> StudyPlan:
    """Build the study folder ``out`` (see the module docstring). Refuses to overwrite an existing study."""
    runs = [Path(run) for run in run_dirs]
    if design not in DESIGNS:
        raise InputError(f"unknown design '{design}'", hint="use single or pair")
    if raters < 1:
        raise InputError(f"--raters must be at least 1, got {raters}")
    if attention_checks < 0:
        raise InputError(f"--attention-checks must be 0 or more, got {attention_checks}")
    for run in runs:
        if not run.is_dir():
            raise InputError(f"run folder '{run}' does not exist")
    names = list(names) if names else [run.resolve().name for run in runs]
    if len(names) != len(runs):
        raise InputError(f"--names gives {len(names)} names for {len(runs)} run folders")
    if len(set(names)) != len(names):
        raise InputError(f"method names must differ: {', '.join(names)}", hint="pass --names A,B,…")
    if design == "pair" and len(runs) < 2:
        raise InputError("a pair design needs at least two run folders")
    out = Path(out)
    if (out / STUDY_FILE).exists():
        raise InputError(f"'{out}' already holds a study", hint="choose another --out (answers live beside it)")

    groups, notes = collect_groups(runs, names)
    if not groups:
        raise InputError("no reference has a video from every method",
                         hint="the runs must share references and prompts (see their sidecars)")  # fmt: skip
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    media = out / MEDIA_DIR
    group_keys = sorted(groups)
    refs: dict[str, str] = {}  # ref sha → media name
    video_media: dict[tuple[int, str], str] = {}  # (group, method) → media name
    key_videos: dict[str, dict[str, Any]] = {}
    for g, key in enumerate(group_keys):
        for method in names:
            video = groups[key][method]
            if video.ref_sha256 not in refs:
                refs[video.ref_sha256] = _media_name(rng, video.ref.suffix or ".png", used)
                _copy(video.ref, media / refs[video.ref_sha256])
            name = _media_name(rng, ".mp4", used)
            _copy(video.path, media / name)
            video_media[g, method] = name
            key_videos[name] = {"method": method, "source": str(video.path.resolve()), "ref": str(video.ref)}

    # items: one per (group, method) or per (group, pair of methods); their sides are decided per rater
    units: list[tuple[int, tuple[str, ...]]] = []
    for g in range(len(group_keys)):
        if design == "single":
            units += [(g, (method,)) for method in names]
        else:
            units += [(g, pair) for pair in itertools.combinations(names, 2)]
    square = balanced_latin_square(len(names) if design == "single" else len(units) // len(group_keys))
    items: dict[str, dict[str, Any]] = {}
    key_items: dict[str, dict[str, Any]] = {}
    rater_list: list[dict[str, Any]] = []
    for r in range(raters):
        order = np.random.default_rng([seed, r]).permutation(len(group_keys))
        sequence: list[str] = []
        shown_count: dict[tuple[str, ...], int] = {}  # per pair of methods: how often this rater has seen it
        for b, g in enumerate(order):
            mine = [unit for unit in units if unit[0] == g]
            row = square[(r + b) % len(square)]
            for place, index in enumerate(row):
                group, methods = mine[index]
                # a pair alternates sides each time this rater meets it (starting side alternates by rater)
                flip = design == "pair" and (shown_count.get(methods, 0) + r) % 2 == 1
                shown_count[methods] = shown_count.get(methods, 0) + 1
                shown = methods[::-1] if flip else methods
                videos = [video_media[group, method] for method in shown]
                item_id = _item_id(group, videos)
                if item_id not in items:
                    ref_name = refs[groups[group_keys[group]][methods[0]].ref_sha256]
                    items[item_id] = {"ref": ref_name, "videos": videos, "prompt": group_keys[group][1]}
                    key_items[item_id] = {"group": group, "methods": list(shown)}
                sequence.append(item_id)
        checks = _attention_checks(sequence, attention_checks, np.random.default_rng([seed, r, 1]))
        rater_list.append({"id": f"rater{r + 1:02d}", "token": secrets.token_urlsafe(12), "sequence": checks[0],
                           "checks": checks[1]})  # fmt: skip

    study = {
        "format": "fantasyid-study/1",
        "title": title,
        "design": design,
        "criteria": CRITERIA,
        "scale": list(SCALE),
        "items": items,
        "raters": rater_list,
    }
    key = {
        "methods": names,
        "runs": [str(run.resolve()) for run in runs],
        "seed": seed,
        "videos": key_videos,
        "items": key_items,
        "groups": [{"ref_sha256": k[0], "prompt": k[1]} for k in group_keys],
        "notes": notes,
    }
    write_json(out / KEY_FILE, key)
    write_json(out / STUDY_FILE, study)  # last: a study folder with study.json is complete
    return StudyPlan(out, names, len(group_keys), len(items), raters, len(rater_list[0]["sequence"]), notes)


def _item_id(group: int, videos: list[str]) -> str:
    return hashlib.sha256(f"{group}:{'|'.join(videos)}".encode()).hexdigest()[:12]


def _attention_checks(sequence: list[str], count: int, rng: np.random.Generator) -> tuple[list[str], dict[str, int]]:
    """Repeat ``count`` items later in the sequence; returns the new sequence and ``{position of the repeat:
    position of the original}`` (0-based, as strings for JSON)."""
    if count == 0:
        return sequence, {}
    if count > len(sequence) // 2:
        raise InputError(f"--attention-checks {count} is too many for {len(sequence)} items per rater",
                         hint=f"use at most {len(sequence) // 2}")  # fmt: skip
    sequence = list(sequence)
    originals = sorted(rng.choice(len(sequence) // 2, size=count, replace=False).tolist())
    for item in [sequence[original] for original in originals]:  # each repeat ≥ 2 places after its original
        low = sequence.index(item) + 3
        place = int(rng.integers(low, len(sequence) + 1)) if low <= len(sequence) else len(sequence)
        sequence.insert(place, item)
    checks: dict[str, int] = {}
    seen: dict[str, int] = {}
    for position, item in enumerate(sequence):
        if item in seen:
            checks[str(position)] = seen[item]
        else:
            seen[item] = position
    return sequence, checks


def load_study(folder: str | Path) -> dict[str, Any]:
    """``study.json`` of a study folder (a one-line error when it is not one)."""
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        raise InputError(f"'{folder}' is not a study folder (no {STUDY_FILE})",
                         hint="make one with: fantasyid study build RUN_DIR... --out STUDY")  # fmt: skip
    study = json.loads(path.read_text(encoding="utf-8"))
    if study.get("format") != "fantasyid-study/1":
        raise InputError(f"'{path}' is not a fantasyid study file")
    return study
