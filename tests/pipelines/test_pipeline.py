"""FantasyIDPipeline at tiny size: CogVideoX equivalence without identity, determinism, the identity's effect."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import CogVideoXImageToVideoPipeline

from fantasyid.errors import NoFaceError
from fantasyid.pipelines.pipeline_fantasyid import FantasyIDPipeline
from fantasyid.pipelines.tiny import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, build_tiny_components

CALL = dict(height=TINY_HEIGHT, width=TINY_WIDTH, num_frames=TINY_FRAMES, num_inference_steps=3)


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return PIL.Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fantasyid.pipelines.loading import load_pipeline

    loaded = load_pipeline("tiny", device="cpu", face_root=str(tmp_path_factory.mktemp("home")))
    loaded.pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():  # a trained adapter is not ~0; make the random one visible
        for p in loaded.pipe.transformer.identity_parameters():
            p.normal_(0, 0.3)
    return loaded


def test_without_identity_equals_diffusers_cogvideox_i2v():
    components = build_tiny_components(with_identity=False)
    ours = FantasyIDPipeline(**components)
    ours.set_progress_bar_config(disable=True)
    reference = CogVideoXImageToVideoPipeline(**{k: v for k, v in components.items() if k != "identity_encoder"})
    reference.set_progress_bar_config(disable=True)
    image = PIL.Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    got = ours(image, "a woman smiles", use_identity=False, generator=torch.Generator().manual_seed(3), **CALL).frames
    expected = reference(
        image, "a woman smiles", negative_prompt="", guidance_scale=6.0, output_type="np",
        max_sequence_length=components["transformer"].config.max_text_seq_length,
        generator=torch.Generator().manual_seed(3), **CALL,
    ).frames
    assert got.shape == (1, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, 3)
    np.testing.assert_array_equal(got, expected)


def test_same_seed_same_video_and_identity_matters(tiny, astronaut):
    pipe = tiny.pipe
    a = pipe(astronaut, "a woman smiles", generator=torch.Generator().manual_seed(1), **CALL)
    b = pipe(astronaut, "a woman smiles", generator=torch.Generator().manual_seed(1), **CALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.identity is not None and a.identity.num_faces == 1
    # the identity branch changes the result (the first frame being the aligned face: test_first_frame_*)
    plain = pipe(a.identity.face_image, "a woman smiles", use_identity=False,
                 generator=torch.Generator().manual_seed(1), **CALL)
    assert np.abs(plain.frames - a.frames).mean() > 1e-4
    other = pipe(astronaut, "a woman smiles", identity=a.identity,
                 vertices=a.identity.vertices + 0.05, generator=torch.Generator().manual_seed(1), **CALL)
    assert np.abs(other.frames - a.frames).mean() > 1e-4


def _first_frames(pipe, monkeypatch) -> list:
    """Record the I2V condition (the pixels VAE-encoded as latent frame 0) of every call."""
    seen = []
    original = pipe.prepare_latents

    def recording(image, *args, **kwargs):
        seen.append(image.detach().clone())
        return original(image, *args, **kwargs)

    monkeypatch.setattr(pipe, "prepare_latents", recording)
    return seen


def test_first_frame_is_the_aligned_crop_also_with_an_identity_cache(tiny, astronaut, monkeypatch):
    pipe = tiny.pipe
    seen = _first_frames(pipe, monkeypatch)
    identity = pipe.identity_inputs(astronaut)
    aligned = pipe.video_processor.preprocess(identity.face_image, height=CALL["height"], width=CALL["width"])
    photo = pipe.video_processor.preprocess(astronaut, height=CALL["height"], width=CALL["width"])
    assert (aligned - photo).abs().mean() > 0.05  # the two differ: the checks below can tell them apart
    with_photo = pipe(astronaut, "a man", generator=torch.Generator().manual_seed(0), **CALL).frames
    cache = pipe.encode_identity(identity)
    with_cache = pipe(astronaut, "a man", identity_cache=cache, generator=torch.Generator().manual_seed(0), **CALL)
    assert len(seen) == 2
    torch.testing.assert_close(seen[0], aligned, rtol=0, atol=0)
    torch.testing.assert_close(seen[1], aligned, rtol=0, atol=0)
    np.testing.assert_array_equal(with_cache.frames, with_photo)


def test_photo_is_fitted_to_a_1024_px_long_side_before_alignment(tiny, astronaut):
    from fantasyid.face import fit_long_side

    pipe = tiny.pipe
    big = np.asarray(astronaut.resize((1536, 2048), PIL.Image.Resampling.BICUBIC))  # (2048, 1536, 3)
    identity = pipe.identity_inputs(big)
    fitted = fit_long_side(big, 1024)
    assert fitted.shape == (1024, 768, 3)
    face = pipe.face_analyzer.detect(fitted)[0]
    np.testing.assert_array_equal(np.asarray(identity.face_image), face.crop_512)
    np.testing.assert_allclose(identity.bbox, np.asarray(face.bbox) * 2.0, rtol=1e-5)  # in the photo's pixels


def test_identity_is_encoded_once_per_video(tiny, astronaut, monkeypatch):
    pipe = tiny.pipe
    calls = []
    original = pipe.identity_encoder.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe.identity_encoder, "forward", counting)
    pipe(astronaut, "a man walks", generator=torch.Generator().manual_seed(0), **CALL)
    assert len(calls) == 1


def test_no_face_is_a_clear_error(tiny):
    blank = PIL.Image.new("RGB", (256, 256), (120, 160, 200))
    with pytest.raises(NoFaceError):
        tiny.pipe(blank, "a woman smiles", **CALL)
