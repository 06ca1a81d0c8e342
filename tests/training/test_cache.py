"""The precomputed cache (``--precompute``): same losses as live encoding, refused under changed settings, resumable
after an interruption, size per clip reported."""

from __future__ import annotations

import json

import pytest
from train_fixtures import tiny_config
from typer.testing import CliRunner

from fantasyid.errors import ConfigError
from fantasyid.training.cache import precompute
from fantasyid.training.config import dump_config
from fantasyid.training.loop import train

WINDOWS = {"windows": 3}


def _config(manifest, out, **data):
    return tiny_config(manifest, out, data={**WINDOWS, **data}, train={"max_steps": 3},
                       checkpoint={"every": 0}, optim={"lr": 2e-3})


def _refuse(name):
    def build(*args, **kwargs):
        raise AssertionError(f"--precompute built {name}")
    return build


def test_training_from_the_cache_gives_the_live_losses(identity_data, tmp_path, monkeypatch):
    live = train(_config(identity_data, tmp_path / "live"))
    config = _config(identity_data, tmp_path / "cached", cache=str(tmp_path / "cache"))
    # --precompute loads T5 and the VAE only: building the transformer, the identity modules or EVA-CLIP fails it
    from fantasyid.face import eva_clip
    from fantasyid.models.identity_encoder import FantasyIDIdentityEncoder
    from fantasyid.models.transformer_fantasyid import FantasyIDTransformer3DModel

    with monkeypatch.context() as patch:
        patch.setattr(FantasyIDTransformer3DModel, "__init__", _refuse("the transformer"))
        patch.setattr(FantasyIDIdentityEncoder, "__init__", _refuse("the identity encoder"))
        patch.setattr(eva_clip, "build_eva_clip_vision", _refuse("EVA-CLIP"))
        report = precompute(config)
    assert (report.clips, report.stored, report.reused, report.failed) == (3, 3, 0, 0)
    cached = train(config)
    assert len(live.losses) == 3 and cached.losses == live.losses  # bit for bit, step for step
    # the windows are really different frames, so a cache of one window would not give these losses
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert all(len(set(entry["windows"])) == 3 for entry in index["clips"].values())


def test_a_changed_setting_is_refused_naming_it_and_precompute_rebuilds(identity_data, tmp_path):
    cache = str(tmp_path / "cache")
    precompute(_config(identity_data, tmp_path / "run", cache=cache))
    for data, named in (({"frames": 9}, "data.frames"), ({"windows": 2}, "data.windows"),
                        ({"height": 48}, "data.height")):
        with pytest.raises(ConfigError, match=named) as info:
            train(_config(identity_data, tmp_path / "run", cache=cache, **data))
        assert "--precompute" in info.value.hint
    other_seed = tiny_config(identity_data, tmp_path / "run", data={**WINDOWS, "cache": cache},
                             train={"max_steps": 1, "seed": 8})  # the tiny VAE and T5 are drawn from the seed
    with pytest.raises(ConfigError, match="the VAE"):
        train(other_seed)
    report = precompute(_config(identity_data, tmp_path / "run", cache=cache, frames=9))
    assert "data.frames" in report.rebuilt and report.stored == 3
    assert train(_config(identity_data, tmp_path / "run", cache=cache, frames=9)).status == "finished"


def test_an_interrupted_precompute_resumes(identity_data, tmp_path):
    config = _config(identity_data, tmp_path / "run", cache=str(tmp_path / "cache"))

    def stop_at_second(clip_id):
        if len(seen := stop_at_second.seen) == 1:
            raise KeyboardInterrupt
        seen.append(clip_id)

    stop_at_second.seen = []
    with pytest.raises(KeyboardInterrupt):
        precompute(config, shard_clips=1, on_clip=stop_at_second)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert len(index["clips"]) == 1  # the first clip's shard and index entry are on disk, the second is not
    with pytest.raises(ConfigError, match="lacks 2 of 3"):
        train(config)
    stray = tmp_path / "cache" / ".shard-00001.partial.safetensors"  # what a kill -9 mid-write leaves
    stray.write_bytes(b"half a shard")
    report = precompute(config, shard_clips=1)
    assert (report.stored, report.reused) == (2, 1) and not stray.exists()
    again = precompute(config)
    assert (again.stored, again.reused) == (0, 3)
    reference = _config(identity_data, tmp_path / "live")
    assert train(config).losses == train(reference).losses


def test_cli_reports_the_size_per_clip(identity_data, tmp_path):
    from fantasyid_cli.main import app

    config = _config(identity_data, tmp_path / "run")
    path = tmp_path / "run.yaml"
    path.write_text(dump_config(config))
    result = CliRunner().invoke(app, ["train", str(path), "--precompute-only"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "3 clips (3 encoded, 0 reused, 0 unreadable)" in text
    report = precompute(_config(identity_data, tmp_path / "run", cache=str(tmp_path / "run" / "cache")))
    assert f"per clip {report.latent_bytes_per_clip / 2**10:.3g} KiB latents" in text
    # 3 windows × (2·C, F', h, w) fp32 of the tiny VAE, and one caption's (L, D) T5 states
    assert report.latent_bytes_per_clip > 0 and report.text_bytes_per_clip > 0
    assert report.total_bytes > 3 * (report.latent_bytes_per_clip + report.text_bytes_per_clip) * 0.9
    bad = CliRunner().invoke(app, ["train", str(path), "--set", "data.windows=0", "--precompute-only"])
    assert isinstance(bad.exception, ConfigError) and "data.windows" in bad.exception.message  # main(): one line


def test_a_clip_that_fails_to_decode_is_recorded_and_skipped_as_live(data_copy, tmp_path):
    (data_copy.parent / "clips" / "identity0.mp4").write_bytes(b"\x00" * 2048)  # a damaged file
    config = _config(data_copy, tmp_path / "cached", cache=str(tmp_path / "cache"))
    report = precompute(config)
    assert (report.stored, report.failed) == (2, 1)
    assert precompute(config).reused == 3  # the failure is remembered, not retried
    live, cached = train(_config(data_copy, tmp_path / "live")), train(config)
    assert cached.skipped_clips == live.skipped_clips > 0
    assert cached.losses == live.losses
