"""The training dataset over a ``fantasyid prep`` manifest: clip frames, caption, and one reference view with its 3D.

One item = a clip (``frames`` frames sampled at ``fps``, resized and centre-cropped to ``height × width``), its
caption, and one reference drawn at random from the clip's first ``views`` views (multi-view face collection): that
view's aligned 512-px crop (the EVA-CLIP input and the I2V frame-0 condition, prepared as the pipeline prepares them
at inference) and its FLAME vertices. ``views=1`` always takes ``views[0]``, the most frontal view ("w/o MFC").

Items are addressed by ``(row, position)``: ``position`` is the sample's place in the run's sample stream, and seeds
every random choice of the item (window offset, view), so an item is the same whichever worker or process loads it,
and a resumed run sees exactly the items an uninterrupted run would. A clip that cannot be read is logged, counted
and replaced by the next row of the manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, InputError
from .clip_reader import read_frames, sample_indices
from .manifest import kept_clips, manifest_sha256, read_manifest, resolve_asset

__all__ = ["ClipDataset", "SkippedClip", "collate_items", "item_generator", "window_offset", "window_start"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedClip:
    clip_id: str
    reason: str


def item_generator(seed: int, position: int, salt: int = 0) -> torch.Generator:
    """The generator that decides everything random about the sample at ``position`` of the stream."""
    return torch.Generator().manual_seed((seed * 1_000_003 + position * 7_919 + salt) % (2**63))


def window_offset(draw: float, windows: int) -> tuple[int, float]:
    """``(window index, offset)`` from a uniform draw in [0, 1): ``windows=0`` keeps the draw as the offset (index
    0); ``N`` ≥ 1 snaps it to one of N evenly spaced windows (0, 1/(N−1), …, 1; the centre for N = 1)."""
    if windows < 1:
        return 0, draw
    index = min(windows - 1, int(draw * windows))
    return index, window_start(index, windows)


def window_start(index: int, windows: int) -> float:
    """The offset of window ``index`` of ``windows`` evenly spaced ones."""
    return index / (windows - 1) if windows > 1 else 0.5


def resize_center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(F, 3, h, w)`` float → ``(F, 3, height, width)``: scale to cover, then crop the centre."""
    _, _, h, w = frames.shape
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    frames = torch.nn.functional.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True,
                                             align_corners=False)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return frames[:, :, top : top + height, left : left + width]


