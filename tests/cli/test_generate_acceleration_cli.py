"""`fantasyid generate --cache/--compile`: settings and skip counts in the sidecar, bad settings refused up front."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fantasyid_cli.main import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("fantasyid_home")


def test_cache_is_recorded_with_what_it_skipped(ref, tmp_path):
    result = runner.invoke(app, ["generate", "--model", "tiny", "--ref", str(ref), "--prompt", "a woman smiles",
                                 "--out", str(tmp_path), "--cache", "fbc:threshold=1e9", "--steps", "4"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert sidecar["settings"]["cache"] == "fbc:threshold=1000000000.0" and sidecar["settings"]["compile"] is False
    acceleration = sidecar["acceleration"]
    assert acceleration["cache"] == {"method": "fbc", "diffusers_config": "FirstBlockCacheConfig", "threshold": 1e9}
    assert acceleration["skipped"]["transformer_calls"] == 4
    assert acceleration["skipped"]["transformer_calls_skipped"] == 3
    assert "acceleration" not in sidecar["identity"]
    assert "skipped 3 of 4 transformer calls" in result.output


def test_without_cache_the_sidecar_says_none(ref, tmp_path):
    result = runner.invoke(app, ["generate", "--model", "tiny", "--ref", str(ref), "--prompt", "a woman smiles",
                                 "--out", str(tmp_path), "--steps", "2"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert sidecar["acceleration"] is None and sidecar["settings"]["cache"] is None


@pytest.mark.parametrize(
    "args, says",
    [(["--cache", "teacache"], "unknown cache 'teacache'"),
     (["--cache", "pab:spatial_attention_block_skip_range=two"], "not a valid int"),
     (["--cache", "fastercache", "--guidance", "1"], "needs --guidance > 1")],
)
def test_bad_cache_settings_are_one_line_errors(ref, tmp_path, args, says, capsys):
    from fantasyid_cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["generate", "--model", "tiny", "--ref", str(ref), "--prompt", "a woman smiles", "--out", str(tmp_path),
              *args])
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert says in err and "error:" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*"))  # refused before loading anything
