"""Reading weights out of a model folder, for every loader: the tensors of a folder (one ``.safetensors`` file or
shards; the release's ``.bin`` files through ``torch.load(weights_only=True)``), a diffusers model built from its
``config.json`` with exactly the keys and shapes of those tensors, and the computed buffers a model built on the
``meta`` device still lacks."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError

__all__ = ["load_model_strict", "materialise_buffers", "read_state_dict"]


def read_state_dict(folder: Path, allow_bin: bool = True) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder: one ``.safetensors`` file or shards (merged); with ``allow_bin`` (the
    release's folders) ``.bin`` files through ``torch.load(weights_only=True)``, never pickled code."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        bins = sorted(folder.glob("*.bin")) if allow_bin else []
        if bins:
            state: dict[str, torch.Tensor] = {}
            for path in bins:
                state.update(torch.load(path, map_location="cpu", weights_only=True))
            return state
        raise CheckpointError(f"'{folder}' holds no .safetensors (or .bin) weights")
    state = {}
    for path in files:
        part = load_file(str(path))
        overlap = state.keys() & part.keys()
        if overlap:
            raise CheckpointError(f"'{path.name}' repeats {len(overlap)} keys of another shard, e.g. {sorted(overlap)[0]}")
        state.update(part)
    return state


def materialise_buffers(transformer, config) -> None:
    """Buffers that are not in the checkpoint (computed positional tables) are rebuilt on the CPU, from a one-layer
    model of the same config."""
    meta = [name for name, buffer in transformer.named_buffers() if buffer.is_meta]
    if not meta:
        return
    fresh = type(transformer)(**{**config, "num_layers": 1})
    fresh_buffers = dict(fresh.named_buffers())
    for name in meta:
        module_name, _, leaf = name.rpartition(".")
        module = transformer.get_submodule(module_name) if module_name else transformer
        if name not in fresh_buffers:
            raise CheckpointError(f"buffer {name} is neither in the checkpoint nor computable")
        module.register_buffer(leaf, fresh_buffers[name].clone(), persistent=name in transformer.state_dict())


def load_model_strict(cls, folder: Path, *, meta: bool):
    """``cls`` from ``folder/config.json`` with exactly the keys and shapes of ``folder``'s safetensors (our
    format: no ``.bin``). ``meta``: built on the meta device and assigned the loaded tensors (no second copy)."""
    from accelerate import init_empty_weights

    from ..models.convert import check_state_dict

    config = cls.load_config(folder)
    state = read_state_dict(folder, allow_bin=False)
    if meta:
        with init_empty_weights():
            model = cls.from_config(config)
    else:
        model = cls.from_config(config)
    try:
        check_state_dict(model, state)
    except CheckpointError as exc:
        raise CheckpointError(f"{folder.name}/: {exc.message}") from None
    model.load_state_dict(state, strict=True, assign=meta)
    return model.eval()
