"""`models fetch` without network says how to fetch elsewhere and copy; FANTASYID_DEBUG=1 shows every traceback."""

from __future__ import annotations

import PIL.Image
import pytest

from fantasyid_cli.main import main


def _run(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code, " ".join(capsys.readouterr().err.split())


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    monkeypatch.delenv("FANTASYID_DEBUG", raising=False)


@pytest.mark.parametrize("offline_env", ["1", ""])
def test_fetch_without_network(monkeypatch, capsys, tmp_path, offline_env):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*args, **kwargs):  # what huggingface_hub raises with no network and an empty cache
        raise LocalEntryNotFoundError("Got: ConnectError: [Errno -2] Name or service not known An error happened …")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    monkeypatch.setenv("HF_HUB_OFFLINE", offline_env)
    code, err = _run(["models", "fetch"], capsys)
    assert code == 1
    reason = "HF_HUB_OFFLINE is set" if offline_env else "ConnectError: [Errno -2] Name or service not known"
    assert f"error: cannot reach the Hugging Face hub to download acvlab/FantasyID ({reason})" in err
    assert "hint: on a machine with internet run `hf download acvlab/FantasyID --local-dir FantasyID`" in err
    assert f"copy that folder to {tmp_path / 'home' / 'FantasyID'} on this machine" in err
    assert "models fetch" not in err  # never "run this again"


def test_debug_shows_the_traceback_of_a_missing_reference(monkeypatch, capsys, tmp_path):
    argv = ["generate", "--model", "tiny", "--ref", str(tmp_path / "nope.png"), "--prompt", "a man", "--out",
            str(tmp_path / "out")]
    code, err = _run(argv, capsys)
    assert code == 1 and "Traceback" not in err and "error: reference image" in err
    monkeypatch.setenv("FANTASYID_DEBUG", "1")
    code, err = _run(argv, capsys)
    assert code == 1 and "Traceback (most recent call last)" in err and "error: reference image" in err


def test_debug_shows_the_traceback_of_no_face(monkeypatch, capsys, tmp_path):
    PIL.Image.new("RGB", (128, 128), (90, 140, 200)).save(tmp_path / "sky.png")
    argv = ["generate", "--model", "tiny", "--ref", str(tmp_path / "sky.png"), "--prompt", "a man", "--out",
            str(tmp_path / "out")]
    monkeypatch.setenv("FANTASYID_DEBUG", "1")
    code, err = _run(argv, capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err and "NoFaceError: no face found in the reference image" in err
