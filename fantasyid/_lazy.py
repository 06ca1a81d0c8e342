"""PEP 562 lazy attributes for packages whose modules import heavy libraries (torch, insightface, OpenCV).

``import fantasyid.face`` must stay cheap (the command line's ``--help`` never imports torch), so each package's
``__init__`` names its public attributes and the submodule that defines them, and imports that submodule on first
access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str | tuple[str, str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: attribute ``name`` is ``exports[name]`` = a submodule (same
    name there) or ``(submodule, name in it)``."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        try:
            target = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module_name, attribute = (target, name) if isinstance(target, str) else target
        value = getattr(importlib.import_module(f"{package}.{module_name}"), attribute)
        namespace[name] = value  # cache: later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
