"""optim.identity_lr puts the identity modules in their own parameter group with their own learning rate."""

from __future__ import annotations

import torch
from train_fixtures import tiny_config

from fantasyid.training import model as model_module
from fantasyid.training.loop import train
from fantasyid.training.model import IDENTITY_PREFIXES


def test_identity_modules_follow_their_own_learning_rate(identity_data, tmp_path, monkeypatch):
    config = tiny_config(identity_data, tmp_path / "run", train={"max_steps": 1},
                         optim={"identity_lr": 0.0, "lr": 1e-3}, checkpoint={"every": 0, "total_limit": 1})
    captured = {}
    original = model_module.build_components

    def keep(*args, **kwargs):
        captured["components"] = original(*args, **kwargs)
        captured["before"] = {k: v.detach().clone() for k, v in captured["components"].module.named_parameters()}
        return captured["components"]

    monkeypatch.setattr(model_module, "build_components", keep)
    train(config)
    after = dict(captured["components"].module.named_parameters())
    moved = {name: not torch.equal(after[name].detach(), before) for name, before in captured["before"].items()
             if after[name].requires_grad}
    identity = [name for name in moved if name.startswith(IDENTITY_PREFIXES)]
    backbone = [name for name in moved if not name.startswith(IDENTITY_PREFIXES)]
    assert identity and backbone
    assert not any(moved[name] for name in identity)  # identity_lr = 0: the identity modules stay
    assert sum(moved[name] for name in backbone) >= 0.9 * len(backbone)  # the backbone trains at lr
