"""Run folders of several 'methods' for study tests: tiny real mp4s with sidecars as fantasyid generate writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from fantasyid.io import sha256_file, write_json, write_video

METHODS = ("fantasyid", "consisid", "idanimator")


def make_runs(root: Path, methods=METHODS, references: int = 4, prompts=("a person smiles",)) -> list[Path]:
    """``root/<method>/`` with one 16×16, 5-frame mp4 + sidecar per (reference, prompt); references are coloured
    PNGs under ``root/refs``."""
    rng = np.random.default_rng(0)
    refs = []
    for r in range(references):
        path = root / "refs" / f"person{r}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.new("RGB", (32, 32), (40 * r, 100, 200 - 30 * r)).save(path)
        refs.append(path)
    runs = []
    for method in methods:
        run = root / method
        for r, ref in enumerate(refs):
            for p, prompt in enumerate(prompts):
                stem = f"{method}_{r:02d}_{p}"
                write_video(run / f"{stem}.mp4", rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8), fps=4)
                write_json(run / f"{stem}.json", {"status": "done", "video": f"{stem}.mp4", "prompt": prompt,
                                                  "ref": str(ref), "ref_sha256": sha256_file(ref), "seed": 42})
        runs.append(run)
    return runs


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return make_runs(tmp_path / "runs")
