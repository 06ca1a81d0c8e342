"""Commands whose issue has not landed yet: they exit 2 with one line and produce nothing."""

from __future__ import annotations

import typer

from ..console import fail

# command name → (what it will do, the issue that builds it)
PENDING = {
    "train": ("train FantasyID on a CogVideoX backbone with accelerate", "the training issue"),
}


def register_pending(app: typer.Typer, name: str) -> None:
    """Register ``name`` as a command that says it is not available yet (exit code 2)."""
    summary, issue = PENDING[name]

    def command(ctx: typer.Context) -> None:
        fail(f"'fantasyid {name}' is not available yet: it is built by {issue}", code=2)

    command.__doc__ = f"{summary[0].upper()}{summary[1:]} (not available yet: {issue})."
    app.command(
        name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )(command)
