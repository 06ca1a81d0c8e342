"""A run's numbers under another protocol, from its videos' values, as the protocol defines them
(:mod:`.arithmetic`): the plain mean over videos (ConsisID), or clipping, the mean, min-max normalisation and the
weighted total (OpenS2V). Used by both the one-process evaluation and the merge of shards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fantasyid.metrics.protocols.arithmetic import mean_over_videos, opens2v_scores
from fantasyid.metrics.protocols.definitions import Protocol


def table_keys(protocol: Protocol) -> tuple[str, ...]:
    """The run values of ``protocol`` in table order: its metrics, then ``total`` where it has a total score."""
    return protocol.metric_keys + (("total",) if protocol.total_weights else ())


def aggregate_values(protocol: Protocol, per_video: dict[str, Sequence[float | None]]) -> dict[str, float | None]:
    """The run's values from each metric's per-video values (None: the video gave none, e.g. unreadable).

    With a total score (OpenS2V): the normalised fractions and ``total`` of :func:`.arithmetic.opens2v_scores`.
    Without (ConsisID): each metric's plain mean over the videos that have a value (``statistics.mean``)."""
    if protocol.total_weights:
        return opens2v_scores(protocol, per_video)
    return {key: mean_over_videos(per_video.get(key, ())) for key in protocol.metric_keys}


def aggregate_run(protocol: Protocol, row: Any) -> None:
    """Set ``row.scores`` (a :class:`~fantasyid.metrics.results.RunResult`) from its videos' ``scores``."""
    per_video = {key: [video.scores.get(key) for video in row.videos] for key in protocol.metric_keys}
    values = aggregate_values(protocol, per_video)
    row.scores = {key: values.get(key) for key in table_keys(protocol)}
    for key in protocol.metric_keys:
        if row.videos and all(v is None for v in per_video[key]):
            row.warnings.append(f"no video gave a value for {key}")
