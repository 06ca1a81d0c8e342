"""Memory plans: exact weight bytes, the budget → plan choice and refusal, and every plan run on the tiny pipeline."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from fantasyid.errors import InputError
from fantasyid.pipelines.memory import (
    PLANS, _plan, apply_plan, choose_plan, component_sizes, count_bytes, plan_for, predict,
)
from fantasyid.pipelines.pipeline_fantasyid import FantasyIDPipeline, IdentityInputs
from fantasyid.pipelines.tiny import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, build_tiny_components


@pytest.fixture(scope="module")
def tiny_sizes():
    return component_sizes("tiny", dtype="float32", device_type="cpu")


@pytest.fixture(scope="module")
def released_sizes():
    return component_sizes("released")


def test_weight_bytes_equal_the_built_tiny_modules(tiny_sizes):
    from fantasyid.face.deca import DecaEncoder, DecaFlame
    from fantasyid.face.flame import FlameLayer
    from fantasyid.face.shape import synthetic_flame_model
    from fantasyid.pipelines.tiny import build_tiny_image_encoder

    components = build_tiny_components()
    encoder = components["identity_encoder"]
    built = {
        "text_encoder": components["text_encoder"], "transformer": components["transformer"],
        "vae": components["vae"], "identity_encoder": encoder,
        "eva_clip": build_tiny_image_encoder(encoder.config.num_clip_layers),
        "deca": DecaFlame(DecaEncoder(), FlameLayer(synthetic_flame_model())),
    }
    counted = {name: count_bytes(module) for name, module in built.items()}
    assert tiny_sizes.weights == counted
    # bf16: the same modules cast as the tiny loader casts them (T5, VAE, transformer)
    bf16 = component_sizes("tiny", dtype="bfloat16", device_type="cpu")
    for name in ("text_encoder", "vae", "transformer"):
        built[name].to(torch.bfloat16)
        assert bf16.weights[name] == count_bytes(built[name]), name


def test_released_budgets(released_sizes):
    full = choose_plan(released_sizes, "full")
    assert full.plan.name == "full" and not full.plan.vae_tiling
    twelve = choose_plan(released_sizes, "12")
    assert twelve.need_bytes <= 12e9 and twelve.peak_bytes <= 12e9
    assert PLANS.index(twelve.plan.name) > PLANS.index(choose_plan(released_sizes, "24").plan.name)
    # the peak never grows as the plan gets more frugal (tiled vs untiled, fp8 vs bf16)
    for name in PLANS:
        assert predict(released_sizes, name, True).peak_bytes <= predict(released_sizes, name, False).peak_bytes
    assert predict(released_sizes, "fp8", False).peak_bytes < predict(released_sizes, "t5-off", False).peak_bytes
    with pytest.raises(InputError, match=r"smallest needs (\d+\.\d) GB") as info:
        choose_plan(released_sizes, "4")
    smallest = min(predict(released_sizes, n, t).need_bytes for n in PLANS for t in (False, True))
    assert f"{smallest / 1e9:.1f} GB" in str(info.value) and smallest > 4e9
    assert choose_plan(released_sizes, "auto", free_bytes=80 * 10**9).plan.name == "full"
    with pytest.raises(InputError, match="needs a GPU"):
        choose_plan(released_sizes, "auto")
    with pytest.raises(InputError, match="not a budget"):
        choose_plan(released_sizes, "lots")
    assert choose_plan(released_sizes, "group-leaf").plan.group_offload == "leaf_level"  # a plan by name


def test_plan_for_the_cli():
    """Without a GPU: ``auto`` is ``full`` on the CPU, ``--offload`` is the ``offload`` plan, both at once is misuse."""
    assert plan_for("tiny", None, device="cpu")[0].plan.name == "full"
    assert plan_for("tiny", None, offload=True, device="cpu")[0].plan.model_offload
    assert plan_for("tiny", "8", device="cpu")[0].plan.name == "full"  # the tiny model fits anything
    with pytest.raises(InputError, match="--offload and --memory"):
        plan_for("tiny", "group-leaf", offload=True, device="cpu")


def _pipe() -> FantasyIDPipeline:
    pipe = FantasyIDPipeline(**build_tiny_components(with_identity=False))
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in pipe.transformer.identity_parameters():
            p.normal_(0, 0.3)
    return pipe


def _run(pipe: FantasyIDPipeline):
    image = PIL.Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    tokens = torch.randn(1, 5, pipe.transformer.config.identity_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cache = pipe.transformer.prepare_identity(tokens)
    return pipe(
        image, "a woman smiles", height=TINY_HEIGHT, width=TINY_WIDTH, num_frames=TINY_FRAMES,
        num_inference_steps=2, guidance_scale=6.0, generator=torch.Generator().manual_seed(1),
        identity_cache=cache, output_type="np", identity=IdentityInputs(face_image=image, vertices=None),
    ).frames


@pytest.fixture(scope="module")
def plain():
    return _run(_pipe())


@pytest.mark.parametrize("name", PLANS)
def test_every_plan_runs_on_the_cpu(name, plain, tiny_sizes):
    pipe = _pipe()
    plan = _plan(name, vae_tiling=name.startswith("group"))
    apply_plan(pipe, plan, "cpu")
    if plan.transformer_fp8:  # the weights really are stored in fp8 between calls
        assert count_bytes(pipe.transformer) == tiny_sizes.transformer_fp8 < tiny_sizes.weights["transformer"]
        assert any(p.dtype == torch.float8_e4m3fn for p in pipe.transformer.transformer_blocks.parameters())
    if plan.group_offload:  # diffusers' group-offloading hooks sit on the transformer, T5 and VAE
        for model in (pipe.transformer, pipe.text_encoder, pipe.vae):  # block level: on the top; leaf: on leaves
            assert any("group_offloading" in getattr(getattr(m, "_diffusers_hook", None), "hooks", {})
                       for m in model.modules())
    if plan.model_offload:
        assert pipe.transformer._hf_hook is not None
    frames = _run(pipe)
    if plan.transformer_fp8:
        # fp8 (3 mantissa bits) weights: the 2-step video stays within 0.1 of the plain one on a 0..1 scale
        assert np.abs(frames - plain).max() < 0.1
        assert not np.array_equal(frames, plain)
    elif plan.vae_tiling:
        np.testing.assert_allclose(frames, plain, atol=1e-5)  # tiny videos fit one tile
    else:
        np.testing.assert_array_equal(frames, plain)  # pure offloading: bit-identical


@pytest.mark.parametrize("name", ["group-block", "group-leaf"])
def test_group_sizes_follow_diffusers_own_partition(name, tiny_sizes):
    """The groups diffusers' hooks really made: the largest is what the planner counts (the VAE's non-block modules
    are counted as resident, so there the prediction is an upper bound)."""
    pipe = _pipe()
    apply_plan(pipe, _plan(name, vae_tiling=True), "cpu")
    level = "block_level" if name == "group-block" else "leaf_level"
    for model in ("transformer", "text_encoder", "vae"):
        groups = {}
        for module in getattr(pipe, model).modules():
            registry = getattr(module, "_diffusers_hook", None)
            if registry is not None and "group_offloading" in registry.hooks:
                group = registry.hooks["group_offloading"].group
                tensors = {id(t): t for m in group.modules for t in [*m.parameters(), *m.buffers()]}
                tensors.update({id(t): t for t in [*(group.parameters or []), *(group.buffers or [])]})
                groups[id(group)] = sum(t.numel() * t.element_size() for t in tensors.values())
        resident, largest = tiny_sizes.groups[level][model]
        if model == "vae" and level == "block_level":
            assert max(groups.values()) <= resident + largest
        else:
            assert max(groups.values()) == largest, model
