"""Training checkpoints: accelerate's full state (model, optimizer, scheduler, RNG) in ``checkpoint-N`` folders.

A checkpoint is written into a hidden ``.tmp-checkpoint-N`` folder and renamed when complete, so a run killed while
saving leaves no half checkpoint behind. ``trainer_state.json`` beside accelerate's files records the step (which
fixes the data position: see :mod:`fantasyid.training.sampler`), the config and the manifest hash; a checkpoint
only resumes under the same training-relevant config.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..io import write_json
from .config import TrainConfig, config_differences, config_hash, config_to_dict

__all__ = ["checkpoint_dir", "list_checkpoints", "resume_checkpoint", "find_resume", "save_checkpoint",
           "read_trainer_state"]

STATE_FILE = "trainer_state.json"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as ``(step, folder)``."""
    folder = checkpoint_dir(output_dir)
    found = []
    if folder.is_dir():
        for path in folder.glob("checkpoint-*"):
            suffix = path.name.split("-", 1)[1]
            if suffix.isdigit() and (path / STATE_FILE).is_file():
                found.append((int(suffix), path))
    return sorted(found)


def read_trainer_state(path: Path) -> dict[str, Any]:
    state_file = Path(path) / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"'{path}' is not a fantasyid training checkpoint (no {STATE_FILE})",
                              hint="pass --resume latest or a checkpoints/checkpoint-N folder of a run")
    return json.loads(state_file.read_text())


def resume_checkpoint(resume: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint folder ``resume`` names (``None``: a fresh start), checked before anything slow.

    ``resume``: ``None`` (a fresh start; refused where ``output_dir`` already holds checkpoints), ``"latest"`` (the
    newest complete checkpoint of ``output_dir``; an error when there is none), ``"auto"`` (the newest if any, else a
    fresh start: for job scripts that are requeued) or a checkpoint folder.
    """
    found = list_checkpoints(output_dir)
    if resume is None:
        if found:  # a fresh start here would mix its checkpoints with the older run's
            raise CheckpointError(
                f"'{output_dir}' already holds checkpoints of a run (up to step {found[-1][0]})",
                hint="continue it with --resume latest, or start a new run in another output_dir "
                     "(--set output_dir=…)",
            )
        return None
    if resume in ("latest", "auto"):
        if not found and resume == "latest":
            raise CheckpointError(
                f"--resume latest: no checkpoint in '{checkpoint_dir(output_dir)}' (is --output-dir the run's?)",
                hint="start the run without --resume, or use --resume auto (newest checkpoint if any, else a fresh "
                     "start)",
            )
        return found[-1][1] if found else None
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint '{path}' does not exist",
                              hint="use --resume latest or a checkpoint-N folder")  # fmt: skip
    return path


def find_resume(resume: str | None, config: TrainConfig, manifest_sha256: str) -> tuple[Path | None, int]:
    """The checkpoint to resume (``None``: start fresh) and its step, after checking it fits ``config``.

    ``resume``: as :func:`resume_checkpoint`.
    """
    path = resume_checkpoint(resume, config.output_dir)
    if path is None:
        return None, 0
    state = read_trainer_state(path)
    differences = config_differences(state.get("config", {}), config)
    if differences:
        shown = ", ".join(f"{k}" for k in differences[:5])
        raise CheckpointError(
            f"checkpoint '{path}' was trained with another config ({len(differences)} key(s) differ: {shown})",
            hint="resume with the run's own config.yaml, or start a new run in another output_dir",
        )
    if state.get("manifest_sha256") != manifest_sha256:
        raise CheckpointError(
            f"checkpoint '{path}' was trained on another manifest (sha256 {str(state.get('manifest_sha256'))[:12]}…)",
            hint="resume on the same data, or start a new run",
        )
    from .fsdp import check_sharded_checkpoint, sharded_checkpoint

    if sharded_checkpoint(path):  # FSDP's DCP metadata is a pickle: checked before accelerate reads it
        check_sharded_checkpoint(path)
    return path, int(state["step"])


def save_checkpoint(accelerator, config: TrainConfig, step: int, manifest_sha256: str,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write the full training state as ``checkpoint-{step}`` (every process takes part); prune to the limit."""
    folder = checkpoint_dir(config.output_dir)
    final = folder / f"checkpoint-{step}"
    tmp = folder / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-checkpoint-*"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / STATE_FILE, {
            "step": step, "config": config_to_dict(config), "config_sha256": config_hash(config),
            "manifest_sha256": manifest_sha256, **(extra or {}),
        })
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        limit = config.checkpoint.total_limit
        if limit > 0:
            for _, old in list_checkpoints(config.output_dir)[:-limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final
