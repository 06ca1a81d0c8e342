"""Fixtures of the `fantasyid generate` CLI tests: a reference photo and a private FANTASYID_HOME."""

from __future__ import annotations

import PIL.Image
import pytest


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """scikit-image's astronaut photo as a PNG file."""
    from skimage import data

    path = tmp_path_factory.mktemp("ref") / "astronaut.png"
    PIL.Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture
def fantasyid_home(tmp_path_factory, monkeypatch):
    """FANTASYID_HOME in the session's temporary folder (the face pack is copied there once)."""
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path_factory.getbasetemp() / "fantasyid-home"))
