"""A before/after preview of a shape edit, drawn with numpy and PIL (no pytorch3d, no OpenGL).

Each panel is an orthographic view of the mesh (front: looking along −z; side: the head turned 90° about the vertical
axis so the face looks right) drawn with the painter's algorithm: triangles sorted far to near and filled with
two-sided Lambert shading under a light at the camera's upper left; the trait landmarks are drawn as lines in the
same depth order, so the back of the head hides them. Supersampled twice and downsampled for smooth edges.

The preview (:func:`render_preview`) is a 2 × 2 grid: rows front and side, columns original and edited. Every panel
shares one scale, the edited mesh is tinted by how far each triangle moved, and the original's outline is drawn over
it in red so that a change of width or length is visible at a glance. The requested traits, before → after, are
written underneath.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fantasyid.errors import InputError, require
from fantasyid.io import atomic_path

from .edit import EditResult
from .traits import LANDMARK_LINES, TRAITS

__all__ = ["render_mesh", "render_preview", "view_transform"]

_BACKGROUND = (245, 245, 242)
_SKIN = np.array([0.80, 0.74, 0.68])
_MOVED = np.array([0.95, 0.45, 0.15])
_LINE = (40, 70, 140)
_OUTLINE = (220, 30, 30)
_LIGHT = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])


def view_transform(points: np.ndarray, view: str) -> np.ndarray:
    """Points (..., 3) in camera coordinates: x right, y up, z towards the viewer. ``front`` keeps FLAME's frame;
    ``side`` turns the head 90° about y so that the face (+z) looks to the right of the image."""
    if view == "front":
        return np.asarray(points, dtype=np.float64)
    if view == "side":
        x, y, z = np.moveaxis(np.asarray(points, dtype=np.float64), -1, 0)
        return np.stack([z, y, -x], axis=-1)
    raise InputError(f"unknown view {view!r}; use 'front' or 'side'")


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    view: str = "front",
    size: int = 320,
    centre: tuple[float, float] | None = None,
    scale: float | None = None,
    face_colors: np.ndarray | None = None,
    lines: list[np.ndarray] | None = None,
    supersample: int = 2,
):
    """Draw one view of a mesh; returns ``(image, mask)``: an RGB PIL image and a boolean (size, size) mask of the
    pixels the mesh covers.

    Args:
        vertices: (V, 3) in FLAME's frame. faces: (F, 3).
        centre, scale: the point of the view at the image centre (camera x, y) and pixels per unit; default: fit the
            mesh with a margin.
        face_colors: (F, 3) base colours in [0, 1] (default: a skin tone).
        lines: polylines (N, 3) drawn over the surface where visible.
    """
    image_module = require("PIL.Image", "face", "the shape preview")
    draw_module = require("PIL.ImageDraw", "face", "the shape preview")
    points = view_transform(vertices, view)  # (V, 3)
    faces = np.asarray(faces, dtype=np.int64)
    if centre is None or scale is None:
        low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        centre = tuple((low + high) / 2.0)
        scale = 0.85 * size / max(float((high - low).max()), 1e-9)
    big = size * supersample
    pixel_scale = scale * supersample

    def to_pixels(xyz: np.ndarray) -> np.ndarray:
        return np.stack([big / 2.0 + (xyz[..., 0] - centre[0]) * pixel_scale,
                         big / 2.0 - (xyz[..., 1] - centre[1]) * pixel_scale], axis=-1)  # fmt: skip

    triangles = points[faces]  # (F, 3 corners, 3)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])  # (F, 3)
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = normals / np.where(lengths > 0, lengths, 1.0)
    shade = 0.25 + 0.75 * np.abs(normals @ _LIGHT)  # (F,) two-sided Lambert
    base = np.broadcast_to(_SKIN, (len(faces), 3)) if face_colors is None else np.asarray(face_colors)
    colors = np.clip(base * shade[:, None] * 255.0, 0, 255).astype(np.uint8)
    corners = to_pixels(triangles)  # (F, 3, 2)

    # painter's algorithm: triangles by mean depth, landmark segments just in front of the surface they lie on
    extent = float(np.ptp(points, axis=0).max()) or 1.0
    primitives = [(float(depth), 0, index) for index, depth in enumerate(triangles[:, :, 2].mean(axis=1))]
    segments: list[np.ndarray] = []
    for polyline in lines or []:
        camera = view_transform(polyline, view)
        for a, b in zip(camera[:-1], camera[1:]):
            segments.append(np.stack([a, b]))
            primitives.append((float(max(a[2], b[2])) + 0.01 * extent, 1, len(segments) - 1))
    primitives.sort(key=lambda item: (item[0], item[1]))

    image = image_module.new("RGB", (big, big), _BACKGROUND)
    mask = image_module.new("L", (big, big), 0)
    draw, mask_draw = draw_module.Draw(image), draw_module.Draw(mask)
    width = max(1, supersample + 1)
    for _, kind, index in primitives:
        if kind == 0:
            polygon = [tuple(p) for p in corners[index]]
            color = tuple(int(c) for c in colors[index])
            draw.polygon(polygon, fill=color, outline=color)
            mask_draw.polygon(polygon, fill=255, outline=255)
        else:
            draw.line([tuple(p) for p in to_pixels(segments[index])], fill=_LINE, width=width)
    resample = image_module.Resampling.LANCZOS
    small = image.resize((size, size), resample)
    covered = np.asarray(mask.resize((size, size), image_module.Resampling.BILINEAR)) > 127
    return small, covered


def _closed(indices: tuple[int, ...], closed: bool) -> list[int]:
    return list(indices) + ([indices[0]] if closed else [])


def _landmark_lines(points: np.ndarray) -> list[np.ndarray]:
    return [points[_closed(indices, closed)] for indices, closed in LANDMARK_LINES]


def _font(size: int):
    font_module = require("PIL.ImageFont", "face", "the shape preview")
    try:
        return font_module.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return font_module.load_default()


def render_preview(
    path: str | os.PathLike[str],
    result: EditResult,
    faces: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    size: int = 320,
) -> Path:
    """Write the 2 × 2 before/after PNG of ``result`` (see the module docstring), atomically.

    ``weights``: the (P, V) matrix that places the trait landmarks on a mesh (:attr:`TraitMeter.weights`); without
    it no landmarks are drawn.
    """
    image_module = require("PIL.Image", "face", "the shape preview")
    draw_module = require("PIL.ImageDraw", "face", "the shape preview")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"the preview must be a .png file, got '{path.name}'")
    before = result.before.vertices.reshape(-1, 3).astype(np.float64)
    after = result.after.vertices.reshape(-1, 3).astype(np.float64)
    faces = np.asarray(faces, dtype=np.int64)

    # tint by displacement: each triangle's mean vertex displacement relative to the largest
    moved = np.linalg.norm(after - before, axis=1)[faces].mean(axis=1)  # (F,)
    largest = float(moved.max())
    weight = (moved / largest)[:, None] if largest > 0 else np.zeros((len(faces), 1))
    tinted = _SKIN * (1.0 - weight) + _MOVED * weight

    lines_before = lines_after = None
    if weights is not None:  # the landmarks lie on the drawn meshes (posed too, in the released mode)
        lines_before, lines_after = _landmark_lines(weights @ before), _landmark_lines(weights @ after)

    header, footer, gap = 28, 22 * (1 + max(1, len(result.edits))), 8
    canvas = image_module.new("RGB", (2 * size + 3 * gap, header + 2 * size + 3 * gap + footer), (255, 255, 255))
    draw = draw_module.Draw(canvas)
    font = _font(16)
    for row, view in enumerate(("front", "side")):
        both = view_transform(np.concatenate([before, after]), view)
        low, high = both[:, :2].min(axis=0), both[:, :2].max(axis=0)
        centre = tuple((low + high) / 2.0)
        scale = 0.85 * size / max(float((high - low).max()), 1e-9)
        original, outline = render_mesh(before, faces, view=view, size=size, centre=centre, scale=scale,
                                        lines=lines_before)  # fmt: skip
        edited, _ = render_mesh(after, faces, view=view, size=size, centre=centre, scale=scale, face_colors=tinted,
                                lines=lines_after)  # fmt: skip
        edge = outline & ~_eroded(outline)
        pixels = np.asarray(edited).copy()
        pixels[edge] = _OUTLINE
        top = header + gap + row * (size + gap)
        canvas.paste(original, (gap, top))
        canvas.paste(image_module.fromarray(pixels), (2 * gap + size, top))
        draw.text((gap + 6, top + 4), view, fill=(90, 90, 90), font=font)
    draw.text((gap, 6), "original", fill=(0, 0, 0), font=font)
    draw.text((2 * gap + size, 6), "edited (red: original outline)", fill=(0, 0, 0), font=font)
    y = header + 2 * size + 3 * gap
    for line in _summary(result, largest):
        draw.text((gap, y), line, fill=(0, 0, 0), font=font)
        y += 22
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def _eroded(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)
    out = np.ones_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
    return out


def _summary(result: EditResult, largest: float) -> list[str]:
    lines = []
    for edit in result.edits:
        i = result.trait_names.index(edit.trait)
        unit = TRAITS[i].unit
        before, after = result.traits_before[i], result.traits_after[i]
        relative = f" ({100 * (after / before - 1):+.1f}%)" if before > 0 else ""
        lines.append(f"{edit.trait} {edit.text}: {before:.2f} -> {after:.2f} {unit}{relative}")
    if not lines:
        lines.append("no edit: the input shape")
    lines.append(f"largest surface move {1000 * largest:.2f} mm (orange); other traits held")
    return lines
