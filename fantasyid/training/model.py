"""What trains and what stays frozen: components from ``model.init``, the ablation swaps, LoRA, the optimizer's set.

The trainable part is one :class:`TrainModule` (the transformer plus the identity branch), the module accelerate
wraps for DDP / DeepSpeed / FSDP. The frozen parts (VAE, T5, EVA-CLIP; DECA ran in prep) live in the pipeline
object, which also lends training its input preparation (prompt encoding, RoPE, image preprocessing) so that
training prepares inputs exactly as inference does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .ablations import IdentityBranch, drop_layer_refiner, use_qformer
from .config import ModelConfig

__all__ = ["TextAndVae", "TrainComponents", "TrainModule", "build_components", "load_text_and_vae", "parameter_groups",
           "trainable_parameters"]

#: LoRA targets: the backbone's self-attention projections only (the identity attention trains fully).
LORA_TARGETS = r"^transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)$"


class TrainModule(nn.Module):
    """The transformer and the identity branch, as one module: inputs → the transformer's v-prediction."""

    def __init__(self, transformer, identity: IdentityBranch | None):
        super().__init__()
        # FSDP's unit of sharding (accelerate's TRANSFORMER_BASED_WRAP reads it): the model's own block classes
        self._no_split_modules = list(getattr(transformer, "_no_split_modules", None) or [])
        self.transformer = transformer
        self.identity = identity

    def forward(self, model_input, text_states, timesteps, clip_hidden_states=None, vertices=None, rotary=None,
                ofs=None):
        tokens = None
        if self.identity is not None and clip_hidden_states is not None:
            tokens = self.identity(clip_hidden_states, vertices)  # (B, N_id, identity_dim), with gradients
        return self.transformer(
            hidden_states=model_input,  # (B, F', 2C, h, w)
            encoder_hidden_states=text_states,
            timestep=timesteps,
            ofs=ofs,
            image_rotary_emb=rotary,
            identity_tokens=tokens,
            return_dict=False,
        )[0]


@dataclass
class TrainComponents:
    pipe: Any  #: FantasyIDPipeline holding tokenizer, T5, VAE, scheduler, transformer, identity encoder
    image_encoder: Any  #: EVA-CLIP vision tower (frozen)
    module: TrainModule
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_vertices(self) -> int | None:
        encoder = self.pipe.identity_encoder
        return None if encoder is None else int(encoder.config.mesh_num_vertices[0])


