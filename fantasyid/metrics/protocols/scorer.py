"""The interface every protocol metric implements, and the registry the evaluator builds them from.

One video is decoded once and its faces detected once (at the protocol's ``det_size``); every metric of the protocol
reads the same :class:`VideoSample`. A metric is a :class:`ProtocolScorer` registered under the ``model`` key of its
:class:`~fantasyid.metrics.protocols.definitions.MetricSpec` (``curricularface``, ``clip_vit_b32``, …); its weights are
found through :mod:`fantasyid.hub` (so ``fantasyid models`` lists them), never downloaded implicitly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fantasyid.errors import ConfigError
from fantasyid.metrics.protocols.definitions import MetricSpec, Protocol


@dataclass
class VideoSample:
    """What one generated video offers every metric of a protocol."""

    name: str  #: the video's file name
    frames: Sequence[np.ndarray]  #: every decoded frame in order, RGB uint8, each (H, W, 3)
    fps: float
    prompt: str  #: the prompt the video was generated from ("" when unknown)
    reference: np.ndarray  #: the reference image, RGB uint8, (h, w, 3)
    #: the largest face of frame ``i`` (a :class:`fantasyid.face.analysis.Face`: bbox, landmarks, embedding, pose)
    #: or None; detected once per frame at the protocol's det_size and cached, shared by every metric
    face: Callable[[int], Any | None]
    reference_face: Any | None  #: the largest face of the reference image, or None
    #: one key per distinct reference image (its resolved path): scorers cache per-reference work under it
    reference_key: str = ""
    _crops: dict[tuple[int | None, int], np.ndarray | None] = field(default_factory=dict, repr=False)

    def face_crop(self, index: int, size: int = 224) -> np.ndarray | None:
        """Frame ``index``'s largest face as the ``size``-px ArcFace-aligned RGB crop (insightface's ``norm_crop``
        template scaled by ``size / 112``, black border: ConsisID's and OpenS2V's ``face_align.norm_crop(image,
        kps, 224)``), cached; None without a face."""
        key = (index, size)
        if key not in self._crops:
            face = self.face(index)
            self._crops[key] = None if face is None else _align(self.frames[index], face.landmarks, size)
        return self._crops[key]

    def reference_crop(self, size: int = 224) -> np.ndarray | None:
        """The reference face's ``size``-px ArcFace-aligned crop (as :meth:`face_crop`), cached; None without one."""
        key = (None, size)
        if key not in self._crops:
            face = self.reference_face
            self._crops[key] = None if face is None else _align(self.reference, face.landmarks, size)
        return self._crops[key]


def _align(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    from fantasyid.face.analysis import align_arcface

    return align_arcface(image, landmarks, size)  # (size, size, 3)


@dataclass(frozen=True)
class ScorerOptions:
    """How scorers are built: explicit weight paths by model key (else the resolver's order), device, threads."""

    weights: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 1


class ProtocolScorer(ABC):
    """One metric's model and its per-video score. Subclasses set ``model_key`` (the ``model`` of the metrics they
    serve, or the metric's key when it has no model: :func:`scorer_key`) and register with :func:`register`."""

    model_key: ClassVar[str]
    #: the metric reads ``sample.prompt``: the evaluation stops before decoding when a video has none
    needs_prompt: ClassVar[bool] = False
    #: the metric reads the reference image or face: the evaluation resolves and checks every reference first
    needs_reference: ClassVar[bool] = True

    def __init__(self, options: ScorerOptions):
        self.options = options

    def provenance(self) -> dict[str, Any]:
        """What went into the numbers (model, weight file and its sha256, preprocessing), for ``summary.json``."""
        return {"model": self.model_key}

    @abstractmethod
    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        """The metric's value for one video (None: the video gives no value, e.g. no face in any sampled frame).

        The scorer samples ``sample.frames`` itself with :func:`fantasyid.metrics.protocols.arithmetic.sample_indices`
        (``spec.frames``, ``spec.count``) and aggregates as ``protocol`` defines."""


SCORERS: dict[str, type[ProtocolScorer]] = {}

#: Modules whose import registers scorers; :func:`load_scorers` imports them (torch and friends load then).
SCORER_MODULES = (
    "fantasyid.metrics.protocols.consisid",
    "fantasyid.metrics.protocols.aesthetic",
    "fantasyid.metrics.protocols.motion_scorer",
    "fantasyid.metrics.protocols.gme",
    "fantasyid.metrics.protocols.natural",
)


def load_scorers() -> dict[str, type[ProtocolScorer]]:
    """Import every scorer module of :data:`SCORER_MODULES` (registering its scorers); returns the registry."""
    import importlib

    for module in SCORER_MODULES:
        importlib.import_module(module)
    return SCORERS


def register(cls: type[ProtocolScorer]) -> type[ProtocolScorer]:
    """Class decorator: make ``cls`` the scorer for its ``model_key``."""
    if cls.model_key in SCORERS and SCORERS[cls.model_key] is not cls:
        raise ValueError(f"two scorers for model key {cls.model_key!r}: {SCORERS[cls.model_key]} and {cls}")
    SCORERS[cls.model_key] = cls
    return cls


def scorer_key(spec: MetricSpec) -> str:
    """The registry key of ``spec``'s scorer: its ``model`` key, or its metric ``key`` for a metric without a model
    (OpenS2V's motion score registers as ``motion``)."""
    return spec.model or spec.key


def build_scorer(model_key: str, options: ScorerOptions) -> ProtocolScorer:
    """The registered scorer for ``model_key``; a :class:`ConfigError` naming the known keys otherwise."""
    if model_key not in SCORERS:
        known = ", ".join(sorted(SCORERS)) or "none"
        raise ConfigError(f"no metric is registered for model {model_key!r}", hint=f"registered: {known}")
    return SCORERS[model_key](options)
