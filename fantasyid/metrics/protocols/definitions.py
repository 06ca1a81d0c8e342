"""Each evaluation protocol as a small declared set of metrics with its own frame sampling and aggregation."""

from __future__ import annotations

from dataclasses import dataclass, field

from fantasyid.errors import ConfigError


@dataclass(frozen=True)
class MetricSpec:
    """One column of a protocol's table."""

    key: str  #: the name in summary.json and per_video.csv
    title: str  #: the paper's column header
    higher_is_better: bool
    decimals: int
    frames: str  #: how the protocol samples the frames this metric reads (see arithmetic.sample_indices)
    count: int | None  #: frames sampled per video (None: all frames)
    model: str  #: which model computes it (the weight key in fantasyid.metrics.protocols.weights, or "")
    source: str  #: where the definition comes from


@dataclass(frozen=True)
class Protocol:
    """A protocol: its metrics in table order, the face detector size and how a run's score is formed."""

    name: str
    title: str
    metrics: tuple[MetricSpec, ...]
    det_size: int
    aggregation: str
    #: weights of the total score over the normalised metrics (empty: no total score)
    total_weights: dict[str, float] = field(default_factory=dict)
    #: (low, high) of each metric's clipping and min-max normalisation, for protocols with a total score
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def metric_keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.metrics)


_CONSISID = "PKU-YuanGroup/ConsisID eval/get_facesim_fid.py"
_OPENS2V = "PKU-YuanGroup/OpenS2V-Nexus eval/"
_MERGE = "OpenS2V-Nexus v1.0 merge_result.py (franciszzj/OpenS2V-Nexus eval/v1.0_backup/merge_result.py)"

#: The release's own metrics: today's ``fantasyid eval`` (RS, IFS, face-crop FID, FM), unchanged.
FANTASYID = Protocol(
    name="fantasyid",
    title="FantasyID (paper Sec. 4.1)",
    metrics=(
        MetricSpec("fid", "FID", False, 2, "evenly_spaced", None, "fid_inception", "fantasyid.metrics.fid"),
        MetricSpec("rs", "RS", True, 3, "evenly_spaced", None, "face_pack", "fantasyid.metrics.identity"),
        MetricSpec("ifs", "IFS", True, 3, "evenly_spaced", None, "face_pack", "fantasyid.metrics.identity"),
        MetricSpec("fm", "FM", True, 3, "evenly_spaced", None, "", "fantasyid.metrics.motion"),
    ),
    det_size=640,
    aggregation="per-video means, then the mean over videos",
)

CONSISID = Protocol(
    name="consisid",
    title="ConsisID (Yuan et al., CVPR 2025) evaluation",
    metrics=(
        # 16 frames, np.linspace(0, N-1, 16, dtype=int): get_facesim_fid.py sample_video_frames
        MetricSpec("facesim_arc", "FaceSim-Arc", True, 3, "linspace_int", 16, "face_pack", _CONSISID),
        MetricSpec("facesim_cur", "FaceSim-Cur", True, 3, "linspace_int", 16, "curricularface", _CONSISID),
        # 16 frames at int(i * N / 16): get_clipscore.py compute_clip_score
        MetricSpec("clipscore", "CLIPScore", True, 2, "floor_stride", 16, "clip_vit_b32",
                   "PKU-YuanGroup/ConsisID eval/get_clipscore.py"),
        MetricSpec("fid_ref", "FID", False, 2, "linspace_int", 16, "inception_v3_torchvision", _CONSISID),
    ),
    det_size=320,  # FaceAnalysis.prepare(det_size=(320, 320)): get_facesim_fid.py
    # eval_all_in_once.py: statistics.mean over every (image, prompt) video of the per-video scores
    aggregation="per-video means over the sampled frames with a face (0.0 for a video without one), then the plain "
    "mean over videos",
)

OPENS2V_HUMAN = Protocol(
    name="opens2v-human",
    title="OpenS2V-Eval v1.0, human domain (Yuan et al., 2025)",
    metrics=(
        MetricSpec("aesthetics", "Aesthetics", True, 2, "linspace_int", 32, "aesthetic_mlp", _OPENS2V + "get_aesscore.py"),
        MetricSpec("motion", "Motion", True, 2, "all", None, "farneback", _OPENS2V + "get_motionscore.py"),
        MetricSpec("facesim_cur", "FaceSim", True, 2, "linspace_int", 32, "curricularface", _OPENS2V + "get_facesim.py"),
        MetricSpec("gmescore", "GmeScore", True, 2, "linspace_int", 32, "gme", _OPENS2V + "get_gmescore.py"),
        MetricSpec("naturalscore", "NaturalScore", True, 2, "floor_interval", 16, "natural_judge",
                   _OPENS2V + "get_naturalscore.py"),
    ),
    det_size=320,  # get_facesim.py main(): det_size=(320, 320)
    aggregation="per-video values clipped to the bounds, mean over videos, min-max normalised to [0, 1], then the "
    "weighted total (" + _MERGE + ")",
    # merge_result.py process_scores, eval_type == "Human-Domain"
    total_weights={"aesthetics": 0.15, "motion": 0.15, "facesim_cur": 0.25, "gmescore": 0.15, "naturalscore": 0.30},
    bounds={"aesthetics": (4.0, 7.0), "motion": (0.0, 1.0), "facesim_cur": (0.0, 1.0), "gmescore": (0.0, 1.0),
            "naturalscore": (1.0, 5.0)},
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (FANTASYID, CONSISID, OPENS2V_HUMAN)}
PROTOCOL_NAMES = tuple(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; a :class:`ConfigError` naming the choices otherwise."""
    key = str(name).strip().lower()
    if key not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}", hint=f"use one of: {', '.join(PROTOCOL_NAMES)}")
    return PROTOCOLS[key]
