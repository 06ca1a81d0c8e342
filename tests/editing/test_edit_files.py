"""SHAPE.npz, mesh files, the preview, and :func:`run_edit_shape` on FLAME/DECA files in the licensed formats."""

from __future__ import annotations

import shutil

import numpy as np
import PIL.Image
import pytest
import torch

from fantasyid.editing import parse_edit
from fantasyid.editing.files import export_mesh, read_shape_file, save_shape_file
from fantasyid.editing.render import render_preview
from fantasyid.editing.run import EditShapeRequest, run_edit_shape
from fantasyid.errors import InputError
from fantasyid.pipelines.loading import load_shape_file


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch):
    """An empty $FANTASYID_HOME: nothing is found there unless a test puts it there."""
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path_factory.getbasetemp() / "editing-home"))


@pytest.fixture()
def edited(editor, released_state):
    return editor.edit(released_state, [parse_edit("face_width", "+5%"), parse_edit("jaw_sharpness", "+2")])


def test_shape_file_round_trip_without_pickles(editor, edited, tmp_path):
    path = save_shape_file(tmp_path / "shape.npz", edited, editor.faces, model="released", source="me.png")
    with np.load(path, allow_pickle=False) as data:
        assert data["vertices"].shape == (1, editor.meter.num_vertices, 3) and data["vertices"].dtype == np.float32
        assert data["betas"].shape == (1, editor.n_shape)
        assert data["faces"].shape == (len(editor.faces), 3)
        assert str(data["mode"]) == "released" and str(data["model"]) == "released"
        assert list(data["trait_names"])[:2] == ["face_width", "jaw_width"]
        np.testing.assert_allclose(data["traits_after"], edited.traits_after)
        np.testing.assert_array_equal(data["traits_before"], edited.traits_before)
        assert np.isnan(data["traits_requested"][1]) and not np.isnan(data["traits_requested"][0])
        assert list(data["edits"]) == ["face_width +5%", "jaw_sharpness +2"]
        np.testing.assert_array_equal(data["vertices_before"][0], edited.before.vertices)
    saved = read_shape_file(path)
    np.testing.assert_array_equal(saved.betas, edited.after.betas)
    np.testing.assert_array_equal(saved.pose, edited.after.pose)
    # what `fantasyid generate --shape` reads
    vertices = load_shape_file(path)
    assert vertices.shape == (1, editor.meter.num_vertices, 3)
    np.testing.assert_array_equal(vertices[0].numpy(), edited.after.vertices)
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_meshes_open_in_trimesh_with_the_same_vertices(editor, edited, tmp_path, suffix):
    trimesh = pytest.importorskip("trimesh")
    path = export_mesh(tmp_path / f"edited{suffix}", edited.after.vertices, editor.faces)
    mesh = trimesh.load(path, process=False)
    np.testing.assert_allclose(mesh.vertices, edited.after.vertices, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, editor.faces)
    if suffix == ".ply":  # generate --shape also takes a .ply
        np.testing.assert_allclose(load_shape_file(path)[0].numpy(), edited.after.vertices, atol=1e-6)


def test_bad_output_names_are_errors(editor, edited, tmp_path):
    with pytest.raises(InputError, match=".obj or .ply"):
        export_mesh(tmp_path / "mesh.stl", edited.after.vertices, editor.faces)
    with pytest.raises(InputError, match=".npz"):
        save_shape_file(tmp_path / "shape.dat", edited, editor.faces, model="tiny", source="x")
    with pytest.raises(InputError, match=".png"):
        render_preview(tmp_path / "preview.jpg", edited, editor.faces)


def test_preview_shows_both_meshes_front_and_side(editor, edited, tmp_path):
    path = render_preview(tmp_path / "preview.png", edited, editor.faces, weights=editor.meter.weights, size=160)
    image = np.asarray(PIL.Image.open(path).convert("RGB"))
    gap, header = 8, 28
    assert image.shape[1] == 2 * 160 + 3 * gap
    panels = [image[header + gap + row * (160 + gap) :][:160, gap + col * (160 + gap) :][:, :160]
              for row in range(2) for col in range(2)]  # fmt: skip
    background = np.array([245, 245, 242])
    for panel in panels:
        covered = np.abs(panel.astype(int) - background).sum(axis=2) > 30
        assert 0.15 < covered.mean() < 0.9  # a mesh fills a good part of every panel
    assert np.abs(panels[0].astype(int) - panels[1]).mean() > 1.0  # the edited one differs
    assert np.any(np.all(panels[1] == [220, 30, 30], axis=2))  # the original's outline is drawn on the edit


def _save_input(editor, state, path, model="released"):
    result = editor.edit(state, [])
    return save_shape_file(path, result, editor.faces, model=model, source="test")