def _load_base(config: ModelConfig, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """(pipeline, image encoder, info) for ``config.init``."""
    from ..pipelines.pipeline_fantasyid import FantasyIDPipeline

    init = config.init
    if init == "tiny":
        from ..pipelines.tiny import build_tiny_components, build_tiny_face_tools

        components = build_tiny_components(seed=seed, variant=config.variant)
        # the same tiny EVA-CLIP and DECA as `fantasyid generate --model tiny`
        image_encoder, shape_estimator = build_tiny_face_tools(
            components["identity_encoder"].config.num_clip_layers, config.variant
        )
        pipe = FantasyIDPipeline(**components)
        pipe.set_face_tools(shape_estimator=shape_estimator)
        return pipe, image_encoder, {"init": "tiny", "random_weights": True, "face_pack": "buffalo_sc"}
    path = _init_folder(init)
    if init.startswith("cogvideox:"):
        return _load_cogvideox(path, config)
    from ..pipelines.loading import load_pipeline

    loaded = load_pipeline(str(path), device="cpu", dtype="fp32", shape_needed=False, variant=config.variant)
    if loaded.pipe.identity_encoder is not None and loaded.pipe.identity_encoder.config.variant != config.variant:
        raise ConfigError(
            f"model.init '{init}' holds the {loaded.pipe.identity_encoder.config.variant!r} identity branch, "
            f"the config asks for model.variant={config.variant!r}",
            hint=f"set model.variant={loaded.pipe.identity_encoder.config.variant}",
        )
    return loaded.pipe, loaded.pipe.image_encoder, {"init": init, **loaded.info}


def _check_cogvideox_folder(folder: Path) -> None:
    """A CogVideoX-5B-I2V 1.0 diffusers folder, or one line saying what it is not."""
    if not (folder / "transformer").is_dir():
        raise ConfigError(f"'{folder}' is not a CogVideoX diffusers folder (no transformer/)",
                          hint="download THUDM/CogVideoX-5b-I2V and point model.init=cogvideox:PATH at it")
    if _transformer_json(folder).get("patch_size_t") is not None:
        raise ConfigError(f"'{folder}' is CogVideoX 1.5 (patch_size_t set): FantasyID builds on "
                          "CogVideoX-5B-I2V 1.0",
                          hint="point model.init=cogvideox:PATH at a THUDM/CogVideoX-5b-I2V folder")


def _transformer_json(folder: Path) -> dict[str, Any]:
    import json

    path = folder / "transformer" / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _folder_text_and_vae(folder: Path) -> tuple[Any, Any, Any]:
    """``(tokenizer, T5 encoder, VAE)`` of a diffusers-layout folder (CogVideoX, the release, a fantasyid export), in
    fp32 as :func:`~fantasyid.pipelines.loading.load_pipeline` loads them for training."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import AutoTokenizer, T5EncoderModel

    return (AutoTokenizer.from_pretrained(folder / "tokenizer"),
            T5EncoderModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32),
            AutoencoderKLCogVideoX.from_pretrained(folder / "vae", torch_dtype=torch.float32))


def _load_cogvideox(folder: Path, config: ModelConfig) -> tuple[Any, Any, dict[str, Any]]:
    """A CogVideoX-5B-I2V diffusers folder + fresh identity modules + EVA-CLIP and the mesh from the config."""
    from diffusers import CogVideoXDPMScheduler, CogVideoXTransformer3DModel

    from ..face.eva_clip import load_eva_clip_vision
    from ..models.configs import identity_encoder_config, transformer_config
    from ..models.identity_encoder import FantasyIDIdentityEncoder
    from ..models.mesh import load_mesh_hierarchy
    from ..models.transformer_fantasyid import FantasyIDTransformer3DModel
    from ..pipelines.pipeline_fantasyid import FantasyIDPipeline

    _check_cogvideox_folder(folder)
    for key in ("eva_clip", "mesh"):
        value = getattr(config, key)
        if not value or not Path(value).is_file():
            raise ConfigError(f"model.init=cogvideox:… needs model.{key} (a file), got {value!r}",
                              hint="the EVA02-CLIP-L-14-336 .pt and the release's assets/transform.pkl")
    base = CogVideoXTransformer3DModel.from_pretrained(folder / "transformer")
    identity_keys = {k: v for k, v in transformer_config(config.variant).items() if k.startswith("identity_")}
    transformer = FantasyIDTransformer3DModel.from_cogvideox(base, **identity_keys)
    encoder = FantasyIDIdentityEncoder(**identity_encoder_config(config.variant))
    encoder.load_mesh(load_mesh_hierarchy(config.mesh))
    tokenizer, text_encoder, vae = _folder_text_and_vae(folder)
    pipe = FantasyIDPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
        scheduler=CogVideoXDPMScheduler.from_pretrained(folder / "scheduler"),
        identity_encoder=encoder,
    )
    image_encoder = load_eva_clip_vision(config.eva_clip, None, dtype=torch.float32, device=torch.device("cpu"))
    return pipe, image_encoder, {"init": f"cogvideox:{folder}", "random_weights": False}


def _init_folder(init: str) -> Path:
    """The folder of a ``model.init`` other than ``tiny`` (checked to exist)."""
    path = init.split(":", 1)[1] if init.startswith(("released:", "cogvideox:")) else init
    if not Path(path).exists():
        raise ConfigError(
            f"model.init '{init}': '{path}' does not exist",
            hint="use tiny, cogvideox:PATH (CogVideoX-5B-I2V folder), released:PATH, or a fantasyid train export",
        )
    return Path(path)


@dataclass
class TextAndVae:
    """What ``--precompute`` encodes with: ``model.init``'s tokenizer, T5 and VAE, and nothing else."""

    pipe: Any  #: a FantasyIDPipeline without transformer (it lends the prompt encoding)
    max_text_seq_length: int  #: the transformer's text length (read from its config, the transformer not built)


def load_text_and_vae(config: ModelConfig, seed: int = 0) -> TextAndVae:
    """The T5 encoder and VAE of ``config.init`` with the weights :func:`build_components` gives them, without
    building the transformer, the identity modules or EVA-CLIP (whose weights ``--precompute`` never uses)."""
    from ..pipelines.pipeline_fantasyid import FantasyIDPipeline
    from ..pipelines.tiny import build_tiny_text_and_vae, cogvideox_scheduler, tiny_transformer_config

    if config.init == "tiny":
        tokenizer, text_encoder, vae = build_tiny_text_and_vae(seed=seed, variant=config.variant)
        length = tiny_transformer_config(config.variant)["max_text_seq_length"]
    else:
        folder = _init_folder(config.init)
        if config.init.startswith("cogvideox:"):
            _check_cogvideox_folder(folder)
        tokenizer, text_encoder, vae = _folder_text_and_vae(folder)
        length = int(_transformer_json(folder).get("max_text_seq_length", 226))  # CogVideoX's 226 by default
    pipe = FantasyIDPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=None,
                             scheduler=cogvideox_scheduler())
    return TextAndVae(pipe=pipe, max_text_seq_length=length)


