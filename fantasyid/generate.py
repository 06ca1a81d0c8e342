"""The old import path of :mod:`fantasyid.generation` (``fantasyid generate`` as a library), kept for user code."""

from __future__ import annotations

from .generation import *  # noqa: F403
from .generation import __all__  # noqa: F401
