"""``fantasyid edit-shape``: change the 3D face (width, jawline, …), save it, and optionally generate with it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ..console import console, debug_enabled, err_console, fail
from ..options import Deca, Device, Dtype, FacePack, Flame, Fps, Frames, Guidance, Height, Steps, Width

EXAMPLES = (
    "\nExamples:\n\n"
    "  fantasyid edit-shape --ref me.png --face-width +8% --jaw-sharpness +3 --out wide.npz --preview wide.png\n\n"
    "  fantasyid edit-shape --shape wide.npz --chin-length -2mm --out-mesh narrow_chin.obj --out chin.npz\n\n"
    "  fantasyid edit-shape --ref me.png --edit cheek_fullness=+1sd --generate --prompt \"a man smiles\"\n\n"
    "  fantasyid generate --ref me.png --prompt \"…\" --shape wide.npz      # use a saved edit later\n\n"
    "  fantasyid edit-shape --model tiny --ref me.png --face-width +5% --generate --prompt \"…\"   # CPU dry run\n\n"
    "Changes: +8% / -5% relative; +2mm, -0.5cm, +3deg or a plain signed number in the trait's unit; +1sd in prior "
    "standard deviations; =150mm sets the value. Every trait not asked for is held.\n\n"
    "Limits, in FLAME's prior standard deviations: every coefficient within |β_i| ≤ --bound, the edit within "
    "‖Δβ‖ ≤ --max-change (two random faces are about 14 apart); a request past them is an error that says what is "
    "reachable.\n\n"
    "Traits (mm unless noted): face_width (cheek to cheek), jaw_width (across the jaw corners), jaw_sharpness (deg, "
    "180 − the jaw-corner angle seen from the front), chin_length (lower lip to chin), face_length (nasion to chin), "
    "cheek_fullness (mid-cheek bulge), nose_width. --list-traits shows them.\n"
)


def _change(help_text: str):
    """A trait option: a CHANGE string such as +8%."""
    return typer.Option(metavar="CHANGE", help=help_text, show_default=False)


def edit_shape(
    ref: Annotated[
        Path | None,
        typer.Option(help="Photo with one clearly visible face: DECA → FLAME shape (with --shape: the video's face)."),
    ] = None,
    shape: Annotated[Path | None, typer.Option(help="An earlier SHAPE.npz to edit instead of reading a photo.")] = None,
    face_width: Annotated[str | None, _change("Cheek-to-cheek width, e.g. +8%.")] = None,
    jaw_width: Annotated[str | None, _change("Width across the jaw corners.")] = None,
    jaw_sharpness: Annotated[str | None, _change("Jaw-corner sharpness in degrees, e.g. +3.")] = None,
    chin_length: Annotated[str | None, _change("Lower lip to chin, e.g. -2mm.")] = None,
    face_length: Annotated[str | None, _change("Nasion to chin.")] = None,
    cheek_fullness: Annotated[str | None, _change("Mid-cheek bulge (mm), e.g. +1sd.")] = None,
    nose_width: Annotated[str | None, _change("Between the nose wings.")] = None,
    edit: Annotated[
        list[str] | None,
        typer.Option(metavar="TRAIT=CHANGE", help="Any trait, repeatable (e.g. chin_length=+3mm).", show_default=False),
    ] = None,
    out: Annotated[Path, typer.Option(help="SHAPE.npz to write (what generate --shape reads).")] = Path("shape.npz"),
    out_mesh: Annotated[
        Path | None, typer.Option("--out-mesh", help="Also write the edited mesh: OUT.obj or OUT.ply.")
    ] = None,
    old_mesh: Annotated[Path | None, typer.Option("--mesh", hidden=True, help="Deprecated: --out-mesh.")] = None,
    preview: Annotated[
        Path | None, typer.Option(help="Also write OUT.png: original and edited, front and side.")
    ] = None,
    mode: Annotated[
        Literal["released", "paper"] | None,
        typer.Option(help="released: shape + expression + pose; paper: shape only. Default: released, or the shape "
                     "file's."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="released | tiny | PATH; default: released, or the shape file's.")
    ] = None,
    flame: Flame = None,
    deca: Deca = None,
    landmarks: Annotated[
        Path | None,
        typer.Option(help="FLAME's landmark_embedding.npy (default: beside --flame or in $FANTASYID_HOME/deca)."),
    ] = None,
    bound: Annotated[float, typer.Option(help="Plausible range of every shape coefficient: |β_i| ≤ BOUND.")] = 3.0,
    max_change: Annotated[
        float, typer.Option(help="Largest edit: ‖Δβ‖ ≤ MAX_CHANGE prior standard deviations.")
    ] = 5.0,
    face_pack: FacePack = "antelopev2",
    face_root: Annotated[Path | None, typer.Option(help="Model root holding models/<pack>/.")] = None,
    device: Device = "auto",
    list_traits: Annotated[bool, typer.Option("--list-traits", help="List the traits and exit.")] = False,
    generate: Annotated[bool, typer.Option("--generate", help="Go on to a video with the edited shape.")] = False,
    prompt: Annotated[str | None, typer.Option(help="What the person does (with --generate).")] = None,
    videos: Annotated[
        Path | None, typer.Option(help="Folder for the mp4 and its sidecar.", show_default="the folder of --out")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the video (with --generate).")] = 42,
    steps: Steps = None,
    guidance: Guidance = None,
    frames: Frames = None,
    height: Height = None,
    width: Width = None,
    fps: Fps = None,
    dtype: Dtype = "auto",
    mesh_hierarchy: Annotated[
        Path | None, typer.Option(help="The release's transform.pkl, for generating with the released model.")
    ] = None,
) -> None:
    """Change the 3D face (width, jawline, chin, …) from a photo or a saved shape, and generate with it."""
    if list_traits:
        _print_traits()
        return
    if old_mesh is not None:
        if out_mesh is not None:
            fail("--mesh is the old name of --out-mesh: give only --out-mesh", code=2)
        err_console.print("[yellow]note:[/] --mesh is now --out-mesh (the edited mesh to write)", highlight=False)
        out_mesh = old_mesh
    if ref is None and shape is None:
        fail("give the face: --ref PHOTO or --shape SHAPE.npz", code=2)
    if prompt is not None and not generate:
        fail("--prompt is for --generate: add --generate to make a video", code=2)
    if generate and (prompt is None or ref is None):
        fail("--generate needs --prompt and --ref (the photo gives the video its face)", code=2)

    from fantasyid.editing import parse_assignment, parse_edit
    from fantasyid.editing.run import EditShapeRequest, run_edit_shape
    from fantasyid.io import check_output_dir

    if generate:  # the video's folder is checked before anything slow, like --out, --out-mesh and --preview
        check_output_dir(videos if videos is not None else out.parent, "--videos")

    options = {"face_width": face_width, "jaw_width": jaw_width, "jaw_sharpness": jaw_sharpness,
               "chin_length": chin_length, "face_length": face_length, "cheek_fullness": cheek_fullness,
               "nose_width": nose_width}  # fmt: skip
    edits = [parse_edit(name, text) for name, text in options.items() if text is not None]
    edits += [parse_assignment(text) for text in edit or []]
    request = EditShapeRequest(
        edits=edits, out=out, ref=ref, shape=shape, mesh=out_mesh, preview=preview, mode=mode, model=model, flame=flame,
        deca=deca, landmarks=landmarks, face_pack=face_pack, face_root=face_root, device=device, bound=bound,
        max_change=max_change,
    )
    with err_console.status("reading the face and editing it…"):
        outcome = run_edit_shape(request)
    for note in outcome.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    _print_result(outcome)
    if not generate:
        return

    from fantasyid.generation import GenerateSettings, GenerationItem, run_generation

    settings = GenerateSettings.for_model(
        outcome.model, steps=steps, frames=frames, height=height, width=width, guidance=guidance, fps=fps, seed=seed
    )
    folder = videos if videos is not None else out.parent
    item = GenerationItem(ref=ref, prompt=prompt, name=out.stem)
    variant = outcome.result.after.mode  # the model of the shape's mode consumes it (paper vertices: a paper model)
    loaded = outcome.pipeline if outcome.pipeline is not None and outcome.pipeline.variant == variant else None
    summary = run_generation(
        [item], settings, folder, model=outcome.model, variant=variant, device=device, dtype=dtype, shape=out,
        face_pack=face_pack, mesh=mesh_hierarchy, flame=flame, deca=deca, console=console, loaded=loaded,
    )
    for result in summary.results:
        if result.status == "failed":
            if debug_enabled() and result.traceback:
                err_console.print(result.traceback, highlight=False, markup=False, end="")
            err_console.print(f"[red]failed[/] {result.item.ref} — {result.error}", highlight=False, soft_wrap=True)
        else:
            console.print(f"video: {result.video}", highlight=False, soft_wrap=True)
    if not summary.ok:
        raise typer.Exit(1)


def _print_traits() -> None:
    from rich.table import Table

    from fantasyid.editing.traits import TRAITS

    table = Table(title="traits (measured on the neutral FLAME mesh)")
    for column in ("trait", "option", "unit", "what"):
        table.add_column(column)
    for trait in TRAITS:
        table.add_row(trait.name, trait.option, trait.unit, trait.description)
    console.print(table)


def _print_result(outcome) -> None:
    import math

    from rich.table import Table

    result = outcome.result
    requested = {edit.trait: edit.text for edit in result.edits}
    table = Table(title=f"traits ({result.before.mode} mode, {outcome.model} model)")
    for column, justify in (("trait", "left"), ("unit", "left"), ("before", "right"), ("requested", "right"),
                            ("after", "right"), ("change", "right")):  # fmt: skip
        table.add_column(column, justify=justify, no_wrap=True)
    for i, name in enumerate(result.trait_names):
        before, after, target = result.traits_before[i], result.traits_after[i], result.targets[i]
        relative = f" ({100 * (after / before - 1):+.2f}%)" if before > 0 else ""
        table.add_row(
            f"[bold]{name}[/]" if name in requested else name,
            result.trait_units[i],
            f"{before:.2f}",
            "held" if math.isnan(target) else f"{requested[name]} → {target:.2f}",
            f"{after:.2f}",
            f"{after - before:+.3f}{relative}",
        )
    console.print(table)
    if result.changed:
        console.print(f"shape coefficients moved by ‖Δβ‖ = {result.coefficient_change:.3f} (limit "
                      f"{result.max_change:g}) in {result.iterations} steps; {result.at_bound} of "
                      f"{result.after.betas.size} on the bound |β_i| ≤ {result.bound:g}", highlight=False)  # fmt: skip
    else:
        console.print("no change: the input shape is written as it is", highlight=False)
    for what, path in outcome.written.items():
        console.print(f"{what}: {path}", highlight=False, soft_wrap=True)


edit_shape.__doc__ = (edit_shape.__doc__ or "") + "\n" + EXAMPLES
