"""The training loop on accelerate: one CPU, one GPU, DDP, DeepSpeed ZeRO-2 or FSDP, one node or several.

``train(config)`` runs in the current process (``fantasyid train CONFIG``); under ``accelerate launch`` or
``torchrun`` every process runs it and accelerate connects them. Global batch, learning rate and steps mean the
same whatever the number of processes: gradient accumulation makes up the global batch, and the learning-rate
schedule advances once per optimizer step.

Each step writes one JSON line to ``OUTPUT/log.jsonl`` (and TensorBoard scalars); every ``checkpoint.every`` steps the
full state is saved (:mod:`fantasyid.training.checkpoints`); Ctrl-C finishes the step, saves and returns; a NaN or
infinite loss stops the run naming the step and the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import FantasyIDError
from ..io import check_output_dir, write_text
from .config import TrainConfig, config_to_dict, dump_config

__all__ = ["TrainingError", "TrainResult", "train"]


class TrainingError(FantasyIDError):
    """Training cannot go on (a NaN loss, a data folder where nothing can be read)."""


@dataclass
class TrainResult:
    output_dir: Path
    step: int  #: last optimizer step done
    status: str  #: "finished" or "interrupted"
    start_step: int = 0
    losses: list[float] = field(default_factory=list)  #: global loss of each step run in this call
    skipped_clips: int = 0
    checkpoint: Path | None = None
    export: Path | None = None
    elapsed_s: float = 0.0


class _Interrupt:
    """SIGINT sets a flag; the loop finishes its step, saves a checkpoint and returns."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _make_state():
    from accelerate import PartialState

    import os

    # DeepSpeed on CPU needs the gloo backend chosen before the Accelerator exists (OFFLINE.md)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not torch.cuda.is_available():
        if _deepspeed_requested():
            return PartialState(backend="gloo")  # DeepSpeed's CPU accelerator over gloo (cpu=True would mean DDP)
        return PartialState(cpu=True, backend="gloo")  # MULTI_CPU: real DDP over gloo
    return PartialState()


