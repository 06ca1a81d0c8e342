"""``fantasyid eval``: RS, IFS, face-crop FID and face motion of run folders, written as the paper's tables.

A thin shell over :func:`fantasyid.metrics.evaluate_runs`; nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from ..console import console, err_console


def eval_command(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run folders of videos (one table row each: a method or an ablation), or single video files; "
            "with --merge, the folders (or files) of the shards' partials.",
            show_default=False,
        ),
    ] = None,
    metrics: Annotated[
        str, typer.Option("--metrics", "-m", help="Comma-separated metrics: rs, ifs, fid, fm.")
    ] = "rs,ifs,fid,fm",
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="fantasyid (the paper's RS/IFS/FID/FM), consisid (FaceSim-Arc/Cur, CLIPScore, per-reference FID) "
            "or opens2v-human (OpenS2V-Eval's human domain): each with its own frames, models and aggregation.",
        ),
    ] = "fantasyid",
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weights",
            help="KEY=PATH: the weights of a protocol's model (curricularface, clip_vit_b32, …; see fantasyid "
            "models --protocol NAME); repeatable. Default: $FANTASYID_HOME, then the Hugging Face cache.",
        ),
    ] = None,
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
    flow: Annotated[Literal["farneback", "dis"], typer.Option("--flow", help="Optical flow for FM.")] = "farneback",
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
        Literal["auto", "ort-fp32", "torchscript", "torch-fp16", "torch-bf16", "onnxruntime"],
        typer.Option(
            "--fid-backend",
            help="FID Inception runtime: auto (the fastest within FID's 1e-3 tolerance on this CPU, else ort-fp32), "
            "ort-fp32 (= onnxruntime), torchscript (reference), torch-fp16, torch-bf16 (3x faster with AMX, FID "
            "off by up to 4.3e-3: opt-in, recorded in summary.json).",
        ),
    ] = "auto",
    det_size: Annotated[
        int,
        typer.Option(
            "--det-size",
            help="Face detector input side in px (multiple of 32); 320 matches ConsisID's evaluation.",
        ),
    ] = 640,
    shard: Annotated[
        int | None,
        typer.Option("--shard", help="Evaluate only share I (0-based) of the videos and write a partial file."),
    ] = None,
    num_shards: Annotated[
        int | None, typer.Option("--num-shards", help="Number of shares the videos are split into (with --shard).")
    ] = None,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Combine the shards' partials (the arguments are their folders) into the tables; the settings "
            "come from the partials.",
        ),
    ] = False,
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

      fantasyid eval outputs/ --face-pack antelopev2 --face-root ~/models --det-size 320

    Other groups' protocols (their frames, models and aggregation; published baselines in a separate section):

      fantasyid eval runs/ --protocol consisid --weights curricularface=glint360k_r101.bin

      fantasyid eval runs/ --protocol opens2v-human

    Across processes or machines: each shard writes a partial file, the merge gives the numbers of one process.

      for i in 0 1 2 3; do fantasyid eval runs/a runs/b --shard $i --num-shards 4 --out parts/ & done; wait

      fantasyid eval --merge parts/ --out tables/

      fantasyid eval outputs/ --workers 4 --device cuda
    """
    from fantasyid.errors import ConfigError
    from fantasyid.metrics.protocols import get_protocol
    from fantasyid.metrics.results import parse_metrics

    try:
        chosen = get_protocol(protocol)
    except ConfigError as exc:  # CLI misuse: exit 2
        raise typer.BadParameter(f"{exc.message}; {exc.hint}", param_hint="--protocol") from exc
    explicit_weights = _parse_weights(weights or [])
    if chosen.name != "fantasyid":
        fixed = {"--metrics": metrics != "rs,ifs,fid,fm", "--frames": frames is not None, "--flow": flow != "farneback",
                 "--det-size": det_size != 640, "--fid-backend": fid_backend != "auto"}
        if any(fixed.values()) and not merge:
            dropped = "/".join(option for option, set_ in fixed.items() if set_)
            raise typer.BadParameter(f"--protocol {chosen.name} fixes its metrics, frames and models: drop {dropped}")
    elif explicit_weights:
        raise typer.BadParameter("--weights is for the models of --protocol consisid / opens2v-human")
    metric_names = parse_metrics(metrics)  # unknown names: one-line error before anything is loaded
    labels = [n.strip() for n in names.split(",")] if names is not None else None
    from fantasyid.io import check_output_dir

    check_output_dir(out, "--out")  # a file, under a file, not writable: one line before any model loads
    runs = list(runs or [])

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if merge:
        given = {
            "--shard": shard is not None, "--num-shards": num_shards is not None, "--metrics": metrics != "rs,ifs,fid,fm",
            "--ref": ref is not None, "--refs": refs is not None, "--frames": frames is not None,
            "--names": names is not None, "--det-size": det_size != 640, "--face-pack": face_pack != "buffalo_sc",
            "--flow": flow != "farneback", "--protocol": protocol != "fantasyid", "--weights": bool(weights),
        }
        if any(given.values()):
            dropped = "/".join(option for option, set_ in given.items() if set_)
            raise typer.BadParameter(f"--merge takes every setting from the shards' partials: drop {dropped}")
        from fantasyid.metrics.shards import merge_partials

        _show(merge_partials(runs, out_dir=out), out, json_output)
        return

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
        options = dict(
            ref=ref,
            refs_dir=refs,
            frames=frames,
            face_pack=face_pack,
            face_root=face_root,
            flow=flow,
            device=device,
            names=labels,
            progress=progress,
            det_size=det_size,
            workers=workers,
            fid_backend=fid_backend,
        )
        if chosen.name != "fantasyid":
            from fantasyid.metrics.protocols.evaluate import evaluate_protocol, evaluate_protocol_shard

            for key in ("frames", "flow", "det_size", "fid_backend"):
                options.pop(key)
            options["weights"] = explicit_weights
            if shard is not None or num_shards is not None:
                path = evaluate_protocol_shard(runs, chosen, shard=shard, num_shards=num_shards, out_dir=out,
                                               **options)
            else:
                summary = evaluate_protocol(runs, chosen, out_dir=out, **options)
        elif shard is not None or num_shards is not None:
            from fantasyid.metrics.evaluate import evaluate_shard

            path = evaluate_shard(runs, metric_names, shard=shard, num_shards=num_shards, out_dir=out, **options)
        else:
            from fantasyid.metrics.evaluate import evaluate_runs

            summary = evaluate_runs(runs, metric_names, out_dir=out, **options)
    if shard is not None or num_shards is not None:
        console.print(f"wrote {path}; when every shard is done: fantasyid eval --merge {out}", highlight=False,
                      soft_wrap=True)
        return
    _show(summary, out, json_output)


def _parse_weights(items: list[str]) -> dict[str, str]:
    """``["KEY=PATH", …]`` → ``{KEY: PATH}``; a malformed item is a usage error."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key.strip() or not path.strip():
            raise typer.BadParameter(f"--weights {item!r}: write KEY=PATH, e.g. --weights curricularface=r101.bin")
        parsed[key.strip()] = path.strip()
    return parsed


def _show(summary, out: Path, json_output: bool) -> None:
    """Notes and warnings on stderr, the table (or JSON) on stdout; exit 1 when nothing could be measured."""
    from fantasyid.metrics.tables import rich_table

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

    summary.check_measured(Path(out))  # no frame read, or no face anywhere: exit 1 with the reason

