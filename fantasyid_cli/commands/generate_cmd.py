"""``fantasyid generate``: one video from a reference face and a prompt, or a batch from a prompt file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ..console import console, debug_enabled, err_console, fail
from ..options import Deca, Device, Dtype, Flame, Fps, Frames, Guidance, Height, Seed, Steps, Width

EXAMPLES = """
Examples:

  fantasyid generate --model tiny --ref me.png --prompt "a woman smiles at the camera"

  fantasyid generate --ref me.png --prompt "a man walks on the beach" --seed 7 --out videos/

  fantasyid generate --prompts batch.csv --out runs/exp1      # CSV: ref,prompt,seed,name  (or .jsonl)

  fantasyid generate --ref me.png --prompt "…" --shape edited.npz   # use an edited 3D face

  fantasyid generate --prompts batch.csv --out runs/exp1 --status   # done / claimed / failed / stale / missing

  torchrun --nproc-per-node 8 --no-python fantasyid generate --prompts batch.csv --out runs/exp1   # 8 GPUs

  fantasyid generate --prompts batch.csv --out runs/exp1 --shard 2 --num-shards 4   # this process: shard 2 of 4

  fantasyid generate --ref me.png --prompt "…" --cache fbc:threshold=0.1 --compile   # faster, approximate

  fantasyid generate --plan --memory 12      # the plan for a 12 GB GPU and its predicted peak; loads nothing

  fantasyid generate --ref me.png --prompt "…" --memory 16   # fit in 16 GB (default: auto, the GPU's free memory)

