"""``fantasyid bench fetch consisid|opens2v-human``: a protocol's public inputs as a generate batch file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import console

app = typer.Typer(
    help="The public inputs of other groups' evaluation protocols.\n\nExamples:\n\n"
    "  fantasyid bench fetch opens2v-human --out bench/opens2v-human\n\n"
    "  fantasyid generate --prompts bench/opens2v-human/prompts.jsonl --out runs/mine\n\n"
    "  fantasyid eval runs/mine --protocol opens2v-human\n\n"
    "  fantasyid bench fetch consisid --source ~/ConsisID-preview-Data --out bench/consisid   # a local copy",
    no_args_is_help=True,
)


@app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="consisid | opens2v-human")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: bench/NAME).")] = None,
    source: Annotated[
        Path | None,
        typer.Option(help="A local copy of the benchmark's Hugging Face dataset (same layout) instead of downloading."),
    ] = None,
) -> None:
    """Download a protocol's reference images and prompts; write prompts.jsonl (a `generate --prompts` batch),
    manifest.json and refs/."""
    from fantasyid.io import check_output_dir
    from fantasyid.metrics.protocols.bench import fetch_bench, get_bench

    from fantasyid.errors import ConfigError

    try:
        bench = get_bench(name)  # unknown name: a usage error, before anything else
    except ConfigError as exc:
        raise typer.BadParameter(f"{exc.message} ({exc.hint})", param_hint="NAME") from None
    folder = check_output_dir(out if out is not None else Path("bench") / bench.name)
    written = fetch_bench(bench.name, folder, source)
    console.print(f"{bench.name}: {written['prompts']} ({sum(1 for _ in written['prompts'].open())} videos), "
                  f"{written['manifest']}")
    console.print(f"next: fantasyid generate --prompts {written['prompts']} --out runs/NAME; "
                  f"fantasyid eval runs/NAME --protocol {bench.name}")
