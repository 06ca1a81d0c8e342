"""Same input, same manifest: Ray against local, N shards merged against one run, a run killed with SIGKILL and
resumed against an uninterrupted one; settings that differ from an earlier run are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fantasyid.data.manifest import read_manifest
from fantasyid.data.report import merge_shards
from fantasyid.data.runner import ProgressHook, run_prep
from fantasyid.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def same_manifest(a, b, ignore=()):
    """Both manifests hold the same rows (every column but ``ignore`` and the measured stage times), value for
    value."""
    import pandas.testing

    columns = [c for c in a.columns if c not in (*ignore, "stage_wall", "stage_cpu")]
    left = a[columns].reset_index(drop=True)
    right = b[columns].reset_index(drop=True)
    assert list(left["clip_id"]) == list(right["clip_id"])
    pandas.testing.assert_frame_equal(left.astype(str), right.astype(str))  # nested lists compared as text


def same_assets(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in (a / "assets").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in (b / "assets").rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    for name in files_a:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_small_run_has_kept_and_rejected_clips(small_run):
    _, manifest = small_run
    assert manifest["keep"].sum() >= 3 and (~manifest["keep"]).sum() >= 3
    assert manifest["caption_source"].str.startswith("model:").any()  # the captioner ran


@pytest.mark.slow
def test_ray_engine_equals_local(tmp_path, small_media, small_settings, small_run):
    pytest.importorskip("ray.data")
    out = tmp_path / "ray"
    result = run_prep([small_media], out, small_settings, engine="ray", workers=2)
    assert result.shards_run == [0]
    same_manifest(read_manifest(merge_shards(out).manifest), small_run[1])
    same_assets(out, small_run[0])


@pytest.mark.slow
def test_process_pool_equals_one_process(tmp_path, small_media, small_settings, small_run):
    out = tmp_path / "pool"
    result = run_prep([small_media], out, small_settings, workers=2)
    assert result.shards_run == [0]
    journals = list((out / "shards").glob("*.journal"))
    assert not journals  # the workers' journals were folded into the shard
    same_manifest(read_manifest(merge_shards(out).manifest), small_run[1])
    same_assets(out, small_run[0])


def test_shards_merged_equal_one_run(tmp_path, small_media, small_settings, small_run):
    out = tmp_path / "sharded"
    for shard in range(3):
        result = run_prep([small_media], out, small_settings, shard=shard, num_shards=3)
        assert result.shards_run == [shard]
    with pytest.raises(ConfigError, match="split into 3 shards"):
        run_prep([small_media], out, small_settings, num_shards=2)
    merged = read_manifest(merge_shards(out).manifest)
    assert sorted(set(merged["shard"])) != [0]  # the videos really went to several shards
    same_manifest(merged, small_run[1], ignore=("shard",))
    same_assets(out, small_run[0])
    # a rerun skips every finished shard without touching it
    before = {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    again = run_prep([small_media], out, small_settings, num_shards=3)
    assert again.shards_skipped == [0, 1, 2] and again.shards_run == []
    assert again.clips == len(merged)
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == before


def test_shard_from_slurm_environment(tmp_path, small_media, small_settings, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    result = run_prep([small_media], tmp_path / "slurm", replace(small_settings, stages=("face",)))
    assert result.shards_run == [1]
    assert sorted(p.name for p in (tmp_path / "slurm" / "shards").iterdir()) == ["00001.done", "00001.parquet"]


def test_other_settings_are_refused(tmp_path, small_media, small_settings):
    out = tmp_path / "refuse"
    out.mkdir()
    run_prep([small_media / "broken.mp4"], out, small_settings)
    changed = replace(small_settings, min_face_score=0.5)
    with pytest.raises(ConfigError, match="min_face_score"):
        run_prep([small_media / "broken.mp4"], out, changed)


class Counting(ProgressHook):
    def __init__(self):
        self.rows = []

    def clip(self, row):
        self.rows.append(row["clip_id"])


def _journal_rows(out: Path) -> int:
    """Complete clip lines in the journal (a line cut by the kill does not count: the rerun redoes that clip)."""
    count = 0
    for path in (out / "shards").glob("*.journal/*.jsonl"):
        for line in path.read_text().split("\n")[:-1]:  # the text after the last newline is incomplete
            count += line.startswith('{"row"')
    return count


def test_kill_9_mid_shard_then_rerun_equals_uninterrupted(tmp_path, small_media, small_settings, small_run,
                                                           face_root):  # fmt: skip
    out = tmp_path / "killed"
    s = small_settings
    command = [sys.executable, "-m", "fantasyid_cli.main", "prep", str(small_media), "--out", str(out),
               "--frames", str(s.clip_frames), "--fps", str(s.fps), "--clips", s.clips,
               "--sample-frames", str(s.sample_frames),
               "--ocr-frames", str(s.ocr_frames), "--min-face-score", str(s.min_face_score),
               "--min-face-size", str(s.min_face_size), "--det-size", str(s.det_size), "--face-root", str(face_root),
               "--stages", ",".join(s.stages), "--captioner", s.captioner, "--caption-batch", str(s.caption_batch),
               "--caption-max-tokens", str(s.caption_max_tokens)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _journal_rows(out) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    journaled = _journal_rows(out)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    assert not (out / "shards" / "00000.done").exists()  # killed mid-shard
    assert 2 <= journaled < len(small_run[1])

    hook = Counting()
    result = run_prep([small_media], out, small_settings, progress=hook)
    assert len(hook.rows) == len(small_run[1]) - journaled  # journaled clips were not redone
    assert result.clips == len(small_run[1])
    assert not list((out / "shards").glob("*.journal"))
    same_manifest(read_manifest(merge_shards(out).manifest), small_run[1])
    same_assets(out, small_run[0])
