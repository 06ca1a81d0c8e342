"""The seed and the negative prompt reach the sampler: against diffusers' own CogVideoX I2V pipeline (no identity),
and through `run_generation` (what `fantasyid generate` runs) by a second seed and a second negative prompt."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
from diffusers import CogVideoXImageToVideoPipeline

from fantasyid.pipelines.pipeline_fantasyid import FantasyIDPipeline
from fantasyid.pipelines.tiny import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, build_tiny_components

CALL = dict(height=TINY_HEIGHT, width=TINY_WIDTH, num_frames=TINY_FRAMES, num_inference_steps=2)


def test_negative_prompt_and_seed_as_diffusers_uses_them():
    components = build_tiny_components(with_identity=False)
    ours = FantasyIDPipeline(**components)
    reference = CogVideoXImageToVideoPipeline(**{k: v for k, v in components.items() if k != "identity_encoder"})
    for pipe in (ours, reference):
        pipe.set_progress_bar_config(disable=True)
    image = PIL.Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    length = components["transformer"].config.max_text_seq_length
    frames = {}
    for negative, seed in (("", 3), ("blurry, distorted", 3), ("", 4)):
        got = ours(image, "a woman smiles", negative_prompt=negative, use_identity=False,
                   generator=torch.Generator().manual_seed(seed), **CALL).frames
        expected = reference(image, "a woman smiles", negative_prompt=negative, guidance_scale=6.0,
                             output_type="np", max_sequence_length=length,
                             generator=torch.Generator().manual_seed(seed), **CALL).frames
        np.testing.assert_array_equal(got, expected)
        frames[negative, seed] = got
    assert np.abs(frames["blurry, distorted", 3] - frames["", 3]).mean() > 1e-3  # the check can tell them apart
    assert np.abs(frames["", 4] - frames["", 3]).mean() > 1e-3


def test_run_generation_uses_each_items_seed_and_the_negative_prompt(tmp_path, monkeypatch):
    import imageio.v3 as iio
    from rich.console import Console
    from skimage import data

    from fantasyid.generate import GenerateSettings, GenerationItem, run_generation
    from fantasyid.pipelines.loading import load_pipeline

    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    ref = tmp_path / "astronaut.png"
    PIL.Image.fromarray(data.astronaut()).save(ref)
    loaded = load_pipeline("tiny", device="cpu")

    def make(folder: str, negative: str, seed: int | None) -> np.ndarray:
        settings = GenerateSettings.for_model("tiny", steps=2, seed=5)
        settings.negative_prompt = negative
        run_generation([GenerationItem(ref=ref, prompt="a woman smiles", seed=seed)], settings, tmp_path / folder,
                       model="tiny", console=Console(quiet=True), loaded=loaded)
        (video,) = (tmp_path / folder).glob("*.mp4")
        return iio.imread(video, plugin="pyav").astype(np.float64)

    base = make("a", "", None)  # the settings' seed, 5
    np.testing.assert_array_equal(make("b", "", 5), base)  # the same seed given by the item: the same video
    assert np.abs(make("c", "", 6) - base).mean() > 0.5  # another seed: another video
    assert np.abs(make("d", "blurry, distorted", None) - base).mean() > 0.5  # another negative prompt too
