"""The w/o FA and w/o FV ablations export and generate: the exported identity encoder's config records the switch,
the loaded pipeline's encoder forms identity tokens exactly as the trained module did, and `fantasyid generate
--model EXPORTED` makes a video."""

from __future__ import annotations

import json

import pytest
import torch
from train_fixtures import generate_with, keep_components, tiny_config

from fantasyid.training.loop import train

ABLATIONS = {  # model switch → (the encoder config key it must record, its value)
    "wo-fa": ({"face_abstractor": "qformer"}, "face_abstractor_type", "qformer"),
    "wo-fv": ({"vertex_tokens": False}, "vertex_tokens", False),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablation_exports_and_generates(name, identity_data, tmp_path, monkeypatch):
    switch, key, value = ABLATIONS[name]
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    captured = keep_components(monkeypatch)
    config = tiny_config(identity_data, tmp_path / "run", model={"variant": "paper", **switch},
                         train={"max_steps": 2}, checkpoint={"every": 0, "export": True})
    result = train(config)
    assert result.export == tmp_path / "run" / "export"
    saved = json.loads((result.export / "identity_encoder" / "config.json").read_text())
    assert saved[key] == value

    # the pipeline gets the switch: the loaded encoder gives the trained branch's tokens (same weights, same path)
    from fantasyid.pipelines.loading import load_pipeline

    encoder = load_pipeline(str(result.export), device="cpu", dtype="fp32", shape_needed=False).pipe.identity_encoder
    branch = captured["components"].module.identity.eval()
    c = encoder.config
    torch.manual_seed(0)
    clip = [torch.randn(1, c.clip_grid_size**2 + 1, c.clip_hidden_dim) for _ in range(c.num_clip_layers)]
    vertices = torch.randn(1, c.mesh_num_vertices[0], 3) * 0.1
    with torch.no_grad():
        want, got = branch(clip, vertices), encoder(clip, vertices)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert got.shape[1] == encoder.num_identity_tokens
    if name == "wo-fa":
        assert type(encoder.face_abstractor).__name__ == "QFormerAbstractor"
    else:
        assert encoder.num_identity_tokens == encoder.num_face_tokens  # the face tokens alone

    generate_with(result.export, tmp_path)

    # without the shape estimator saved beside it (a real export from the release's weights has none: DECA is
    # licensed), w/o FV still generates, needing no DECA; the others ask for it
    import shutil

    from fantasyid.pipelines.checkpoint import SHAPE_DIR

    shutil.rmtree(result.export / SHAPE_DIR)
    (tmp_path / "no-deca").mkdir()
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "empty-home"))
    if name == "wo-fv":
        generate_with(result.export, tmp_path / "no-deca")
    else:
        from typer.testing import CliRunner

        from fantasyid_cli.main import app

        run = CliRunner().invoke(app, ["generate", "--model", str(result.export), "--ref", str(tmp_path / "me.png"),
                                       "--prompt", "a woman smiles", "--out", str(tmp_path / "no-deca" / "videos")])
        assert run.exit_code == 1, (run.output, run.exception)
        assert "deca" in (run.output + str(run.exception)).lower(), (run.output, run.exception)