def _deepspeed_requested() -> bool:
    """``accelerate launch`` with a DeepSpeed config (it sets ACCELERATE_USE_DEEPSPEED for every process)."""
    import os

    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def _flat_hparams(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat_hparams(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def _truncate_log(path: Path, step: int) -> None:
    """Keep only the log lines of steps up to ``step`` (a resumed run rewrites what came after)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    write_text(path, "".join(line + "\n" for line in kept))


def train(
    config: TrainConfig,
    *,
    resume: str | None = None,
    command: str | None = None,
    console=None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train with ``config`` (validated), resuming from ``resume`` (``"latest"``, ``"auto"`` or a checkpoint folder:
    see :func:`~fantasyid.training.checkpoints.resume_checkpoint`)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler

    from ..data.caption import missing_captions_warning
    from ..data.dataset import ClipDataset, collate_items, require_shapes
    from .checkpoints import find_resume, save_checkpoint
    from .model import build_components, parameter_groups
    from .sampler import StepBatchSampler
    from .step import compute_loss, frozen_dtype, place_frozen, prepare_inputs

    config.validate()
    check_output_dir(config.output_dir, option="output_dir")  # one line (not a traceback) for a read-only folder
    t0 = time.perf_counter()
    state = _make_state()
    accumulation = config.accumulation(state.num_processes)
    out = Path(config.output_dir)
    d, t = config.data, config.train

    # 1. Model (seeded identically on every process) and data, checked before anything slow
    needs_vertices = config.model.identity and config.model.vertex_tokens
    if needs_vertices:
        require_shapes(d.manifest)  # a manifest made without DECA: one line, before any model is built
    set_seed(t.seed)
    components = build_components(config.model, seed=t.seed)
    clip_size = components.image_encoder.config.image_size
    dataset = ClipDataset(d.manifest, frames=d.frames, height=d.height, width=d.width, fps=d.fps, views=d.views,
                          clip_image_size=clip_size, num_vertices=components.num_vertices, seed=t.seed,
                          holdout=d.holdout, reader=d.reader, windows=d.windows, shape_mode=config.model.variant,
                          vertices=needs_vertices)  # fmt: skip
    uncaptioned = missing_captions_warning(sum(not row["caption"] for row in dataset.rows), len(dataset.rows))
    if uncaptioned and state.is_main_process:  # once per run, not once per process
        _print(console, f"[bold yellow]warning:[/] {d.manifest}: {uncaptioned}")
    cache = None
    if d.cache:  # precomputed latents and T5 states: refused when built under other settings or incomplete
        from .cache import open_cache

        cache = dataset.cache = open_cache(config, components, dataset.rows, state.device)
    resume_path, start_step = find_resume(resume, config, dataset.sha256)
    if resume == "auto" and resume_path is None and state.is_main_process:
        _print(console, f"[yellow]note:[/] --resume auto: no checkpoint in '{out}/checkpoints', starting at step 0")
    if start_step >= t.max_steps:
        raise TrainingError(f"the checkpoint is at step {start_step}, train.max_steps is {t.max_steps}: nothing to do",
                            hint="raise train.max_steps (e.g. --set train.max_steps=N)")
    dataset[(0, 0)]  # decodes one item now: a wrong vertex count or an unreadable data folder fails here

    # 2. Accelerator, optimizer, schedule
    accelerator = Accelerator(
        cpu=state.device.type == "cpu" and state.num_processes > 1 and not _deepspeed_requested(),
        gradient_accumulation_steps=accumulation,
        mixed_precision=t.mixed_precision,
        log_with="tensorboard" if config.log.tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tensorboard")),
    )
    device = accelerator.device
    weight_dtype = frozen_dtype(t.mixed_precision, device)
    for frozen in (components.pipe.vae, components.pipe.text_encoder, components.image_encoder):
        place_frozen(frozen, device, weight_dtype)
    module = components.module
    o = config.optim
    optimizer = torch.optim.AdamW(parameter_groups(module, o.lr, o.identity_lr), lr=o.lr, betas=(o.beta1, o.beta2),
                                  weight_decay=o.weight_decay, eps=o.eps)
    lr_schedule = get_scheduler(o.scheduler, optimizer, num_warmup_steps=o.warmup_steps,
                                num_training_steps=t.max_steps, num_cycles=o.num_cycles)
    configure_deepspeed(accelerator, config)
    module, optimizer = accelerator.prepare(module, optimizer)
    # taken after prepare: FSDP2 replaces the parameters by sharded ones, and clipping the old ones does nothing
    params = [p for p in module.parameters() if p.requires_grad]
    if resume_path is not None:
        accelerator.load_state(str(resume_path))  # weights_only loads: model, optimizer, RNG states
        with warnings.catch_warnings():  # the schedule is a function of the step: replay it (no pickle to load)
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start_step):
                lr_schedule.step()

    main = accelerator.is_main_process
    log_path = out / "log.jsonl"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "config.yaml", dump_config(config, command))
        if resume_path is not None:
            _truncate_log(log_path, start_step)
        elif log_path.exists():
            log_path.unlink()
    if config.log.tensorboard:
        accelerator.init_trackers("fantasyid", config=_flat_hparams(config_to_dict(config)))

    sampler = StepBatchSampler(len(dataset), seed=t.seed, global_batch=t.global_batch, micro_batch=t.micro_batch,
                               num_processes=accelerator.num_processes, rank=accelerator.process_index,
                               start_step=start_step, max_steps=t.max_steps)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_items,
                                         num_workers=d.num_workers, persistent_workers=False)
    batches = iter(loader)

    result = TrainResult(out, start_step, "finished", start_step=start_step)
    last_checkpoint = resume_path
    progress = _progress(console, main, start_step, t.max_steps)
    step = start_step
    module.train()
    with _Interrupt() as interrupt, progress:
        task = progress.add_task("train", total=t.max_steps, completed=start_step, loss=float("nan"), lr=0.0)
        while step < t.max_steps:
            step += 1
            micro_losses, skipped = [], []
            for _ in range(accumulation):
                batch = next(batches)
                skipped.extend(batch["skipped"])
                with accelerator.accumulate(module):
                    inputs = prepare_inputs(components, batch, d, t.seed, device, weight_dtype, t.timestep_range,
                                            cache.empty_text_states if cache is not None else None)
                    with accelerator.autocast():
                        loss = compute_loss(module, components, inputs)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and o.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(params, o.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                micro_losses.append(loss.detach().float())
            lr = lr_schedule.get_last_lr()[0]
            lr_schedule.step()
            step_loss = accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean").item()
            result.skipped_clips += int(accelerator.reduce(torch.tensor(len(skipped), device=device),
                                                           reduction="sum").item())
            if not math.isfinite(step_loss):
                where = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint was saved"
                raise TrainingError(f"the loss is {step_loss} at step {step}; training stopped ({where})",
                                    hint="resume from that checkpoint with a lower optim.lr, or check the data")
            result.losses.append(step_loss)
            if main:
                for skip in skipped:
                    _print(console, f"[yellow]skipped clip[/] {skip.clip_id}: {skip.reason}")
                if step % config.log.every == 0 or step == t.max_steps:
                    record = {"step": step, "loss": step_loss, "lr": lr, "skipped_clips": result.skipped_clips,
                              "time": round(time.perf_counter() - t0, 3)}
                    with open(log_path, "a", encoding="utf-8") as handle:
                        handle.write(json.dumps(record) + "\n")
                progress.update(task, completed=step, loss=step_loss, lr=lr)
            if config.log.tensorboard:
                accelerator.log({"train/loss": step_loss, "train/lr": lr}, step=step)
            if on_step is not None:
                on_step(step, step_loss)
            stop = _agree(accelerator, interrupt.requested)
            every = config.checkpoint.every
            if stop or (every and step % every == 0) or step == t.max_steps:
                last_checkpoint = save_checkpoint(accelerator, config, step, dataset.sha256,
                                                  {"skipped_clips": result.skipped_clips})
            if config.validation.every and step % config.validation.every == 0:
                from .validation import run_validation

                run_validation(components, accelerator, config, step, console=console)
            if stop:
                result.status = "interrupted"
                break

    result.step, result.checkpoint = step, last_checkpoint
    if result.status == "finished" and config.checkpoint.export:
        result.export = export_run(components, accelerator, config, dataset.sha256, step)
    accelerator.end_training()
    result.elapsed_s = time.perf_counter() - t0
    return result


def configure_deepspeed(accelerator, config: TrainConfig) -> None:
    """Fill DeepSpeed's batch and clipping values from the training config (accelerate would otherwise leave
    ``train_micro_batch_size_per_gpu: auto`` unresolved, as no dataloader is prepared, and clip at 1.0)."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = config.train.micro_batch
    ds["gradient_accumulation_steps"] = accelerator.gradient_accumulation_steps
    ds["train_batch_size"] = config.train.micro_batch * accelerator.gradient_accumulation_steps * \
        accelerator.num_processes
    ds["gradient_clipping"] = float(config.optim.max_grad_norm)


def _agree(accelerator, flag: bool) -> bool:
    """True on every process when any process asks (Ctrl-C reaches the processes at slightly different times)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor(1.0 if flag else 0.0, device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def export_run(components, accelerator, config: TrainConfig, manifest_sha256: str, step: int) -> Path | None:
    """The final model as a ``fantasyid generate --model PATH`` folder (main process writes it)."""
    from .export import export_model

    accelerator.wait_for_everyone()
    path = None
    if accelerator.is_main_process:
        path = export_model(components, accelerator.unwrap_model(components.module),
                            Path(config.output_dir) / "export", config, manifest_sha256, step=step)
    accelerator.wait_for_everyone()
    return path


def _print(console, text: str) -> None:
    if console is not None:
        console.print(text, highlight=False)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, *args, **kwargs):
        pass


def _progress(console, main: bool, start: int, total: int):
    """Rich progress line: step, loss, lr, it/s, ETA (main process only)."""
    if console is None or not main:
        return _NoProgress()
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:.2f} it/s" if task.speed else "– it/s")

    return Progress(
        TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("lr {task.fields[lr]:.2e}"), Speed(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
    )


def export_checkpoint(config: TrainConfig, resume: str) -> Path:
    """Export a checkpoint of a run (``"latest"`` or a folder) as a generate folder, without training."""
    from accelerate import Accelerator

    from ..data.manifest import manifest_sha256
    from .checkpoints import find_resume
    from .export import export_model, require_exportable
    from .model import build_components

    require_exportable(config)
    path, step = find_resume(resume, config, manifest_sha256(config.data.manifest))
    if path is None:
        raise TrainingError(f"no checkpoint in '{config.output_dir}/checkpoints' to export",
                            hint="train first, or pass --resume PATH/TO/checkpoint-N")
    components = build_components(config.model, seed=config.train.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    module = accelerator.prepare(components.module)
    accelerator.load_state(str(path))
    folder = Path(config.output_dir) / "export"
    export_model(components, accelerator.unwrap_model(module), folder, config,
                 manifest_sha256(config.data.manifest), step=step)
    return folder
