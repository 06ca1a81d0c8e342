"""Typed errors. Every error a user can cause carries a one-line message and a hint that says what to do.

The command line turns a :class:`FantasyIDError` into ``error: <message>`` plus ``hint: <hint>`` and exit code 1;
``FANTASYID_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations


class FantasyIDError(Exception):
    """Base class of every error fantasyid raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(FantasyIDError):
    """An optional package is not installed."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the Python package '{package}' is not installed{what}",
            hint=f"pip install 'fantasyid[{extra}]'",
        )
        self.package = package
        self.extra = extra


class WeightsNotFoundError(FantasyIDError):
    """A weight file or folder the configuration needs is not where we looked."""


class CheckpointError(FantasyIDError):
    """A checkpoint is malformed: missing or unexpected keys, wrong shapes, wrong format."""


class UnsafeFileError(FantasyIDError):
    """A pickle (or similar) file holds an object we refuse to load."""


class ConfigError(FantasyIDError):
    """A configuration value is invalid."""


class InputError(FantasyIDError):
    """User input (an image, a video, a prompt file, …) cannot be used."""


class NoFaceError(InputError):
    """No face was found where one is required."""


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional module or raise :class:`MissingDependencyError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # only the missing package, never a failure inside it
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc


class BrokenInstallError(FantasyIDError):
    """Installed packages that do not work together (a torch/torchvision pair built for each other's other
    release): nothing the command was asked can run until they are reinstalled."""
