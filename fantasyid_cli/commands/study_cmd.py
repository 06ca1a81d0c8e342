"""``fantasyid study build|serve|report``: the paper's user study (Table 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ..console import console, err_console

app = typer.Typer(
    help="A user study of videos from several methods, as the paper's Table 1: build it, serve it, report it.\n\n"
    "Examples:\n\n"
    "  fantasyid study build runs/fantasyid runs/consisid --out study/ --raters 32 --attention-checks 2\n\n"
    "  fantasyid study serve study/ --port 8000     # prints one link per rater\n\n"
    "  fantasyid study report study/ --exclude-failed",
    no_args_is_help=True,
)


@app.command("build")
def build(
    runs: Annotated[list[Path], typer.Argument(help="Run folders, one per method (videos with their sidecars).")],
    out: Annotated[Path, typer.Option(help="New study folder.")],
    names: Annotated[
        str | None, typer.Option(help="Comma-separated method names, one per run (default: folder names).")
    ] = None,
    design: Annotated[
        Literal["single", "pair"], typer.Option(help="single: one video per item; pair: videos A and B.")
    ] = "single",
    raters: Annotated[int, typer.Option(help="Number of rater links (the paper had 32).")] = 32,
    attention_checks: Annotated[
        int, typer.Option(help="Items shown twice per rater, to spot careless raters.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the randomisation (the same seed gives the same study).")] = 0,
    title: Annotated[str, typer.Option(help="Title shown to the raters.")] = "Video study",
) -> None:
    """Build a blinded, randomised study from run folders: methods anonymised, order balanced per rater.

    Videos of different methods are matched by the reference photo and prompt in their sidecars.

    Examples:

      fantasyid study build runs/fantasyid runs/consisid runs/idanimator --out study/

      fantasyid study build runs/a runs/b --names "Ours,Baseline" --design pair --raters 10 --attention-checks 2
    """
    from fantasyid.study import build_study

    labels = [name.strip() for name in names.split(",")] if names is not None else None
    plan = build_study(runs, out, names=labels, design=design, raters=raters, attention_checks=attention_checks,
                       seed=seed, title=title)  # fmt: skip
    for note in plan.skipped:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"study with {len(plan.methods)} methods, {plan.groups} references, {plan.items} items; "
                  f"{plan.raters} raters × {plan.per_rater} items → {plan.folder}/", highlight=False)  # fmt: skip
    console.print(f"next: fantasyid study serve {plan.folder}", highlight=False)


@app.command("serve")
def serve(
    study: Annotated[Path, typer.Argument(help="Study folder made by study build.")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for other machines).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    base_url: Annotated[
        str | None, typer.Option(help="Address the raters use, for the printed links (default: http://HOST:PORT).")
    ] = None,
) -> None:
    """Serve the study: one link per rater; answers are saved in STUDY/answers.sqlite as they are given.

    Raters can stop and come back to their link later. Ctrl-C stops the server; nothing answered is lost.

    Examples:

      fantasyid study serve study/

      fantasyid study serve study/ --host 0.0.0.0 --port 8080 --base-url http://lab-pc:8080
    """
    from fantasyid.io import check_port
    from fantasyid.study.serve import check_study, rater_links, serve_study

    check_study(study)  # every video and photo is there, and the port is free, before any link is handed out
    check_port(host, port)
    for rater, link in rater_links(study, base_url or f"http://{host}:{port}"):
        console.print(f"{rater}  {link}", highlight=False, soft_wrap=True)
    serve_study(study, host=host, port=port)


@app.command("report")
def report(
    study: Annotated[Path, typer.Argument(help="Study folder with answers.")],
    out: Annotated[Path | None, typer.Option(help="Folder for the tables and plot (default: STUDY/report).")] = None,
    exclude_failed: Annotated[
        bool, typer.Option(help="Leave out raters who failed an attention check.")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(help="An attention check fails when the repeat's scores differ by more on average.")
    ] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
) -> None:
    """Table 1: mean score per method and criterion with 95 % bootstrap intervals, raters and items.

    Writes table.md, table.tex, table.csv, answers.csv, attention.csv, summary.json and plot.png.

    Examples:

      fantasyid study report study/

      fantasyid study report study/ --exclude-failed --out tables/
    """
    from fantasyid.study.report import report_study, wide_table

    result = report_study(study, out, exclude_failed=exclude_failed, tolerance=tolerance, seed=seed)
    console.print(wide_table(result.table, latex=False).to_markdown(index=False), highlight=False)
    if result.failed_raters:
        verb = "excluded" if result.excluded else "kept (add --exclude-failed to leave them out)"
        err_console.print(f"[yellow]failed attention checks:[/] {', '.join(result.failed_raters)} — {verb}",
                          highlight=False)  # fmt: skip
    console.print(f"wrote {', '.join(str(path) for path in result.files.values())}", highlight=False, soft_wrap=True)
