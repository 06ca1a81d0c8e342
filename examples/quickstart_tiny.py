"""Quickstart at tiny size on a CPU: build FantasyID from the real classes and run one denoising step with an identity.

    python examples/quickstart_tiny.py

Prints how the output moves when the identity changes, and what the identity branch adds in parameters.
Random weights: this shows the machinery, not a trained model.
"""

from __future__ import annotations

import torch
from rich.console import Console
from rich.table import Table

from fantasyid.models.configs import transformer_config
from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel


def main() -> None:
    console = Console()
    torch.manual_seed(0)
    config = transformer_config("tiny")
    model = FantasyIDTransformer3DModel(**config).eval()
    with torch.no_grad():
        for layer in model.identity_attention:  # a trained adapter is not zero; show its effect
            for p in layer.parameters():
                p.normal_(0, 0.2)

    frames = (config["sample_frames"] - 1) // config["temporal_compression_ratio"] + 1
    latents = torch.randn(1, frames, config["in_channels"], config["sample_height"], config["sample_width"])
    text = torch.randn(1, config["max_text_seq_length"], config["text_embed_dim"])
    step = torch.tensor([500])
    with torch.no_grad():
        plain = model(latents, text, step).sample
        person_a = model(latents, text, step, identity_cache=model.prepare_identity(torch.randn(1, 6, config["identity_dim"]))).sample
        person_b = model(latents, text, step, identity_cache=model.prepare_identity(torch.randn(1, 6, config["identity_dim"]))).sample

    identity_params = sum(p.numel() for p in model.identity_parameters())
    total = sum(p.numel() for p in model.parameters())
    table = Table(title="FantasyID tiny transformer, one denoising step")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("output shape (B, F, C, H, W)", str(tuple(plain.shape)))
    table.add_row("parameters (total / identity branch)", f"{total:,} / {identity_params:,}")
    table.add_row("mean |Δ| identity A vs no identity", f"{(person_a - plain).abs().mean():.4f}")
    table.add_row("mean |Δ| identity A vs identity B", f"{(person_a - person_b).abs().mean():.4f}")
    console.print(table)


if __name__ == "__main__":
    main()
