"""The one Rich console of the command line, and how errors are shown."""

from __future__ import annotations

import os
import sys

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def debug_enabled() -> bool:
    """``FANTASYID_DEBUG=1`` shows tracebacks instead of one-line errors."""
    return os.environ.get("FANTASYID_DEBUG", "").strip() not in ("", "0", "false", "False")


def fail(message: str, hint: str = "", code: int = 1) -> None:
    """Print ``error: message`` (and ``hint: …``) on stderr and exit with ``code``; with ``FANTASYID_DEBUG=1`` the
    traceback comes first (of the exception being handled, else of the call)."""
    if debug_enabled():
        import traceback

        if sys.exc_info()[0] is not None:
            traceback.print_exc(file=sys.stderr)
        else:
            print("Traceback (most recent call last):", file=sys.stderr)
            traceback.print_stack(sys._getframe(1), file=sys.stderr)
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[yellow]hint:[/] {hint}", highlight=False, soft_wrap=True)
    sys.exit(code)
