"""``fantasyid eval``: RS, IFS, face-crop FID and face motion of run folders, written as the paper's tables.

A thin shell over :func:`fantasyid.metrics.evaluate_runs`; nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..console import console, err_console


def eval_command(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders of videos (one table row each: a method or an ablation), or single video files.",
            show_default=False,
        ),
    ],
    metrics: Annotated[
        str, typer.Option("--metrics", "-m", help="Comma-separated metrics: rs, ifs, fid, fm.")
    ] = "rs,ifs,fid,fm",
    ref: Annotated[
        Path | None, typer.Option("--ref", help="One reference image for every video (overrides sidecars).")
    ] = None,
    refs: Annotated[
        Path | None,
        typer.Option("--refs", help="Folder of reference images named like the videos (same file stem)."),
    ] = None,
    frames: Annotated[
        int | None,
        typer.Option("--frames", min=1, help="Evaluate N evenly spaced frames per video (default: all frames)."),
    ] = None,
    face_pack: Annotated[
        str,
        typer.Option(
            "--face-pack",
            help="insightface pack for detection + ArcFace: buffalo_sc (offline, bundled), antelopev2 (paper), ….",
        ),
    ] = "buffalo_sc",
    face_root: Annotated[
        Path | None,
        typer.Option("--face-root", help="Model root holding models/<pack>/ (default: $FANTASYID_HOME)."),
    ] = None,
    flow: Annotated[str, typer.Option("--flow", help="Optical flow for FM: farneback or dis.")] = "farneback",
    names: Annotated[
        str | None,
        typer.Option("--names", help="Comma-separated table labels, one per run (default: folder names)."),
    ] = None,
    device: Annotated[
        str,
        typer.Option("--device", help="cpu, cuda (face models + FID on the GPU; needs onnxruntime-gpu) or auto."),
    ] = "cpu",
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", min=1, help="Videos evaluated at once (default: one per CPU core)."),
    ] = None,
    fid_backend: Annotated[
        str,
        typer.Option("--fid-backend", help="FID Inception runtime: onnxruntime (fp32, fast) or torchscript."),
    ] = "onnxruntime",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for summary.json, per_video.csv, table.md/.tex and the plot.")
    ] = Path("eval_results"),
    json_output: Annotated[
        bool, typer.Option("--json", help="Print summary.json on stdout instead of the table.")
    ] = False,
) -> None:
    """Measure RS, IFS, face-crop FID and face motion (FM) of generated videos, as the paper's Tables 2 and 3.

    Each video is decoded once and its face detected once per evaluated frame; every metric reads those faces.

    The reference of a video: --ref, else its namesake in --refs, else "ref" in its JSON sidecar.

    Unreadable videos and frames without a face are counted and reported, never silently dropped.

    Compare only runs evaluated with the same face pack, frames and references; the table names the models.

    Examples:

      fantasyid eval outputs/ --metrics rs,ifs,fid,fm

      fantasyid eval runs/consisid runs/fantasyid --refs refs/ --out tables/

      fantasyid eval runs/wo_fa runs/full --names "w/o FA,FantasyID" --frames 16

      fantasyid eval clip.mp4 --ref me.png --metrics rs,ifs --json

      fantasyid eval outputs/ --face-pack antelopev2 --face-root ~/models

      fantasyid eval outputs/ --workers 4 --device cuda
    """
    from fantasyid.errors import InputError
    from fantasyid.metrics.evaluate import parse_metrics

    metric_names = parse_metrics(metrics)  # unknown names: one-line error before anything is loaded
    labels = [n.strip() for n in names.split(",")] if names is not None else None

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fantasyid.metrics.evaluate import evaluate_runs
    from fantasyid.metrics.tables import rich_table

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # no progress noise in logs and pipes
    ) as progress:
        summary = evaluate_runs(
            runs,
            metric_names,
            ref=ref,
            refs_dir=refs,
            frames=frames,
            face_pack=face_pack,
            face_root=face_root,
            flow=flow,
            device=device,
            names=labels,
            out_dir=out,
            progress=progress,
            workers=workers,
            fid_backend=fid_backend,
        )

    for note in summary.warnings:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    for run in summary.runs:
        for warning in run.warnings:
            err_console.print(f"[yellow]warning:[/] {run.name}: {warning}", highlight=False, soft_wrap=True)

    if json_output:
        sys.stdout.write(summary.to_json() + "\n")
        sys.stdout.flush()
    else:
        console.print(rich_table(summary))
        written = ", ".join(str(path) for path in summary.files.values())
        console.print(f"wrote {written}", highlight=False, soft_wrap=True)

    if all(run.frames == 0 for run in summary.runs):
        raise InputError(
            "no frame of any video could be read",
            hint=f"see {Path(out) / 'per_video.csv'} for the reason of each video",
        )

