"""DECA's coarse encoder: deca_model.tar in its real formats, the crops, and image → FLAME vertices."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from flame_fixtures import write_flame_pickle

from fantasyid.errors import CheckpointError, InputError, UnsafeFileError, WeightsNotFoundError
from fantasyid.face.deca import (
    DECA_CODE_DIM,
    DecaCodes,
    DecaEncoder,
    DecaFlame,
    deca_crop,
    deca_resize_whole,
    load_deca_encoder,
    read_deca_checkpoint,
)
from fantasyid.face.flame import FlameLayer


@pytest.fixture(scope="module")
def encoder_and_state():
    torch.manual_seed(0)
    model = DecaEncoder().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that loading them is visible
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def deca_tars(tmp_path_factory, encoder_and_state):
    """deca_model.tar in the zip format and in the legacy (torch < 1.6) format, with DECA's other entries."""
    _, state = encoder_and_state
    folder = tmp_path_factory.mktemp("deca")
    content = {"E_flame": state, "E_detail": {"fc.weight": torch.zeros(2, 2)}, "D_detail": {"w": torch.ones(1)}}
    zip_path, legacy_path = folder / "deca_model.tar", folder / "deca_model_legacy.tar"
    torch.save(content, zip_path)
    torch.save(content, legacy_path, _use_new_zipfile_serialization=False)
    return zip_path, legacy_path


def test_encoder_shapes_and_code_split(encoder_and_state):
    model, _ = encoder_and_state
    assert sum(p.numel() for p in model.encoder.parameters()) == 23_508_032  # ResNet-50 without fc
    with torch.no_grad():
        codes = model(torch.rand(2, 3, 224, 224))
    assert codes.shape.shape == (2, 100) and codes.tex.shape == (2, 50) and codes.exp.shape == (2, 50)
    assert codes.pose.shape == (2, 6) and codes.cam.shape == (2, 3) and codes.light.shape == (2, 9, 3)
    parameters = torch.arange(2 * DECA_CODE_DIM, dtype=torch.float32).view(2, DECA_CODE_DIM)
    split = DecaCodes.split(parameters)
    assert split.exp[0, 0] == 150 and split.cam[1, 2] == DECA_CODE_DIM + 208 and split.light[0, 0, 0] == 209
    with pytest.raises(InputError, match="224"):
        model(torch.rand(1, 3, 256, 256))


def test_both_tar_formats_load_with_weights_only(deca_tars, encoder_and_state):
    model, _ = encoder_and_state
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.layers(model.encoder(images))
        for path in deca_tars:
            loaded = load_deca_encoder(path)
            assert not loaded.training
            got = loaded(images)
            torch.testing.assert_close(torch.cat([got.shape, got.tex, got.exp, got.pose, got.cam,
                                                  got.light.flatten(1)], dim=1), expected)  # fmt: skip


class Optimizer:
    """Stands for a pickled Python object inside a checkpoint."""


