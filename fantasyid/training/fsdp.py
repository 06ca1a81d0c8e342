"""FSDP2 through accelerate: the shipped YAML's plugin on GPUs, and the same plugin on CPU processes over gloo.

``accelerate launch --config_file examples/train/accelerate/fsdp-8gpu.yaml`` gives every process the plugin's settings
(``ACCELERATE_USE_FSDP``, ``FSDP_*``). On GPUs accelerate turns them into FSDP2 itself. On CPU processes it does not
(it trains plain DDP and says nothing: /work/shared/OFFLINE.md), so :func:`enable_cpu_fsdp` switches accelerate's
state to FSDP with the plugin built from the same settings, after the gloo process group is up. From there the code
is accelerate's own, as on GPUs: ``fully_shard`` of every ``_no_split_modules`` block and of the root module on a CPU
device mesh (``fsdp2_prepare_model``), sharded DCP checkpoints (``save_fsdp_model`` / ``load_fsdp_model``), DTensor
gradient clipping, full state dicts (``get_state_dict``).

What the sharded module cannot do alone, and this module adds:

- validation: every process runs the generation in step (each block all-gathers its shards in its forward), with the
  root's own parameters gathered for the whole call (:func:`full_root_parameters`); the main process writes and scores;
- export: the full state dict is gathered to the main process's CPU (every process takes part) and loaded into a copy
  of the module made before sharding, with its tensors on the ``meta`` device until then (:func:`meta_copy`,
  :func:`gathered_module`), so the export holds the whole model, never one process's shard;
- export of a sharded checkpoint without training (:func:`load_sharded_checkpoint`: DCP reads it into a plain module);
- DCP reads its ``.metadata`` files with plain ``pickle``: :func:`check_sharded_checkpoint` first reads them with the
  allow-list unpickler (DCP's metadata classes, ``torch.Size``, dtypes, paths only), so a doctored checkpoint is
  refused before any code in it can run.
"""

from __future__ import annotations

import copy
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError

__all__ = ["fsdp_requested", "enable_cpu_fsdp", "is_fsdp", "before_prepare", "meta_copy", "gathered_module", "full_root_parameters",
           "sharded_checkpoint", "check_sharded_checkpoint", "load_sharded_checkpoint"]

#: the folder accelerate's ``save_fsdp_model`` writes a SHARDED_STATE_DICT model into (DCP format)
MODEL_FOLDER = "pytorch_model_fsdp_0"


def fsdp_requested() -> bool:
    """``accelerate launch`` with an FSDP config (it sets ACCELERATE_USE_FSDP for every process)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def enable_cpu_fsdp(accelerator) -> bool:
    """On CPU processes started with an FSDP config, turn accelerate's state from DDP to FSDP2 (True when it did).

    The plugin is accelerate's, built from the launch config's ``FSDP_*`` settings exactly as on GPUs; the gloo
    process group must be up (``PartialState(cpu=True, backend="gloo")``).
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if not fsdp_requested() or accelerator.device.type != "cpu" or accelerator.num_processes < 2 \
            or is_fsdp(accelerator):
        return False
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise ConfigError(f"FSDP on CPU processes runs FSDP2 only; the accelerate config has fsdp_version: "
                          f"{plugin.fsdp_version}", hint="set fsdp_version: 2 in the accelerate config")
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    # both shared states: accelerate builds new AcceleratorState views from PartialState's on the way
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = plugin
    return True


def before_prepare(accelerator, module: nn.Module) -> nn.Module | None:
    """Under FSDP: the export's unsharded copy of ``module`` (:func:`meta_copy`, no memory yet); ``None`` otherwise.

    Also quiets FSDP2's warning that the root returns a view (an in-place op on it would skip a hook): the loss uses
    the prediction out of place only (:func:`~fantasyid.training.step.compute_loss`)."""
    if not is_fsdp(accelerator):
        return None
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPTrainModule\) returned a view tensor")
    return meta_copy(module)


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (before sharding) whose parameters are empty ``meta`` tensors of the same shapes (no
    memory); buffers are copied as they are."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in module.parameters()}
    return copy.deepcopy(module, memo)


