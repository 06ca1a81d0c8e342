"""Published numbers of other methods under each protocol, typed in from the papers' and leaderboards' tables with
their source, for the separate "published baselines" section of a protocol's table. Values that could not be read
from a source are left out, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Baseline:
    method: str
    values: dict[str, float]  #: metric key → value in the table's unit (OpenS2V: percent of the normalised score)
    source: str


_OPENS2V_V10 = (
    "OpenS2V-Eval leaderboard v1.0, human domain (leaderboard/file_v1.0/results_Human-Domain.csv in the "
    "OpenS2V-Nexus code, mirrored at franciszzj/OpenS2V-Nexus@8cb7427); percentages of the normalised scores, "
    "NaturalScore judged by GPT-4o"
)


def _opens2v(method: str, total: float, aes: float, motion: float, facesim: float, gme: float, natural: float):
    return Baseline(method, {"total": total, "aesthetics": aes, "motion": motion, "facesim_cur": facesim,
                             "gmescore": gme, "naturalscore": natural}, _OPENS2V_V10)


BASELINES: dict[str, tuple[Baseline, ...]] = {
    "opens2v-human": (
        _opens2v("FantasyID", 49.80, 45.60, 23.48, 32.42, 72.68, 68.11),
        _opens2v("ConsisID", 52.97, 41.76, 38.12, 43.14, 72.03, 64.67),
        _opens2v("EchoVideo", 54.52, 39.93, 35.16, 48.57, 68.40, 69.22),
        _opens2v("Concat-ID-CogVideoX", 53.32, 44.13, 31.76, 43.83, 73.67, 66.44),
        _opens2v("HunyuanCustom", 55.85, 49.67, 15.13, 62.25, 69.78, 67.00),
        _opens2v("VideoMaker", 52.31, 31.76, 50.09, 76.45, 45.28, 47.08),
        _opens2v("ID-Animator", 43.37, 42.03, 33.54, 31.56, 52.91, 54.03),
        _opens2v("Phantom-14B", 58.69, 49.14, 41.24, 55.02, 72.55, 68.33),
        _opens2v("VACE-14B", 58.57, 52.78, 11.76, 64.65, 69.53, 74.33),
    ),
    # ConsisID's paper table could not be read from a verifiable source here: no values are typed in.
    "consisid": (),
    "fantasyid": (),
}
