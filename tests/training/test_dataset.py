"""The training dataset over a prep manifest: items, views (MFC and w/o MFC), skipped clips, refused manifests."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from fantasyid.data.dataset import ClipDataset, collate_items
from fantasyid.data.manifest import ManifestError, MANIFEST_VERSION, read_manifest, write_manifest
from fantasyid.errors import ConfigError, InputError


def _dataset(manifest, **kwargs):
    options = dict(frames=5, height=64, width=64, fps=8.0, views=6, clip_image_size=16, num_vertices=642, seed=3)
    options.update(kwargs)
    return ClipDataset(manifest, **options)


def test_item_shapes_and_ranges(identity_data):
    dataset = _dataset(identity_data)
    item = dataset[(1, 17)]
    assert item["video"].shape == (5, 3, 64, 64)
    assert item["condition"].shape == (3, 64, 64) and item["clip_pixels"].shape == (3, 16, 16)
    assert item["vertices"].shape == (642, 3)
    assert -1.0 <= float(item["video"].min()) and float(item["video"].max()) <= 1.0
    assert item["caption"] == "a person looks at the camera" and item["skipped"] == []
    again = dataset[(1, 17)]  # an item is a function of (row, position): same window, same view
    assert again["view"] == item["view"] and np.array_equal(again["video"].numpy(), item["video"].numpy())
    batch = collate_items([item, dataset[(0, 3)]])
    assert batch["video"].shape == (2, 5, 3, 64, 64) and batch["size"] == 2


def test_views_are_drawn_from_all_six_and_one_view_is_always_the_first(identity_data):
    many = Counter(_dataset(identity_data)[(0, p)]["view"] for p in range(60))
    assert set(many) == set(range(6))
    one = _dataset(identity_data, views=1)
    assert {one[(0, p)]["view"] for p in range(20)} == {0}
    first = one[(0, 5)]["clip_pixels"]
    other = _dataset(identity_data)[(0, next(p for p in range(60) if _dataset(identity_data)[(0, p)]["view"] == 3))]
    assert not np.array_equal(first.numpy(), other["clip_pixels"].numpy())  # views really are different crops


def test_a_clip_that_fails_to_decode_is_skipped_and_counted(data_copy):
    frame = read_manifest(data_copy)
    broken = data_copy.parent / "clips" / "identity0.mp4"
    assert frame.loc[0, "source_path"] == str(broken)
    broken.write_bytes(b"\x00" * 2048)  # a damaged file
    dataset = _dataset(data_copy)
    rows = {row["clip_id"]: i for i, row in enumerate(dataset.rows)}
    damaged = rows[frame.loc[0, "clip_id"]]
    item = dataset[(damaged, 4)]
    assert item["clip_id"] != frame.loc[0, "clip_id"]  # replaced by the next usable clip
    assert [s.clip_id for s in item["skipped"]] == [frame.loc[0, "clip_id"]]
    assert "identity0.mp4" in item["skipped"][0].reason
    assert collate_items([item])["skipped"] == item["skipped"]


def test_missing_manifest_other_version_and_wrong_vertices_are_refused(data_copy, tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        _dataset(tmp_path / "nope.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(data_copy)
    other = tmp_path / "other.parquet"
    pq.write_table(table.replace_schema_metadata(
        {b"fantasyid.manifest": json.dumps({"version": MANIFEST_VERSION + 1}).encode()}), other)
    with pytest.raises(ManifestError, match=f"version {MANIFEST_VERSION + 1}"):
        _dataset(other)
    with pytest.raises(ConfigError, match="642"):
        _dataset(data_copy, num_vertices=5023)[(0, 0)]
    rows = read_manifest(data_copy).to_dict("records")
    for row in rows:
        row["keep"] = False
    write_manifest(rows, data_copy)
    with pytest.raises(InputError, match="keeps no clip"):
        _dataset(data_copy)
