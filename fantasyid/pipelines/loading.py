"""Building a ready-to-run :class:`FantasyIDPipeline`: :func:`load_pipeline`, the one entry point.

Loading reads top-down, each layer importing only the ones below it:

* :func:`load_pipeline` (here) checks the request (:mod:`.checks`: device, dtype, size) and picks the loader;
* the loaders assemble components: :mod:`.load_tiny` (every learned component tiny and random, real face detection
  from the offline ``buffalo_sc`` pack), :mod:`.load_released` (the authors' checkpoint folder, ``acvlab/FantasyID``
  layout) and :mod:`.load_saved` (fantasyid's own format); what they share is in :mod:`.components`;
* the formats they read: :mod:`.checkpoint` (our format: ``model_index.json``, writing and reading) and
  :mod:`.weights` (tensors of a folder, strict loading);
* weight resolution, :mod:`fantasyid.hub` (explicit path → ``$FANTASYID_HOME`` → the hub cache), knows nothing of
  pipelines.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, InputError
from ..face.shape import ShapeEstimator, load_shape_file, synthetic_flame_model  # noqa: F401  (public here too)
from ..hub import checkpoint_spec, resolve
from .checks import check_size, fixed_size, pick_device, pick_dtype
from .checkpoint import is_fantasyid_checkpoint, require_model_folder
from .components import LoadedPipeline, release_precision
from .load_released import EVA_FILE, ReleasedSizes, load_released, load_released_transformer
from .load_saved import load_fantasyid_checkpoint
from .load_tiny import load_tiny

__all__ = ["EVA_FILE", "LoadedPipeline", "ReleasedSizes", "ShapeEstimator", "check_model_folder", "fit_size",
           "load_pipeline", "load_released_transformer", "load_shape_file", "release_precision",
           "synthetic_flame_model"]


# --------------------------------------------------------------------------------------------------------- entry
def load_pipeline(
    model: str = "released",
    *,
    device: str = "auto",
    dtype: str = "auto",
    offload: bool = False,
    face_root: str | None = None,
    face_pack: str | None = None,
    mesh: str | None = None,
    flame: str | None = None,
    deca: str | None = None,
    download: bool = False,
    shape_needed: bool = True,
    variant: str | None = None,
    sizes: ReleasedSizes | None = None,
    height: int | None = None,
    width: int | None = None,
    memory_plan=None,
) -> LoadedPipeline:
    """Build the pipeline for ``model``: ``"tiny"``, ``"released"`` (resolved: $FANTASYID_HOME/FantasyID, then the
    hub cache; downloaded only with ``download``), a hub id (``acvlab/FantasyID``), a folder in the release's layout,
    or a folder in our own format (:mod:`fantasyid.pipelines.checkpoint`, either variant).

    ``variant``: ``released`` or ``paper``; ``None`` takes the checkpoint's (``released`` for the tiny model and the
    release). A checkpoint of the other variant is an error. ``shape_needed=False`` skips DECA + FLAME (when the
    caller brings vertices, e.g. ``--shape``).

    ``height`` / ``width`` (pixels), when given, are checked before anything loads: the tiny model is built for
    them (any multiple of 16); a model whose learned position embeddings fix its size refuses other sizes. The
    device and dtype are checked first too (:mod:`fantasyid.pipelines.checks`).

    ``memory_plan`` (a :class:`~fantasyid.pipelines.memory.Plan`, from ``plan_for``) places the components as the
    plan says (fp8 storage, T5 off, model or group offloading, VAE tiling); without one, ``offload`` chooses model
    CPU offload and the VAE is always tiled (the library's behaviour before memory plans)."""
    if variant not in (None, "released", "paper"):
        raise InputError(f"unknown variant {variant!r}", hint="use released or paper")
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    check_size(height, width, None, model)
    if model == "tiny":
        loaded = load_tiny(torch_device, torch_dtype, face_root, variant or "released")
        fit_size(loaded, height, width)
    else:
        if is_fantasyid_checkpoint(model):
            check_size(height, width, fixed_size(Path(model).expanduser()), model)
            loaded = load_fantasyid_checkpoint(
                model, device=torch_device, dtype=torch_dtype, variant=variant, face_root=face_root,
                face_pack=face_pack, flame=flame, deca=deca, shape_needed=shape_needed,
            )
        else:
            spec, explicit = checkpoint_spec(model)
            check_model_folder(model)
            if variant not in (None, "released"):
                raise ConfigError(
                    f"'{model}' is the authors' released checkpoint: the {variant} variant needs a checkpoint in "
                    "fantasyid's own format", hint="drop --variant, or point --model at a paper checkpoint folder"
                )
            checkpoint = resolve(spec, explicit, download=download).require()
            require_model_folder(checkpoint)
            check_size(height, width, fixed_size(checkpoint), model)
            loaded = load_released(
                checkpoint, torch_device, torch_dtype, mesh, flame, deca, face_pack or "antelopev2", shape_needed,
                sizes or ReleasedSizes(),
            )
        if memory_plan is None:
            if offload:
                loaded.pipe.enable_model_cpu_offload(device=torch_device)
            else:
                loaded.pipe.to(torch_device)
            loaded.pipe.vae.enable_slicing()
            loaded.pipe.vae.enable_tiling()
    if memory_plan is not None:
        from .memory import apply_plan

        apply_plan(loaded.pipe, memory_plan, torch_device)
        loaded.info["memory_plan"] = memory_plan.name
    loaded.info["device"] = str(torch_device)
    return loaded


def check_model_folder(model: str) -> None:
    """A ``--model`` that is a local folder must be a model (our format or the release's layout): an empty folder,
    or one whose ``model_index.json`` is ``{}``, says so in one line instead of naming the first weight it lacks.
    Reads no weights: callers run it before anything slow."""
    if model not in ("tiny", "released") and Path(model).expanduser().is_dir():
        require_model_folder(model)


def fit_size(loaded: LoadedPipeline, height: int | None, width: int | None) -> None:
    """Make ``loaded`` ready for ``height`` × ``width`` videos, or refuse in one line.

    The tiny model is built for the requested size (its position table is recomputed: it is random anyway); any
    other model whose learned position embeddings fix its size must be asked for that size.
    """
    from .tiny import set_tiny_size

    check_size(height, width, None, loaded.info.get("model", "?"))
    if height is None and width is None:
        return
    transformer = loaded.pipe.transformer
    config = transformer.config
    factor = loaded.pipe.vae_scale_factor_spatial
    current = (config.sample_height * factor, config.sample_width * factor)
    want = (height or current[0], width or current[1])
    if loaded.info.get("model") == "tiny":
        set_tiny_size(transformer, want[0] // factor, want[1] // factor)
    elif config.use_learned_positional_embeddings:
        check_size(*want, current, loaded.info.get("model", "?"))
