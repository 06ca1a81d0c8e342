"""Decoding: listing, probing, frame selection, and bad files becoming reasons instead of crashes."""

from __future__ import annotations

import numpy as np
import pytest

from fantasyid.errors import InputError
from fantasyid.data.video import FrameReader, VideoReadError, evenly_spaced, list_videos, probe


def test_evenly_spaced():
    assert evenly_spaced(10, None) == list(range(10))
    assert evenly_spaced(10, 20) == list(range(10))
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(49, 1) == [0]
    assert evenly_spaced(0, 5) == []
    with pytest.raises(InputError):
        evenly_spaced(10, 0)


def test_list_videos_skips_other_files(media):
    names = [p.name for p in list_videos(media)]
    assert "move3.mp4" in names and "broken.mp4" in names
    assert not any(n.endswith(".png") for n in names)
    assert names == sorted(names)


def test_probe_and_decode_every_frame(media):
    info = probe(media / "move3.mp4")
    assert (info.frames, info.width, info.height) == (10, 256, 256)
    reader = FrameReader(media / "move3.mp4")
    frames = list(reader)
    assert [i for i, _ in frames] == list(range(10))
    assert frames[0][1].shape == (256, 256, 3) and frames[0][1].dtype == np.uint8
    assert reader.decoded == 10 and reader.error is None


def test_decode_selected_frames_only(media):
    reader = FrameReader(media / "move3.mp4", keep={2, 3, 7})
    assert [i for i, _ in reader] == [2, 3, 7]


@pytest.mark.parametrize(
    "name, reason",
    [("broken.mp4", "cannot open video"), ("empty.mp4", "empty file"), ("truncated.mp4", "cannot open video")],
)
def test_bad_files_raise_a_reason(media, name, reason):
    with pytest.raises(VideoReadError) as caught:
        probe(media / name)
    assert reason in caught.value.reason
    assert caught.value.message.startswith(name)
    with pytest.raises(VideoReadError):
        list(FrameReader(media / name))
