"""Throughput of ``fantasyid eval`` on this CPU: the one shared pass against one pass per metric.

    OMP_NUM_THREADS=1 python benchmarks/eval_throughput.py                # 4 videos × 49 frames at 480×720
    python benchmarks/eval_throughput.py --videos 2 --frames 25 --threads 2

The videos are made here: a real face (scikit-image's astronaut) in a 480×720 frame, panning 2 px per frame, H.264,
with JSON sidecars naming two distinct reference images (FID needs at least two). Every pass is a full
``evaluate_runs`` call (models loaded, decoding, detection, metrics, FID's Fréchet distance), after one warm-up run
that pays the one-time imports. A "separate" pass decodes and detects again for its metric alone, as a script per
metric would. Prints a Markdown table; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

HEIGHT, WIDTH = 480, 720
METRICS = ("rs", "ifs", "fid", "fm")


def make_videos(folder: Path, videos: int, frames: int) -> Path:
    """``videos`` mp4 files of ``frames`` 480×720 frames with a panning real face, plus sidecars and references."""
    import cv2
    import imageio.v2 as imageio
    from skimage import data

    photo = data.astronaut()
    canvas = cv2.resize(photo, (WIDTH + 2 * frames + 40, WIDTH + 2 * frames + 40), interpolation=cv2.INTER_CUBIC)
    refs = [folder / "ref_a.png", folder / "ref_b.png"]
    imageio.imwrite(refs[0], photo)
    imageio.imwrite(refs[1], np.ascontiguousarray(photo[:, ::-1]))
    run = folder / "run"
    run.mkdir()
    for v in range(videos):
        path = run / f"video_{v:02d}.mp4"
        writer = imageio.get_writer(str(path), fps=8, codec="libx264", quality=8, pixelformat="yuv420p")
        y0 = 10 * v
        for t in range(frames):
            x0 = 2 * frames - 2 * t  # the window moves left: the face pans right by 2 px per frame
            writer.append_data(np.ascontiguousarray(canvas[y0 : y0 + HEIGHT, x0 : x0 + WIDTH]))
        writer.close()
        path.with_suffix(".json").write_text(json.dumps({"ref": str(refs[v % 2])}))
    return run


def timed(run: Path, metrics: tuple[str, ...], face_root: Path) -> tuple[float, object]:
    from fantasyid.metrics.evaluate import evaluate_runs

    start = time.perf_counter()
    summary = evaluate_runs([run], metrics, face_root=face_root)
    return time.perf_counter() - start, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=4, help="number of videos (default 4)")
    parser.add_argument("--frames", type=int, default=49, help="frames per video (default 49, as CogVideoX)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()

    import torch

    from fantasyid.face.assets import install_buffalo_sc

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        face_root = folder / "home"
        install_buffalo_sc(face_root)
        run = make_videos(folder, args.videos, args.frames)
        total_frames = args.videos * args.frames

        # warm-up: one-time imports (torch, torchmetrics, insightface, onnxruntime) and file caches
        warm = folder / "warm"
        warm.mkdir()
        (warm / "video_00.mp4").symlink_to(run / "video_00.mp4")
        (warm / "video_00.json").symlink_to(run / "video_00.json")
        from fantasyid.metrics.evaluate import evaluate_runs

        evaluate_runs([warm], ("rs", "ifs", "fm"), face_root=face_root, frames=2)

        rows = []
        separate_total = 0.0
        for metric in METRICS:
            seconds, _ = timed(run, (metric,), face_root)
            separate_total += seconds
            rows.append((f"`{metric}` alone", seconds))
        shared_seconds, summary = timed(run, METRICS, face_root)

    print(f"## fantasyid eval throughput ({args.videos} videos × {args.frames} frames, {HEIGHT}×{WIDTH})\n")
    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"face pack buffalo_sc; FID Inception on CPU.\n"
    )
    print("| pass | wall time (s) | frames/s |")
    print("|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {total_frames / seconds:.2f} |")
    print(f"| **four separate passes (sum)** | {separate_total:.1f} | {total_frames / separate_total:.2f} |")
    print(f"| **one shared pass, all four** | {shared_seconds:.1f} | {total_frames / shared_seconds:.2f} |")
    print(f"\nShared pass speed-up over separate passes: {separate_total / shared_seconds:.2f}×.")
    result = summary.runs[0]

    def show(value: float | None, decimals: int) -> str:
        return "–" if value is None else f"{value:.{decimals}f}"

    print(
        f"Values (sanity): FID {show(result.fid, 2)} from {result.fid_reference_crops} ref / "
        f"{result.fid_generated_crops} gen crops, RS {show(result.rs, 3)}, IFS {show(result.ifs, 3)}, "
        f"FM {show(result.fm, 3)}; frames without a face: {result.frames_without_face}/{result.frames}."
    )


if __name__ == "__main__":
    main()
