"""``fantasyid bench fetch``: the benchmarks' inputs as a generate batch file and a manifest, from small synthetic
stand-ins in the datasets' own formats (served from a local folder: no network), and the one-line errors offline
and for an incomplete copy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fantasyid.generation.prompts import read_prompt_file


def _png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


@pytest.fixture
def opens2v_copy(tmp_path) -> Path:
    """OpenS2V-Eval's layout: Human-Domain_Eval.json at the root, images at their img_paths."""
    root = tmp_path / "OpenS2V-Eval"
    cases = {
        "singleface_1": {"img_paths": ["Images/singleface/crop_woman/12.jpg"], "prompt": "A woman in armor. ",
                         "synthesis_flag": "Wrong", "class_label": ["Woman"]},
        "singlehuman_2": {"img_paths": ["Images/singlehuman/crop_man/5.png"], "prompt": "A man with flowers.",
                          "synthesis_flag": "wrong", "class_label": ["Man"]},
    }
    root.mkdir()
    (root / "Human-Domain_Eval.json").write_text(json.dumps(cases), encoding="utf-8")
    _png(root / "Images/singleface/crop_woman/12.jpg", 10)
    _png(root / "Images/singlehuman/crop_man/5.png", 20)
    return root


@pytest.fixture
def consisid_copy(tmp_path) -> Path:
    """ConsisID-preview-Data's layout: video_caption_eval_old.csv and eval/face_images."""
    root = tmp_path / "ConsisID-preview-Data"
    root.mkdir()
    with (root / "video_caption_eval_old.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "Class", "Original_Prompt", "Refined_man", "Refined_woman"])
        writer.writerow([1, "chef", "a chef", "A {class_token}, he cooks.", "A {class_token}, she cooks."])
        writer.writerow([2, "pilot", "a pilot", "The {class_token} waves; he smiles.", "The {class_token} waves."])
    _png(root / "eval/face_images/10_man.png", 30)
    _png(root / "eval/face_images/2_woman.png", 40)
    (root / "eval/face_images/notes.txt").write_text("not an image", encoding="utf-8")
    return root


def test_opens2v_human_batch_and_manifest(opens2v_copy, tmp_path, run_main):
    out = tmp_path / "bench"
    code, _, stderr = run_main(["bench", "fetch", "opens2v-human", "--source", str(opens2v_copy), "--out", str(out)])
    assert code == 0, stderr
    items, bad = read_prompt_file(out / "prompts.jsonl")  # the generate --prompts reader accepts it
    assert not bad
    assert [(i.name, i.prompt) for i in items] == [("singleface_1", "A woman in armor."),
                                                   ("singlehuman_2", "A man with flowers.")]
    assert items[0].ref.read_bytes() == (opens2v_copy / "Images/singleface/crop_woman/12.jpg").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["protocol"] == "opens2v-human" and manifest["dataset"] == "BestWishYsh/OpenS2V-Eval"
    assert manifest["videos"] == 2 and manifest["references"] == 2
    import hashlib

    assert manifest["items"][1]["ref_sha256"] == hashlib.sha256(items[1].ref.read_bytes()).hexdigest()
    assert manifest["items"][1]["class_label"] == ["Man"]


def test_consisid_every_image_with_every_prompt(consisid_copy, tmp_path, run_main):
    out = tmp_path / "bench"
    code, _, stderr = run_main(["bench", "fetch", "consisid", "--source", str(consisid_copy), "--out", str(out)])
    assert code == 0, stderr
    items, bad = read_prompt_file(out / "prompts.jsonl")
    assert not bad
    # natsort order (2 before 10), the woman/man template by the image's name, {class_token} → Class
    assert [(i.name, i.prompt) for i in items] == [
        ("2_woman.png--1", "A chef, she cooks."),
        ("2_woman.png--2", "The pilot waves."),
        ("10_man.png--1", "A chef, he cooks."),
        ("10_man.png--2", "The pilot waves; he smiles."),
    ]
    assert items[0].ref.read_bytes() == (consisid_copy / "eval/face_images/2_woman.png").read_bytes()
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["references"] == 2


def test_incomplete_copy_and_offline_are_one_line(opens2v_copy, tmp_path, run_main, monkeypatch):
    (opens2v_copy / "Images/singlehuman/crop_man/5.png").unlink()
    code, _, stderr = run_main(["bench", "fetch", "opens2v-human", "--source", str(opens2v_copy),
                                "--out", str(tmp_path / "a")])
    assert code == 1
    assert stderr.splitlines()[0] == (f"error: opens2v-human: 1 of 2 reference images are missing from {opens2v_copy}: "
                                      "Images/singlehuman/crop_man/5.png")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    code, _, stderr = run_main(["bench", "fetch", "consisid", "--out", str(tmp_path / "b")])
    assert code == 1
    assert stderr.splitlines()[0] == ("error: cannot download video_caption_eval_old.csv of consisid from the Hugging "
                                      "Face dataset BestWishYsh/ConsisID-preview-Data (HF_HUB_OFFLINE is set)")
    assert "--source" in stderr.splitlines()[1]
    code, _, stderr = run_main(["bench", "fetch", "vbench", "--out", str(tmp_path / "c")])
    assert code == 2 and "unknown benchmark" in stderr
