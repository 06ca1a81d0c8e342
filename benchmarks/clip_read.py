"""Clips per second reading training clips: 49 frames at 8 fps from 30 fps H.264 clips, decord vs PyAV (seek +
decode), one decoding thread, at 480×720 and 1080p.

    python benchmarks/clip_read.py [--clips 8] [--seconds 10]

The test clips are made here (a moving textured pattern, H.264 yuv420p through imageio-ffmpeg's ffmpeg). Each read
takes a random window of the clip (49 frames at 8 fps span 181 source frames), as the training dataset does.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fantasyid.data import clip_reader as clips  # noqa: E402
from fantasyid.io import write_video  # noqa: E402

SIZES = {"480×720": (480, 720), "1080p": (1080, 1920)}


def make_clip(path: Path, height: int, width: int, seconds: float, fps: int = 30) -> Path:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), np.uint8))  # blocky texture, moved a few pixels per frame
    frames = np.stack([texture[(i % 16): (i % 16) + height, (2 * i % 16): (2 * i % 16) + width]
                       for i in range(int(seconds * fps))])
    return write_video(path, frames, fps=fps)


def bench(path: Path, backend: str, reads: int, frames: int = 49, fps: float = 8.0) -> float:
    total = int(path.stem.split("_")[-1])
    rng = random.Random(0)
    start = time.perf_counter()
    for _ in range(reads):
        indices = clips.sample_indices(0, total, 30.0, fps, frames, offset=rng.random())
        clips.read_frames(path, indices, backend=backend)
    return reads / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8, help="reads per cell")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each test clip")
    args = parser.parse_args()
    clips._PYAV_THREADS = 1
    with tempfile.TemporaryDirectory() as folder:
        print("| clip | decord clips/s | PyAV clips/s | decord / PyAV |")
        print("|---|---:|---:|---:|")
        for name, (height, width) in SIZES.items():
            total = int(args.seconds * 30)
            path = make_clip(Path(folder) / f"{height}p_{total}.mp4", height, width, args.seconds)
            bench(path, "decord", 1)  # warm-up (file cache, library start)
            decord = bench(path, "decord", args.clips)
            pyav = bench(path, "pyav", args.clips)
            print(f"| {name} ({args.seconds:g} s at 30 fps) | {decord:.2f} | {pyav:.2f} | {decord / pyav:.2f}× |")
    print("\nOne thread each (decord num_threads=1, PyAV thread_count=1); 49 frames at 8 fps per read.")


if __name__ == "__main__":
    main()
