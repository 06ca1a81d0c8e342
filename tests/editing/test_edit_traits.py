"""Where traits are measured (FLAME's landmark embedding or the geometric fallback) and what they measure."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fantasyid.editing.traits import (
    LANDMARK_COUNT,
    TRAIT_NAMES,
    TRAITS,
    SurfacePoints,
    TraitMeter,
    canonical_landmarks_2d,
    cast_points,
    get_trait,
    load_landmark_embedding,
)
from fantasyid.errors import CheckpointError, InputError, UnsafeFileError


@pytest.fixture(scope="module")
def template(flame):
    return flame.v_template.double().numpy(), flame.faces.numpy()


def test_geometric_landmarks_sit_on_the_front_in_the_ibug_order(editor, template):
    vertices, faces = template
    points = editor.meter.points.locate(vertices, faces)  # (70, 3)
    assert points.shape == (LANDMARK_COUNT + 2, 3)
    assert np.all(points[:, 2] > 0.0)  # every point on the face side (+z)
    assert points[0, 0] < 0.0 < points[16, 0]  # contour from the subject's right (−x) to the left
    assert points[8, 1] == points[:17, 1].min()  # the chin is the lowest contour point
    assert points[27, 1] > points[30, 1] > points[57, 1] > points[8, 1]  # nasion, nose tip, lower lip, chin
    assert points[68, 0] < 0.0 < points[69, 0]  # mid-cheeks right and left
    assert "geometric" in editor.meter.source


def test_traits_are_plausible_and_scale_like_lengths(editor, template):
    vertices, _ = template
    values = editor.meter.measure(vertices)
    assert values.shape == (len(TRAITS),)
    named = dict(zip(TRAIT_NAMES, values))
    assert 60 < named["face_width"] < 150 and 0 < named["jaw_width"] < named["face_width"]
    assert 0 < named["jaw_sharpness"] < 90
    scaled = editor.meter.measure(vertices * 1.1)  # lengths grow by 10 %, angles do not
    for trait, before, after in zip(TRAITS, values, scaled):
        if trait.unit == "deg":
            assert after == pytest.approx(before, abs=1e-9)
        else:
            assert after == pytest.approx(1.1 * before, rel=1e-9)


def test_linear_precomputation_matches_measuring_the_mesh(editor, face_state):
    """The editor's β → traits shortcut equals measuring the decoded paper-mode mesh."""
    assert editor.measure(face_state.betas) == pytest.approx(editor.meter.measure(face_state.vertices), abs=1e-3)


def _deca_embedding(editor):
    points = editor.meter.points
    return {
        "full_lmk_faces_idx": points.face_idx[None, :LANDMARK_COUNT].astype(np.int64),  # (1, 68)
        "full_lmk_bary_coords": points.bary[None, :LANDMARK_COUNT],  # (1, 68, 3)
        "static_lmk_faces_idx": points.face_idx[None, 17:LANDMARK_COUNT],
    }


def test_landmark_embedding_in_deca_npy_format_is_read_without_trusting_pickle(editor, template, tmp_path):
    vertices, faces = template
    path = tmp_path / "landmark_embedding.npy"
    np.save(path, _deca_embedding(editor), allow_pickle=True)  # how DECA's file is made: a pickled dict
    embedding = load_landmark_embedding(path, faces)
    np.testing.assert_array_equal(embedding.face_idx, editor.meter.points.face_idx[:LANDMARK_COUNT])
    meter = TraitMeter.for_template(vertices, faces, path)
    assert "landmark embedding" in meter.source
    np.testing.assert_allclose(meter.measure(vertices), editor.meter.measure(vertices), atol=1e-9)


def test_landmark_embedding_npz_is_accepted(editor, template, tmp_path):
    _, faces = template
    path = tmp_path / "embedding.npz"
    np.savez(path, **_deca_embedding(editor))
    assert len(load_landmark_embedding(path, faces)) == LANDMARK_COUNT


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_landmark_file_with_code_is_refused(template, tmp_path, capsys):
    _, faces = template
    path = tmp_path / "landmark_embedding.npy"
    np.save(path, np.array({"full_lmk_faces_idx": _Exploit()}, dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match="builtins.print"):
        load_landmark_embedding(path, faces)
    assert "pwned" not in capsys.readouterr().out


def test_bad_landmark_files_are_one_line_errors(editor, template, tmp_path):
    _, faces = template
    wrong = _deca_embedding(editor)
    wrong["full_lmk_faces_idx"] = wrong["full_lmk_faces_idx"] + len(faces)  # outside the mesh
    np.save(tmp_path / "outside.npy", wrong, allow_pickle=True)
    np.save(tmp_path / "plain.npy", np.zeros((68, 3)))
    (tmp_path / "junk.npy").write_bytes(pickle.dumps({"a": 1}))
    for name, match in (("outside.npy", "outside"), ("plain.npy", "plain"), ("junk.npy", "not an .npy")):
        with pytest.raises(CheckpointError, match=match) as info:
            load_landmark_embedding(tmp_path / name, faces)
        assert "\n" not in info.value.message


def test_cast_points_misses_are_errors():
    vertices = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    faces = np.array([[0, 1, 2]])
    hit = cast_points(np.array([[0.25, 0.25]]), vertices, faces)
    np.testing.assert_allclose(hit.locate(vertices, faces), [[0.25, 0.25, 0.0]])
    with pytest.raises(InputError, match="no surface"):
        cast_points(np.array([[2.0, 2.0]]), vertices, faces)


def test_canonical_layout_is_symmetric():
    layout = canonical_landmarks_2d()
    mirror = {**{i: 16 - i for i in range(17)}, 31: 35, 36: 45, 39: 42, 48: 54, 57: 57, 8: 8}
    for left, right in mirror.items():
        assert layout[left, 0] == pytest.approx(-layout[right, 0], abs=1e-9)
        assert layout[left, 1] == pytest.approx(layout[right, 1])


def test_trait_lookup():
    assert get_trait("face-width").name == "face_width"
    with pytest.raises(InputError, match="unknown trait 'nose_length'; known traits: face_width"):
        get_trait("nose_length")


def test_surface_points_weights_match_locate(template):
    vertices, faces = template
    points = SurfacePoints(np.array([0, 5]), np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(points.weights(faces, len(vertices)) @ vertices, points.locate(vertices, faces))
