"""Placing the frozen VAE: no diffusers "should be kept in float32: []" warning in a train run, the dtype right."""

from __future__ import annotations

import torch

from fantasyid.pipelines.tiny import build_tiny_components
from fantasyid.training.step import place_frozen


def test_the_vae_is_cast_without_diffusers_warning(capfd):
    vae = build_tiny_components(with_identity=False)["vae"]
    vae.to(torch.bfloat16)
    assert "should be kept in float32" in capfd.readouterr().err  # diffusers' own .to(dtype) warns: the check sees it
    for dtype in (torch.float32, torch.float32, torch.bfloat16):
        place_frozen(vae, torch.device("cpu"), dtype)
        assert vae.dtype == dtype and all(p.dtype == dtype for p in vae.parameters())
    assert "should be kept in float32" not in capfd.readouterr().err
