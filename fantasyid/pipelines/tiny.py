"""The ``tiny`` model: every learned component of FantasyID built from its real class at toy size, randomly initialised.

It runs the whole pipeline end to end on a CPU in seconds: what tests, the README's first command and dry runs of
batch scripts use. Its videos show the machinery, not a person: the weights are random (every output says so).

Sizes: 64×64 px, 9 frames → 3×8×8 latents (4 channels; I2V doubles them), a two-block transformer of width 32, a
one-layer T5 of width 16 with a word-level vocabulary built here, a 4-level CogVideoX VAE of width 8, EVA-CLIP and the
identity encoder at a few channels, and a synthetic FLAME-format model on a 642-vertex sphere.
"""

from __future__ import annotations

import torch

from ..models.configs import identity_encoder_config, tiny_mesh_hierarchy, transformer_config

__all__ = [
    "TINY_HEIGHT", "TINY_WIDTH", "TINY_FRAMES", "build_tiny_components", "build_tiny_text_and_vae",
    "cogvideox_scheduler",
    "tiny_text_encoder_config", "tiny_tokenizer", "tiny_transformer_config", "tiny_vae_config",
]

TINY_HEIGHT, TINY_WIDTH, TINY_FRAMES = 64, 64, 9

# A small vocabulary: common prompt words as whole pieces, every lowercase letter and digit as a fallback piece.
_WORDS = (
    "a an the and of in on at with to is are his her their its man woman person boy girl child old young "
    "smiles smiling talks talking walks walking looks looking turns turning laughs laughing sits sitting stands "
    "standing runs running camera beach street park room city forest light sun sunset night day portrait face "
    "hair eyes head close up shot video slowly happy sad wearing shirt dress jacket glasses"
).split()


def tiny_tokenizer():
    """A T5 tokenizer (fast) over a Unigram vocabulary made in code: no download, every text tokenises."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"▁{word}", -1.0) for word in _WORDS]
    pieces += [(ch, -10.0) for ch in "▁abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)


def cogvideox_scheduler():
    """CogVideoX-5B's DPM scheduler (its scheduler/scheduler_config.json), built in code."""
    from diffusers import CogVideoXDPMScheduler

    # CogVideoX-5B's scheduler settings (v-prediction, zero terminal SNR, trailing spacing).
    return CogVideoXDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        set_alpha_to_one=True,
        snr_shift_scale=3.0,
        timestep_spacing="trailing",
        clip_sample=False,
    )


def tiny_transformer_config(variant: str = "released") -> dict:
    """The tiny transformer's constructor keys for the ``released`` or ``paper`` identity variant."""
    t_config = transformer_config("tiny")
    if variant == "paper":
        t_config["identity_refiner"] = "conv"
        # the paper lifts the identity to the DiT's hidden size (METHOD.md "Identity width (pinned)")
        t_config["identity_dim"] = identity_encoder_config("tiny", variant="paper")["identity_dim"]
    return t_config


def tiny_text_encoder_config(vocab_size: int, d_model: int) -> dict:
    """Keys of the one-layer T5 encoder's ``T5Config``."""
    return dict(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)


def tiny_vae_config(latent_channels: int) -> dict:
    """Constructor keys of the 4-level CogVideoX VAE of width 8."""
    return dict(in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
                up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                latent_channels=latent_channels, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)


def build_tiny_components(seed: int = 0, with_identity: bool = True, variant: str = "released") -> dict:
    """The pipeline's components at tiny size, seeded: ``FantasyIDPipeline(**build_tiny_components())``.

    ``with_identity`` adds the tiny identity encoder (``variant`` ``released`` or ``paper``, mesh loaded). The face
    tools (detector, EVA-CLIP, DECA + FLAME) are attached separately (:func:`build_tiny_image_encoder`).
    """
    from ..models.transformer_fantasyid import FantasyIDTransformer3DModel

    t_config = tiny_transformer_config(variant)
    tokenizer, text_encoder, vae = build_tiny_text_and_vae(seed, variant)  # seeds, then T5 and VAE
    transformer = FantasyIDTransformer3DModel(**t_config).eval()  # drawn next from the same generator
    components = {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "transformer": transformer,
        "scheduler": cogvideox_scheduler(),
        "identity_encoder": None,
    }
    if with_identity:
        components.update(_tiny_identity_components(variant))
    return components


def build_tiny_text_and_vae(seed: int = 0, variant: str = "released") -> tuple:
    """``(tokenizer, T5 encoder, VAE)`` of the tiny model, with the weights :func:`build_tiny_components` gives them
    (the same seed, drawn first): what ``fantasyid train --precompute`` needs, without the transformer."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    t_config = tiny_transformer_config(variant)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    t5_config = T5Config(**tiny_text_encoder_config(len(tokenizer), t_config["text_embed_dim"]))
    text_encoder = T5EncoderModel(t5_config).eval()
    vae = AutoencoderKLCogVideoX(**tiny_vae_config(t_config["in_channels"] // 2)).eval()
    return tokenizer, text_encoder, vae


def _tiny_identity_components(variant: str) -> dict:
    from ..models.identity_encoder import FantasyIDIdentityEncoder

    e_config = identity_encoder_config("tiny", variant=variant)
    identity_encoder = FantasyIDIdentityEncoder(**e_config).eval()
    identity_encoder.load_mesh(tiny_mesh_hierarchy())
    return {"identity_encoder": identity_encoder}


def build_tiny_image_encoder(num_clip_layers: int):
    """The tiny EVA-CLIP vision tower, returning ``num_clip_layers`` hidden states evenly spread over its blocks."""
    import dataclasses

    from ..face.eva_clip import EvaClipConfig, build_eva_clip_vision

    config = EvaClipConfig.tiny()
    step = max(1, (config.depth - 1) // num_clip_layers)
    layers = tuple(step * (i + 1) for i in range(num_clip_layers))
    return build_eva_clip_vision(dataclasses.replace(config, hidden_layers=layers)).eval()


def set_tiny_size(transformer, latent_height: int, latent_width: int) -> None:
    """Build the tiny transformer's size-dependent part for another latent size: the sinusoidal table that its
    ``use_learned_positional_embeddings`` adds (computed, not trained; no weight changes)."""
    embed = transformer.patch_embed
    if (embed.sample_height, embed.sample_width) == (latent_height, latent_width):
        return
    table = embed._get_positional_embeddings(latent_height, latent_width, embed.sample_frames)
    embed.sample_height, embed.sample_width = latent_height, latent_width
    embed.pos_embedding = table.to(device=embed.pos_embedding.device, dtype=embed.pos_embedding.dtype)
    transformer.register_to_config(sample_height=latent_height, sample_width=latent_width)


def build_tiny_face_tools(num_clip_layers: int, mode: str = "released"):
    """``(image_encoder, shape_estimator)`` of the tiny model: a tiny random EVA-CLIP tower and the synthetic DECA +
    FLAME, drawn after ``torch.manual_seed(0)`` so that every tiny model (``--model tiny``, a tiny training run) has
    the same ones."""
    from ..face.shape import ShapeEstimator

    torch.manual_seed(0)
    image_encoder = build_tiny_image_encoder(num_clip_layers)
    return image_encoder, ShapeEstimator.synthetic(mode)
