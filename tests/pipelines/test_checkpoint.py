"""Our checkpoint format: a saved tiny pipeline loads back and makes the same frames, for both variants; a folder
that does not fit is a one-line error naming what is wrong; the paper variant's identity width is METHOD.md's."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import PIL.Image
import pytest
import torch

from fantasyid.errors import CheckpointError, ConfigError, InputError
from fantasyid.pipelines.checkpoint import is_fantasyid_checkpoint, save_fantasyid_checkpoint
from fantasyid.pipelines.loading import load_pipeline

CALL = dict(height=64, width=64, num_frames=9, num_inference_steps=2)


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return PIL.Image.fromarray(data.astronaut())


def _copy(folder, target):
    """A copy made of hard links (fast); rewrite a file in it only after unlinking it."""
    shutil.copytree(folder, target, copy_function=os.link)
    return target


def _frames(pipe, image):
    pipe.set_progress_bar_config(disable=True)
    return pipe(image, "a woman smiles", generator=torch.Generator().manual_seed(5), **CALL).frames[0]


@pytest.fixture(scope="module", params=["released", "paper"])
def saved(request, tmp_path_factory, face_root):
    """A tiny pipeline of one variant (identity weights made visible), saved; with its frames."""
    loaded = load_pipeline("tiny", device="cpu", variant=request.param, face_root=str(face_root))
    with torch.no_grad():  # a fresh adapter is ~0 (paper: zero-gain norm); make the identity matter
        for parameter in loaded.pipe.transformer.identity_parameters():
            parameter.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp(f"ckpt_{request.param}") / "model"
    save_fantasyid_checkpoint(loaded.pipe, folder, info={"random_weights": True, "training": {"steps": 0}})
    return request.param, folder, loaded


def test_round_trip_same_frames(saved, astronaut, tmp_path, monkeypatch):
    variant, folder, loaded = saved
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "empty_home"))  # nothing but the folder (and the wheel)
    assert is_fantasyid_checkpoint(folder)
    again = load_pipeline(str(folder), device="cpu")
    assert again.variant == variant and again.pipe.shape_estimator.mode == variant
    assert again.info["training"] == {"steps": 0} and again.info["identity_variant"] == variant
    expected = _frames(loaded.pipe, astronaut)
    np.testing.assert_array_equal(_frames(again.pipe, astronaut), expected)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["fantasyid"]["format_version"] == 1 and index["fantasyid"]["shape_mode"] == variant
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pt"))


def test_the_other_variant_is_refused(saved):
    variant, folder, _ = saved
    other = "paper" if variant == "released" else "released"
    with pytest.raises(ConfigError, match=f"is a {variant} checkpoint, not {other}"):
        load_pipeline(str(folder), device="cpu", variant=other)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda index: index.pop("vae"), "lacks the key 'vae'"),
        (lambda index: index.update(controlnet=["diffusers", "ControlNetModel"]), "unexpected key 'controlnet'"),
        (lambda index: index["fantasyid"].pop("variant"), "lacks the key 'variant'"),
        (lambda index: index["fantasyid"].update(format_version=7), "format version 7"),
    ],
)
def test_model_index_that_does_not_fit(saved, tmp_path, change, message):
    _, folder, _ = saved
    copy = _copy(folder, tmp_path / "copy")
    index = json.loads((copy / "model_index.json").read_text())
    change(index)
    (copy / "model_index.json").unlink()
    (copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=message) as caught:
        load_pipeline(str(copy), device="cpu")
    assert "\n" not in caught.value.message


def test_state_dict_with_a_missing_or_extra_key(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder, _ = saved
    for edit, message in (("drop", "1 missing: "), ("add", "1 unexpected: stray.weight")):
        copy = _copy(folder, tmp_path / edit)
        (weights,) = (copy / "identity_encoder").glob("*.safetensors")
        state = load_file(str(weights))
        dropped = sorted(state)[0]
        if edit == "drop":
            del state[dropped]
            message += dropped
        else:
            state["stray.weight"] = torch.zeros(1)
        weights.unlink()
        save_file(state, str(weights))
        with pytest.raises(CheckpointError, match=f"identity_encoder/: .*{message}"):
            load_pipeline(str(copy), device="cpu")


def test_missing_component_folder(saved, tmp_path):
    _, folder, _ = saved
    copy = _copy(folder, tmp_path / "copy")
    shutil.rmtree(copy / "image_encoder")
    with pytest.raises(CheckpointError, match="has no image_encoder/ folder"):
        load_pipeline(str(copy), device="cpu")


def test_paper_needs_our_format_not_the_release_layout(tmp_path):
    (tmp_path / "transformer").mkdir()
    with pytest.raises(ConfigError, match="paper variant needs a checkpoint in fantasyid's own format"):
        load_pipeline(str(tmp_path), device="cpu", variant="paper")


def test_shape_file_of_the_other_mode_is_refused(tmp_path):
    from fantasyid.face.shape import check_shape_mode

    path = tmp_path / "shape.npz"
    np.savez(path, vertices=np.zeros((1, 5, 3), np.float32), mode=np.array("paper"))
    check_shape_mode(path, "paper")
    with pytest.raises(InputError, match="written for the paper mode, but this model is the released variant"):
        check_shape_mode(path, "released")


def test_paper_identity_width_is_the_dit_hidden_size():
    """METHOD.md "Identity width (pinned)": paper lifts C′ to 3072 (48 × 64), injection 16 heads × 128; released
    stays 2048."""
    from accelerate import init_empty_weights

    from fantasyid.models.configs import identity_encoder_config, transformer_config
    from fantasyid.models.identity_encoder import FantasyIDIdentityEncoder
    from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel

    for name, width in (("paper", 3072), ("released", 2048)):
        t_config, e_config = transformer_config(name), identity_encoder_config(name)
        assert t_config["identity_dim"] == e_config["identity_dim"] == width
        assert (t_config["identity_num_heads"], t_config["identity_head_dim"]) == (16, 128)
        with init_empty_weights():
            encoder = FantasyIDIdentityEncoder(**e_config)
            transformer = FantasyIDTransformer3DModel(**{**t_config, "num_layers": 1})
        convs = [m for m in encoder.reducer.blocks[-1].modules() if isinstance(m, torch.nn.Conv1d)]
        assert convs and all(conv.out_channels == width for conv in convs)
        kv = [m for n, m in transformer.named_modules() if n.endswith("to_kv")][0]
        assert kv.in_features == width
    paper = transformer_config("paper")
    assert paper["identity_dim"] == paper["num_attention_heads"] * paper["attention_head_dim"]


def test_generate_cli_with_a_saved_checkpoint(saved, astronaut, tmp_path, monkeypatch, capsys):
    from typer.testing import CliRunner

    from fantasyid_cli.main import app, main

    variant, folder, _ = saved
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    astronaut.save(tmp_path / "me.png")
    # no --frames/--height/--width: the sizes default to the ones the saved model was built for (9 × 64 × 64)
    common = ["generate", "--model", str(folder), "--variant", variant, "--ref", str(tmp_path / "me.png"),
              "--prompt", "a woman smiles", "--steps", "2"]
    result = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (sidecar,) = (tmp_path / "out").glob("*.json")
    record = json.loads(sidecar.read_text())
    assert record["model"]["identity_variant"] == variant
    assert (record["settings"]["frames"], record["settings"]["height"], record["settings"]["width"]) == (9, 64, 64)

    other = "paper" if variant == "released" else "released"
    shape = tmp_path / "shape.npz"
    np.savez(shape, vertices=np.zeros((1, 642, 3), np.float32), mode=np.array(other))
    monkeypatch.delenv("FANTASYID_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        main([*common, "--out", str(tmp_path / "out2"), "--shape", str(shape)])
    assert exited.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: 'shape.npz' was written for the {other} mode, but this model is the {variant} variant" in err


def test_models_command_reads_our_format(saved, tmp_path):
    from fantasyid.pipelines.inventory import check_model

    variant, folder, _ = saved
    (report,) = check_model(str(folder))  # the tiny model carries its own DECA + FLAME: nothing else needed
    assert report.found and report.what == f"a fantasyid checkpoint ({variant} variant)"
    copy = _copy(folder, tmp_path / "copy")
    shutil.rmtree(copy / "vae")
    (report,) = check_model(str(copy))
    assert not report.found and "has no vae/ folder" in report.where
    shutil.rmtree(copy / "shape_estimator")
    shutil.copytree(folder / "vae", copy / "vae", copy_function=os.link)
    reports = check_model(str(copy), flame=str(tmp_path / "none.pkl"))
    assert [r.name for r in reports] == ["fantasyid", "flame", "deca"] and not reports[1].found
