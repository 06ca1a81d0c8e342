"""The state of a batch output folder: which items are done for the request made now, stale, failed, claimed.

Layout of ``OUT/``::

    STEM.mp4, STEM.json                  a finished item (the sidecar is written last; it holds the request)
    .STEM.XXXXXXXX.partial.mp4 / .json   a write in progress (fantasyid.io.atomic_path); stale once its owner is gone
    .fantasyid/claims/STEM.lock          the process making STEM now (fantasyid.batch.claims)
    .fantasyid/failed/STEM.json          the last failure of STEM (error, host, pid, time), cleared when it is made

An item is *done* only when its sidecar's request equals the request made now (prompt, negative prompt, seed,
reference hash, model, every generation setting) and its mp4 decodes to the expected number of frames at the
expected size: checked by decoding it when it is written, and on later looks by its SHA-256 (recorded in the
sidecar; a file that differs — truncated, replaced — is decoded again).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import sha256_file, write_json
from .claims import DEFAULT_CLAIM_TIMEOUT, Claim, ClaimInfo, claim_is_stale, lock_path, read_claim, try_claim

__all__ = ["BatchFolder", "ItemCheck", "request_differences", "sidecar_request", "video_problem", "STATES"]

#: The states ``fantasyid generate --status`` reports, in its order.
STATES = ("done", "claimed", "failed", "stale", "missing")
STATE_DIR = ".fantasyid"
# atomic_path's temporary names: "." + stem + "." + 8 characters of tempfile's alphabet + ".partial" + suffix
_PARTIAL = re.compile(r"^\.(?P<stem>.+)\.[a-z0-9_]{8}\.partial(\.[A-Za-z0-9]+)?$")


@dataclass
class ItemCheck:
    state: str  #: one of STATES
    detail: str = ""  #: why (what changed, the decoding problem, the owner, the error)
    changed: list[str] | None = None  #: for "stale": what differs from the request made now


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def request_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two requests, one phrase per field (``steps 4 → 2``, ``prompt "a" → "b"``)."""
    changes = []
    for key in new.keys() | old.keys():
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += [f"{key}.{change}" if key == "model" else change
                        for change in request_differences(before, after)]  # fmt: skip
        elif before != after:
            if key.endswith("sha256"):
                changes.append(f"{key.removesuffix('_sha256')} file changed")
            else:
                changes.append(f"{key} {_short(before)} → {_short(after)}")
    return sorted(changes)


def sidecar_request(sidecar: dict[str, Any]) -> dict[str, Any]:
    """The request a sidecar was made for (older sidecars without ``request``: rebuilt from their fields)."""
    if isinstance(sidecar.get("request"), dict):
        return sidecar["request"]
    settings = dict(sidecar.get("settings") or {})
    settings.pop("seed", None), settings.pop("negative_prompt", None)
    model = sidecar.get("model") or {}
    return {
        "prompt": sidecar.get("prompt"),
        "negative_prompt": sidecar.get("negative_prompt"),
        "seed": sidecar.get("seed"),
        "ref_sha256": sidecar.get("ref_sha256"),
        "model": {"model": model.get("model"), "shape_sha256": model.get("shape_sha256")},
        "settings": settings,
    }


def video_problem(path: Path, frames: int, height: int, width: int) -> str | None:
    """Why the mp4 at ``path`` is not a finished video of ``frames`` frames at ``height``×``width`` (None if it is).

    Decodes every frame (without converting them to RGB): a truncated file whose header still promises all frames
    fails here."""
    from ..data.video import FrameReader, VideoReadError, probe

    try:
        info = probe(path)
        reader = FrameReader(path, keep=frozenset())  # decode all, convert none
        for _ in reader:
            pass
    except VideoReadError as exc:
        return exc.reason
    if (info.height, info.width) != (height, width):
        return f"the video is {info.height}×{info.width}, not {height}×{width}"
    if reader.error:
        return reader.error
    if reader.decoded != frames:
        return f"decodes to {reader.decoded} frames, not {frames}"
    return None


