"""Output paths that cannot be written are one line, checked before any model loads (generate, edit-shape)."""

from __future__ import annotations

import time
from pathlib import Path

import PIL.Image
import pytest

from fantasyid.errors import InputError
from fantasyid.io import check_output_dir, check_output_file
from fantasyid_cli.main import main

# a folder no one may write in, root included (sysfs is mounted read-only for writes of new files)
UNWRITABLE = Path("/sys/kernel")


def test_output_folder_checks(tmp_path):
    assert check_output_dir(tmp_path / "new" / "deeper").is_dir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file.txt")
    with pytest.raises(InputError, match="cannot be created: '.*file.txt' is a file"):
        check_output_dir(tmp_path / "file.txt" / "sub")
    with pytest.raises(InputError, match="cannot write in '/sys/kernel'"):
        check_output_dir(UNWRITABLE)
    with pytest.raises(InputError, match="cannot be created"):
        check_output_dir(UNWRITABLE / "fantasyid-out")
    assert not (tmp_path / "later").exists() and check_output_dir(tmp_path / "later", create=False)
    assert not (tmp_path / "later").exists()
    assert not list(tmp_path.rglob(".fantasyid-write-check*")), "the write probe is removed"


def test_output_file_checks(tmp_path):
    assert check_output_file(tmp_path / "a" / "shape.npz") == tmp_path / "a" / "shape.npz"
    with pytest.raises(InputError, match="--mesh '.*' is a folder, not a file"):
        check_output_file(tmp_path, "--mesh")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="--preview '.*file.txt/p.png' cannot be created"):
        check_output_file(tmp_path / "file.txt" / "p.png", "--preview")


def _cli(argv, capsys) -> tuple[int, str, float]:
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    return exc.value.code, captured.out + captured.err, time.perf_counter() - start


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "me.png"
    PIL.Image.new("RGB", (64, 64), (128, 100, 90)).save(path)
    return path


def test_generate_out_that_is_a_file_fails_before_loading(photo, tmp_path, capsys, monkeypatch):
    import fantasyid.pipelines.loading as loading

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(loading, "load_pipeline", no_loading)
    (tmp_path / "taken").write_text("x")
    for out, message in [(tmp_path / "taken", "is a file, not a folder"), (UNWRITABLE, "cannot write in")]:
        code, text, _ = _cli(["generate", "--model", "tiny", "--ref", str(photo), "--prompt", "hi", "--out", str(out)],
                             capsys)  # fmt: skip
        assert code == 1 and message in text and "Traceback" not in text
        assert len(text.strip().splitlines()) == 2, text  # error + hint


def test_edit_shape_outputs_fail_before_reading_the_face(photo, tmp_path, capsys, monkeypatch):
    import fantasyid.editing.run as run

    def no_tools(*args, **kwargs):
        raise AssertionError("DECA/FLAME were built before the outputs were checked")

    monkeypatch.setattr(run, "_build_tools", no_tools)
    (tmp_path / "file.txt").write_text("x")
    base = ["edit-shape", "--model", "tiny", "--ref", str(photo), "--face-width", "+5%"]
    for extra, message in [
        (["--out", str(tmp_path / "file.txt" / "s.npz")], "--out '"),
        (["--out", str(tmp_path / "s.npz"), "--out-mesh", str(tmp_path / "file.txt" / "m.obj")], "--out-mesh '"),
        (["--out", str(tmp_path / "s.npz"), "--preview", str(UNWRITABLE / "p.png")], "--preview '"),
        (["--out", str(tmp_path / "s.npz"), "--generate", "--prompt", "hi", "--videos", str(tmp_path / "file.txt")],
         "--videos '"),
    ]:  # fmt: skip
        code, text, _ = _cli(base + extra, capsys)
        assert code == 1 and message in text and "Traceback" not in text, text
