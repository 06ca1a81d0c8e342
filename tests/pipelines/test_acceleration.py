"""Cache hooks and compilation on the tiny pipeline: off is bit-identical, on skips what it says it skipped."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from fantasyid.errors import InputError
from fantasyid.pipelines.acceleration import CacheSpec, accelerate, describe_skips, remove_cache
from fantasyid.pipelines.pipeline_fantasyid import FantasyIDPipeline, IdentityInputs
from fantasyid.pipelines.tiny import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, build_tiny_components

STEPS = 10


def _pipe(num_layers: int | None = None) -> FantasyIDPipeline:
    components = build_tiny_components(with_identity=False)
    if num_layers is not None:
        from fantasyid.models.configs import transformer_config
        from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel

        config = transformer_config("tiny")
        config["num_layers"] = num_layers
        torch.manual_seed(0)
        components["transformer"] = FantasyIDTransformer3DModel(**config).eval()
    pipe = FantasyIDPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(3)
    with torch.no_grad():  # a trained adapter is not ~0: make the identity visible in the output
        for p in pipe.transformer.identity_parameters():
            p.normal_(0, 0.3)
    return pipe


def _run(pipe: FantasyIDPipeline, steps: int = STEPS, guidance: float = 6.0):
    image = PIL.Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    tokens = torch.randn(1, 5, pipe.transformer.config.identity_dim, generator=torch.Generator().manual_seed(2))
    return pipe(
        image, "a woman smiles", height=TINY_HEIGHT, width=TINY_WIDTH, num_frames=TINY_FRAMES,
        num_inference_steps=steps, guidance_scale=guidance, generator=torch.Generator().manual_seed(1),
        identity_cache=pipe.transformer.prepare_identity(tokens), output_type="latent",
        identity=IdentityInputs(face_image=image, vertices=None),  # the crop is given: no face detector needed
    )


@pytest.fixture(scope="module")
def uncached():
    return _run(_pipe()).frames


def _timesteps(pipe: FantasyIDPipeline) -> list[float]:
    pipe.scheduler.set_timesteps(STEPS)
    return [float(t) for t in pipe.scheduler.timesteps]


def test_off_changes_nothing(uncached):
    pipe = _pipe()
    assert accelerate(pipe, cache=None, compile=False) is None
    out = _run(pipe)
    assert torch.equal(out.frames, uncached)
    assert out.acceleration is None
    assert not hasattr(pipe.transformer.transformer_blocks[0], "_diffusers_hook")


def test_first_block_cache_counts_and_resets(uncached):
    never = _pipe()
    accelerate(never, cache="fbc:threshold=0")
    out = _run(never)
    assert torch.equal(out.frames, uncached)  # threshold 0: every call computed, through the same hooks
    assert out.acceleration["skipped"]["transformer_calls_skipped"] == 0

    always = _pipe()
    accelerate(always, cache="fbc:threshold=1e9")
    first, second = _run(always), _run(always)
    skipped = first.acceleration["skipped"]
    # the first call fills the cache; every later call runs block 0 only
    assert skipped["transformer_calls"] == STEPS
    assert skipped["transformer_calls_skipped"] == STEPS - 1
    assert skipped["blocks_skipped"] == (STEPS - 1) * (len(always.transformer.transformer_blocks) - 1)
    assert first.acceleration["cache"] == {
        "method": "fbc", "diffusers_config": "FirstBlockCacheConfig", "threshold": 1e9}
    assert not torch.equal(first.frames, uncached)
    # a second video starts from a clean cache: same seed, same result, same counts
    assert torch.equal(first.frames, second.frames) and second.acceleration == first.acceleration
    assert describe_skips(skipped).startswith(f"skipped {STEPS - 1} of {STEPS} transformer calls")


def test_first_block_cache_includes_the_identity_injection():
    """Two calls on the same input: the second is skipped and must give the first's output. A cache around bare
    CogVideoX blocks would add the identity attention of every skipped block once more on top of the cached
    residual (which already holds it)."""
    pipe = _pipe(num_layers=3)
    transformer = pipe.transformer
    accelerate(pipe, cache="fbc:threshold=1e9")
    g = torch.Generator().manual_seed(0)
    config = transformer.config
    latents = torch.randn(2, 3, config.in_channels, 8, 8, generator=g)
    text = torch.randn(2, config.max_text_seq_length, config.text_embed_dim, generator=g)
    kv = transformer.prepare_identity(torch.randn(1, 5, config.identity_dim, generator=g))
    pipe.acceleration.start_video()
    with torch.no_grad():
        outs = []
        for _ in range(2):
            with pipe.acceleration.step_context():
                outs.append(transformer(latents, text, torch.tensor([500, 500]), identity_cache=kv).sample)
    assert pipe.acceleration.report()["skipped"]["transformer_calls_skipped"] == 1
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-5)


def test_pyramid_attention_broadcast_skips_per_schedule(uncached):
    pipe = _pipe()
    accelerate(pipe, cache="pab:spatial_attention_block_skip_range=3")
    out = _run(pipe)
    blocks = len(pipe.transformer.transformer_blocks)
    expected = sum(1 for i, t in enumerate(_timesteps(pipe)) if i > 0 and 100 < t < 800 and i % 3 != 0)
    assert expected > 0
    assert out.acceleration["skipped"]["attention_skipped"] == expected * blocks
    assert out.acceleration["cache"]["spatial_attention_block_skip_range"] == 3
    assert not torch.equal(out.frames, uncached)
    remove_cache(pipe)  # back to the plain model, ready for another cache
    plain = _run(pipe)
    assert torch.equal(plain.frames, uncached) and plain.acceleration is None
    accelerate(pipe, cache="taylorseer")


def test_fastercache_skips_unconditional_halves(uncached):
    pipe = _pipe()
    accelerate(pipe, cache="fastercache")
    out = _run(pipe)
    expected = sum(1 for i, t in enumerate(_timesteps(pipe)) if i > 0 and -1 < t < 641 and i % 5 != 0)
    assert expected > 0
    assert out.acceleration["skipped"]["cfg_halves_skipped"] == expected
    assert out.acceleration["skipped"]["attention_skipped"] > 0
    assert torch.isfinite(out.frames).all() and not torch.equal(out.frames, uncached)


def test_taylorseer_predicts_between_full_steps():
    pipe = _pipe()
    accelerate(pipe, cache="taylorseer:cache_interval=4,disable_cache_before_step=2")
    out = _run(pipe)
    computed = [i for i in range(STEPS) if i < 2 or (i - 2 - 1) % 4 == 0]
    blocks = len(pipe.transformer.transformer_blocks)
    assert out.acceleration["skipped"]["attention_skipped"] == (STEPS - len(computed)) * blocks


def test_cache_specs_are_checked():
    assert str(CacheSpec.parse("PAB")) == (
        "pab:spatial_attention_block_skip_range=2,spatial_attention_timestep_skip_range=100..800")
    assert CacheSpec.parse("pab:spatial_attention_timestep_skip_range=50..900").options[
        "spatial_attention_timestep_skip_range"] == (50, 900)
    for bad, says in [("magcache", "unknown cache"), ("fbc:thresh=1", "unknown option"), ("fbc:threshold",
                      "unknown option"), ("fbc:threshold=high", "not a valid float"),
                      ("pab:spatial_attention_timestep_skip_range=5", "LOW..HIGH")]:
        with pytest.raises(InputError, match=says):
            CacheSpec.parse(bad)
    pipe = _pipe()
    accelerate(pipe, cache="fbc")
    with pytest.raises(InputError, match="already accelerated"):
        accelerate(pipe, cache="pab")


@pytest.mark.slow
def test_compiled_blocks_match_eager():
    eager = _run(_pipe(num_layers=1), steps=2).frames
    pipe = _pipe(num_layers=1)
    accelerate(pipe, compile=True)
    out = _run(pipe, steps=2)
    assert out.acceleration == {"compile": True, "cache": None}
    assert hasattr(pipe.transformer.transformer_blocks[0], "_compiled_call_impl")
    torch.testing.assert_close(out.frames, eager, rtol=1e-4, atol=1e-4)