class Exploit:
    """Pickles as a call to os.system: loading it must not run the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_unsafe_and_malformed_tars(tmp_path, encoder_and_state):
    _, state = encoder_and_state
    unsafe = tmp_path / "unsafe.tar"
    torch.save({"E_flame": {}, "opt": Optimizer()}, unsafe)
    with pytest.raises(UnsafeFileError, match="Optimizer"):
        read_deca_checkpoint(unsafe)
    marker = tmp_path / "pwned"
    exploit = tmp_path / "exploit.tar"
    torch.save({"E_flame": state, "hook": Exploit(f"touch {marker}")}, exploit)
    with pytest.raises(UnsafeFileError, match="system"):
        load_deca_encoder(exploit)
    assert not marker.exists()
    no_entry = tmp_path / "no_entry.tar"
    torch.save({"E_detail": {}}, no_entry)
    with pytest.raises(CheckpointError, match="E_flame"):
        load_deca_encoder(no_entry)
    missing = tmp_path / "missing.tar"
    torch.save({"E_flame": {k: v for k, v in state.items() if k != "layers.2.weight"}}, missing)
    with pytest.raises(CheckpointError, match="missing"):
        load_deca_encoder(missing)
    wrong = tmp_path / "wrong.tar"
    torch.save({"E_flame": state | {"layers.2.weight": torch.zeros(200, 1024)}}, wrong)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_deca_encoder(wrong)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"<html>quota exceeded</html>")  # what a failed Google Drive download leaves behind
    with pytest.raises(CheckpointError, match="cannot read"):
        load_deca_encoder(garbage)
    with pytest.raises(WeightsNotFoundError) as error:
        load_deca_encoder(tmp_path / "absent.tar")
    assert "deca.is.tue.mpg.de" in error.value.hint


def test_numpy_scalars_and_arrays_are_tolerated(tmp_path, encoder_and_state):
    # checkpoints of that era often carry numpy counters next to the weights; they hold no code
    _, state = encoder_and_state
    path = tmp_path / "with_numpy.tar"
    torch.save({"E_flame": state, "epoch": np.int64(12), "lr": np.float64(1e-4), "hist": np.arange(3.0)}, path)
    torch.testing.assert_close(load_deca_encoder(path).layers[0].bias, state["layers.0.bias"])


def test_data_parallel_prefix_and_missing_batch_counters(tmp_path, encoder_and_state):
    _, state = encoder_and_state
    path = tmp_path / "dp.tar"
    kept = {"module." + k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save({"E_flame": kept}, path)
    loaded = load_deca_encoder(path)
    torch.testing.assert_close(loaded.layers[2].weight, state["layers.2.weight"])


def test_deca_crop_geometry():
    # an image whose pixels hold their own coordinates shows where the crop samples
    height, width = 400, 500
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    coordinates = np.dstack([xs, ys, np.zeros_like(xs)])
    bbox = np.array([180.0, 100.0, 300.0, 260.0])  # w 120, h 160 → old size 140, square 175
    crop = deca_crop(coordinates, bbox)
    assert crop.shape == (224, 224, 3)
    centre_x, centre_y, side = 240.0, 180.0 + 0.12 * 140.0, int(140 * 1.25)
    np.testing.assert_allclose(crop[0, 0, :2], [centre_x - side / 2, centre_y - side / 2], atol=1e-3)
    np.testing.assert_allclose(crop[223, 223, :2], [centre_x + side / 2, centre_y + side / 2], atol=1e-3)
    uint8 = deca_crop(np.full((50, 50, 3), 255, np.uint8), [10, 10, 40, 40])
    assert uint8.dtype == np.float32 and uint8.max() == pytest.approx(1.0)
    with pytest.raises(InputError, match="box"):
        deca_crop(coordinates, [10, 10, 5, 5])


def test_release_input_is_the_whole_image_resized():
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    resized = deca_resize_whole(image)
    expected = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR), np.float32) / 255
    np.testing.assert_array_equal(resized, expected)


@pytest.fixture(scope="module")
def deca_flame(deca_tars, tmp_path_factory):
    flame_path = tmp_path_factory.mktemp("flame_for_deca") / "generic_model.pkl"
    write_flame_pickle(flame_path)
    return DecaFlame.from_files(deca_tars[0], flame_path)


def test_image_to_vertices_in_both_modes(deca_flame, astronaut, astronaut_face):
    paper = deca_flame.vertices(astronaut, mode="paper", bbox=astronaut_face.bbox)
    released = deca_flame.vertices(astronaut, mode="released")
    assert paper.shape == released.shape == (1, 42, 3)
    assert torch.isfinite(paper).all() and torch.isfinite(released).all()
    codes = deca_flame.encoder(deca_flame.prepare(astronaut, mode="paper", bbox=astronaut_face.bbox))
    torch.testing.assert_close(paper, deca_flame.flame.shape_only(codes.shape))  # paper: shape only
    codes = deca_flame.encoder(deca_flame.prepare(astronaut, mode="released"))
    torch.testing.assert_close(released, deca_flame.flame(codes.shape, codes.exp, codes.pose))
    with pytest.raises(InputError, match="bbox"):
        deca_flame.vertices(astronaut, mode="paper")
    with pytest.raises(InputError, match="mode"):
        deca_flame.prepare(astronaut, mode="shape")
    assert isinstance(deca_flame.flame, FlameLayer)


def test_from_files_reports_missing_flame(deca_tars, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="FLAME"):
        DecaFlame.from_files(deca_tars[0], tmp_path / "generic_model.pkl")


# ---------------------------------------------------------------------------------------------------------------
# Values against numbers computed here, independently of DecaEncoder, FlameLayer and decode_vertices


def _rodrigues(rotation_vector: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rotation_vector).as_matrix()


def _independent_codes(tar_path, image_224: np.ndarray) -> np.ndarray:
    """DECA's 236 parameters: torchvision's ResNet-50 on the tar's ``E_flame.encoder.*`` tensors, then the MLP
    written out in numpy (float64)."""
    import torchvision

    state = torch.load(tar_path, map_location="cpu", weights_only=True)["E_flame"]
    trunk = torchvision.models.resnet50(weights=None)
    trunk.fc = torch.nn.Identity()
    trunk.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")})
    pixels = torch.from_numpy(image_224).permute(2, 0, 1)[None]  # (1, 3, 224, 224) RGB in [0, 1]
    with torch.no_grad():
        features = trunk.eval()(pixels).double().numpy()[0]  # (2048,)
    w0, b0, w2, b2 = (state[f"layers.{name}"].double().numpy() for name in ("0.weight", "0.bias", "2.weight", "2.bias"))
    return np.maximum(features @ w0.T + b0, 0.0) @ w2.T + b2  # (236,)


def _independent_flame(arrays: dict, shape: np.ndarray, exp: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """FLAME with linear blend skinning, from its definition (Li et al. 2017), in numpy float64: identity components
    0…99, expression components 300…349; DECA's pose = global rotation, jaw (neck and eyes at rest)."""
    dirs = np.concatenate([arrays["shapedirs"][:, :, :100], arrays["shapedirs"][:, :, 300:350]], axis=2)
    v_shaped = arrays["v_template"] + dirs @ np.concatenate([shape, exp])  # (V, 3)
    joints = arrays["J_regressor"] @ v_shaped  # (5, 3)
    parents = [-1, 0, 1, 1, 1]
    rotations = [_rodrigues(v) for v in (pose[:3], np.zeros(3), pose[3:], np.zeros(3), np.zeros(3))]
    feature = np.concatenate([(r - np.eye(3)).reshape(-1) for r in rotations[1:]])  # (36,)
    v_posed = v_shaped + (arrays["posedirs"].reshape(-1, 36) @ feature).reshape(-1, 3)
    world = []
    for joint, parent in enumerate(parents):
        local = np.eye(4)
        local[:3, :3] = rotations[joint]
        local[:3, 3] = joints[joint] - (joints[parent] if parent >= 0 else 0.0)
        world.append(local if parent < 0 else world[parent] @ local)
    skinning = []
    for joint, transform in enumerate(world):
        moved = transform.copy()
        moved[:3, 3] -= transform[:3, :3] @ joints[joint]  # act on rest-pose coordinates
        skinning.append(moved)
    blended = np.einsum("vj,jrc->vrc", arrays["weights"], np.stack(skinning))  # (V, 4, 4)
    return np.einsum("vrc,vc->vr", blended[:, :3, :3], v_posed) + blended[:, :3, 3]


def test_deca_values_against_an_independent_computation(deca_tars, deca_flame, astronaut, astronaut_face):
    from PIL import Image

    from flame_fixtures import synthetic_flame_arrays

    arrays = synthetic_flame_arrays()  # what the deca_flame fixture's generic_model.pkl holds
    whole = np.asarray(Image.fromarray(astronaut).resize((224, 224), Image.Resampling.BILINEAR), np.float32) / 255
    codes = _independent_codes(deca_tars[0], whole)
    shape, exp, pose = codes[:100], codes[150:200], codes[200:206]
    assert np.abs(pose).max() > 1e-3 and np.abs(exp).max() > 1e-3  # the pose and expression are exercised
    expected = _independent_flame(arrays, shape, exp, pose)
    got = deca_flame.vertices(astronaut, mode="released")[0].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    crop = deca_crop(astronaut, astronaut_face.bbox)  # its geometry: test_deca_crop_geometry
    shape = _independent_codes(deca_tars[0], crop)[:100]
    expected = arrays["v_template"] + arrays["shapedirs"][:, :, :100] @ shape  # shape only
    got = deca_flame.vertices(astronaut, mode="paper", bbox=astronaut_face.bbox)[0].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
