"""The export: a folder `fantasyid generate --model PATH` takes, with the training config and manifest hash in it;
LoRA is fused into it; --export-only exports a checkpoint."""

from __future__ import annotations

import json

import torch
from train_fixtures import generate_with, keep_components, tiny_config

from fantasyid.data.manifest import manifest_sha256
from fantasyid.training.loop import export_checkpoint, train


def test_export_generates_a_video_and_records_the_run(identity_data, tmp_path, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    captured = keep_components(monkeypatch)
    config = tiny_config(identity_data, tmp_path / "run", train={"max_steps": 2}, checkpoint={"export": True})
    result = train(config)
    assert result.export == tmp_path / "run" / "export"
    block = json.loads((result.export / "model_index.json").read_text())["fantasyid"]
    assert block["manifest_sha256"] == manifest_sha256(identity_data)
    assert block["training_config"]["optim"]["lr"] == config.optim.lr and block["step"] == 2
    assert block["face_pack"] == "buffalo_sc" and block["random_weights"] is True
    # trained from the tiny model, validation off: the tiny model's 4 steps, not the release's 50
    assert block["generation_defaults"] == {"steps": 4, "guidance": 6.0, "fps": int(config.data.fps)}

    from safetensors.torch import load_file

    saved = load_file(str(result.export / "transformer" / "diffusion_pytorch_model.safetensors"))
    trained = dict(captured["components"].module.transformer.named_parameters())
    assert all(torch.equal(saved[k], trained[k]) for k in trained)  # the trained weights, not the initial ones

    video = generate_with(result.export, tmp_path)
    settings = json.loads(video.with_suffix(".json").read_text())["settings"]  # the model's own defaults
    built_for = json.loads((result.export / "transformer" / "config.json").read_text())["sample_frames"]
    assert (settings["steps"], settings["frames"], settings["height"], settings["width"], settings["fps"]) == (
        4, built_for, config.data.height, config.data.width, 8)


def test_lora_trains_only_adapters_and_identity_and_is_fused_in_the_export(identity_data, tmp_path, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    captured = keep_components(monkeypatch)
    config = tiny_config(identity_data, tmp_path / "run", model={"trainable": "lora", "lora_rank": 4},
                         train={"max_steps": 2}, checkpoint={"every": 0})
    train(config)
    module = captured["components"].module
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".identity_attention." in n or n.startswith("identity.")
                             for n in trainable)
    assert any("lora_B" in n for n in trainable)
    lora_b = [p for n, p in module.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # the adapters moved from their zero start

    folder = export_checkpoint(config, "latest")
    from fantasyid.pipelines.loading import load_pipeline

    exported = load_pipeline(str(folder), device="cpu", dtype="fp32", shape_needed=False).pipe.transformer
    assert not any("lora" in k for k in exported.state_dict())
    torch.manual_seed(0)
    x = torch.randn(1, 2, 8, 8, 8)
    text = torch.randn(1, 8, 16)
    t = torch.tensor([500])
    module.eval()
    with torch.no_grad():
        want = module.transformer(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
        got = exported(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_validation_generates_and_scores_held_out_references(identity_data, tmp_path, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    config = tiny_config(identity_data, tmp_path / "run", data={"holdout": 1, "frames": 9},
                         train={"max_steps": 1}, checkpoint={"every": 0},
                         validation={"every": 1, "references": 1, "steps": 2})
    train(config)
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "validation.jsonl").read_text().splitlines()]
    assert record["step"] == 1 and record["videos"] == 1 and record["face_pack"] == "buffalo_sc"
    folder = tmp_path / "run" / "validation" / "step-1"
    (video,) = folder.glob("*.mp4")
    assert (folder / "refs" / f"{video.stem}.png").is_file()
    assert (folder / "metrics" / "summary.json").is_file()
    # the held-out clip is not trained on: the training dataset has the other two
    from fantasyid.data.dataset import ClipDataset

    train_ids = {row["clip_id"] for row in ClipDataset(identity_data, frames=9, height=64, width=64, fps=8, views=6,
                                                       clip_image_size=16, num_vertices=642, holdout=1).rows}
    assert video.stem not in train_ids and len(train_ids) == 2