class ClipDataset(torch.utils.data.Dataset):
    """Kept clips of a manifest (minus the ``holdout`` last ones), indexed by ``(row, position)``."""

    def __init__(
        self,
        manifest: str | Path,
        *,
        frames: int,
        height: int,
        width: int,
        fps: float,
        views: int,
        clip_image_size: int,
        num_vertices: int | None,
        seed: int = 0,
        holdout: int = 0,
        reader: str = "auto",
        split: str = "train",
        windows: int = 0,
        cache=None,
        shape_mode: str | None = None,
        vertices: bool = True,
    ):
        self.manifest = Path(manifest)
        table = kept_clips(read_manifest(self.manifest))  # in manifest order: the same wherever the data lives
        if holdout and holdout >= len(table):
            raise ConfigError(f"data.holdout={holdout} leaves no training clip: the manifest keeps {len(table)}")
        if split == "train":
            table = table.iloc[: len(table) - holdout] if holdout else table
        else:
            table = table.iloc[len(table) - holdout :]
        if len(table) == 0:
            raise InputError(
                f"manifest '{self.manifest}' keeps no clip", hint="check the prep report: every clip was rejected"
            )
        self.rows = table.to_dict("records")
        self.sha256 = manifest_sha256(self.manifest)
        self.frames, self.height, self.width, self.fps = frames, height, width, fps
        self.views, self.clip_image_size, self.num_vertices = views, clip_image_size, num_vertices
        self.seed, self.reader, self.windows = seed, reader, windows
        #: the variant's vertex mode (``paper``: shape only from DECA's crop; ``released``: shape, expression and
        #: pose): a shape file recording the other mode is refused (the vertices would mean something else)
        self.shape_mode = shape_mode
        self.cache = cache  #: a :class:`fantasyid.training.cache.LatentCache`: latents and T5 states come from it
        #: load each view's FLAME vertices (false for configs without vertex tokens: a manifest made without DECA
        #: has no shape files, and none is opened)
        self.vertices = vertices
        self._video_processor = None

    def __len__(self) -> int:
        return len(self.rows)

    def _processor(self):
        if self._video_processor is None:
            from diffusers.video_processor import VideoProcessor

            self._video_processor = VideoProcessor(vae_scale_factor=8)  # as the pipeline's (spatial factor 8)
        return self._video_processor

    def __getitem__(self, key):
        """Item ``(row, position)``; a clip that cannot be used is logged, recorded in ``skipped`` and replaced by
        the next row (so micro-batches keep their size and every process keeps step)."""
        row_index, position = key if isinstance(key, tuple) else (key, key)
        skipped: list[SkippedClip] = []
        for attempt in range(len(self.rows)):
            row = self.rows[(row_index + attempt) % len(self.rows)]
            try:
                item = self.load(row, position)
            except InputError as exc:  # VideoReadError is one; also missing crops, shape files, short clips
                logger.warning("skipped clip %s: %s", row["clip_id"], exc.message)
                skipped.append(SkippedClip(str(row["clip_id"]), exc.message))
                continue
            item["skipped"] = skipped
            return item
        raise InputError(f"no clip of '{self.manifest}' can be used ({skipped[0].reason}, …)",
                         hint="check the clips' files, or re-run fantasyid prep")

    def load(self, row: dict, position: int) -> dict:
        """One item (raises :class:`InputError` when the clip, crop or shape cannot be used)."""
        import PIL.Image

        from ..face.eva_clip import preprocess

        generator = item_generator(self.seed, position, salt=1)
        views = list(row["views"])
        if not views:
            raise InputError(f"clip {row['clip_id']} has no face views in the manifest")
        count = min(self.views, len(views))
        view_index = int(torch.randint(count, (1,), generator=generator)) if count > 1 else 0
        view = views[view_index]
        window, offset = window_offset(float(torch.rand((), generator=generator)), self.windows)

        # 1. Clip frames (or, from a cache, their VAE latent distribution and the caption's T5 states)
        clip: dict = {}
        if self.cache is not None:
            clip["latent_dist"], clip["text_states"] = self.cache.load(row, window)  # (2C, F', h, w), (L, D)
        else:
            clip["video"] = self.read_clip(row, offset)

        # 2. The drawn view: aligned crop → EVA-CLIP pixels and the I2V frame-0 condition (stretched, as inference)
        crop_path = resolve_asset(self.manifest, view["crop"])
        try:
            crop = np.asarray(PIL.Image.open(crop_path).convert("RGB"))  # (S, S, 3) uint8
        except (OSError, ValueError) as exc:
            raise InputError(f"face crop '{crop_path}' cannot be read ({exc})") from exc
        clip_pixels = preprocess(crop, self.clip_image_size)[0]  # (3, S', S')
        condition = self._processor().preprocess(PIL.Image.fromarray(crop), height=self.height, width=self.width)[0]

        # 3. The view's FLAME vertices (only for configs that use them)
        if self.vertices:
            clip["vertices"] = self._vertices(row, view_index)  # (V, 3)
        return {
            **clip,
            "condition": condition,  # (3, H, W) in [-1, 1]
            "clip_pixels": clip_pixels,
            "caption": str(row["caption"]),
            "clip_id": str(row["clip_id"]),
            "view": view_index,
            "position": position,
        }

    def read_clip(self, row: dict, offset: float) -> torch.Tensor:
        """The clip's frames at the target rate from ``offset``, resized and centre-cropped, in [-1, 1]."""
        indices = sample_indices(int(row["clip_start"]), int(row["clip_end"]), float(row["fps"]), self.fps,
                                 self.frames, offset)
        rgb = read_frames(row["source_path"], indices, backend=self.reader)  # (F, h, w, 3) uint8
        video = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (F, 3, h, w)
        return resize_center_crop(video, self.height, self.width)  # (F, 3, H, W)

    def _vertices(self, row: dict, view_index: int) -> torch.Tensor:
        if not row["shape_file"]:
            raise InputError(f"clip {row['clip_id']} has no 3D shape ({row['shape_status'] or 'no shape_file'})")
        path = resolve_asset(self.manifest, row["shape_file"])
        try:
            with np.load(path, allow_pickle=False) as data:
                vertices = np.asarray(data["vertices"][view_index], dtype=np.float32)  # (V, 3)
                recorded = str(data["mode"]) if "mode" in data.files else None
        except (OSError, KeyError, ValueError, IndexError) as exc:
            raise InputError(f"shape file '{path}' has no vertices for view {view_index} ({exc})") from exc
        if self.shape_mode is not None and recorded is not None and recorded != self.shape_mode:
            raise ConfigError(
                f"shape file '{path}' holds {recorded}-mode vertices; model.variant={self.shape_mode} needs "
                f"{self.shape_mode}-mode vertices (train/inference mismatch)",
                hint=f"set model.variant={recorded}, or prep the data for the {self.shape_mode} variant",
            )
        if self.num_vertices is not None and vertices.shape != (self.num_vertices, 3):
            raise ConfigError(
                f"shape file '{path}' has vertices {vertices.shape}; the identity encoder needs "
                f"({self.num_vertices}, 3)",
                hint="prep the data with the FLAME model the checkpoint uses (or use the matching model.init)",
            )
        return torch.from_numpy(vertices)


def require_shapes(manifest: str | Path) -> None:
    """Refuse, in one line and before any model is built, a manifest whose kept clips have no 3D shape files (prep
    ran without DECA/FLAME) for a config that uses vertex tokens."""
    table = kept_clips(read_manifest(manifest, columns=["keep", "shape_file", "shape_status"]))
    if len(table) and not table["shape_file"].astype(bool).any():
        status = str(table["shape_status"].iloc[0]) or "the 3D stage did not run"
        raise ConfigError(
            f"manifest '{manifest}' has no 3D shape files (shape.npz; {status}): model.vertex_tokens=true needs FLAME "
            "vertices",
            hint="add them with `fantasyid prep VIDEOS --out DATA --stages 3d --deca deca_model.tar --flame "
                 "generic_model.pkl`, or train without vertices (model.vertex_tokens=false, the w/o FV config)",
        )  # fmt: skip


def collate_items(items: list[dict]) -> dict:
    """Stack a micro-batch; ``skipped`` gathers the clips that were replaced while loading it."""
    batch: dict = {"skipped": [skip for item in items for skip in item["skipped"]], "size": len(items)}
    for key in ("video", "latent_dist", "text_states", "condition", "clip_pixels", "vertices"):
        if key in items[0]:  # video live; latent_dist and text_states from a cache
            batch[key] = torch.stack([item[key] for item in items])
    for key in ("caption", "clip_id", "view", "position"):
        batch[key] = [item[key] for item in items]
    return batch
