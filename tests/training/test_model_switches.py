"""What trains: frozen modules get no gradient and stay unchanged; each ablation switch changes exactly its modules."""

from __future__ import annotations

import torch
from train_fixtures import tiny_config

from fantasyid.data.dataset import ClipDataset, collate_items
from fantasyid.training import model as model_module
from fantasyid.training.config import DataConfig, ModelConfig
from fantasyid.training.loop import train
from fantasyid.training.model import build_components
from fantasyid.training.step import compute_loss, prepare_inputs


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _backward(components, manifest) -> None:
    dataset = ClipDataset(manifest, frames=5, height=64, width=64, fps=8.0, views=6,
                          clip_image_size=components.image_encoder.config.image_size,
                          num_vertices=components.num_vertices)
    batch = collate_items([dataset[(0, 0)], dataset[(1, 1)]])
    data = DataConfig(frames=5, height=64, width=64, image_dropout=0.0, text_dropout=0.0)
    inputs = prepare_inputs(components, batch, data, seed=0, device=torch.device("cpu"))
    compute_loss(components.module, components, inputs).backward()


def test_identity_only_training_freezes_the_backbone_and_the_encoders(identity_data, tmp_path, monkeypatch):
    components = build_components(ModelConfig(init="tiny", trainable="identity", gradient_checkpointing=False))
    _backward(components, identity_data)
    frozen = {"vae": components.pipe.vae, "text_encoder": components.pipe.text_encoder,
              "image_encoder": components.image_encoder}
    for name, module in frozen.items():
        assert all(p.grad is None and not p.requires_grad for p in module.parameters()), name
    transformer = components.module.transformer
    for name, p in transformer.named_parameters():
        assert (p.grad is not None) == name.startswith("identity_attention."), name
    dead = set(components.pipe.identity_encoder.dead_parameter_names())
    for name, p in components.module.identity.encoder.named_parameters():
        assert (p.grad is not None) == (name not in dead), name  # the release's dead weights stay out

    # …and through the loop they are unchanged while the identity modules move
    captured = {}
    original = model_module.build_components

    def keep(*args, **kwargs):
        captured["c"] = original(*args, **kwargs)
        captured["before"] = {"vae": _state(captured["c"].pipe.vae), "t5": _state(captured["c"].pipe.text_encoder),
                              "eva": _state(captured["c"].image_encoder),
                              "transformer": _state(captured["c"].module.transformer)}
        return captured["c"]

    monkeypatch.setattr(model_module, "build_components", keep)
    train(tiny_config(identity_data, tmp_path / "run", model={"trainable": "identity"}, train={"max_steps": 2}))
    after = {"vae": captured["c"].pipe.vae.state_dict(), "t5": captured["c"].pipe.text_encoder.state_dict(),
             "eva": captured["c"].image_encoder.state_dict(),
             "transformer": captured["c"].module.transformer.state_dict()}
    for part in ("vae", "t5", "eva"):
        assert all(torch.equal(v, after[part][k]) for k, v in captured["before"][part].items()), part
    changed = {k for k, v in captured["before"]["transformer"].items() if not torch.equal(v, after["transformer"][k])}
    assert changed and all(k.startswith("identity_attention.") for k in changed)


def _parameters(config: ModelConfig) -> tuple[dict[str, torch.Tensor], set[str]]:
    components = build_components(config, seed=0)
    named = dict(components.module.named_parameters())
    return {k: v.detach() for k, v in named.items()}, {k for k, v in named.items() if v.requires_grad}


def test_each_ablation_changes_exactly_the_modules_it_names():
    base_config = dict(init="tiny", variant="paper", gradient_checkpointing=False)
    base, base_trainable = _parameters(ModelConfig(**base_config))

    def diff(**switch):
        params, trainable = _parameters(ModelConfig(**base_config, **switch))
        removed, added = set(base) - set(params), set(params) - set(base)
        changed = {k for k in set(base) & set(params) if not torch.equal(base[k], params[k])}
        return removed, added, changed, trainable

    removed, added, changed, trainable = diff(face_abstractor="qformer")  # w/o FA
    fa = "identity.encoder.face_abstractor."
    assert removed and added and not changed
    assert all(k.startswith(fa) for k in removed | added)
    assert any(".queries" in k for k in added) and any(".layers.0.abstractor." in k for k in removed)

    removed, added, changed, trainable = diff(vertex_tokens=False)  # w/o FV
    assert not removed and not changed
    lift = {"identity.encoder.face_to_identity.weight", "identity.encoder.face_to_identity.bias"}
    assert added <= lift  # face → identity width
    dropped = base_trainable - trainable
    vertex = ("vertex_encoder.", "face_to_vertex.", "fusion.", "reducer.")
    assert dropped and all(k.removeprefix("identity.encoder.").startswith(vertex) for k in dropped)
    assert trainable - base_trainable == added

    removed, added, changed, trainable = diff(layer_refiner=False)  # w/o LACSI
    assert removed and not added and not changed
    assert all(".refiner." in k and k.startswith("transformer.identity_attention.") for k in removed)


def test_without_mfc_only_the_data_changes(identity_data):
    base = tiny_config(identity_data, "unused")
    wo_mfc = tiny_config(identity_data, "unused", data={"views": 1})
    assert base.model == wo_mfc.model  # the model is the same; the dataset always takes views[0]
