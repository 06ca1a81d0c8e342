"""``model.init: cogvideox:PATH`` on a tiny CogVideoX image-to-video model in diffusers' format (written with
``save_pretrained``, as THUDM/CogVideoX-5b-I2V is laid out): training starts from those weights (the backbone equals
the saved one, only the identity modules are new), trains, and ``--precompute`` builds a cache from the same folder
that the training run accepts (its T5 and VAE are the folder's)."""

from __future__ import annotations

import inspect

import torch
from train_fixtures import tiny_config

from fantasyid.training import model as model_module
from fantasyid.training.loop import train

VARIANT = "paper"


def _write_cogvideox(folder):
    """transformer/, vae/, text_encoder/, tokenizer/, scheduler/ of a tiny CogVideoX-I2V (1.0: no patch_size_t)."""
    from diffusers import CogVideoXTransformer3DModel

    from fantasyid.pipelines.tiny import build_tiny_text_and_vae, cogvideox_scheduler, tiny_transformer_config

    base_keys = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters)
    config = {k: v for k, v in tiny_transformer_config(VARIANT).items() if k in base_keys}
    torch.manual_seed(11)
    transformer = CogVideoXTransformer3DModel(**config)
    tokenizer, text_encoder, vae = build_tiny_text_and_vae(seed=12, variant=VARIANT)
    for name, part in (("transformer", transformer), ("vae", vae), ("text_encoder", text_encoder),
                       ("tokenizer", tokenizer), ("scheduler", cogvideox_scheduler())):
        part.save_pretrained(folder / name)
    return {k: v.clone() for k, v in transformer.state_dict().items()}


def test_training_starts_from_the_saved_cogvideox_weights(identity_data, tmp_path, monkeypatch):
    from fantasyid.face import eva_clip
    from fantasyid.models import configs
    from fantasyid.models.configs import identity_encoder_config, tiny_mesh_hierarchy
    from fantasyid.pipelines.tiny import build_tiny_image_encoder, tiny_transformer_config
    from fantasyid.training.cache import precompute

    saved = _write_cogvideox(tmp_path / "CogVideoX-I2V")
    # the identity modules and EVA-CLIP at the tiny model's sizes (the real ones are full size), from real formats
    tiny_identity = identity_encoder_config("tiny", variant=VARIANT)
    monkeypatch.setattr(configs, "transformer_config", lambda variant: tiny_transformer_config(variant))
    monkeypatch.setattr(configs, "identity_encoder_config", lambda variant: dict(tiny_identity))
    image_encoder = build_tiny_image_encoder(tiny_identity["num_clip_layers"])
    torch.save({f"visual.{k}": v for k, v in image_encoder.trunk.state_dict().items()}, tmp_path / "eva.pt")
    load_eva = eva_clip.load_eva_clip_vision
    monkeypatch.setattr(eva_clip, "load_eva_clip_vision",
                        lambda path, config=None, **kw: load_eva(path, config or image_encoder.config, **kw))
    mesh = tmp_path / "mesh.npz"
    tiny_mesh_hierarchy().save(mesh)

    captured = {}
    original = model_module.build_components

    def keep(*args, **kwargs):
        components = captured["components"] = original(*args, **kwargs)
        captured["initial"] = {k: v.clone() for k, v in components.module.transformer.state_dict().items()}
        return components

    monkeypatch.setattr(model_module, "build_components", keep)
    config = tiny_config(identity_data, tmp_path / "run", model={
        "init": f"cogvideox:{tmp_path / 'CogVideoX-I2V'}", "eva_clip": str(tmp_path / "eva.pt"), "mesh": str(mesh),
        "variant": VARIANT}, data={"windows": 1, "cache": str(tmp_path / "cache")}, train={"max_steps": 2},
        checkpoint={"every": 0})
    report = precompute(config)  # T5 and VAE read from the folder's text_encoder/ and vae/
    assert report.stored == 3
    result = train(config)  # refuses the cache unless its T5 and VAE are the ones training loads
    assert result.status == "finished" and all(torch.isfinite(torch.tensor(result.losses)))

    initial = captured["initial"]
    for key, value in saved.items():  # every CogVideoX weight, as saved
        assert torch.equal(initial[key], value), key
    assert set(initial) - set(saved) and all(k.startswith("identity_attention.") for k in set(initial) - set(saved))
    trained = captured["components"].module.transformer.state_dict()
    assert any(not torch.equal(trained[k], saved[k]) for k in saved)  # and training moved them