def gathered_module(accelerator, module: nn.Module, skeleton: nn.Module | None) -> nn.Module | None:
    """The whole trained module on the main process's CPU (``None`` elsewhere): the sharded ``module``'s full state
    dict loaded into ``skeleton`` (:func:`meta_copy`). Every process must call it (the state is all-gathered)."""
    state = accelerator.get_state_dict(module)  # full tensors on the main process's CPU, {} on the others
    if not accelerator.is_main_process:
        return None
    skeleton.load_state_dict(state, strict=True, assign=True)
    left = [name for name, p in skeleton.named_parameters() if p.is_meta]
    if left:  # strict loading names the missing keys; this catches a parameter outside the state dict
        raise CheckpointError(f"the gathered FSDP state lacks {len(left)} parameter(s), e.g. {left[0]}")
    return skeleton


@contextmanager
def full_root_parameters(accelerator, module: nn.Module):
    """Under FSDP, the root module's own parameters (those outside the wrapped blocks: patch and time embeddings,
    the identity branch, the output projection) gathered while the context lasts, so the pipeline can call
    submodules directly; the blocks gather theirs in their forward. Every process must enter it."""
    if not is_fsdp(accelerator):
        yield
        return
    module.unshard()
    try:
        yield
    finally:
        module.reshard()


def sharded_checkpoint(path: Path) -> bool:
    """True for a checkpoint written under FSDP with sharded state dicts (DCP folders)."""
    return (Path(path) / MODEL_FOLDER).is_dir()


def _metadata_globals() -> dict:
    """What DCP's ``.metadata`` pickles may refer to: its metadata classes, sizes, dtypes and paths."""
    import pathlib

    import torch.distributed.checkpoint.filesystem as fs
    import torch.distributed.checkpoint.metadata as meta
    import torch.serialization

    allowed = {("torch.distributed.checkpoint.metadata", name): getattr(meta, name) for name in (
        "BytesStorageMetadata", "ChunkStorageMetadata", "Metadata", "MetadataIndex", "StorageMeta",
        "TensorProperties", "TensorStorageMetadata", "_MEM_FORMAT_ENCODING")}
    allowed[("torch.distributed.checkpoint.filesystem", "_StorageInfo")] = fs._StorageInfo
    allowed[("torch.serialization", "_get_layout")] = torch.serialization._get_layout
    allowed[("torch", "Size")] = torch.Size
    allowed.update({("torch", str(dtype).split(".")[1]): dtype for dtype in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16, torch.int8,
        torch.uint8, torch.bool)})
    allowed.update({("pathlib", name): getattr(pathlib, name) for name in ("PosixPath", "WindowsPath", "PurePosixPath")})
    return allowed


def check_sharded_checkpoint(path: Path) -> None:
    """Refuse an FSDP checkpoint whose DCP ``.metadata`` refers to anything but DCP's metadata (read without running
    any code: :class:`~fantasyid.safe_pickle.AllowListUnpickler`), before DCP unpickles it."""
    from ..safe_pickle import AllowListUnpickler

    allowed = _metadata_globals()
    for metadata in sorted(Path(path).glob("*/.metadata")):
        with open(metadata, "rb") as stream:
            AllowListUnpickler(stream, str(metadata), allowed, "a DCP checkpoint's metadata",
                               hint="resume only from checkpoints written by fantasyid train").load()


def load_sharded_checkpoint(module: nn.Module, path: Path) -> None:
    """Read the model of an FSDP checkpoint (DCP, any number of shards) into the plain ``module`` in this process."""
    import torch.distributed.checkpoint as dcp

    check_sharded_checkpoint(path)
    state = {"model": module.state_dict()}
    dcp.load(state, checkpoint_id=str(Path(path) / MODEL_FOLDER), no_dist=True)  # this process reads every shard
    module.load_state_dict(state["model"], strict=True)
