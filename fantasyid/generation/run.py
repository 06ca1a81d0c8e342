"""One call that makes a batch: :func:`run_generation` checks the output folder, loads the pipeline once (when the
first item that is not done yet is claimed), and runs the batch loop with Rich progress bars."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..batch import DEFAULT_CLAIM_TIMEOUT, Shard
from .batch import BatchSummary, generate_batch
from .prompts import GenerationItem
from .request import model_key
from .settings import GenerateSettings

__all__ = ["run_generation"]


def run_generation(
    items: Sequence[GenerationItem],
    settings: GenerateSettings,
    out_dir: str | Path,
    *,
    model: str = "released",
    variant: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    offload: bool = False,
    memory: str | None = None,
    shape: str | Path | None = None,
    face_pack: str | None = None,
    mesh: str | Path | None = None,
    flame: str | Path | None = None,
    deca: str | Path | None = None,
    download: bool = False,
    console=None,
    loaded=None,
    shard: Shard | None = None,
    no_overwrite: bool = False,
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    step_callback: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Make every item of ``shard`` (what ``fantasyid generate`` runs), with Rich progress bars.

    The output folder is checked first; the pipeline is loaded once, when the first item that is not done yet is
    claimed (a rerun of a finished batch loads nothing). ``loaded`` (a
    :class:`~fantasyid.pipelines.loading.LoadedPipeline` of ``model``) skips loading. With ``device`` ``auto`` or
    ``cuda``, a launcher's ``LOCAL_RANK`` picks the GPU. ``step_callback(done, total)`` is called after every
    denoising step (the web app's progress bar). ``memory`` (``auto``, ``full``, GB or a plan name; default
    ``auto``, or ``offload`` with ``offload``) picks the memory plan (:mod:`fantasyid.pipelines.memory`) before
    anything loads; a budget no plan fits is refused. The plan and its predicted peak go into every sidecar. A
    given ``loaded`` pipeline keeps its placement.
    """
    import PIL.Image
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..batch import local_rank, pick_gpu, sigterm_as_interrupt
    from ..face import load_image
    from ..face.shape import check_shape_mode, load_shape_file
    from ..io import check_output_dir
    from ..pipelines.acceleration import describe_skips
    from ..pipelines.loading import check_model_folder, fit_size, load_pipeline

    console = console or Console(stderr=True)
    check_output_dir(out_dir)
    if loaded is None:
        check_model_folder(model)  # a folder that is not a model: one line, before any progress bar
    shard = shard or Shard()
    vertices = load_shape_file(shape) if shape is not None else None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = pick_gpu(device, local_rank(), gpus)
    key = model_key(model, shape, variant=variant)
    prediction = None
    if loaded is None:  # refused here, in one line, before anything loads
        from ..pipelines.memory import plan_for

        prediction, _ = plan_for(model, memory, offload=offload, device=device, dtype=dtype, variant=variant,
                                 frames=settings.frames, height=settings.height, width=settings.width)
    model_info: dict[str, Any] = {}
    state: dict[str, Any] = {"loaded": loaded}

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        videos = progress.add_task("videos", total=len(shard.take(len(items))))
        steps = progress.add_task("steps", total=settings.steps, visible=False)

        def load() -> None:  # once, before the first item that is made
            if state["loaded"] is None:
                loading = progress.add_task(f"loading the {model} model…", total=None)
                state["loaded"] = load_pipeline(
                    model, variant=variant, device=device, dtype=dtype, offload=offload, face_pack=face_pack,
                    mesh=None if mesh is None else str(mesh), flame=None if flame is None else str(flame),
                    deca=None if deca is None else str(deca), download=download, shape_needed=vertices is None,
                    height=settings.height, width=settings.width, memory_plan=prediction.plan,
                )
                progress.remove_task(loading)
            fit_size(state["loaded"], settings.height, settings.width)  # tiny takes any size; a fixed-size one refuses
            if shape is not None:
                check_shape_mode(shape, state["loaded"].variant)  # a SHAPE.npz of the other mode is refused
            info = state["loaded"].info
            if info.get("random_weights"):
                console.print(f"[yellow]note:[/] {info['note']}")
            state["loaded"].pipe.set_progress_bar_config(disable=True)
            if settings.cache or settings.compile:
                from ..pipelines.acceleration import accelerate

                accelerate(state["loaded"].pipe, cache=settings.cache, compile=settings.compile)
            model_info.update(info)
            if shape is not None:
                model_info["shape_file"] = str(Path(shape).resolve())
                model_info["shape_sha256"] = key["shape_sha256"]

        def on_step(pipeline, step, timestep, tensors):
            progress.update(steps, completed=step + 1)
            if step_callback is not None:
                step_callback(step + 1, settings.steps)
            return {}

        def runner(item: GenerationItem, seed: int):
            pipe = state["loaded"].pipe
            image = PIL.Image.fromarray(load_image(item.ref))
            progress.reset(steps, total=settings.steps, visible=True, description=f"steps ({item.ref.name})")
            generator = torch.Generator(device="cpu").manual_seed(seed)
            gpu = pipe._execution_device if pipe._execution_device.type == "cuda" else None
            if gpu is not None:
                torch.cuda.reset_peak_memory_stats(gpu)
            result = pipe(
                image,
                item.prompt,
                negative_prompt=settings.negative_prompt,
                height=settings.height,
                width=settings.width,
                num_frames=settings.frames,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                generator=generator,
                vertices=vertices,
                callback_on_step_end=on_step,
            )
            identity = result.identity
            extra = {
                "faces_in_reference": identity.num_faces,
                "face_bbox": [round(v, 1) for v in identity.bbox] if identity.bbox else None,
            }
            if identity.num_faces > 1:
                console.print(f"[yellow]note:[/] {item.ref.name} has {identity.num_faces} faces; the largest was used")
            if result.acceleration is not None:
                extra["acceleration"] = result.acceleration
                skipped = result.acceleration.get("skipped")
                if skipped:
                    console.print(f"cache {settings.cache.split(':')[0]}: {describe_skips(skipped)} ({item.ref.name})")
            if prediction is not None:  # the plan, what it predicted, and on a GPU what this video really took
                extra["memory"] = prediction.to_dict()
                if gpu is not None:
                    extra["memory"]["measured_peak_gib"] = round(torch.cuda.max_memory_allocated(gpu) / 2**30, 2)
            return result.frames[0], extra

        with sigterm_as_interrupt():  # a launcher stopping this process: the claim and partial files go too
            summary = generate_batch(
                runner, items, settings, out_dir, model_info,
                on_item_end=lambda index, result: progress.advance(videos),
                model=key, shard=shard, no_overwrite=no_overwrite, claim_timeout=claim_timeout, before_first=load,
                on_note=lambda index, text: console.print(f"[yellow]note:[/] {text}", highlight=False, soft_wrap=True),
            )
    return summary
