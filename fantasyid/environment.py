"""The installed PyTorch stack, read from package metadata (nothing is imported): a torch/torchvision pair that does
not work together becomes one line saying what to install, not the traceback of whichever import hit it first
(``operator torchvision::nms does not exist`` → ``Could not import module 'T5EncoderModel'`` → …)."""

from __future__ import annotations

import importlib.metadata
import re

from .errors import BrokenInstallError

__all__ = ["installed_version", "torchvision_release_for", "torch_pair_error"]

#: what torchvision says when its compiled operators do not fit the torch it is imported with
_SIGNS = ("torchvision::", "Couldn't load custom C++ ops", "operator torchvision")
INSTALL_PAIR = "pip install -c .ci/constraints.txt --force-reinstall torch torchvision"


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def torchvision_release_for(torch_version: str) -> str | None:
    """The torchvision release line built with a torch 2.x release: ``0.(minor + 15)`` (torch 2.0 ↔ 0.15, 2.5 ↔ 0.20,
    2.14 ↔ 0.29); ``None`` for other versions."""
    match = re.match(r"2\.(\d+)\b", torch_version)
    return f"0.{int(match.group(1)) + 15}" if match else None


def torch_pair_error(exc: BaseException) -> BrokenInstallError | None:
    """A one-line :class:`BrokenInstallError` when ``exc``, or an exception it came from, is torchvision failing
    against the installed torch; ``None`` for any other exception."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    found = next((line.strip() for error in chain for line in str(error).splitlines()
                  if any(sign in line for sign in _SIGNS)), None)  # fmt: skip
    if found is None:
        return None
    torch_version, vision_version = installed_version("torch"), installed_version("torchvision")
    release = torchvision_release_for(torch_version or "")
    why = found if len(found) <= 80 else found[:77] + "…"
    if release and vision_version and not vision_version.startswith(release + "."):
        why = f"torch {torch_version} needs torchvision {release}.*; {why}"
    return BrokenInstallError(
        f"torch {torch_version} and torchvision {vision_version} do not work together ({why})",
        hint=f"install the pair CI tests, in the repository folder: {INSTALL_PAIR}",
    )