def test_run_from_a_shape_file_with_licensed_format_files(editor, released_state, flame_file, tmp_path):
    source = _save_input(editor, released_state, tmp_path / "in.npz")
    request = EditShapeRequest(
        edits=[parse_edit("chin_length", "-1mm")], out=tmp_path / "out.npz", shape=source, flame=flame_file,
        mesh=tmp_path / "out.obj", preview=tmp_path / "out.png", device="cpu",
    )
    outcome = run_edit_shape(request)
    assert outcome.model == "released" and outcome.result.after.mode == "released"
    assert set(outcome.written) == {"shape", "mesh", "preview"} and all(p.is_file() for p in outcome.written.values())
    assert any("landmark embedding" in note for note in outcome.notes)  # the geometric fallback is announced
    chained = run_edit_shape(EditShapeRequest(edits=[], out=tmp_path / "again.npz", shape=tmp_path / "out.npz",
                                              flame=flame_file, device="cpu"))  # fmt: skip
    np.testing.assert_array_equal(chained.result.after.vertices, read_shape_file(tmp_path / "out.npz").vertices)
    np.testing.assert_array_equal(load_shape_file(tmp_path / "again.npz"), load_shape_file(tmp_path / "out.npz"))


def test_a_landmark_embedding_beside_the_flame_file_is_used(editor, released_state, flame_file, tmp_path):
    flame_copy = tmp_path / "generic_model.pkl"
    shutil.copyfile(flame_file, flame_copy)
    points = editor.meter.points
    embedding = {"full_lmk_faces_idx": points.face_idx[None, :68], "full_lmk_bary_coords": points.bary[None, :68]}
    np.save(tmp_path / "landmark_embedding.npy", embedding, allow_pickle=True)  # DECA keeps it beside the model
    source = _save_input(editor, released_state, tmp_path / "in.npz")
    outcome = run_edit_shape(EditShapeRequest(edits=[parse_edit("face_width", "+1%")], out=tmp_path / "o.npz",
                                              shape=source, flame=flame_copy, device="cpu"))  # fmt: skip
    assert "landmark embedding" in outcome.result.landmarks and not outcome.notes


def test_a_shape_file_from_another_flame_model_is_refused(editor, released_state, flame_file, tmp_path):
    source = _save_input(editor, released_state, tmp_path / "in.npz")
    with np.load(source) as data:
        arrays = dict(data)
    arrays["vertices"] = arrays["vertices"] + 0.002  # 2 mm away from what its betas decode to
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(InputError, match="another FLAME model"):
        run_edit_shape(EditShapeRequest(edits=[], out=tmp_path / "o.npz", shape=tmp_path / "other.npz",
                                        flame=flame_file, device="cpu"))  # fmt: skip
    with pytest.raises(InputError, match="another FLAME model"):  # decoded with the tiny model's FLAME instead
        run_edit_shape(EditShapeRequest(edits=[], out=tmp_path / "o.npz", shape=source, model="tiny", device="cpu"))
    with pytest.raises(InputError, match="cannot be edited as --mode paper"):
        run_edit_shape(EditShapeRequest(edits=[], out=tmp_path / "o.npz", shape=source, flame=flame_file,
                                        mode="paper", device="cpu"))  # fmt: skip


def test_requests_are_checked_up_front(tmp_path):
    with pytest.raises(InputError, match="--ref PHOTO or --shape"):
        EditShapeRequest(edits=[], out=tmp_path / "o.npz")
    with pytest.raises(InputError, match="does not exist"):
        EditShapeRequest(edits=[], out=tmp_path / "o.npz", ref=tmp_path / "missing.png")
    (tmp_path / "me.png").write_bytes(b"")
    with pytest.raises(InputError, match="--out-mesh must end"):
        EditShapeRequest(edits=[], out=tmp_path / "o.npz", ref=tmp_path / "me.png", mesh=tmp_path / "m.stl")
    with pytest.raises(InputError, match="--out must be a .npz"):
        EditShapeRequest(edits=[], out=tmp_path / "o.npy", ref=tmp_path / "me.png")


def test_from_a_photo_with_deca_and_flame_files(flame_file, tmp_path, tmp_path_factory):
    """The released-model route: DECA's tar (random weights, real format), the FLAME pickle, a face pack; paper mode
    crops the detected face."""
    from skimage import data

    from fantasyid.face.assets import install_buffalo_sc
    from fantasyid.face.deca import DecaEncoder

    torch.manual_seed(0)
    deca = tmp_path / "deca_model.tar"
    torch.save({"E_flame": DecaEncoder().state_dict()}, deca)
    root = tmp_path_factory.getbasetemp() / "editing-faces"
    install_buffalo_sc(root)
    photo = tmp_path / "astronaut.png"
    PIL.Image.fromarray(data.astronaut()).save(photo)
    outcome = run_edit_shape(EditShapeRequest(
        edits=[parse_edit("face_width", "+2%")], out=tmp_path / "o.npz", ref=photo, flame=flame_file, deca=deca,
        mode="paper", face_pack="buffalo_sc", face_root=root, device="cpu",
    ))  # fmt: skip
    result = outcome.result
    assert result.after.mode == "paper" and not np.any(result.after.pose) and not np.any(result.after.expression)
    assert result.traits_after[0] == pytest.approx(1.02 * result.traits_before[0], rel=1e-6)
    assert outcome.source.endswith("astronaut.png")
