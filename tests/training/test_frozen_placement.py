"""Placing the frozen VAE: no diffusers "should be kept in float32: []" warning in a train run, the dtype right."""

from __future__ import annotations

import logging

import torch

from fantasyid.pipelines.tiny import build_tiny_components
from fantasyid.training.step import place_frozen


class _Records(logging.Handler):
    """Collects what diffusers logs, whatever other tests did to its verbosity or handlers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def take(self) -> str:
        text, self.messages = "\n".join(self.messages), []
        return text


def test_the_vae_is_cast_without_diffusers_warning():
    vae = build_tiny_components(with_identity=False)["vae"]
    library = logging.getLogger("diffusers")
    records, level = _Records(), library.level
    library.addHandler(records)
    library.setLevel(logging.WARNING)
    try:
        vae.to(torch.bfloat16)
        assert "should be kept in float32" in records.take()  # diffusers' own .to(dtype) warns: the check sees it
        for dtype in (torch.float32, torch.float32, torch.bfloat16):
            place_frozen(vae, torch.device("cpu"), dtype)
            assert vae.dtype == dtype and all(p.dtype == dtype for p in vae.parameters())
        assert "should be kept in float32" not in records.take()
    finally:
        library.removeHandler(records)
        library.setLevel(level)
