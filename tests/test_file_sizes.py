"""Layout rules the developers' guide sets: no source file over 800 lines; moved names still import from their old
place."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_source_file_over_800_lines():
    too_long = {
        str(path.relative_to(ROOT)): count
        for folder in ("fantasyid", "fantasyid_cli", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > 800
    }
    assert not too_long, f"split these files by what their parts do: {too_long}"


def test_moved_names_still_import_from_their_old_place():
    from fantasyid.face import shape
    from fantasyid.models import mesh
    from fantasyid.models.mesh import hierarchy, spirals
    from fantasyid.pipelines import loading

    assert loading.ShapeEstimator is shape.ShapeEstimator
    assert loading.synthetic_flame_model is shape.synthetic_flame_model
    assert loading.load_shape_file is shape.load_shape_file
    assert mesh.MeshHierarchy is hierarchy.MeshHierarchy and mesh.spiral_indices is spirals.spiral_indices

    from fantasyid import generate, generation
    from fantasyid.models import face_abstractor, fusion, identity_encoder, vertex_branch

    assert set(generate.__all__) == set(generation.__all__)
    assert all(getattr(generate, name) is getattr(generation, name) for name in generation.__all__)
    assert identity_encoder.CAbstractor is face_abstractor.CAbstractor
    assert identity_encoder.SpiralDecoder is vertex_branch.SpiralDecoder
    assert identity_encoder.depth_encoding is vertex_branch.depth_encoding
    assert identity_encoder.FusionTransformer is fusion.FusionTransformer and identity_encoder.ResConv1D is fusion.ResConv1D