Re-running a batch skips the videos already made for the same request (prompt, seed, reference, model, settings)
and remakes, saying why, those whose request changed (--no-overwrite keeps them and fails instead). Any number of
processes may write into one --out: each video is claimed first (a lock file in OUT/.fantasyid/claims). --shard and
--num-shards default to the launcher's RANK/WORLD_SIZE, SLURM_PROCID/SLURM_NTASKS or SLURM_ARRAY_TASK_ID/COUNT;
LOCAL_RANK picks the GPU. --model tiny runs every component at toy size with random weights on a CPU in seconds (real
face detection): a dry run, not a real video.
"""


def generate(
    ref: Annotated[Path | None, typer.Option(help="Reference photo with one clearly visible face.")] = None,
    prompt: Annotated[str | None, typer.Option(help="What the person does (English).")] = None,
    prompts: Annotated[
        Path | None, typer.Option(help="Batch file: CSV with header ref,prompt[,seed][,name], or JSONL.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder for the mp4 files and their JSON sidecars.")] = Path("outputs"),
    model: Annotated[str, typer.Option(help="released | tiny | PATH to a checkpoint folder.")] = "released",
    variant: Annotated[
        Literal["released", "paper"] | None,
        typer.Option(help="Identity branch; default: the checkpoint's (paper needs a paper checkpoint).")
    ] = None,
    seed: Seed = 42,
    steps: Steps = None,
    guidance: Guidance = None,
    frames: Frames = None,
    height: Height = None,
    width: Width = None,
    fps: Fps = None,
    dtype: Dtype = "auto",
    device: Device = "auto",
    offload: Annotated[bool, typer.Option(help="Model CPU offload (less GPU memory, slower): --memory offload.")] = False,
    memory: Annotated[
        str | None,
        typer.Option(
            help="GPU memory to fit in: auto (the GPU's free memory), full, GB (24, 16, 12, 8, …) or a plan by name "
            "(full, t5-off, fp8, offload, fp8-offload, group-block, group-leaf). The fastest plan predicted to fit "
            "is used; the sidecar records it.",
            show_default="auto",
        ),
    ] = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="Print the memory plan and its predicted GPU peak and host RAM; load nothing.")
    ] = False,
    shape: Annotated[Path | None, typer.Option(help="3D face to use: SHAPE.npz from edit-shape, or a .ply.")] = None,
    face_pack: Annotated[
        str | None,
        typer.Option(help="insightface pack.", show_default="the checkpoint's; antelopev2 for the release"),
    ] = None,
    mesh: Annotated[Path | None, typer.Option(help="The release's transform.pkl (mesh hierarchy).")] = None,
    flame: Flame = None,
    deca: Deca = None,
    download: Annotated[bool, typer.Option(help="Allow downloading the released checkpoint from the hub.")] = False,
    shard: Annotated[
        int | None,
        typer.Option(help="Make only shard I of --num-shards (items I, I+N, …); default: from the launcher's RANK etc."),
    ] = None,
    num_shards: Annotated[int | None, typer.Option(help="Number of shards the batch is split into.")] = None,
    status: Annotated[
        bool, typer.Option("--status", help="List done / claimed / failed / stale / missing items; make nothing.")
    ] = False,
    no_overwrite: Annotated[
        bool, typer.Option("--no-overwrite", help="Keep videos made for another request (fail them) instead of remaking.")
    ] = False,
    claim_timeout: Annotated[
        float, typer.Option(help="Seconds without a heartbeat after which another process's claim is taken over.")
    ] = 600.0,
    cache: Annotated[
        str | None,
        typer.Option(
            help="Skip work across denoising steps with a diffusers cache: fbc (First-Block Cache), pab (Pyramid "
            "Attention Broadcast), fastercache, taylorseer; options as NAME:key=value,… (ranges LOW..HIGH). "
            "Approximate: the video changes; the sidecar records the settings and what was skipped.",
        ),
    ] = None,
    compile: Annotated[bool, typer.Option(help="torch.compile the transformer blocks (slow first video).")] = False,
) -> None:
    """Generate identity-preserving videos: one (--ref + --prompt) or a batch (--prompts)."""
    from fantasyid.generation import GenerateSettings, GenerationItem, output_stems, read_prompt_file

    if plan:  # before anything loads; no reference or prompt needed
        _show_plan(model, memory, offload, device, dtype, variant, frames, height, width)
        return
    if (prompts is None) == (ref is None and prompt is None):
        fail("give --ref and --prompt for one video, or --prompts FILE for a batch", code=2)
    if prompts is None and (ref is None or prompt is None):
        fail("one video needs both --ref and --prompt", code=2)

    from fantasyid.batch import resolve_shard
    from fantasyid.io import check_output_dir

    settings = GenerateSettings.for_model(
        model, steps=steps, frames=frames, height=height, width=width, guidance=guidance, fps=fps, seed=seed,
        cache=cache, compile=compile,
    )
    chosen_shard = resolve_shard(shard, num_shards)
    if claim_timeout <= 0:
        fail(f"--claim-timeout must be positive, got {claim_timeout:g}", code=2)
    if prompts is not None:
        items, bad_rows = read_prompt_file(prompts)
    else:
        items, bad_rows = [GenerationItem(ref=ref, prompt=prompt)], []
    output_stems(items, settings)  # two rows writing one file: an error before anything else
    if status:
        _show_status(items, settings, out, model, shape, chosen_shard, claim_timeout, variant)
        return
    check_output_dir(out)
    for message in bad_rows:
        err_console.print(f"[red]skipped row[/] {message}", highlight=False)
    for message in settings.warnings():
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False)
    for item in items:
        if not item.prompt.strip():
            err_console.print(f"[yellow]warning:[/] empty prompt for {item.ref.name}: the video follows the photo only",
                              highlight=False)  # fmt: skip
        if prompts is None and not item.ref.is_file():  # fail fast on a single video; a batch goes on
            fail(f"reference image '{item.ref}' does not exist", "check the path")
    if chosen_shard.count > 1:
        err_console.print(f"{chosen_shard}: {len(chosen_shard.take(len(items)))} of {len(items)} items", highlight=False)

    from fantasyid.generation import run_generation

    summary = run_generation(
        items, settings, out, model=model, variant=variant, device=device, dtype=dtype, offload=offload, memory=memory,
        shape=shape, face_pack=face_pack, mesh=mesh, flame=flame, deca=deca, download=download, console=console,
        shard=chosen_shard, no_overwrite=no_overwrite, claim_timeout=claim_timeout,
    )
    summary.bad_rows.extend(bad_rows)
    for result in summary.results:
        if result.status in ("failed", "refused"):
            if debug_enabled() and result.traceback:
                err_console.print(result.traceback, highlight=False, markup=False, end="")
            err_console.print(f"[red]{result.status}[/] {result.item.ref} — {result.error}", highlight=False,
                              soft_wrap=True)  # fmt: skip
    busy = f", {summary.busy} being made by other processes" if summary.busy else ""
    refused = f", [red]{summary.refused} refused[/]" if summary.refused else ""
    console.print(
        f"[bold]{summary.done} made[/], {summary.skipped} already done{busy}{refused}, "
        f"[{'red' if summary.failed else 'green'}]{summary.failed} failed[/] → {out}/"
    )
    if not summary.ok:
        raise typer.Exit(1)


def _show_plan(model, memory, offload, device, dtype, variant, frames, height, width) -> None:
    """``--plan``: the plan ``--memory`` picks for this model and video size, predicted from meta-device sizes."""
    from fantasyid.generate import GenerateSettings
    from fantasyid.pipelines.memory import describe_prediction, plan_for

    size = GenerateSettings.for_model(model, frames=frames, height=height, width=width)
    prediction, sizes = plan_for(model, memory, offload=offload, device=device, dtype=dtype, variant=variant,
                                 frames=size.frames, height=size.height, width=size.width)
    asked = memory or ("offload" if offload else "auto")
    console.print(f"{model} at {size.frames}×{size.height}×{size.width}, --memory {asked}", highlight=False)
    console.print(describe_prediction(prediction, sizes), highlight=False, markup=False, soft_wrap=True)


def _show_status(
    items, settings, out: Path, model: str, shape: Path | None, shard, claim_timeout: float, variant: str | None = None
) -> None:
    """``--status``: every item's state, merged over all processes; exit 0 only when every item is done."""
    from rich.table import Table

    from fantasyid.batch import STATES
    from fantasyid.generation import batch_status, model_key

    if out.exists() and not out.is_dir():
        fail(f"--out '{out}' is a file, not a folder", "give the batch's output folder")
    with err_console.status("checking every video…"):
        rows = batch_status(items, settings, out, model_key(model, shape, variant=variant), shard=shard, claim_timeout=claim_timeout)
    counts = {state: sum(row.check.state == state for row in rows) for state in STATES}
    table = Table(title=f"{out}: {len(rows)} items" + (f" ({shard})" if shard.count > 1 else ""))
    for column in ("item", "line", "state", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"claimed": "cyan", "failed": "red", "stale": "yellow", "missing": "magenta"}
    for row in rows:
        if row.check.state != "done":
            line = str(row.item.row) if row.item.row is not None else str(row.index)
            state = f"[{colours[row.check.state]}]{row.check.state}[/]"
            table.add_row(row.stem, line, state, row.check.detail)
    if table.row_count:
        console.print(table)
    console.print(", ".join(f"{counts[state]} {state}" for state in STATES), highlight=False)
    if counts["done"] != len(rows):
        raise typer.Exit(1)


generate.__doc__ = (generate.__doc__ or "") + "\n" + EXAMPLES
