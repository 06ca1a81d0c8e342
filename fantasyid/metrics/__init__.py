"""The paper's metrics (Sec. 4.1) over folders of generated videos: RS, IFS, face-crop FID and face motion (FM).

* :func:`evaluate_runs`, :func:`evaluate_shard`, :func:`evaluate_partial` (``evaluate``): the one shared pass behind ``fantasyid eval``
* :func:`merge_partials` (``shards``): shards' partial files → the numbers of one process
* :class:`EvalSummary`, :class:`RunResult`, :class:`VideoResult`, :data:`METRIC_NAMES`, :func:`parse_metrics`
  (``results``): what is measured, as plain data
* :class:`IdentityTrack` (``identity``): RS and IFS from ArcFace embeddings
* :class:`FaceFID`, :class:`InceptionFeatures` (``fid``): the standard FID Inception + torchmetrics' distance
* :class:`FaceMotion`, :class:`FlowSettings` (``motion``): dense flow in the face region
* :class:`FrameReader`, :func:`probe` (``fantasyid.data.video``, shared with prep and train): decoding
* :func:`write_outputs`, :func:`rich_table` (``tables``): the paper's tables as Markdown, LaTeX, CSV, JSON and a plot

Importing this package is cheap: names load on first use, so torch and OpenCV are imported only when needed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_runs": "evaluate",
    "evaluate_shard": "evaluate",
    "evaluate_partial": "evaluate",
    "merge_partials": "shards",
    "EvalSummary": "results",
    "RunResult": "results",
    "VideoResult": "results",
    "METRIC_NAMES": "results",
    "parse_metrics": "results",
    "resolve_reference": "evaluate",
    "IdentityTrack": "identity",
    "FaceFID": "fid",
    "FIDResult": "fid",
    "InceptionFeatures": "fid",
    "FaceMotion": "motion",
    "FlowSettings": "motion",
    "FLOW_METHODS": "motion",
    "FrameReader": "fantasyid.data.video",
    "VideoReadError": "fantasyid.data.video",
    "probe": "fantasyid.data.video",
    "write_outputs": "tables",
    "rich_table": "tables",
}

__all__ = [
    "FLOW_METHODS",
    "METRIC_NAMES",
    "EvalSummary",
    "FIDResult",
    "FaceFID",
    "FaceMotion",
    "FlowSettings",
    "FrameReader",
    "IdentityTrack",
    "InceptionFeatures",
    "RunResult",
    "VideoReadError",
    "VideoResult",
    "evaluate_partial",
    "evaluate_runs",
    "evaluate_shard",
    "merge_partials",
    "parse_metrics",
    "probe",
    "resolve_reference",
    "rich_table",
    "write_outputs",
]


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attributes, as in fantasyid.face
    try:
        module_name = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'fantasyid.metrics' has no attribute {name!r}") from None
    module = module_name if module_name.startswith("fantasyid.") else f"fantasyid.metrics.{module_name}"
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
