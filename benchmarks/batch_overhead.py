"""What batch bookkeeping costs per video, beside the model: claim + write + decode check, and a rerun's look.

    OMP_NUM_THREADS=1 python benchmarks/batch_overhead.py               # 6 videos at the tiny and the release size
    python benchmarks/batch_overhead.py --videos 20

``generate_batch`` runs with a runner that returns ready frames (smooth moving gradients, so that H.264 has the work
of a real video), so every number is overhead: claiming, encoding, the decode check of each new mp4, the sidecar. A
rerun then looks at every video twice: with the SHA-256 the sidecar recorded (the normal case), and by decoding every
frame (what a sidecar without a hash, or a changed file, costs). Prints a Markdown table; not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import PIL.Image

from fantasyid.generation import GenerateSettings, GenerationItem, generate_batch, model_key

SIZES = {"tiny (9×64×64)": (9, 64, 64), "release (49×480×720)": (49, 480, 720)}


def frames_for(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    t = np.linspace(0, 1, frames, dtype=np.float32)[:, None, None, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[None, :, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, None, :, None]
    return np.sin(6 * (x + y + t) + seed + np.arange(3, dtype=np.float32)) * 0.5 + 0.5  # (F, H, W, 3)


def measure(videos: int, frames: int, height: int, width: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        PIL.Image.new("RGB", (64, 64), (100, 100, 100)).save(root / "ref.png")
        items = [GenerationItem(root / "ref.png", f"prompt {k}", seed=k) for k in range(videos)]
        settings = GenerateSettings(steps=1, frames=frames, height=height, width=width)
        ready = {k: frames_for(frames, height, width, k) for k in range(videos)}
        key = model_key("bench")

        def runner(item, seed):
            return ready[seed], {}

        start = time.perf_counter()
        summary = generate_batch(runner, items, settings, root / "out", {"model": "bench"}, model=key)
        make = (time.perf_counter() - start) / videos
        assert summary.done == videos
        start = time.perf_counter()
        assert generate_batch(runner, items, settings, root / "out", {}, model=key).skipped == videos
        look_hash = (time.perf_counter() - start) / videos
        for sidecar in (root / "out").glob("*.json"):  # as written before hashes were recorded: decode every frame
            data = json.loads(sidecar.read_text())
            del data["video_sha256"]
            sidecar.write_text(json.dumps(data))
        start = time.perf_counter()
        assert generate_batch(runner, items, settings, root / "out", {}, model=key).skipped == videos
        look_decode = (time.perf_counter() - start) / videos
    return make, look_hash, look_decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    args = parser.parse_args()
    print(f"{args.videos} videos per size; milliseconds per video\n")
    print("| size | claim + encode + check + sidecar | rerun look (hash) | rerun look (decode) |")
    print("|---|---:|---:|---:|")
    for name, size in SIZES.items():
        make, look_hash, look_decode = measure(args.videos, *size)
        print(f"| {name} | {1000 * make:.0f} | {1000 * look_hash:.1f} | {1000 * look_decode:.0f} |")


if __name__ == "__main__":
    main()
