"""FLAME: the restricted unpickler (real generic_model.pkl format, no chumpy) and the layer's maths."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flame_fixtures import fake_modules, pickle_with_fake_chumpy, synthetic_flame_arrays, write_flame_pickle

from fantasyid.errors import CheckpointError, InputError, UnsafeFileError, WeightsNotFoundError
from fantasyid.face.flame import (
    FlameLayer,
    axis_angle_to_matrix,
    decode_vertices,
    load_flame_model,
    safe_unpickle,
)


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("flame") / "generic_model.pkl"
    arrays = write_flame_pickle(path)
    return path, arrays


@pytest.fixture(scope="module")
def flame(flame_file):
    return FlameLayer(load_flame_model(flame_file[0]))


@pytest.mark.parametrize("protocol", [0, 2])
def test_reads_the_real_format_without_chumpy(tmp_path, protocol):
    path = tmp_path / "generic_model.pkl"
    arrays = write_flame_pickle(path, protocol=protocol)
    raw = path.read_bytes()
    assert b"chumpy.ch" in raw and b"scipy.sparse.csc" in raw  # refers to them exactly like the real file
    sys.modules.pop("chumpy", None)
    model = load_flame_model(path)
    assert "chumpy" not in sys.modules  # never imported
    np.testing.assert_array_equal(model.shapedirs, arrays["shapedirs"])
    np.testing.assert_array_equal(model.posedirs, arrays["posedirs"])
    np.testing.assert_array_equal(model.j_regressor, arrays["J_regressor"])
    np.testing.assert_array_equal(model.parents, [-1, 0, 1, 1, 1])  # the unsigned −1 of the root is fixed
    assert model.faces.dtype == np.int64 and model.num_vertices == 42 and model.num_joints == 5
    content = safe_unpickle(path)
    assert content["bs_style"] == "lbs" and isinstance(content["shapedirs"], np.ndarray)


def test_modern_scipy_sparse_is_accepted(tmp_path):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    arrays = synthetic_flame_arrays(1)
    path = tmp_path / "modern.pkl"
    with open(path, "wb") as stream:
        pickle.dump(arrays | {"J_regressor": scipy_sparse.csc_matrix(arrays["J_regressor"])}, stream, protocol=4)
    np.testing.assert_array_equal(load_flame_model(path).j_regressor, arrays["J_regressor"])


class _Exploit:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_code_in_the_pickle_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as stream:
        pickle.dump({"v_template": np.zeros((3, 3)), "hook": _Exploit(f"touch {marker}")}, stream, protocol=2)
    with pytest.raises(UnsafeFileError, match="system"):
        load_flame_model(path)
    assert not marker.exists()


def test_unknown_chumpy_classes_and_bad_states_are_refused(tmp_path):
    reordering = types.ModuleType("chumpy.reordering")

    class Select:
        """Stands for chumpy.reordering.Select, a chumpy class the loader does not know."""

    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    reordering.Select = Select
    path = tmp_path / "select.pkl"
    fakes = {"chumpy": types.ModuleType("chumpy"), "chumpy.reordering": reordering}
    with fake_modules(**fakes), open(path, "wb") as stream:
        pickle.dump({"shapedirs": Select()}, stream, protocol=2)
    with pytest.raises(UnsafeFileError, match="chumpy.reordering.Select"):
        load_flame_model(path)

    no_array = tmp_path / "no_array.pkl"
    pickle_with_fake_chumpy(lambda Ch: {"shapedirs": Ch("not an array")}, no_array)
    with pytest.raises(UnsafeFileError, match="no array"):
        load_flame_model(no_array)


def test_codecs_only_for_latin1(tmp_path):
    # _codecs.encode("abc", "base64") hand-written in protocol 2
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00base64\x86R.")
    with pytest.raises(UnsafeFileError, match="latin-1"):
        safe_unpickle(path)


def test_malformed_files(tmp_path, flame_file):
    arrays = synthetic_flame_arrays()
    cases = {
        "missing": {k: v for k, v in arrays.items() if k != "weights"},
        "numeric": arrays | {"f": np.array([["a", "b", "c"]], dtype=object)},
        "posedirs": arrays | {"posedirs": arrays["posedirs"][:, :, :27]},
        "outside": arrays | {"f": arrays["f"] + 1000},
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.pkl"
        with open(path, "wb") as stream:
            pickle.dump(content, stream, protocol=2)
        with pytest.raises(CheckpointError, match=name):
            load_flame_model(path)
    not_dict = tmp_path / "list.pkl"
    not_dict.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(CheckpointError, match="not the dict"):
        load_flame_model(not_dict)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_flame_model(garbage)
    with pytest.raises(WeightsNotFoundError, match="not found") as error:
        load_flame_model(tmp_path / "absent.pkl")
    assert "flame.is.tue.mpg.de" in error.value.hint


def test_shape_only_is_the_linear_model(flame, flame_file):
    _, arrays = flame_file
    beta = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    vertices = flame.shape_only(beta)
    expected = arrays["v_template"] + np.einsum("bl,vkl->bvk", beta.double().numpy(), arrays["shapedirs"][:, :, :100])
    np.testing.assert_allclose(vertices.numpy(), expected, atol=1e-6)
    # with expression and pose at zero, full LBS gives the same mesh (up to the 1e-8 of batch_rodrigues)
    torch.testing.assert_close(flame(beta), vertices, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        decode_vertices(flame, beta, torch.randn(3, 50), torch.randn(3, 6), mode="paper"), vertices
    )


def test_expression_uses_components_from_300(flame, flame_file):
    _, arrays = flame_file
    psi = torch.randn(2, 50, generator=torch.Generator().manual_seed(1))
    vertices = flame(torch.zeros(2, 100), psi)
    expected = arrays["v_template"] + np.einsum("bl,vkl->bvk", psi.double().numpy(), arrays["shapedirs"][:, :, 300:350])
    np.testing.assert_allclose(vertices.numpy(), expected, atol=1e-6)


def _joints(arrays, shaped):
    return arrays["J_regressor"] @ shaped  # (J, 3)


def test_global_rotation_turns_the_whole_head_about_the_root(flame, flame_file):
    _, arrays = flame_file
    beta = torch.randn(1, 100, generator=torch.Generator().manual_seed(2)) * 0.5
    axis_angle = torch.tensor([[0.3, -0.5, 0.2]])
    vertices = flame(beta, pose=torch.cat([axis_angle, torch.zeros(1, 3)], dim=1))[0].double().numpy()
    shaped = flame.shape_only(beta)[0].double().numpy()
    root = _joints(arrays, shaped)[0]
    rotation = axis_angle_to_matrix(axis_angle.double())[0].numpy()
    np.testing.assert_allclose(vertices, (shaped - root) @ rotation.T + root, atol=1e-5)


def test_jaw_rotation_skins_and_adds_pose_correctives(flame, flame_file):
    _, arrays = flame_file
    jaw = torch.tensor([[0.25, 0.05, -0.1]])
    pose = torch.cat([torch.zeros(1, 3), jaw], dim=1)  # DECA layout: global, jaw
    vertices = flame(torch.zeros(1, 100), torch.zeros(1, 50), pose)[0].double().numpy()
    rotation = axis_angle_to_matrix(jaw.double())[0].numpy()
    # pose feature: (R_j − I) of neck, jaw, eyes flattened; only the jaw block (features 9..17) is non-zero
    feature = np.zeros(36)
    feature[9:18] = (rotation - np.eye(3)).ravel()
    offsets = (arrays["posedirs"].reshape(-1, 36) @ feature).reshape(-1, 3)
    posed = arrays["v_template"] + offsets
    jaw_joint = _joints(arrays, arrays["v_template"])[2]
    root_only = arrays["v_template"][:, 2] > 0.05
    jaw_only = arrays["v_template"][:, 2] < -0.03
    assert root_only.any() and jaw_only.any()
    np.testing.assert_allclose(vertices[root_only], posed[root_only], atol=1e-6)
    np.testing.assert_allclose(vertices[jaw_only], (posed[jaw_only] - jaw_joint) @ rotation.T + jaw_joint, atol=1e-6)


def test_layer_validation(flame, flame_file):
    with pytest.raises(InputError, match="shape"):
        flame(torch.zeros(2, 99))
    with pytest.raises(InputError, match="pose"):
        flame(torch.zeros(2, 100), pose=torch.zeros(2, 3))
    with pytest.raises(InputError, match="mode"):
        decode_vertices(flame, torch.zeros(1, 100), mode="both")
    with pytest.raises(CheckpointError, match="n_exp"):
        FlameLayer(load_flame_model(flame_file[0]), n_exp=101)
    assert flame.num_vertices == 42 and flame.faces.shape == (80, 3)


def test_rodrigues_matches_known_rotations():
    angle = torch.tensor([[0.0, 0.0, np.pi / 2]], dtype=torch.float64)
    np.testing.assert_allclose(axis_angle_to_matrix(angle)[0].numpy(), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-7)
    np.testing.assert_allclose(axis_angle_to_matrix(torch.zeros(1, 3))[0].numpy(), np.eye(3), atol=1e-7)
