"""What a prep row was made from, so that a rerun reuses a row only when nothing it depends on has changed.

* **Sources**: :func:`source_key` — ``size:mtime_ns:quick`` where ``quick`` is the sha256 of the file size and its
  first and last MiB (2 MiB read per video, whatever its length). Any difference (a video replaced at the same
  path, edited in place, or copied without keeping its modification time) remakes that video's rows. The row also
  keeps the full ``source_sha256``.
* **Models**: :func:`environment` — the sha256 of every model file the run loads (the face pack's ``.onnx`` files;
  DECA's ``deca_model.tar`` and FLAME's ``generic_model.pkl`` when the 3D stage runs; the captioner's weight and
  config files when one is given), read in full on every run.
* **Packages**: the installed versions of fantasyid and of the packages whose models give the numbers (insightface
  and onnxruntime; rapidocr for OCR; torch for DECA and the captioner; transformers for the captioner).

:func:`environment_changes` names what differs between two environments ("model changed: w600k_mbf.onnx",
"package changed: onnxruntime 1.20.1 → 1.21.0"); the runner remakes the rows made under the old one and says so.
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any

#: Bytes read from each end of a source video for its quick content hash.
QUICK_HASH_BYTES = 1 << 20


def source_key(path: str | os.PathLike[str]) -> str:
    """``size:mtime_ns:sha256(size + first MiB + last MiB)[:16]`` of a file; ``""`` when it cannot be read."""
    try:
        stat = os.stat(path)
        digest = hashlib.sha256(str(stat.st_size).encode("ascii"))
        with open(path, "rb") as handle:
            digest.update(handle.read(QUICK_HASH_BYTES))
            if stat.st_size > QUICK_HASH_BYTES:
                handle.seek(max(QUICK_HASH_BYTES, stat.st_size - QUICK_HASH_BYTES))
                digest.update(handle.read(QUICK_HASH_BYTES))
    except OSError:
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest.hexdigest()[:16]}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def model_files(settings: Any) -> list[Path]:
    """The model files a prep run with ``settings`` (a :class:`~fantasyid.data.settings.PrepSettings`) loads."""
    files: list[Path] = []
    if "face" in settings.stages:
        from fantasyid.face.assets import face_pack_dir

        files += sorted(face_pack_dir(settings.face_pack, settings.face_root).glob("*.onnx"))
    if "3d" in settings.stages and settings.has_3d_files:
        files += [Path(settings.deca), Path(settings.flame)]
    if settings.captioner and "caption" in settings.stages:
        folder = Path(settings.captioner)
        files += sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin",
                                                                                    ".model", ".txt"))  # fmt: skip
    return files


def environment(settings: Any) -> dict[str, dict[str, str]]:
    """``{"models": {file name: sha256}, "packages": {name: version}}`` of a prep run with ``settings``."""
    from fantasyid.io import sha256_file

    models = {}
    for path in model_files(settings):
        name = path.name if path.name not in models else f"{path.parent.name}/{path.name}"
        models[name] = sha256_file(path)
    packages = ["fantasyid"]
    if "face" in settings.stages:
        packages += ["insightface", "onnxruntime"]
    if "text" in settings.stages:
        packages += ["rapidocr"]
    if ("3d" in settings.stages and settings.has_3d_files) or (settings.captioner and "caption" in settings.stages):
        packages += ["torch"]
    if settings.captioner and "caption" in settings.stages:
        packages += ["transformers"]
    return {"models": models, "packages": {name: _version(name) for name in packages}}


def environment_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What differs between the environment rows were made under (``old``) and this run's (``new``)."""
    if not old:
        return ["made before models and packages were recorded"]
    changes = []
    for kind, label in (("models", "model"), ("packages", "package")):
        before, now = old.get(kind, {}), new.get(kind, {})
        for name in sorted(set(before) | set(now)):
            if before.get(name) == now.get(name):
                continue
            if kind == "packages":
                changes.append(f"package changed: {name} {before.get(name, 'none')} → {now.get(name, 'none')}")
            else:
                changes.append(f"{label} {'changed' if name in before and name in now else 'added or removed'}: "
                               f"{name}")  # fmt: skip
    return changes
