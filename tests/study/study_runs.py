"""Run folders of several 'methods' for the study tests: small real mp4s with sidecars as fantasyid generate
writes them (a module of its own so that other test folders can import it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

from fantasyid.io import sha256_file, write_json, write_video

METHODS = ("fantasyid", "consisid", "idanimator")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.jpg"


def make_runs(root: Path, methods=METHODS, references: int = 4, prompts=("a person smiles",)) -> list[Path]:
    """``root/<method>/`` with one 96×96, 5-frame mp4 + sidecar per (reference, prompt): a slow zoom into the
    reference, which is the astronaut photo in a different tint per reference (``root/refs``)."""
    photo = np.asarray(PIL.Image.open(EXAMPLE).convert("RGB").resize((128, 128)))
    refs = []
    for r in range(references):
        path = root / "refs" / f"person{r}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tint = np.array([1.0 - 0.12 * r, 1.0, 0.8 + 0.05 * r])
        PIL.Image.fromarray(np.clip(photo * tint, 0, 255).astype(np.uint8)).save(path)
        refs.append(path)
    runs = []
    for m, method in enumerate(methods):
        run = root / method
        for r, ref in enumerate(refs):
            image = PIL.Image.open(ref)
            for p, prompt in enumerate(prompts):
                stem = f"{method}_{r:02d}_{p}"
                frames = np.stack([np.asarray(image.crop((2 * t + m, 2 * t, 128 - 2 * t, 128 - 2 * t - m))
                                              .resize((96, 96))) for t in range(5)])  # (F, H, W, 3)
                write_video(run / f"{stem}.mp4", frames, fps=4)
                write_json(run / f"{stem}.json", {"status": "done", "video": f"{stem}.mp4", "prompt": prompt,
                                                  "ref": str(ref), "ref_sha256": sha256_file(ref), "seed": 42})
        runs.append(run)
    return runs
