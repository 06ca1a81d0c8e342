"""`fantasyid app` / `study serve` on a port another server holds, and `study serve` of a study whose media are
missing: one line naming the fix, before any model loads and before any "serving on" line or rater link."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port():
    """A port on 127.0.0.1 that another server listens on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def study(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "study"))
    from study_runs import make_runs

    from fantasyid.study import build_study

    runs = make_runs(tmp_path / "runs", methods=("a", "b"), references=2)
    build_study(runs, tmp_path / "study", raters=2)
    return tmp_path / "study"


def test_app_on_a_busy_port_is_one_line_naming_port(busy_port, run_main, monkeypatch, tmp_path):
    import fantasyid.app as app_module

    def never(*args, **kwargs):
        raise AssertionError("the model loaded before the port was checked")

    monkeypatch.setattr(app_module, "AppBackend", never)
    code, out, err = run_main(["app", "--model", "tiny", "--port", str(busy_port), "--out", str(tmp_path / "o")])
    assert code == 1 and f"error: port {busy_port} on 127.0.0.1 is in use" in err and "--port" in err
    assert len(err.strip().splitlines()) == 2 and "serving on" not in out + err  # error + hint


def test_study_serve_on_a_busy_port_hands_out_no_links(study, busy_port, run_main):
    code, out, err = run_main(["study", "serve", str(study), "--port", str(busy_port)])
    assert code == 1 and "is in use" in err and "--port" in err and "/r/" not in out


def test_study_serve_with_missing_media_names_them_and_hands_out_no_links(study, run_main, free_port):
    media = sorted((study / "media").iterdir())
    videos = [path for path in media if path.suffix == ".mp4"]
    videos[0].unlink()
    code, out, err = run_main(["study", "serve", str(study), "--port", str(free_port())])
    flat = " ".join(err.split())
    assert code == 1 and f"lacks 1 of its {len(media)} media files (media/{videos[0].name})" in flat, flat
    assert "/r/" not in out and "Traceback" not in err

    from fantasyid.errors import InputError
    from fantasyid.study.serve import create_server_app

    with pytest.raises(InputError, match="lacks 1 of its"):  # the library refuses to serve it as well
        create_server_app(study)
