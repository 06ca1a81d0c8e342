"""A tiny checkpoint written in the released layout (same key names and folders, tiny shapes) loads strictly and runs."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import PIL.Image
import pytest
import scipy.sparse as sp
import torch
from safetensors.torch import save_file

from fantasyid.errors import CheckpointError
from fantasyid.models.configs import identity_encoder_config, tiny_mesh_hierarchy, transformer_config
from fantasyid.models.convert import released_identity_key
from fantasyid.pipelines.loading import EVA_FILE, ReleasedSizes, load_pipeline, load_released_transformer
from fantasyid.pipelines.tiny import build_tiny_components, build_tiny_image_encoder

TINY = transformer_config("tiny")
HEADS = (TINY["identity_num_heads"], TINY["identity_head_dim"])


def _released_transformer_state(components) -> dict[str, torch.Tensor]:
    """Our tiny transformer + identity encoder under the release's key names (one state dict, as released)."""
    state = {}
    for key, value in components["transformer"].state_dict().items():
        if key.startswith("identity_attention."):
            key = "layer_attention." + key[len("identity_attention."):]
            key = key.replace(".norm_kv.", ".norm1.").replace(".norm_hidden.", ".norm2.")
        state[key] = value.clone().contiguous()
    for key, value in components["identity_encoder"].state_dict().items():
        if key.startswith("mesh"):
            continue
        state[released_identity_key(key)] = value.clone().contiguous()
    return state


def _write_transform_pkl(path):
    mesh = tiny_mesh_hierarchy()
    payload = {
        "vertices": [np.asarray(v) for v in mesh.vertices] + [np.zeros((1, 3))],
        "face": [np.asarray(f, dtype=np.uint32) for f in mesh.faces] + [np.zeros((0, 3), np.uint32)],
        "adj": [sp.csc_matrix((len(v), len(v)), dtype=np.float32) for v in mesh.vertices] + [sp.csc_matrix((1, 1))],
        "down_transform": [sp.csc_matrix(d) for d in mesh.down] + [sp.csc_matrix((1, len(mesh.vertices[-1])))],
        "up_transform": [sp.csc_matrix(u) for u in mesh.up] + [sp.csc_matrix((len(mesh.vertices[-1]), 1))],
    }
    with open(path, "wb") as handle:
        pickle.dump(payload, handle, protocol=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("FantasyID")
    components = build_tiny_components(seed=1)
    with torch.no_grad():
        for p in components["transformer"].identity_parameters():
            p.normal_(0, 0.2)
    # transformer/: release-style config (CogVideoX keys + its own) and the weights in two shards
    (root / "transformer").mkdir()
    config = {k: v for k, v in TINY.items() if not k.startswith("identity_")}
    config.update({"_class_name": "IDTransformer3DModel", "is_train_face": True, "is_kps": False,
                   "cross_attn_interval": 1, "LFE_num_tokens": 32, "LFE_output_dim": 768, "LFE_heads": 12,
                   "local_face_scale": 1.0})
    (root / "transformer" / "config.json").write_text(json.dumps(config))
    state = _released_transformer_state(components)
    keys = sorted(state)
    save_file({k: state[k] for k in keys[::2]}, str(root / "transformer" / "diffusion_pytorch_model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in keys[1::2]}, str(root / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors"))
    for name in ("vae", "text_encoder", "tokenizer", "scheduler"):
        components[name].save_pretrained(root / name)
    # face_encoder/: EVA-CLIP .pt and the face pack
    encoder = build_tiny_image_encoder(components["identity_encoder"].config.num_clip_layers)
    (root / "face_encoder").mkdir()
    torch.save({f"visual.{k}": v for k, v in encoder.trunk.state_dict().items()}, root / EVA_FILE)
    from fantasyid.face.assets import install_buffalo_sc

    pack = install_buffalo_sc(tmp_path_factory.mktemp("home"))
    shutil.copytree(pack, root / "face_encoder" / "models" / "antelopev2")
    (root / "assets").mkdir()
    _write_transform_pkl(root / "assets" / "transform.pkl")
    return root, components, encoder


def _sizes(encoder):
    return ReleasedSizes(identity_config=identity_encoder_config("tiny"), identity_heads=HEADS, eva_config=encoder.config)


def test_released_layout_loads_strictly_and_equals_the_source(checkpoint):
    root, components, encoder = checkpoint
    transformer, identity = load_released_transformer(root, identity_config=identity_encoder_config("tiny"),
                                                      identity_heads=HEADS)
    for key, value in components["transformer"].state_dict().items():
        loaded = transformer.state_dict()[key]
        assert torch.equal(loaded, value.to(loaded.dtype)), key
    for key, value in components["identity_encoder"].state_dict().items():
        if not key.startswith("mesh"):
            assert torch.equal(identity.state_dict()[key], value), key


def test_released_layout_generates(checkpoint):
    root, components, encoder = checkpoint
    loaded = load_pipeline(str(root), device="cpu", dtype="fp32", shape_needed=False, sizes=_sizes(encoder))
    loaded.pipe.set_progress_bar_config(disable=True)
    from skimage import data

    vertices = torch.from_numpy(tiny_mesh_hierarchy().vertices[0][None] * 0.1).float()
    out = loaded.pipe(PIL.Image.fromarray(data.astronaut()), "a woman smiles", height=64, width=64, num_frames=9,
                      num_inference_steps=2, vertices=vertices, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (1, 9, 64, 64, 3)
    assert loaded.info["random_weights"] is False


def test_unexpected_or_missing_key_is_an_error_listing_it(checkpoint, tmp_path):
    root, _, _ = checkpoint
    broken = tmp_path / "broken"
    shutil.copytree(root / "transformer", broken / "transformer")
    from safetensors.torch import load_file

    shard = broken / "transformer" / "diffusion_pytorch_model-00001-of-00002.safetensors"
    state = load_file(str(shard))
    dropped = sorted(state)[0]
    del state[dropped]
    state["layer_attention.0.surprise"] = torch.zeros(1)
    save_file(state, str(shard))
    with pytest.raises(CheckpointError) as exc:
        load_released_transformer(broken, identity_config=identity_encoder_config("tiny"), identity_heads=HEADS)
    assert "surprise" in str(exc.value) or dropped in str(exc.value)
