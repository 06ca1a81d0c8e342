"""``fantasyid models``: which weights a configuration needs, where they were looked for, and how to get them."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..console import console

app = typer.Typer(
    help="Check (and on request fetch) the weights a model needs.\n\nExamples:\n\n  fantasyid models\n\n"
    "  fantasyid models --model tiny\n\n  fantasyid models --model /data/FantasyID --flame ~/flame/generic_model.pkl\n\n"
    "  fantasyid models fetch      # downloads acvlab/FantasyID from the hub\n\n"
    "  fantasyid models --protocol consisid   # the weights of fantasyid eval --protocol consisid",
    no_args_is_help=False,
    invoke_without_command=True,
)


@app.callback()
def models(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="released | tiny | PATH to a checkpoint folder.")] = "released",
    mesh: Annotated[str | None, typer.Option(help="The release's transform.pkl.")] = None,
    flame: Annotated[str | None, typer.Option(help="FLAME generic_model.pkl.")] = None,
    deca: Annotated[str | None, typer.Option(help="DECA deca_model.tar.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    protocol: Annotated[
        str | None,
        typer.Option("--protocol", help="List the weights of fantasyid eval --protocol NAME (consisid, opens2v-human) "
                     "instead of a model's."),
    ] = None,
) -> None:
    """List each weight the model needs: found or not, where, and exactly how to get it."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from fantasyid.pipelines.inventory import check_model, check_protocol, prep_weights

    if protocol is not None:
        from fantasyid.errors import ConfigError

        try:
            reports = check_protocol(protocol)
        except ConfigError as exc:  # an unknown protocol: CLI misuse
            raise typer.BadParameter(f"{exc.message}; {exc.hint}", param_hint="--protocol") from exc
        model = f"eval --protocol {protocol}"
    else:
        reports = check_model(model, mesh=mesh, flame=flame, deca=deca) + (prep_weights() if model != "tiny" else [])
    if as_json:
        console.print_json(json.dumps([r.__dict__ for r in reports]))
    else:
        title = f"weights for {model}" if protocol is not None else f"weights for --model {model}"
        table = Table(title=title, show_lines=False)
        for column in ("weight", "what", "found", "where / how to get it"):
            table.add_column(column, overflow="fold")
        for r in reports:
            status = "[green]yes[/]" if r.found else "[yellow]no (optional)[/]" if r.optional else "[red]no[/]"
            table.add_row(r.name, r.what, status, r.where if r.found else f"{r.where}\n[yellow]{r.how_to_get}[/]")
        console.print(table)
    if not all(r.found or r.optional for r in reports):
        raise typer.Exit(1)


FETCH_EXAMPLES = (
    "\n\nExamples:\n\n"
    "  fantasyid models fetch                                # acvlab/FantasyID into the Hugging Face cache\n\n"
    "  fantasyid models fetch --model acvlab/FantasyID\n\n"
    "  HF_HOME=/data/hf fantasyid models fetch              # somewhere with more room\n\n"
    "No network here? On a machine with internet run `hf download acvlab/FantasyID --local-dir FantasyID` and copy "
    "the FantasyID folder to $FANTASYID_HOME/FantasyID here (or pass --model PATH to generate)."
)


@app.command("fetch")
def fetch(model: Annotated[str, typer.Option(help="released, or a hub id such as acvlab/FantasyID.")] = "released") -> None:
    """Download the released FantasyID checkpoint (acvlab/FantasyID) into the Hugging Face cache."""
    from fantasyid.hub import fetch_model

    with console.status(f"downloading {model}…"):
        path = fetch_model(model)
    console.print(f"fetched → {path}")
    console.print("DECA and FLAME are licensed and cannot be fetched: see `fantasyid models`.")


fetch.__doc__ = (fetch.__doc__ or "") + FETCH_EXAMPLES
