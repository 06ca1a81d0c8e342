"""Sharded (DCP) checkpoints outside a process group: one process reads every shard into a plain module, and a
checkpoint whose DCP metadata pickle refers to anything but DCP's metadata is refused before DCP unpickles it."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

from fantasyid.errors import UnsafeFileError
from fantasyid.training.fsdp import (MODEL_FOLDER, check_sharded_checkpoint, load_sharded_checkpoint, meta_copy,
                                     sharded_checkpoint)


def _saved(tmp_path):
    import torch.distributed.checkpoint as dcp

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    dcp.save({"model": model.state_dict()}, checkpoint_id=str(tmp_path / "ck" / MODEL_FOLDER), no_dist=True)
    return model, tmp_path / "ck"


def test_a_sharded_checkpoint_loads_into_a_plain_module(tmp_path):
    model, folder = _saved(tmp_path)
    assert sharded_checkpoint(folder) and not sharded_checkpoint(tmp_path)
    other = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    assert not torch.equal(other[0].weight, model[0].weight)
    load_sharded_checkpoint(other, folder)
    for (name, want), got in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(got, want), name


class _Payload:
    def __reduce__(self):
        return os.system, ("touch PWNED",)


def test_a_doctored_metadata_pickle_is_refused_before_it_runs(tmp_path, monkeypatch):
    model, folder = _saved(tmp_path)
    check_sharded_checkpoint(folder)  # the real one passes
    monkeypatch.chdir(tmp_path)
    (folder / MODEL_FOLDER / ".metadata").write_bytes(pickle.dumps({"state": _Payload()}))
    with pytest.raises(UnsafeFileError, match="posix.system|os.system"):
        check_sharded_checkpoint(folder)
    with pytest.raises(UnsafeFileError):
        load_sharded_checkpoint(model, folder)
    assert not (tmp_path / "PWNED").exists()


def test_meta_copy_shares_no_memory_and_keeps_the_structure():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model[0].bias.requires_grad_(False)
    copy = meta_copy(model)
    assert all(p.is_meta for p in copy.parameters()) and not any(p.is_meta for p in model.parameters())
    assert [(n, p.shape, p.requires_grad) for n, p in copy.named_parameters()] == \
        [(n, p.shape, p.requires_grad) for n, p in model.named_parameters()]
    assert torch.equal(copy[1].running_var, model[1].running_var)  # buffers are real copies
    copy.load_state_dict(model.state_dict(), assign=True)
    assert torch.equal(copy[0].weight, model[0].weight) and not copy[0].weight.is_meta
