"""Checks before loading: the device exists, the dtype runs on it, the size is one the model makes (issue 11, 6–7)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fantasyid.errors import InputError
from fantasyid.pipelines.checks import check_size, fixed_size, pick_device, pick_dtype
from fantasyid.pipelines.loading import load_pipeline


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def old_gpu(monkeypatch):
    """One CUDA GPU without native bfloat16 (a V100, say)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")


def test_cuda_without_a_gpu_is_one_line_before_loading(no_gpu, tmp_path):
    home = tmp_path / "home"
    with pytest.raises(InputError, match="--device cuda: PyTorch sees no CUDA GPU") as caught:
        load_pipeline("tiny", device="cuda", face_root=str(home))
    assert "--device cpu" in caught.value.hint
    assert not home.exists()  # nothing was loaded or installed
    assert pick_device("auto").type == "cpu"


def test_gpu_index_past_the_last_gpu(old_gpu):
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(InputError, match="has 1 CUDA GPU"):
        pick_device("cuda:3")
    with pytest.raises(InputError, match="unknown device"):
        pick_device("gpu")


def test_bf16_on_a_gpu_without_it(old_gpu):
    with pytest.raises(InputError, match="--dtype bf16: Tesla V100 has no native bfloat16") as caught:
        pick_dtype("bf16", torch.device("cuda"))
    assert "fp16" in caught.value.hint
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # PyTorch's CPU kernels have bf16
    with pytest.raises(InputError, match="unknown dtype"):
        pick_dtype("int8", torch.device("cpu"))


def test_bf16_on_an_old_gpu_fails_before_loading(old_gpu, tmp_path):
    with pytest.raises(InputError, match="bfloat16"):
        load_pipeline("tiny", device="cuda", dtype="bf16", face_root=str(tmp_path / "home"))
    assert not (tmp_path / "home").exists()


def _release_layout(folder, learned=True):
    (folder / "transformer").mkdir(parents=True)
    (folder / "vae").mkdir()
    config = {"use_learned_positional_embeddings": learned, "sample_height": 60, "sample_width": 90}
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [128, 256, 256, 512]}))
    return folder


def test_fixed_size_model_refuses_other_sizes_up_front(tmp_path):
    folder = _release_layout(tmp_path / "ckpt")  # no weights at all: the refusal must come before reading them
    assert fixed_size(folder) == (480, 720)
    with pytest.raises(InputError, match=r"makes 720×480 \(width×height\) videos only") as caught:
        load_pipeline(str(folder), device="cpu", height=480, width=480)
    assert caught.value.hint == "use --height 480 --width 720"
    assert fixed_size(_release_layout(tmp_path / "rope_only", learned=False)) is None
    check_size(480, 720, (480, 720), "x")
    with pytest.raises(InputError, match="multiple of 16"):
        check_size(100, 720, None, "tiny")


def test_tiny_is_built_for_the_requested_size(tmp_path):
    import PIL.Image
    from skimage import data

    loaded = load_pipeline("tiny", device="cpu", face_root=str(tmp_path / "home"), height=64, width=96)
    assert (loaded.pipe.transformer.config.sample_height, loaded.pipe.transformer.config.sample_width) == (8, 12)
    loaded.pipe.set_progress_bar_config(disable=True)
    frames = loaded.pipe(PIL.Image.fromarray(data.astronaut()), "a woman smiles", height=64, width=96, num_frames=9,
                         num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 9, 64, 96, 3) and np.ptp(frames) > 0


def test_generate_cli_tiny_at_another_size(tmp_path, monkeypatch):
    import imageio.v3 as iio
    import PIL.Image
    from skimage import data
    from typer.testing import CliRunner

    from fantasyid_cli.main import app

    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    PIL.Image.fromarray(data.astronaut()).save(tmp_path / "me.png")
    argv = ["generate", "--model", "tiny", "--ref", str(tmp_path / "me.png"), "--prompt", "a woman smiles",
            "--height", "64", "--width", "96", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    (video,) = (tmp_path / "o").glob("*.mp4")
    assert iio.imread(video, plugin="pyav").shape == (9, 64, 96, 3)
