"""EVA02-CLIP vision tower on timm: release key layout, timm hub layout, hidden states, preprocessing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from fantasyid.errors import CheckpointError, InputError, UnsafeFileError, WeightsNotFoundError
from fantasyid.face.eva_clip import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    EvaClipConfig,
    build_eva_clip_vision,
    convert_release_state_dict,
    load_eva_clip_vision,
    load_state_dict_into,
    preprocess,
)

LAYOUT_JSON = Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "official_checkpoint_layout.json"
TINY = EvaClipConfig.tiny()


# ----------------------------------------------------------------------------------------------------------------
# A release-layout checkpoint and an independent forward of the release's EVA ViT (eva_vit_model.py semantics)


def release_state_dict(config: EvaClipConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the release's EVA-CLIP key names (visual.*, plus text.* and rope tables it ignores)."""
    g = torch.Generator().manual_seed(seed)
    w, hidden, grid = config.width, int(config.width * config.mlp_ratio), config.grid_size

    def rand(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    def norm(n):  # LayerNorm weight near 1
        return 1.0 + rand(n, scale=0.1)

    head_dim = w // config.num_heads
    state = {
        "visual.cls_token": rand(1, 1, w, scale=0.5),
        "visual.pos_embed": rand(1, grid * grid + 1, w, scale=0.5),
        "visual.patch_embed.proj.weight": rand(w, 3, config.patch_size, config.patch_size),
        "visual.patch_embed.proj.bias": rand(w),
        "visual.rope.freqs_cos": rand(grid * grid, head_dim),  # computed tables: must be ignored
        "visual.rope.freqs_sin": rand(grid * grid, head_dim),
        "visual.norm.weight": norm(w),
        "visual.norm.bias": rand(w),
        "visual.head.weight": rand(config.embed_dim, w),
        "visual.head.bias": rand(config.embed_dim),
        "logit_scale": torch.tensor(4.6),
        "text.positional_embedding": rand(77, 8),
        "text.ln_final.weight": norm(8),
    }
    for i in range(config.depth):
        p = f"visual.blocks.{i}."
        state.update({
            p + "norm1.weight": norm(w), p + "norm1.bias": rand(w),
            p + "attn.q_bias": rand(w), p + "attn.v_bias": rand(w),
            p + "attn.q_proj.weight": rand(w, w, scale=0.2), p + "attn.k_proj.weight": rand(w, w, scale=0.2),
            p + "attn.v_proj.weight": rand(w, w, scale=0.2),
            p + "attn.inner_attn_ln.weight": norm(w), p + "attn.inner_attn_ln.bias": rand(w),
            p + "attn.proj.weight": rand(w, w), p + "attn.proj.bias": rand(w),
            p + "attn.rope.freqs_cos": rand(grid * grid, head_dim), p + "attn.rope.freqs_sin": rand(grid * grid, head_dim),
            p + "norm2.weight": norm(w), p + "norm2.bias": rand(w),
            p + "mlp.w1.weight": rand(hidden, w), p + "mlp.w1.bias": rand(hidden),
            p + "mlp.w2.weight": rand(hidden, w), p + "mlp.w2.bias": rand(hidden),
            p + "mlp.ffn_ln.weight": norm(hidden), p + "mlp.ffn_ln.bias": rand(hidden),
            p + "mlp.w3.weight": rand(w, hidden), p + "mlp.w3.bias": rand(w),
        })  # fmt: skip
    return state


def release_rope_tables(config: EvaClipConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin (grid², head_dim) of the release's VisionRotaryEmbeddingFast: 'lang' frequencies of a
    pt_hw_seq_len grid interpolated to the real grid, each repeated twice, rows then columns."""
    half = config.width // config.num_heads // 2
    grid, ref = config.grid_size, config.rope_ref_grid
    freqs = 1.0 / (10000 ** (torch.arange(0, half, 2)[: half // 2].float() / half))  # (half / 2,)
    t = torch.arange(grid) / grid * ref
    angles = torch.repeat_interleave(t[:, None] * freqs[None], 2, dim=-1)  # (grid, half)
    rows = angles[:, None, :].expand(grid, grid, half)
    cols = angles[None, :, :].expand(grid, grid, half)
    table = torch.cat([rows, cols], dim=-1).reshape(grid * grid, 2 * half)  # (grid², head_dim)
    return table.cos(), table.sin()


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


def release_forward(state, config: EvaClipConfig, pixels: torch.Tensor):
    """The release's EVA forward written out from its equations (inputs of hidden_layers, projected CLS)."""
    ln = torch.nn.functional.layer_norm
    s = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    w, heads = config.width, config.num_heads
    cos, sin = release_rope_tables(config)
    x = torch.nn.functional.conv2d(
        pixels, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=config.patch_size
    )
    x = x.flatten(2).transpose(1, 2)  # (B, grid², w)
    x = torch.cat([s["cls_token"].expand(len(x), -1, -1), x], dim=1) + s["pos_embed"]
    hidden = []
    for i in range(config.depth):
        if i in config.hidden_layers:
            hidden.append(x)
        p = f"blocks.{i}."
        h = ln(x, (w,), s[p + "norm1.weight"], s[p + "norm1.bias"], eps=1e-6)
        q = h @ s[p + "attn.q_proj.weight"].T + s[p + "attn.q_bias"]
        k = h @ s[p + "attn.k_proj.weight"].T
        v = h @ s[p + "attn.v_proj.weight"].T + s[p + "attn.v_bias"]
        q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # (B, heads, N, hd)
        q = torch.cat([q[:, :, :1], q[:, :, 1:] * cos + _rotate_pairs(q[:, :, 1:]) * sin], dim=2)
        k = torch.cat([k[:, :, :1], k[:, :, 1:] * cos + _rotate_pairs(k[:, :, 1:]) * sin], dim=2)
        attention = (q * (w // heads) ** -0.5) @ k.transpose(-2, -1)
        out = (attention.softmax(-1) @ v).transpose(1, 2).flatten(2)  # (B, N, w)
        out = ln(out, (w,), s[p + "attn.inner_attn_ln.weight"], s[p + "attn.inner_attn_ln.bias"], eps=1e-6)
        x = x + out @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"]
        h = ln(x, (w,), s[p + "norm2.weight"], s[p + "norm2.bias"], eps=1e-6)
        gate = torch.nn.functional.silu(h @ s[p + "mlp.w1.weight"].T + s[p + "mlp.w1.bias"])
        hidden_units = gate * (h @ s[p + "mlp.w2.weight"].T + s[p + "mlp.w2.bias"])
        hidden_units = ln(
            hidden_units, hidden_units.shape[-1:], s[p + "mlp.ffn_ln.weight"], s[p + "mlp.ffn_ln.bias"], eps=1e-6
        )
        x = x + hidden_units @ s[p + "mlp.w3.weight"].T + s[p + "mlp.w3.bias"]
    x = ln(x, (w,), s["norm.weight"], s["norm.bias"], eps=1e-6)
    return hidden, x[:, 0] @ s["head.weight"].T + s["head.bias"]


@pytest.fixture(scope="module")
def release_file(tmp_path_factory) -> tuple[Path, dict]:
    state = release_state_dict(TINY)
    path = tmp_path_factory.mktemp("eva") / "EVA02_CLIP_L_336_psz14_s6B.pt"
    torch.save(state, path)
    return path, state


# ----------------------------------------------------------------------------------------------------------------


def test_release_layout_loads_strictly_and_matches_the_release_math(release_file):
    path, state = release_file
    model = load_eva_clip_vision(path, TINY)
    pixels = torch.randn(2, 3, TINY.image_size, TINY.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = model(pixels, return_embeds=True)
        expected_hidden, expected_embeds = release_forward(state, TINY, pixels)
    assert len(output.hidden_states) == len(TINY.hidden_layers)
    for ours, theirs in zip(output.hidden_states, expected_hidden):
        assert ours.shape == (2, TINY.num_tokens, TINY.width)
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(output.image_embeds, expected_embeds, atol=2e-5, rtol=1e-4)


def test_stopping_early_gives_the_same_hidden_states(release_file):
    model = load_eva_clip_vision(release_file[0], TINY)
    pixels = torch.randn(1, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        full = model(pixels, return_embeds=True)
        early = model(pixels)
    assert early.image_embeds is None
    for a, b in zip(full.hidden_states, early.hidden_states):
        torch.testing.assert_close(a, b)


def test_full_size_rope_matches_the_release_table():
    # EVA02-CLIP-L-14-336: 16 × 16 reference frequencies interpolated to the 24 × 24 grid
    config = EvaClipConfig()
    from fantasyid.face.eva_clip import _materialise_computed_buffers

    model = build_eva_clip_vision(config, device="meta")
    _materialise_computed_buffers(model)
    sin, cos = model.trunk.rope.get_embed().tensor_split(2, dim=-1)  # timm: cat([sin, cos])
    expected_cos, expected_sin = release_rope_tables(config)
    assert cos.shape == (576, 64)
    torch.testing.assert_close(cos, expected_cos, atol=1e-5, rtol=0)
    torch.testing.assert_close(sin, expected_sin, atol=1e-5, rtol=0)


def test_full_size_release_key_layout_maps_onto_the_timm_model():
    # the real file's visual keys and shapes (read off the release) fill the full-size model exactly
    layout = json.loads(LAYOUT_JSON.read_text())["state_dicts"]["eva_clip"]
    keys = {**layout["visual_keys"], **layout["other_keys"]}
    state = {k: torch.empty(v["shape"], device="meta") for k, v in keys.items()}
    model = build_eva_clip_vision(EvaClipConfig(), device="meta")
    report = load_state_dict_into(model, state, strict=True)
    assert report.layout == "release" and not report.missing and not report.unexpected
    converted = convert_release_state_dict(state)
    assert len(converted) == 512 and "blocks.23.mlp.fc1_g.weight" in converted


def test_timm_and_open_clip_layouts(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    source = build_eva_clip_vision(TINY).eval()
    trunk_state = {k: v.clone() for k, v in source.trunk.state_dict().items()}
    bare = tmp_path / "model.safetensors"
    safetensors_torch.save_file(trunk_state, str(bare))
    open_clip = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(
        {"visual.trunk." + k: v for k, v in trunk_state.items()} | {"text.token_embedding.weight": torch.zeros(3, 2)},
        open_clip,
    )
    pixels = torch.randn(1, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        expected = source(pixels, return_embeds=True)
        for path in (bare, open_clip):
            got = load_eva_clip_vision(path, TINY)(pixels, return_embeds=True)
            for a, b in zip(got.hidden_states, expected.hidden_states):
                torch.testing.assert_close(a, b)
            torch.testing.assert_close(got.image_embeds, expected.image_embeds)


def test_legacy_torch_format_and_wrappers(tmp_path, release_file):
    _, state = release_file
    legacy = tmp_path / "legacy.pt"
    torch.save(
        {"state_dict": {"module." + k: v for k, v in state.items()}}, legacy, _use_new_zipfile_serialization=False
    )
    model = load_eva_clip_vision(legacy, TINY, dtype=torch.bfloat16)
    assert model.trunk.cls_token.dtype == torch.bfloat16
    torch.testing.assert_close(model.trunk.cls_token.float(), state["visual.cls_token"].bfloat16().float())


def test_strict_loading_refuses_incomplete_or_foreign_files(tmp_path, release_file):
    _, state = release_file
    cases = {
        "missing": {k: v for k, v in state.items() if k != "visual.blocks.3.attn.q_bias"},
        "unexpected": state | {"visual.blocks.0.attn.relative_position_bias_table": torch.zeros(3, 2)},
        "shape": state | {"visual.head.weight": torch.zeros(5, TINY.width)},
    }
    for name, broken in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(broken, path)
        with pytest.raises(CheckpointError, match=name if name != "shape" else "shape mismatch"):
            load_eva_clip_vision(path, TINY)
    report_path = tmp_path / "missing.pt"
    model = load_eva_clip_vision(report_path, TINY, strict=False)  # the release's strict=False behaviour
    assert model(torch.zeros(1, 3, 56, 56)).hidden_states[0].shape == (1, 17, 32)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_eva_clip_vision(release_file[0], EvaClipConfig(width=64, num_heads=2, depth=6, image_size=56,
                                                            embed_dim=16, hidden_layers=(1, 2)))  # fmt: skip
    with pytest.raises(WeightsNotFoundError, match="not found"):
        load_eva_clip_vision(tmp_path / "absent.pt", TINY)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_eva_clip_vision(garbage, TINY)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="unrecognised"):
        load_eva_clip_vision(other, TINY)


class Payload:
    """A non-tensor object: pickled by reference, so weights_only loading must refuse it."""


def test_pickled_objects_are_refused(tmp_path, release_file):
    path = tmp_path / "evil.pt"
    torch.save({"visual.cls_token": torch.zeros(1), "extra": Payload()}, path)
    with pytest.raises(UnsafeFileError, match="refusing"):
        load_eva_clip_vision(path, TINY)


def test_preprocess_as_the_release():
    gray = np.full((512, 512, 3), 128, np.uint8)
    pixels = preprocess(gray)
    assert pixels.shape == (1, 3, 336, 336) and pixels.dtype == torch.float32
    for channel in range(3):  # bicubic of a constant is that constant; then OpenAI mean/std
        expected = (128 / 255 - OPENAI_CLIP_MEAN[channel]) / OPENAI_CLIP_STD[channel]
        torch.testing.assert_close(pixels[0, channel], torch.full((336, 336), expected), atol=1e-5, rtol=0)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(2)]
    batch = preprocess(crops)
    assert batch.shape == (2, 3, 336, 336)
    from_tensor = preprocess(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0)
    torch.testing.assert_close(batch, from_tensor)
    # antialiased bicubic (torchvision's tensor default since 0.17, as the release's torchvision 0.20)
    from torchvision.transforms.functional import InterpolationMode, normalize, resize

    manual = normalize(resize(torch.from_numpy(crops[0]).permute(2, 0, 1)[None].float() / 255.0, 336,
                              InterpolationMode.BICUBIC, antialias=True), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)  # fmt: skip
    torch.testing.assert_close(batch[:1], manual)
    with pytest.raises(InputError, match="square"):
        preprocess(np.zeros((512, 400, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        preprocess(np.zeros((512, 512, 3), np.float32))
    with pytest.raises(InputError, match="pixel_values"):
        build_eva_clip_vision(TINY)(torch.zeros(1, 3, 64, 64))


def test_config_validation():
    assert EvaClipConfig().num_tokens == 577 and EvaClipConfig().grid_size == 24
    with pytest.raises(InputError, match="multiple"):
        EvaClipConfig(image_size=300)
    with pytest.raises(InputError, match="hidden_layers"):
        EvaClipConfig(hidden_layers=(0, 4))
    with pytest.raises(InputError, match="increasing"):
        EvaClipConfig(hidden_layers=(8, 4))
    assert math.isclose(int(1024 * EvaClipConfig().mlp_ratio), 2730)
