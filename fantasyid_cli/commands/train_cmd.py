"""``fantasyid train``: train FantasyID from a YAML config on one device (accelerate launch for more)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..console import console, fail

EXAMPLES = """
Examples:

  python examples/train/make_tiny_data.py data/tiny && fantasyid train examples/train/tiny.yaml

  fantasyid train examples/train/tiny.yaml --set optim.lr=1e-4 --set train.max_steps=50

  fantasyid train --show-config        # every config key, its default and what it does

  fantasyid train examples/train/tiny.yaml --resume latest        # after a crash, Ctrl-C or a time limit

  fantasyid train examples/train/tiny.yaml --export-only --resume latest   # export the newest checkpoint

  fantasyid train examples/train/tiny.yaml --precompute --set data.windows=3   # cache latents + T5, then train

  accelerate launch --config_file examples/train/accelerate/ddp-8gpu.yaml -m fantasyid_cli train \\
      examples/train/fantasyid-5b.yaml --resume auto      # a requeued job: the newest checkpoint, if any

The run folder (output_dir) gets config.yaml, log.jsonl, tensorboard/, checkpoints/checkpoint-N/ and export/ (a
folder `fantasyid generate --model PATH` takes). Ctrl-C finishes the step, saves a checkpoint and exits (code 130).
"""


def _show_config(value: bool) -> None:
    if value:
        from fantasyid.training.config import config_reference

        typer.echo(config_reference(), nl=False)
        raise typer.Exit()


def train_command(
    config: Annotated[Path, typer.Argument(help="Training config (YAML), e.g. examples/train/tiny.yaml.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field: section.key=value (repeatable).")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="latest: the run's newest checkpoint (an error if none); auto: the newest if any, else a "
                          "fresh start; or a checkpoint folder."),
    ] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Run folder (overrides output_dir).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides train.max_steps).")] = None,
    export_only: Annotated[
        bool, typer.Option("--export-only", help="Only export the checkpoint given by --resume as a generate folder.")
    ] = False,
    precompute: Annotated[
        bool, typer.Option("--precompute", help="Encode VAE latents and T5 states into data.cache (default OUTPUT/cache; resumes, "
                           "rebuilds on changed settings), then train from it.")
    ] = False,
    precompute_only: Annotated[
        bool, typer.Option("--precompute-only", help="Build the cache as --precompute does, then stop.")
    ] = False,
    show_config: Annotated[
        bool, typer.Option("--show-config", callback=_show_config, is_eager=True,
                           help="Print every config key with its default and what it does (YAML), and exit.")
    ] = False,
) -> None:
    """Train FantasyID on a `fantasyid prep` manifest: resumable, checkpointed, exported for generate."""
    from fantasyid.training.config import load_config

    overrides = list(set_ or [])
    if output_dir is not None:
        overrides.append(f"output_dir={output_dir}")
    if max_steps is not None:
        overrides.append(f"train.max_steps={max_steps}")
    if export_only and resume is None:
        fail("--export-only needs --resume latest or a checkpoint folder", code=2)
    cfg = load_config(config, overrides)
    if not precompute_only:  # a --resume that names nothing is refused before anything slow
        from fantasyid.training.checkpoints import resume_checkpoint

        resume_checkpoint(resume, cfg.output_dir)
    command = "fantasyid train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else f"fantasyid train {config}"

    if export_only:
        from fantasyid.training.loop import export_checkpoint

        path = export_checkpoint(cfg, resume)
        console.print(f"exported → [bold]{path}[/]")
        return

    if precompute or precompute_only:
        from fantasyid.training.cache import cache_folder
        from fantasyid.training.cache import precompute as build_cache

        cfg.data.cache = str(cache_folder(cfg))
        report = build_cache(cfg.validate(), console=console)
        if report.rebuilt:
            console.print(f"[yellow]rebuilt[/]: the cache had another {report.rebuilt}")
        console.print(
            f"cache [bold]{report.folder}[/]: {report.clips} clips ({report.stored} encoded, {report.reused} reused, "
            f"{report.failed} unreadable); per clip {_mb(report.latent_bytes_per_clip)} latents + "
            f"{_mb(report.text_bytes_per_clip)} T5 states; {_mb(report.total_bytes)} in all"
        )
        if precompute_only:
            again = " ".join(arg for arg in sys.argv[2:] if arg != "--precompute-only") or str(config)
            console.print(f"train from it: fantasyid train {again} --set data.cache={report.folder}")
            return

    from fantasyid.training.loop import train

    result = train(cfg, resume=resume, command=command, console=console)
    skipped = f", {result.skipped_clips} clip(s) skipped" if result.skipped_clips else ""
    last = f"{result.losses[-1]:.4f}" if result.losses else "–"
    main = os.environ.get("RANK", "0") == "0"  # several processes (accelerate launch, torchrun): one summary
    if main:
        console.print(
            f"[bold]{result.status}[/] at step {result.step} (from {result.start_step}), loss {last}{skipped}, "
            f"{result.elapsed_s:.0f} s → {result.output_dir}/"
        )
    if main and result.checkpoint is not None:
        console.print(f"checkpoint: {result.checkpoint}")
    if main and result.export is not None:
        console.print(f"export: {result.export}  (fantasyid generate --model {result.export} …)")
    if result.status == "interrupted":
        again = _resume_command(config, list(set_ or []), cfg.output_dir, max_steps, precompute)
        if main:
            console.print(f"resume with: {again}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130)


def _resume_command(config: Path, sets: list[str], output_dir: str, max_steps: int | None, precompute: bool) -> str:
    """The command that resumes this run: its config, every --set, its run folder, --resume latest."""
    parts = ["fantasyid", "train", str(config)]
    for item in sets:
        parts += ["--set", item]
    parts += ["--output-dir", str(output_dir)]
    if max_steps is not None:
        parts += ["--max-steps", str(max_steps)]
    if precompute:
        parts.append("--precompute")
    return shlex.join([*parts, "--resume", "latest"])


def _mb(size: float) -> str:
    """Bytes as KiB, MiB or GiB (three significant figures)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size / 2**10:.3g} KiB"


train_command.__doc__ = (train_command.__doc__ or "") + "\n" + EXAMPLES
