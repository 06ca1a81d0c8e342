"""The wiring of ``fantasyid eval --protocol``: the run aggregation against hand computations from the protocols'
definitions, the tables' units and baselines section, the checks that come before any decoding (unknown protocol,
missing weights, missing scorer, missing prompt), the merge's refusal of mixed protocols, the grey-padded retry of
the face lookup on a real face, and ``fantasyid models --protocol``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fantasyid.errors import ConfigError, InputError
from fantasyid.metrics.protocols.aggregate import aggregate_run
from fantasyid.metrics.protocols.definitions import CONSISID, OPENS2V_HUMAN
from fantasyid.metrics.results import EvalSummary, RunResult, VideoResult


def _row(values: list[dict[str, float | None]]) -> RunResult:
    row = RunResult("run", Path("run"))
    row.videos = [VideoResult("run", Path(f"v{i}.mp4"), scores=dict(v)) for i, v in enumerate(values)]
    return row


def test_consisid_run_values_are_plain_means_over_the_videos_with_a_value():
    row = _row([
        {"facesim_arc": 0.5, "facesim_cur": 0.25, "clipscore": 30.0, "fid_ref": 100.0},
        {"facesim_arc": 0.7, "facesim_cur": 0.0, "clipscore": 20.0, "fid_ref": 300.0},  # no face: 0.0 counts
        {"facesim_arc": None, "facesim_cur": None, "clipscore": None, "fid_ref": None},  # unreadable: left out
    ])
    aggregate_run(CONSISID, row)
    assert row.scores == pytest.approx({"facesim_arc": 0.6, "facesim_cur": 0.125, "clipscore": 25.0, "fid_ref": 200.0})


def test_opens2v_run_values_clip_normalise_and_weigh_as_merge_result_does():
    row = _row([
        {"aesthetics": 3.5, "motion": -0.3, "facesim_cur": 0.4, "gmescore": 0.8, "naturalscore": 0.0},
        {"aesthetics": 6.5, "motion": 1.7, "facesim_cur": 1.2, "gmescore": 0.6, "naturalscore": 4.0},
    ])
    aggregate_run(OPENS2V_HUMAN, row)
    # by hand: aesthetics clipped to [4, 7] → 4.0, 6.5 → mean 5.25 → (5.25 − 4) / 3; motion |m| capped at 1 → 0.3,
    # 1.0 → 0.65; FaceSim capped at 1 → 0.4, 1.0 → 0.7; GmeScore 0.7; NaturalScore clipped to [1, 5] → 1, 4 → 2.5
    # → (2.5 − 1) / 4 = 0.375; total 0.15·0.41667 + 0.15·0.65 + 0.25·0.7 + 0.15·0.7 + 0.30·0.375
    expected = {"aesthetics": 1.25 / 3, "motion": 0.65, "facesim_cur": 0.7, "gmescore": 0.7, "naturalscore": 0.375}
    expected["total"] = 0.0625 + 0.0975 + 0.175 + 0.105 + 0.1125
    assert row.scores == pytest.approx(expected)
    assert list(row.scores)[-1] == "total"

    from fantasyid.metrics.tables import display_frame, markdown_table

    summary = EvalSummary(tuple(row.scores), [row], {"face_pack": {"pack": "buffalo_sc", "det_size": [320, 320]}},
                          {}, protocol="opens2v-human")
    shown = display_frame(summary)
    assert list(shown.columns)[:3] == ["Method", "Total (%) ↑", "Aesthetics (%) ↑"]
    assert shown.iloc[0]["Total (%) ↑"] == "55.25"  # percentages, as the leaderboard
    table = markdown_table(summary)
    assert "## Published baselines (not measured here)" in table
    assert "| FantasyID" in table and "49.80" in table and "results_Human-Domain.csv" in table


def test_summary_json_names_the_protocol_and_its_run_values():
    row = _row([{"facesim_arc": 0.5, "facesim_cur": 0.5, "clipscore": 1.0, "fid_ref": 2.0}])
    aggregate_run(CONSISID, row)
    data = EvalSummary(CONSISID.metric_keys, [row], {}, {}, protocol="consisid").to_dict()
    assert data["protocol"] == "consisid"
    assert data["runs"][0]["fid_ref"] == 2.0 and "rs" not in data["runs"][0]
    assert "protocol" not in EvalSummary(("rs",), [], {}, {}).to_dict()  # the paper's metrics: unchanged output


def _partial(protocol: str | None, shard: int):
    from fantasyid.metrics.shards import Partial

    config = {"metrics": ["rs"], "settings": {}, "models": {}, "runs": []}
    if protocol is not None:
        config["protocol"] = protocol
    return Partial(shard=shard, num_shards=2, config=config, provenance={}, source=Path(f"part{shard}"))


def test_merge_refuses_partials_of_different_protocols():
    from fantasyid.metrics.shards import finish

    with pytest.raises(InputError, match="--protocol consisid.*--protocol fantasyid"):
        finish([_partial(None, 0), _partial("consisid", 1)])
    with pytest.raises(InputError, match="--protocol opens2v-human.*--protocol consisid"):
        finish([_partial("consisid", 0), _partial("opens2v-human", 1)])


@pytest.fixture
def one_video(tmp_path: Path) -> Path:
    from fantasyid.io import write_json, write_video

    run = tmp_path / "run"
    run.mkdir()
    write_video(run / "v.mp4", np.zeros((2, 32, 32, 3), np.uint8), fps=8, quality=9)
    write_json(run / "v.json", {"ref": str(run / "v.mp4")})  # no prompt
    return run


def _no_decoding(monkeypatch):
    import fantasyid.metrics.protocols.evaluate as wiring

    def refuse(*args, **kwargs):
        raise AssertionError("decoded or loaded a model before the checks")

    for name in ("FrameReader", "probe", "make_face_analyzer", "build_scorers", "_plan_runs"):
        monkeypatch.setattr(wiring, name, refuse)


def test_missing_weights_are_one_line_naming_the_model_before_any_decoding(one_video, tmp_path, run_main,
                                                                          monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _no_decoding(monkeypatch)
    code, _, err = run_main(["eval", str(one_video), "--protocol", "consisid", "--out", str(tmp_path / "out")])
    assert code == 1
    assert "--protocol consisid: CurricularFace IR-101" in err and "not found" in err
    assert "hf download BestWishYsh/ConsisID-preview" in err and "--weights curricularface=PATH" in err
    assert "Traceback" not in err


def test_an_explicit_weight_that_is_missing_names_it(one_video, tmp_path, run_main, monkeypatch):
    _no_decoding(monkeypatch)
    (tmp_path / "cur.bin").write_bytes(b"x")
    code, _, err = run_main(["eval", str(one_video), "--protocol", "consisid", "--weights",
                             f"curricularface={tmp_path / 'cur.bin'}", "--weights",
                             f"clip_vit_b32={tmp_path / 'nowhere'}", "--out", str(tmp_path / "out")])
    assert code == 1 and "nowhere' does not exist" in err


def _dummy_weights(tmp_path: Path) -> dict[str, str]:
    """Files and folders that exist: enough for the existence checks that run before any model loads."""
    (tmp_path / "clip").mkdir()
    for name in ("cur.bin", "inception.pth"):
        (tmp_path / name).write_bytes(b"x")
    return {"curricularface": str(tmp_path / "cur.bin"), "clip_vit_b32": str(tmp_path / "clip"),
            "inception_v3_torchvision": str(tmp_path / "inception.pth")}


def test_a_metric_without_a_registered_scorer_stops_before_decoding(one_video, tmp_path, monkeypatch):
    from fantasyid.metrics.protocols.evaluate import evaluate_protocol
    from fantasyid.metrics.protocols.scorer import SCORERS, load_scorers

    load_scorers()
    monkeypatch.delitem(SCORERS, "clip_vit_b32")
    _no_decoding(monkeypatch)
    with pytest.raises(ConfigError, match="no scorer for CLIPScore \\(model 'clip_vit_b32'\\)"):
        evaluate_protocol([one_video], "consisid", weights=_dummy_weights(tmp_path))


def test_a_video_without_a_prompt_stops_before_decoding(one_video, tmp_path, monkeypatch):
    import fantasyid.metrics.protocols.evaluate as wiring
    from fantasyid.metrics.protocols.evaluate import evaluate_protocol

    for name in ("FrameReader", "make_face_analyzer", "build_scorers"):
        monkeypatch.setattr(wiring, name, lambda *a, **k: pytest.fail("decoded or loaded a model first"))
    with pytest.raises(InputError, match="no prompt for .*v.mp4: --protocol consisid scores CLIPScore"):
        evaluate_protocol([one_video], "consisid", weights=_dummy_weights(tmp_path))
    with pytest.raises(ConfigError, match="--weights nope: not a model"):
        evaluate_protocol([one_video], "consisid", weights={"nope": "x"})


@pytest.mark.parametrize("argv, message", [
    (["--protocol", "consisid", "--frames", "4"], "drop --frames"),
    (["--protocol", "consisid", "--metrics", "rs"], "drop --metrics"),
    (["--protocol", "bogus"], "unknown protocol 'bogus'"),
    (["--protocol", "consisid", "--weights", "curricularface"], "write KEY=PATH"),
    (["--weights", "curricularface=x.bin"], "--weights is for the models of --protocol"),
])
def test_protocol_misuse_is_a_usage_error(one_video, tmp_path, argv, message, run_main):
    code, _, err = run_main(["eval", str(one_video), *argv, "--out", str(tmp_path / "out")])
    assert code == 2 and message in " ".join(err.replace("│", " ").split())


def test_merge_takes_the_protocol_from_the_partials(tmp_path, run_main):
    code, _, err = run_main(["eval", "--merge", str(tmp_path), "--protocol", "consisid"])
    assert code == 2 and "drop --protocol" in " ".join(err.replace("│", " ").split())


class _MissesUnpadded:
    """The real analyzer, except that it finds nothing in images of the original size (a detector miss)."""

    def __init__(self, analyzer, shape):
        self.analyzer, self.shape, self.seen = analyzer, shape, []

    def detect_frames(self, frames):
        self.seen.append(frames[0].shape)
        return [[]] if frames[0].shape == self.shape else self.analyzer.detect_frames(frames)


def test_face_lookup_retries_on_the_grey_padded_image_and_shifts_the_landmarks_back(face_root):
    from skimage import data

    from fantasyid.metrics.evaluate import make_face_analyzer
    from fantasyid.metrics.protocols.evaluate import largest_face_padded

    analyzer, _ = make_face_analyzer("buffalo_sc", face_root, recognition=True, det_size=320)
    image = np.ascontiguousarray(data.astronaut()[20:260, 120:330])  # (240, 210, 3), the face inside
    direct, count = largest_face_padded(analyzer, image)
    assert count == 1 and direct is not None
    spy = _MissesUnpadded(analyzer, image.shape)
    padded, _ = largest_face_padded(spy, image)
    assert spy.seen == [(240, 210, 3), (240 + 2 * 60, 210 + 2 * 52, 3)]  # int(h · 0.25), int(w · 0.25) per side
    # the same face, in the original image's coordinates (the detector sees it at another scale: a few px apart)
    assert np.abs(padded.landmarks - direct.landmarks).max() < 3.0
    assert np.abs(padded.bbox - direct.bbox).max() < 6.0
    assert float(padded.embedding @ direct.embedding) > 0.9
    assert largest_face_padded(_MissesUnpadded(analyzer, None), np.zeros((64, 64, 3), np.uint8)) == (None, 0)


def test_models_lists_a_protocols_weights(tmp_path, run_main, monkeypatch):
    from fantasyid.metrics.protocols.weights import EVAL_WEIGHTS

    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, out, _ = run_main(["models", "--protocol", "consisid", "--json"])
    assert code == 1
    import json

    reports = {r["name"]: r for r in json.loads(out)}
    assert set(reports) == {"buffalo_sc", "curricularface", "clip_vit_b32", "inception_v3_torchvision"}
    assert not reports["curricularface"]["found"] and "BestWishYsh/ConsisID-preview" in reports["curricularface"]["how_to_get"]
    (tmp_path / EVAL_WEIGHTS["clip_vit_b32"].home_path).mkdir(parents=True)
    (tmp_path / EVAL_WEIGHTS["curricularface"].home_path).write_bytes(b"x")
    torch_cache = tmp_path / "torch" / "hub" / "checkpoints"
    torch_cache.mkdir(parents=True)
    (torch_cache / "inception_v3_google-0cc3c7bd.pth").write_bytes(b"x")  # torchvision's own cache counts
    code, out, _ = run_main(["models", "--protocol", "consisid", "--json"])
    assert code == 0 and all(r["found"] for r in json.loads(out))
