"""``fantasyid generate``: one video from a reference face and a prompt, or a batch from a prompt file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import console, err_console, fail
from ..options import Deca, Device, Dtype, Flame, Fps, Frames, Guidance, Height, Seed, Steps, Width

EXAMPLES = """
Examples:

  fantasyid generate --model tiny --ref me.png --prompt "a woman smiles at the camera"

  fantasyid generate --ref me.png --prompt "a man walks on the beach" --seed 7 --out videos/

  fantasyid generate --prompts batch.csv --out runs/exp1      # CSV: ref,prompt,seed,name  (or .jsonl)

  fantasyid generate --ref me.png --prompt "…" --shape edited.npz   # use an edited 3D face

Re-running a batch skips finished videos. --model tiny runs every component at toy size with random weights on a
CPU in seconds (real face detection): a dry run, not a real video.
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
        str | None, typer.Option(help="released | paper; default: the checkpoint's (paper needs a paper checkpoint).")
    ] = None,
    seed: Seed = 42,
    steps: Steps = None,
    guidance: Guidance = 6.0,
    frames: Frames = None,
    height: Height = None,
    width: Width = None,
    fps: Fps = 8,
    dtype: Dtype = "auto",
    device: Device = "auto",
    offload: Annotated[bool, typer.Option(help="Model CPU offload (less GPU memory, slower).")] = False,
    shape: Annotated[Path | None, typer.Option(help="3D face to use: SHAPE.npz from edit-shape, or a .ply.")] = None,
    face_pack: Annotated[
        str | None, typer.Option(help="insightface pack [default: the checkpoint's; antelopev2 for the release].")
    ] = None,
    mesh: Annotated[Path | None, typer.Option(help="The release's transform.pkl (mesh hierarchy).")] = None,
    flame: Flame = None,
    deca: Deca = None,
    download: Annotated[bool, typer.Option(help="Allow downloading the released checkpoint from the hub.")] = False,
) -> None:
    """Generate identity-preserving videos: one (--ref + --prompt) or a batch (--prompts)."""
    from fantasyid.generate import GenerateSettings, GenerationItem, read_prompt_file

    if (prompts is None) == (ref is None and prompt is None):
        fail("give --ref and --prompt for one video, or --prompts FILE for a batch", code=2)
    if prompts is None and (ref is None or prompt is None):
        fail("one video needs both --ref and --prompt", code=2)

    settings = GenerateSettings.for_model(
        model, steps=steps, frames=frames, height=height, width=width, guidance=guidance, fps=fps, seed=seed
    )
    if prompts is not None:
        items, bad_rows = read_prompt_file(prompts)
    else:
        items, bad_rows = [GenerationItem(ref=ref, prompt=prompt)], []
    for message in bad_rows:
        err_console.print(f"[red]skipped row[/] {message}", highlight=False)
    for item in items:  # fail fast on a single video; a batch records the failure and goes on
        if prompts is None and not item.ref.is_file():
            fail(f"reference image '{item.ref}' does not exist", "check the path")

    from fantasyid.generate import run_generation

    summary = run_generation(
        items, settings, out, model=model, variant=variant, device=device, dtype=dtype, offload=offload, shape=shape,
        face_pack=face_pack, mesh=mesh, flame=flame, deca=deca, download=download, console=console,
    )
    summary.bad_rows.extend(bad_rows)
    for result in summary.results:
        if result.status == "failed":
            err_console.print(f"[red]failed[/] {result.item.ref} — {result.error}", highlight=False, soft_wrap=True)
    console.print(
        f"[bold]{summary.done} made[/], {summary.skipped} already done, "
        f"[{'red' if summary.failed else 'green'}]{summary.failed} failed[/] → {out}/"
    )
    if not summary.ok:
        raise typer.Exit(1)


generate.__doc__ = (generate.__doc__ or "") + "\n" + EXAMPLES