def build_components(config: ModelConfig, seed: int = 0) -> TrainComponents:
    """Load ``config.init``, apply the ablations, freeze what does not train, add LoRA."""
    pipe, image_encoder, info = _load_base(config, seed)
    transformer, encoder = pipe.transformer, pipe.identity_encoder
    if config.identity and encoder is None:
        raise ConfigError(f"model.init '{config.init}' has no identity encoder", hint="use model.identity=false")

    # Ablations (Table 3): each touches only the modules it names
    if config.face_abstractor == "qformer":
        use_qformer(encoder)
    if config.layer_refiner is False:
        drop_layer_refiner(transformer)
    elif config.layer_refiner is True and transformer.identity_attention[0].refiner is None:
        raise ConfigError("model.layer_refiner=true needs a model with F_l", hint="use model.variant=paper")
    identity = IdentityBranch(encoder, vertex_tokens=config.vertex_tokens) if config.identity else None

    # Frozen: VAE, T5, EVA-CLIP
    for frozen in (pipe.vae, pipe.text_encoder, image_encoder):
        frozen.requires_grad_(False).eval()

    transformer.train()
    if config.trainable == "full":
        transformer.requires_grad_(True)
    else:
        transformer.requires_grad_(False)
        transformer.identity_attention.requires_grad_(True)
    if config.trainable == "lora":
        from peft import LoraConfig

        transformer.add_adapter(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                                           init_lora_weights=True, target_modules=LORA_TARGETS))
    if identity is None:
        transformer.identity_attention.requires_grad_(False)  # unused without identity tokens
    else:
        identity.train().requires_grad_(True)
        unused = set(identity.vertex_module_names()) if not config.vertex_tokens else set()
        if type(encoder.face_abstractor).__name__ == "FaceAbstractor":
            unused |= set(encoder.dead_parameter_names())  # released quirk: never reach the output
        for name, parameter in encoder.named_parameters():
            if name in unused:
                parameter.requires_grad_(False)
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    info = {**info, "variant": config.variant, "trainable": config.trainable}
    return TrainComponents(pipe=pipe, image_encoder=image_encoder, module=TrainModule(transformer, identity), info=info)


def trainable_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Named parameters that train, in a fixed order."""
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


#: the identity modules' parameter names in :class:`TrainModule` (face encoder; identity attention with F_l)
IDENTITY_PREFIXES = ("identity.", "transformer.identity_attention.")


def parameter_groups(module: nn.Module, lr: float, identity_lr: float | None) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one at ``lr``; with ``identity_lr``, the identity modules in their own group."""
    named = trainable_parameters(module)
    if identity_lr is None:
        return [{"params": [p for _, p in named], "lr": lr}]
    backbone = [p for name, p in named if not name.startswith(IDENTITY_PREFIXES)]
    identity = [p for name, p in named if name.startswith(IDENTITY_PREFIXES)]
    return [group for group in ({"params": backbone, "lr": lr}, {"params": identity, "lr": identity_lr})
            if group["params"]]
