"""Parameters and FLOPs of CogVideoX-5B, ConsisID and FantasyID at full size, measured on the ``meta`` device.

    python benchmarks/flops.py

No weights are needed: every model is built on the ``meta`` device and run under ``FlopCounterMode`` (on ``meta``
tensors scaled-dot-product attention is counted; on CPU tensors it is not). One denoising step at 49×480×720 is
one transformer call on a batch of 2 (classifier-free guidance: unconditional and conditional halves), i.e. 13×60×90
latents → 17,550 video tokens, plus 226 text tokens.

The release recomputes the whole identity branch (face abstractor, vertex branch, reducer) and the keys/values of
all 42 injection layers inside every transformer call; FantasyID here computes them once per video. The last
column is what that saves over a 50-step video.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fantasyid.models.configs import identity_encoder_config, transformer_config  # noqa: E402
from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel  # noqa: E402

META = torch.device("meta")
FRAMES, LATENT_FRAMES, LATENT_H, LATENT_W = 49, 13, 60, 90
TEXT_TOKENS, TEXT_DIM = 226, 4096
CFG_BATCH = 2


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def backbone_inputs(in_channels: int, batch: int = CFG_BATCH):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    latents = torch.empty(batch, LATENT_FRAMES, in_channels, LATENT_H, LATENT_W, device=META)
    text = torch.empty(batch, TEXT_TOKENS, TEXT_DIM, device=META)
    timestep = torch.zeros(batch, dtype=torch.long, device=META)
    cos, sin = get_3d_rotary_pos_embed(
        embed_dim=64, crops_coords=((0, 0), (LATENT_H // 2, LATENT_W // 2)),
        grid_size=(LATENT_H // 2, LATENT_W // 2), temporal_size=LATENT_FRAMES,
    )
    return latents, text, timestep, (cos.to(META), sin.to(META))


def cogvideox_row():
    from diffusers import CogVideoXTransformer3DModel

    config = {k: v for k, v in transformer_config("released").items() if not k.startswith("identity_")}
    with META:
        model = CogVideoXTransformer3DModel(**config).eval()
    latents, text, timestep, rope = backbone_inputs(config["in_channels"])
    with torch.no_grad():
        flops = count_flops(lambda: model(latents, text, timestep, image_rotary_emb=rope))
    return {"model": "CogVideoX-5B-I2V", "params": params(model), "step": flops, "once": 0, "per_call": 0}


def consisid_row():
    from diffusers import ConsisIDTransformer3DModel

    base = {k: v for k, v in transformer_config("released").items() if not k.startswith("identity_")}
    base.pop("ofs_embed_dim", None)
    base.pop("patch_size_t", None)
    base.pop("patch_bias", None)
    # ConsisID (BestWishYsh/ConsisID-preview): CogVideoX-5B-I2V + local face extractor, injection every 2nd block.
    with META:
        model = ConsisIDTransformer3DModel(**base, is_train_face=True, is_kps=False, cross_attn_interval=2).eval()
    latents, text, timestep, rope = backbone_inputs(base["in_channels"])
    id_cond = torch.empty(1, 1280, device=META)
    id_vit_hidden = [torch.empty(1, 577, 1024, device=META) for _ in range(5)]
    with torch.no_grad():
        flops = count_flops(
            lambda: model(latents, text, timestep, image_rotary_emb=rope, id_cond=id_cond, id_vit_hidden=id_vit_hidden)
        )
    # ConsisID's face extractor runs inside every call, as in its release.
    return {"model": "ConsisID", "params": params(model), "step": flops, "once": 0, "per_call": 0}


def fantasyid_row(name: str):
    from fantasyid.models.identity_encoder import FantasyIDIdentityEncoder

    t_config = transformer_config(name)
    e_config = identity_encoder_config(name)
    with META:
        transformer = FantasyIDTransformer3DModel(**t_config).eval()
        encoder = FantasyIDIdentityEncoder(**e_config).eval()
    latents, text, timestep, rope = backbone_inputs(t_config["in_channels"])
    tokens_per_state = e_config["clip_grid_size"] ** 2 + 1
    clip = [torch.empty(1, tokens_per_state, e_config["clip_hidden_dim"], device=META)
            for _ in range(e_config["num_clip_layers"])]
    vertices = torch.empty(1, e_config["mesh_num_vertices"][0], 3, device=META)
    with torch.no_grad():
        tokens_holder = {}

        def encode():
            tokens_holder["tokens"] = encoder(clip, vertices)

        encoder_flops = count_flops(encode)
        tokens = tokens_holder["tokens"]
        cache_holder = {}

        def project():
            cache_holder["cache"] = transformer.prepare_identity(tokens)

        kv_flops = count_flops(project)
        cache = cache_holder["cache"]
        step_flops = count_flops(lambda: transformer(latents, text, timestep, image_rotary_emb=rope, identity_cache=cache))
    return {
        "model": f"FantasyID ({name})",
        "params": params(transformer) + params(encoder),
        "step": step_flops,
        "once": encoder_flops + kv_flops,
        "per_call": encoder_flops + kv_flops,
        "identity_tokens": tokens.shape[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()

    rows = [cogvideox_row(), consisid_row(), fantasyid_row("released"), fantasyid_row("paper")]
    base_step = rows[0]["step"]
    print(f"Full size, one denoising step = one transformer call on batch {CFG_BATCH} (CFG) at "
          f"{FRAMES}×480×720 ({LATENT_FRAMES * LATENT_H * LATENT_W // 4:,} video + {TEXT_TOKENS} text tokens).\n")
    print("| model | params (B) | TFLOP / step | identity overhead vs CogVideoX | identity branch, once (TFLOP) "
          f"| saved per video by caching ({args.steps} steps) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        overhead = 100.0 * (row["step"] - base_step) / base_step
        once = f"{row['once'] / 1e12:.3f}" if row["once"] else "–"
        if row["per_call"]:
            # The release recomputes the branch in each of the `steps` calls; we compute it once.
            saved_flops = (args.steps - 1) * row["per_call"]
            total_release = args.steps * (row["step"] + row["per_call"])
            saved = f"{saved_flops / 1e12:.2f} TFLOP ({100 * saved_flops / total_release:.2f} %)"
        else:
            saved = "–"
        print(f"| {row['model']} | {row['params'] / 1e9:.3f} | {row['step'] / 1e12:.1f} | {overhead:+.2f} % | {once} "
              f"| {saved} |")
    print("\nParameters exclude the learned positional table patch_embed.pos_embedding (54.6 M, a buffer in diffusers).")
    print("Identity branch = identity encoder + keys/values of every injection layer; the release recomputes it in "
          "each call, ConsisID's face extractor likewise runs inside each call.")


if __name__ == "__main__":
    main()
