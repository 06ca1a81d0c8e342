"""Inputs of prep: discovery, list files, captions, shards, clip windows, settings checks, the captioner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fantasyid.data.clips import clip_length, fixed_windows, plan_clips, scene_windows, training_indices
from fantasyid.data.settings import PrepSettings
from fantasyid.data.sources import (
    VideoSource,
    discover,
    list_inputs,
    read_captions,
    select_shard,
    shard_from_environment,
    shard_of,
)
from fantasyid.errors import ConfigError, InputError


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_discovery_walks_folders_and_reads_lists(tmp_path):
    a = touch(tmp_path / "in" / "a.mp4")
    b = touch(tmp_path / "in" / "sub" / "b.MOV")
    touch(tmp_path / "in" / ".hidden" / "c.mp4")
    touch(tmp_path / "in" / "notes.md")
    c = touch(tmp_path / "other" / "c.mkv")
    d = touch(tmp_path / "lists" / "d.webm")
    touch(tmp_path / "lists" / "list.txt", "# comment\nd.webm\n\n" + f"{c}\n")
    touch(tmp_path / "lists" / "list.csv", "path,extra\nd.webm,1\n")
    found = list_inputs([tmp_path / "in", tmp_path / "lists" / "list.txt", tmp_path / "lists" / "list.csv"])
    assert found == sorted({a.as_posix(), b.as_posix(), c.as_posix(), d.as_posix()})
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["d.webm"]}), tmp_path / "lists" / "list.parquet")
    assert list_inputs([tmp_path / "lists" / "list.parquet"]) == [d.as_posix()]


def test_missing_input_and_bad_lists_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list_inputs([tmp_path / "nope"])
    with pytest.raises(ConfigError, match="no input"):
        list_inputs([])
    touch(tmp_path / "l.csv", "file\nx.mp4\n")
    with pytest.raises(InputError, match="no 'path' column"):
        list_inputs([tmp_path / "l.csv"])


def test_captions_from_csv_jsonl_and_sidecars(tmp_path):
    a = touch(tmp_path / "v" / "a.mp4")
    b = touch(tmp_path / "v" / "b.mp4")
    touch(tmp_path / "v" / "b.txt", "  a sidecar caption \n")
    c = touch(tmp_path / "v" / "c.mp4")
    touch(tmp_path / "caps.csv", 'path,caption\nv/a.mp4,"a woman, smiling"\n')
    sources = {Path(s.path).name: s for s in discover([tmp_path / "v"], tmp_path / "caps.csv")}
    assert sources["a.mp4"] == VideoSource(a.as_posix(), "a woman, smiling", "file")
    assert sources["b.mp4"] == VideoSource(b.as_posix(), "a sidecar caption", "sidecar")
    assert sources["c.mp4"] == VideoSource(c.as_posix())
    touch(tmp_path / "caps.jsonl", json.dumps({"path": str(c), "caption": "from jsonl"}) + "\n")
    assert read_captions(tmp_path / "caps.jsonl") == {os.path.normpath(c.as_posix()): "from jsonl"}
    touch(tmp_path / "bad.jsonl", "{not json\n")
    with pytest.raises(InputError, match="bad.jsonl:1"):
        read_captions(tmp_path / "bad.jsonl")


def test_shards_are_stable_and_cover_everything():
    paths = [f"/data/videos/{i:04d}.mp4" for i in range(200)]
    assert shard_of(paths[0], 7) == shard_of(paths[0], 7)
    sources = [VideoSource(p) for p in paths]
    parts = [select_shard(sources, k, 4) for k in range(4)]
    assert sorted(s.path for part in parts for s in part) == paths
    assert min(len(part) for part in parts) > 30  # roughly even


def test_shard_defaults_from_the_environment(monkeypatch):
    for key in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(key, raising=False)
    assert shard_from_environment(None, None) == (-1, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "5")
    assert shard_from_environment(None, None) == (2, 5)
    assert shard_from_environment(0, 3) == (0, 3)  # explicit options win
    with pytest.raises(ConfigError, match="outside 0..4"):
        shard_from_environment(5, None)


def test_clip_windows_and_training_frames():
    assert clip_length(30.0, 49, 8.0) == 184 and clip_length(8.0, 49, 8.0) == 49
    assert fixed_windows(400, 184) == [(0, 184), (184, 368)]
    assert fixed_windows(100, 184) == []
    frames = training_indices(184, 30.0, 49, 8.0, 368)
    assert len(frames) == 49 and frames[0] == 184 and frames[-1] == 364 and frames == sorted(frames)
    assert training_indices(0, 8.0, 9, 8.0, 9) == list(range(9))


def test_scene_clips_follow_shot_boundaries(media, face_root):
    settings = PrepSettings(clip_frames=9, fps=8.0, clips="scenes", face_root=str(face_root))
    bikes = media / "videos" / "bikes.mp4"
    shots = scene_windows(str(bikes), 250, settings.scene_threshold)
    assert len(shots) >= 3 and shots[0][0] == 0 and all(a < b for a, b in shots)
    records = plan_clips(VideoSource(bikes.as_posix()), settings, 1)
    for record in records:
        start, end = record.row["clip_start"], record.row["clip_end"]
        assert any(a <= start and end <= b for a, b in shots), (start, end)  # no clip crosses a cut


def test_short_shots_are_rejected_with_the_reason(media):
    settings = PrepSettings(clip_frames=49, fps=8.0, clips="scenes")
    records = plan_clips(VideoSource((media / "videos" / "bikes.mp4").as_posix()), settings, 1)
    assert records and all(not r.keep and "shorter than one clip" in r.row["reject_reason"] for r in records)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(stages=("views",)), "needs the 'face' stage"),
        (dict(stages=("face", "blur")), "unknown stage"),
        (dict(clips="shots"), "--clips"),
        (dict(deca="x.tar"), "both --deca and --flame"),
        (dict(min_face_score=1.5), "--min-face-score"),
        (dict(det_size=100), "--det-size"),
    ],
)
def test_settings_are_checked_first(changes, message):
    with pytest.raises(ConfigError, match=message):
        PrepSettings(**changes)


def test_captioner_folder_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="not a transformers model folder"):
        PrepSettings(captioner=str(tmp_path))


def test_tiny_blip_captioner_batched_equals_one_by_one(tmp_path, astronaut):
    from fantasyid.data.caption import TINY_WORDS, Captioner, build_tiny_captioner

    captioner = Captioner(build_tiny_captioner(tmp_path / "blip", kind="blip"), max_new_tokens=6)
    assert not captioner.video  # an image captioner: it sees each clip's middle frame
    frames = [astronaut, astronaut[::-1].copy(), np.ascontiguousarray(astronaut[:, ::-1] // 2)]
    clips = [[np.zeros_like(f), f, np.zeros_like(f)] for f in frames]  # the middle frame is the photo
    batched = captioner(clips)
    assert batched == [captioner([clip])[0] for clip in clips]
    assert all(caption for caption in batched)
    assert all(word in TINY_WORDS for caption in batched for word in caption.split())
    assert len(set(batched)) > 1  # the caption depends on the image


