"""Sharded evaluation: partial files per shard, merged into exactly the numbers of one process (FID included)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from fantasyid.errors import InputError
from fantasyid.metrics.evaluate import evaluate_shard
from fantasyid.metrics.inception_backends import resolve_backend
from fantasyid.metrics.shards import Partial, check_shard, finish, merge_partials, partial_name


@pytest.fixture(scope="module")
def parts(full_eval, tmp_path_factory, face_root):
    """``full_eval``'s two runs evaluated again as 2 shards. The videos in order are broken, move3, move6 (moving),
    gap, still (static): shard 0 gets broken, move6, still; shard 1 move3, gap. Both runs' reference sets span the
    shards (moving: one reference in each; static: the same reference in both)."""
    summary, _ = full_eval
    folder = tmp_path_factory.mktemp("parts")
    runs = [run.path for run in summary.runs]
    for shard in range(2):
        evaluate_shard(runs, "rs,ifs,fid,fm", shard=shard, num_shards=2, frames=5, face_root=face_root,
                       out_dir=folder)
    return folder


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def test_merged_shards_equal_one_process(full_eval, parts, tmp_path):
    single, single_out = full_eval
    assert sorted(p.name for p in parts.iterdir()) == [partial_name(0, 2), partial_name(1, 2)]
    shard0 = Partial.load(parts / partial_name(0, 2))
    assert [v.path.name for v in shard0.videos] == ["broken.mp4", "move6.mp4", "still.mp4"]

    merged = merge_partials([parts], out_dir=tmp_path / "merged")
    assert [run.name for run in merged.runs] == [run.name for run in single.runs]
    for ours, theirs in zip(merged.runs, single.runs):
        print(f"{ours.name}: FID merged {ours.fid} single {theirs.fid}")
        for key in ("rs", "ifs", "fm", "fid"):
            assert _close(getattr(ours, key), getattr(theirs, key)), (ours.name, key)
        assert (ours.fid_reference_crops, ours.fid_generated_crops) == (
            theirs.fid_reference_crops, theirs.fid_generated_crops)
        assert [v.to_dict() for v in ours.videos] == [v.to_dict() for v in theirs.videos]  # exact, per video
        assert ours.warnings == theirs.warnings
    assert merged.runs[0].fid is not None and merged.runs[0].fid > 0  # moving: two references, one per shard
    # the files a user reads: the per-video table is the same byte for byte
    assert (tmp_path / "merged" / "per_video.csv").read_bytes() == (single_out / "per_video.csv").read_bytes()
    data = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert data["provenance"]["shards"]["num_shards"] == 2
    assert data["settings"] == json.loads((single_out / "summary.json").read_text())["settings"]


def test_merge_refuses_missing_repeated_and_mismatched_shards(parts, tmp_path):
    only_one = tmp_path / "one"
    only_one.mkdir()
    shutil.copy(parts / partial_name(1, 2), only_one)
    with pytest.raises(InputError, match="1 of 2 shards missing: 0"):
        merge_partials([only_one])
    with pytest.raises(InputError, match="shard 1 is given twice"):
        merge_partials([parts, only_one / partial_name(1, 2)])
    first, second = (Partial.load(parts / partial_name(i, 2)) for i in range(2))
    second.config["settings"]["frames"] = 7
    with pytest.raises(InputError, match="evaluated with other settings"):
        finish([first, second])
    second = Partial.load(parts / partial_name(1, 2))
    assert first.config["models"]["inception_backend"] == resolve_backend("auto").name  # what `auto` ran
    second.config["models"]["inception_backend"] = "torch-bf16"
    with pytest.raises(InputError, match="from the torch-bf16 Inception backend.*cannot be merged"):
        finish([first, second])
    (tmp_path / "bogus.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="cannot read the eval partial"):
        merge_partials([tmp_path / "bogus.safetensors"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no eval partial"):
        merge_partials([empty])


@pytest.mark.parametrize("shard, count", [(2, 2), (-1, 3), (0, 0), (None, 2), (1, None)])
def test_bad_shard_numbers(shard, count):
    with pytest.raises(InputError):
        check_shard(shard, count)


def test_unsharded_is_shard_0_of_1():
    assert check_shard(None, None) == (0, 1)
    assert check_shard(3, 4) == (3, 4)


def test_partial_round_trip_keeps_fid_sums(parts):
    partial = Partial.load(parts / partial_name(0, 2))
    copy_dir = Path(parts.parent / "roundtrip")
    again = Partial.load(partial.save(copy_dir))
    for index, stats in partial.fake.items():
        assert again.fake[index].count == stats.count
        assert again.fake[index].outer.equal(stats.outer) and again.fake[index].total.equal(stats.total)
    assert again.config == partial.config and [v.to_dict() for v in again.videos] == [
        v.to_dict() for v in partial.videos]


def test_partial_with_references_from_one_batch_saves(tmp_path):
    """Reference features computed in one Inception batch are rows of one tensor; each is saved on its own."""
    import torch

    from fantasyid.metrics.fid import FeatureStats

    batch = torch.arange(6, dtype=torch.float32).reshape(2, 3)  # (R, D): two references of one batch
    partial = Partial(shard=0, num_shards=1, config={"runs": []}, provenance={},
                      fake={0: FeatureStats.empty(3)}, references={"/a.png": batch[0], "/b.png": batch[1]})
    again = Partial.load(partial.save(tmp_path))
    assert again.references["/b.png"].tolist() == [3.0, 4.0, 5.0]
