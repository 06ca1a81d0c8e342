"""Shared fixtures of the training tests: a tiny real-format data set and configs for the tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest



@pytest.fixture(scope="session")
def identity_data(tmp_path_factory, face_root) -> Path:
    """Three identities (real faces from insightface's t1.jpg), each with its own clip pattern and shape."""
    from fantasyid.training.synthetic import make_identity_dataset

    return make_identity_dataset(tmp_path_factory.mktemp("identity_data"), identities=3, face_root=face_root)


@pytest.fixture
def data_copy(identity_data, tmp_path) -> Path:
    """A private copy of the data set (for tests that damage it); returns its manifest."""
    from fantasyid.data.manifest import read_manifest, write_manifest

    target = tmp_path / "data"
    shutil.copytree(identity_data.parent, target)
    manifest = target / "manifest.parquet"
    rows = read_manifest(manifest).to_dict("records")
    for row in rows:  # source paths are absolute: point them at the copy
        row["source_path"] = str(target / "clips" / row["source_path"].rsplit("/", 1)[-1])
    write_manifest(rows, manifest)
    return manifest
