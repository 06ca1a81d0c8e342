"""F_l (the paper's layer-aware refiner) convolves the video tokens on their true (frames, height, width) grid: checked
against a reference 3-D convolution on a non-square grid, where swapping height and width gives another result."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fantasyid.models.configs import transformer_config
from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel, LayerAwareRefiner

GRID = (2, 3, 5)  # frames, height, width: no two equal


def _visible(refiner: LayerAwareRefiner, seed: int = 0) -> LayerAwareRefiner:
    """A refiner whose norm passes its input (a fresh one outputs zero) and whose kernel is asymmetric."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        refiner.conv.weight.copy_(torch.randn(refiner.conv.weight.shape, generator=g))
        refiner.conv.bias.copy_(torch.randn(refiner.conv.bias.shape, generator=g))
        refiner.norm.weight.fill_(1.0)
    return refiner.eval()


def _reference(refiner: LayerAwareRefiner, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Tokens in frame-major, then row-major order → video → depthwise conv3d → SiLU → tokens → LayerNorm."""
    batch, _, dim = tokens.shape
    video = tokens.reshape(batch, *grid, dim).permute(0, 4, 1, 2, 3)  # (B, C, F, H, W)
    out = F.silu(F.conv3d(video, refiner.conv.weight, refiner.conv.bias, padding=1, groups=dim))
    out = out.permute(0, 2, 3, 4, 1).reshape(batch, -1, dim)  # (B, F·H·W, C)
    return F.layer_norm(out, (dim,), refiner.norm.weight, refiner.norm.bias, refiner.norm.eps)


def test_refiner_matches_a_reference_convolution_on_a_non_square_grid():
    refiner = _visible(LayerAwareRefiner(dim=4))
    tokens = torch.randn(2, 2 * 3 * 5, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = refiner(tokens, GRID)
        expected = _reference(refiner, tokens, GRID)
        swapped = _reference(refiner, tokens, (2, 5, 3))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (swapped - expected).abs().max() > 0.1  # height and width swapped is another result


def test_transformer_hands_the_refiner_its_true_grid():
    """In the transformer, the refiner after block 0 gets the latent's (frames, height/p, width/p) grid."""
    config = {**transformer_config("tiny"), "identity_refiner": "conv", "sample_height": 8, "sample_width": 12}
    torch.manual_seed(0)
    model = FantasyIDTransformer3DModel(**config).eval()
    refiner = _visible(model.identity_attention[0].refiner)
    seen = {}
    refiner.register_forward_hook(lambda module, args, output: seen.update(tokens=args[0], output=output))
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(1, 3, config["in_channels"], 8, 12, generator=g)  # (B, F, C, h, w): grid 3 × 4 × 6
    text = torch.randn(1, config["max_text_seq_length"], config["text_embed_dim"], generator=g)
    identity = torch.randn(1, 5, config["identity_dim"], generator=g)
    with torch.no_grad():
        model(latents, text, torch.tensor([500]), identity_cache=model.prepare_identity(identity))
        expected = _reference(refiner, seen["tokens"], (3, 4, 6))
        swapped = _reference(refiner, seen["tokens"], (3, 6, 4))
    torch.testing.assert_close(seen["output"], expected, rtol=1e-5, atol=1e-5)
    assert (swapped - expected).abs().max() > 0.1
