"""The end of a run: the trained model as one ``fantasyid generate --model PATH`` folder.

The folder is written by :func:`fantasyid.pipelines.checkpoint.save_fantasyid_checkpoint` (the project's one
checkpoint format); its info records the training config, the manifest hash, the step and the settings it generates
with by default (``generation_defaults``). LoRA weights are fused
into a copy of the backbone first, so the export is a plain model.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..errors import ConfigError
from .config import TrainConfig, config_to_dict

__all__ = ["export_model", "exportable"]


def exportable(config: TrainConfig) -> str | None:
    """Why a run of ``config`` cannot be exported in the generate format (``None`` when it can)."""
    m = config.model
    if not m.identity:
        return "model.identity=false trains no identity branch"
    return None  # the w/o FA and w/o FV switches live in the identity encoder's config: they export


def export_model(components, module, folder: Path, config: TrainConfig, manifest_sha256: str,
                 step: int | None = None) -> Path | None:
    """Write the export of ``module`` (the unwrapped :class:`~fantasyid.training.model.TrainModule`); ``None`` (and
    nothing written) for runs :func:`exportable` refuses."""
    from ..pipelines.checkpoint import save_fantasyid_checkpoint
    from ..pipelines.pipeline_fantasyid import FantasyIDPipeline

    reason = exportable(config)
    if reason is not None:
        return None
    transformer = copy.deepcopy(module.transformer).eval()
    if getattr(transformer, "peft_config", None):
        transformer.fuse_lora()
        transformer.unload_lora()
    transformer.disable_gradient_checkpointing()
    transformer.requires_grad_(False)
    encoder = copy.deepcopy(module.identity.encoder).eval().requires_grad_(False)
    pipe = components.pipe
    export = FantasyIDPipeline(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae,
                               transformer=transformer.float(), scheduler=pipe.scheduler,
                               identity_encoder=encoder.float())
    analyzer = None
    if components.info.get("face_pack") == "buffalo_sc":  # the tiny model's pack, recorded in the export
        from ..face import FaceAnalyzer
        from ..face.assets import install_buffalo_sc
        from ..hub import fantasyid_home

        analyzer = FaceAnalyzer(pack="buffalo_sc", root=install_buffalo_sc(fantasyid_home()).parents[1])
    export.set_face_tools(face_analyzer=analyzer, image_encoder=components.image_encoder,
                          shape_estimator=pipe.shape_estimator)
    info = {
        "generation_defaults": generation_defaults(config),
        "trained_by": "fantasyid train",
        "training_config": config_to_dict(config),
        "manifest_sha256": manifest_sha256,
        "init": config.model.init,
        **({"step": step} if step is not None else {}),
        "random_weights": bool(components.info.get("random_weights", False)),
    }
    save_fantasyid_checkpoint(export, folder, info=info)
    return Path(folder)


def generation_defaults(config: TrainConfig) -> dict[str, float | int]:
    """What the export generates with unless told otherwise (its size is read from its own configs): the steps and
    guidance of the run's validation videos when validation was on, else its base model's (``model.init``: the tiny
    model's 4 steps for ``tiny``, the release's 50 otherwise, a trained export's own); the frame rate it was trained
    at."""
    from ..generation.settings import model_defaults

    base = model_defaults(config.model.init)
    v = config.validation
    steps, guidance = (v.steps, v.guidance) if v.every > 0 else (base["steps"], base["guidance"])
    return {"steps": int(steps), "guidance": float(guidance), "fps": max(1, int(round(config.data.fps)))}


def require_exportable(config: TrainConfig) -> None:
    reason = exportable(config)
    if reason is not None:
        raise ConfigError(f"this run cannot be exported for fantasyid generate: {reason}")
