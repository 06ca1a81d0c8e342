"""Study building: balanced per rater, reproducible with a seed, blinded (no method in any page), attention checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from study_runs import METHODS, make_runs

from fantasyid.errors import InputError
from fantasyid.study import build_study
from fantasyid.study.build import balanced_latin_square


def _load(folder: Path) -> tuple[dict, dict]:
    return json.loads((folder / "study.json").read_text()), json.loads((folder / "key.json").read_text())


def test_balanced_latin_square():
    for n in (2, 3, 4, 5):
        square = balanced_latin_square(n)
        assert len(square) == (n if n % 2 == 0 else 2 * n)
        for row in square:
            assert sorted(row) == list(range(n))
        for column in range(n):  # every symbol equally often in every column
            assert len(set(Counter(row[column] for row in square).values())) == 1
    # carry-over balance for even n: each ordered pair of neighbours exactly once
    pairs = Counter((row[i], row[i + 1]) for row in balanced_latin_square(4) for i in range(3))
    assert set(pairs.values()) == {1} and len(pairs) == 12


def test_single_design_is_balanced_per_rater(runs, tmp_path):
    more = make_runs(tmp_path / "six", references=6)
    plan = build_study(more, tmp_path / "study", raters=5, seed=3)
    study, key = _load(plan.folder)
    assert plan.groups == 6 and plan.items == 18 and plan.per_rater == 18
    for rater in study["raters"]:
        sequence = rater["sequence"]
        assert sorted(sequence) == sorted(study["items"])  # every item once
        # within each reference's block of three, each method is first, second and third equally often
        places = Counter((key["items"][item]["methods"][0], index % 3) for index, item in enumerate(sequence))
        assert set(places.values()) == {2}, places
        blocks = [{key["items"][item]["group"] for item in sequence[i:i + 3]} for i in range(0, 18, 3)]
        assert all(len(block) == 1 for block in blocks)
    orders = {tuple(rater["sequence"]) for rater in study["raters"]}
    assert len(orders) == 5  # randomised per rater


def test_pair_design_sides_are_balanced(runs, tmp_path):
    plan = build_study(runs, tmp_path / "study", design="pair", raters=4, seed=1)
    study, key = _load(plan.folder)
    assert 12 < plan.items <= 24  # 4 references × 3 pairs, each in up to two orders (sides vary by rater)
    for rater in study["raters"]:
        assert len(rater["sequence"]) == 12 and all(len(study["items"][i]["videos"]) == 2 for i in rater["sequence"])
        sides = Counter((key["items"][item]["methods"][slot], slot) for item in rater["sequence"] for slot in (0, 1))
        for method in METHODS:
            assert sides[method, 0] == sides[method, 1] == 4, sides  # 2 pairs × 4 references, half on each side
        pairs = Counter(frozenset(key["items"][item]["methods"]) for item in rater["sequence"])
        assert set(pairs.values()) == {4}  # every pair of methods once per reference


def test_reproducible_with_a_seed(runs, tmp_path):
    first, _ = _load(build_study(runs, tmp_path / "a", raters=3, seed=7).folder)
    second, _ = _load(build_study(runs, tmp_path / "b", raters=3, seed=7).folder)
    other, _ = _load(build_study(runs, tmp_path / "c", raters=3, seed=8).folder)
    assert first["items"] == second["items"]
    assert [r["sequence"] for r in first["raters"]] == [r["sequence"] for r in second["raters"]]
    assert [r["sequence"] for r in first["raters"]] != [r["sequence"] for r in other["raters"]]
    assert first["raters"][0]["token"] != second["raters"][0]["token"]  # links are secret, never derived from the seed
    assert sorted(p.name for p in (tmp_path / "a" / "media").iterdir()) == sorted(
        p.name for p in (tmp_path / "b" / "media").iterdir())


def test_attention_checks_repeat_earlier_items(runs, tmp_path):
    plan = build_study(runs, tmp_path / "study", raters=3, attention_checks=2, seed=0)
    study, _ = _load(plan.folder)
    assert plan.per_rater == 14
    for rater in study["raters"]:
        assert len(rater["checks"]) == 2
        for position, original in rater["checks"].items():
            assert int(position) >= original + 3 and rater["sequence"][int(position)] == rater["sequence"][original]
        assert len(set(rater["sequence"])) == 12


def test_pages_are_blinded(runs, tmp_path):
    from fastapi.testclient import TestClient

    from fantasyid.study.serve import create_server_app

    plan = build_study(runs, tmp_path / "study", design="pair", raters=2, attention_checks=1)
    study, key = _load(plan.folder)
    secrets = [*METHODS, *(Path(run).name for run in key["runs"]), "runs", "key.json",
               *(Path(v["source"]).stem for v in key["videos"].values())]  # fmt: skip
    with TestClient(create_server_app(plan.folder)) as client:
        pages = [client.get("/").text]
        for rater in study["raters"]:
            for position in range(len(rater["sequence"])):
                page = client.get(f"/r/{rater['token']}").text
                pages.append(page)
                assert f"value='{position}'" in page
                form = {"position": str(position), **{f"s{s}_{c}": "5" for s in (0, 1) for c in study["criteria"]}}
                assert client.post(f"/r/{rater['token']}/answer", data=form).status_code == 200  # → next item
            assert "Thank you" in client.get(f"/r/{rater['token']}").text
        assert client.get("/key.json").status_code == 404 and client.get("/media/../key.json").status_code == 404
        assert client.get("/r/not-a-token").status_code == 404
    for page in pages:
        for secret in secrets:
            assert secret.lower() not in page.lower(), secret
    assert all(name.split(".")[0].isalnum() for name in key["videos"])  # media names are random hex


def test_bad_requests(runs, tmp_path):
    with pytest.raises(InputError, match="unknown design 'trio'"):
        build_study(runs, tmp_path / "s", design="trio")
    with pytest.raises(InputError, match="does not exist"):
        build_study([tmp_path / "nope"], tmp_path / "s")
    with pytest.raises(InputError, match="method names must differ"):
        build_study(runs[:2], tmp_path / "s", names=["x", "x"])
    with pytest.raises(InputError, match="too many"):
        build_study(runs, tmp_path / "s", raters=1, attention_checks=7)
    other = make_runs(tmp_path / "elsewhere", methods=("baseline",), references=2)
    for video in other[0].glob("*.json"):  # other people: no reference in common
        data = json.loads(video.read_text())
        data["ref_sha256"] = "0" * 64
        video.write_text(json.dumps(data))
    with pytest.raises(InputError, match="no reference has a video from every method"):
        build_study([runs[0], other[0]], tmp_path / "s2")
    build_study(runs, tmp_path / "s3", raters=1)
    with pytest.raises(InputError, match="already holds a study"):
        build_study(runs, tmp_path / "s3", raters=1)