class BatchFolder:
    """One output folder shared by any number of processes (see the module's description)."""

    def __init__(self, root: str | Path, claim_timeout: float = DEFAULT_CLAIM_TIMEOUT):
        self.root = Path(root)
        self.claims_dir = self.root / STATE_DIR / "claims"
        self.failed_dir = self.root / STATE_DIR / "failed"
        self.claim_timeout = claim_timeout

    def video(self, stem: str) -> Path:
        return self.root / f"{stem}.mp4"

    def sidecar(self, stem: str) -> Path:
        return self.root / f"{stem}.json"

    # ------------------------------------------------------------------------------------------------- items
    def check(self, stem: str, request: dict[str, Any], frames: int, height: int, width: int) -> ItemCheck:
        """``done`` (the outputs match ``request`` and decode), ``stale`` (outputs for another request, or broken) or
        ``missing``. Claims and failure records are not looked at (see :meth:`status`)."""
        video, sidecar = self.video(stem), self.sidecar(stem)
        if not sidecar.is_file():
            return ItemCheck("stale", f"{video.name} has no sidecar") if video.is_file() else ItemCheck("missing")
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            return ItemCheck("stale", f"{sidecar.name} cannot be read ({exc})")
        if data.get("status") != "done":
            return ItemCheck("stale", f"{sidecar.name} does not say done")
        changed = request_differences(sidecar_request(data), request)
        if changed:
            return ItemCheck("stale", "request changed: " + "; ".join(changed), changed)
        if not video.is_file():
            return ItemCheck("stale", f"{video.name} is missing")
        if data.get("video_sha256") and data["video_sha256"] == sha256_file(video):
            return ItemCheck("done")  # the very file that was decoded and checked when it was written
        problem = video_problem(video, frames, height, width)
        if problem:
            return ItemCheck("stale", f"{video.name} is broken: {problem}")
        return ItemCheck("done")

    def status(self, stem: str, request: dict[str, Any] | None, frames: int, height: int, width: int) -> ItemCheck:
        """The state ``--status`` shows: a live claim first, then done, failed, stale, missing. ``request`` None: the
        request cannot be made (its reference image is missing)."""
        owner = read_claim(lock_path(self.claims_dir, stem))
        if owner is not None:
            stale = claim_is_stale(owner, self.claim_timeout)
            if stale is None:
                return ItemCheck("claimed", owner.describe())
        failure = self.failure(stem)
        if request is None:
            return ItemCheck("failed", failure["error"] if failure else "the reference image does not exist")
        check = self.check(stem, request, frames, height, width)
        if check.state != "done" and failure is not None:
            return ItemCheck("failed", f"{failure['error']} ({failure['host']}:{failure['pid']}, {failure['time']})")
        if check.state != "done" and owner is not None:
            check.detail = "; ".join(filter(None, [check.detail, f"abandoned claim: {stale}"]))
        return check

    def claim(self, stem: str) -> Claim | ClaimInfo:
        return try_claim(self.claims_dir, stem, self.claim_timeout)

    # ------------------------------------------------------------------------------------------------- failures
    def record_failure(self, stem: str, error: str) -> None:
        write_json(self.failed_dir / f"{stem}.json", {
            "error": error, "host": socket.gethostname(), "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "unix_time": time.time(),
        })  # fmt: skip

    def failure(self, stem: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.failed_dir / f"{stem}.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def clear_failure(self, stem: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.failed_dir / f"{stem}.json").unlink()

    # ------------------------------------------------------------------------------------------------- partial files
    def sweep_partials(self, only_stem: str | None = None) -> list[Path]:
        """Remove the partial files that no live process is writing: those whose item has no live claim.

        Safe while other processes work: a process writes an item's partial files only while it holds the item's
        claim, and the listing is made before each claim is read, so a partial file seen here either has a live
        claim now or belongs to nobody."""
        removed = []
        for folder in (self.root, self.failed_dir):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = _PARTIAL.match(path.name)
                if not match or (only_stem is not None and match["stem"] != only_stem):
                    continue
                owner = read_claim(lock_path(self.claims_dir, match["stem"]))
                if owner is not None and claim_is_stale(owner, self.claim_timeout) is None and only_stem is None:
                    continue  # a live process is writing it
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
        return removed
