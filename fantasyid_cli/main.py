"""Entry point of the ``fantasyid`` command: registers one module per command, turns library errors into one line.

Nothing here imports torch: ``fantasyid --help`` must answer in well under a second.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .commands.eval_cmd import eval_command
from .console import console, debug_enabled, fail


def _flags_show_no_type() -> None:
    """Typer's help prints ``<bool>`` after on/off flags (``--offload``, ``--json``, ``--help``), which take no
    value: show nothing there. Options that take a value keep their ``<int>``, ``<path>``, …"""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "fantasyid_flags", False):
        return

    def display_type_rich(self, ctx):
        if self.is_flag and not self.count and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich.fantasyid_flags = True
    TyperOption.display_type_rich = display_type_rich


_flags_show_no_type()


def _arguments_in_usage_as_click_writes_them() -> None:
    """Typer writes a required argument as ``{config}`` in the usage line; show ``CONFIG`` (required) and
    ``[RUNS]...`` (optional), as click and most command lines do."""
    from typer.core import TyperArgument

    if getattr(TyperArgument._usage_display_name, "fantasyid_usage", False):
        return

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    _usage_display_name.fantasyid_usage = True
    TyperArgument._usage_display_name = _usage_display_name


_arguments_in_usage_as_click_writes_them()

app = typer.Typer(
    name="fantasyid",
    help=(
        "Train, run and measure identity-preserving text-to-video models of the FantasyID kind.\n\n"
        "Examples:\n\n"
        "  fantasyid --version\n\n"
        "  fantasyid generate --ref me.png --prompt \"a woman walks on the beach\"\n\n"
        "  fantasyid eval outputs/ --metrics rs,ifs,fid,fm\n\n"
        "  fantasyid prep videos/ --out data/ && fantasyid prep merge data/\n\n"
        "  fantasyid app --model tiny\n\n"
        "  fantasyid train examples/train/tiny.yaml\n\n"
        "Set FANTASYID_DEBUG=1 to see tracebacks."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from fantasyid import __version__

        console.print(f"fantasyid {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Train, run and measure identity-preserving text-to-video models of the FantasyID kind."""


from .commands.generate_cmd import generate  # noqa: E402  (imports no torch at module level)
from .commands.edit_shape_cmd import edit_shape  # noqa: E402  (imports no torch at module level)

from .commands.models_cmd import app as models_app  # noqa: E402
from .commands.prep_cmd import prep_app  # noqa: E402  (imports no torch at module level)

app.command("generate", help=generate.__doc__)(generate)
app.command("edit-shape", help=edit_shape.__doc__)(edit_shape)
app.add_typer(models_app, name="models")

app.command("eval")(eval_command)
app.add_typer(prep_app)

from .commands.app_cmd import app_command  # noqa: E402  (imports no torch or gradio at module level)
from .commands.study_cmd import app as study_app  # noqa: E402

app.command("app")(app_command)
app.add_typer(study_app, name="study")

from .commands.train_cmd import train_command  # noqa: E402  (imports no torch at module level)
from .commands.bench_cmd import app as bench_app  # noqa: E402  (imports no torch at module level)

app.command("train", help=train_command.__doc__)(train_command)
app.add_typer(bench_app, name="bench")


def main(argv: list[str] | None = None) -> None:
    """Run the app; a :class:`fantasyid.errors.FantasyIDError`, or a torch/torchvision pair that does not work
    together, becomes one line plus a hint and exit code 1."""
    from fantasyid.errors import FantasyIDError

    try:
        app(args=argv, prog_name="fantasyid", standalone_mode=True)
    except FantasyIDError as exc:
        if debug_enabled():
            raise
        fail(exc.message, exc.hint)
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        fail("interrupted", code=130)
    except Exception as exc:  # a torch/torchvision pair that does not fit: one line, whichever import hit it
        from fantasyid.environment import torch_pair_error

        problem = torch_pair_error(exc)
        if problem is None:
            raise
        fail(problem.message, problem.hint)


if __name__ == "__main__":  # pragma: no cover - `python -m fantasyid_cli.main`
    main(sys.argv[1:])
