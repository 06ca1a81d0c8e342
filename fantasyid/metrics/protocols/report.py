"""What the tables of :mod:`fantasyid.metrics.tables` show for another protocol: its columns in the paper's (or
leaderboard's) layout, values as published (OpenS2V: percentages of the normalised scores), the notes naming each
model and how it differs from the original, and the protocol's published baselines as a separate, labelled section.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fantasyid.metrics.protocols.baselines import BASELINES
from fantasyid.metrics.protocols.definitions import get_protocol

#: The header of the total score column (OpenS2V's leaderboard: "Total Score").
TOTAL_TITLE = "Total"


def protocol_columns(name: str) -> list[tuple[str, str, bool, int]]:
    """``(key, header, higher is better, decimals)`` of each column of ``name``'s table: OpenS2V puts the total
    first and shows percentages, as its leaderboard."""
    protocol = get_protocol(name)
    percent = " (%)" if protocol.total_weights else ""
    columns = [(m.key, m.title + percent, m.higher_is_better, m.decimals) for m in protocol.metrics]
    if protocol.total_weights:
        columns.insert(0, ("total", TOTAL_TITLE + percent, True, 2))
    return columns


def shown_value(name: str, scores: Mapping[str, float | None], key: str) -> float | None:
    """A run value in the table's unit: OpenS2V's normalised fractions as percentages, others as computed."""
    value = scores.get(key)
    if value is None:
        return None
    return float(value) * (100.0 if get_protocol(name).total_weights else 1.0)


def _short(sha: str | None) -> str:
    return sha[:12] + "…" if sha else "?"


def protocol_notes(summary: Any) -> list[str]:
    """One line per setting and model behind another protocol's numbers (printed under its tables)."""
    protocol = get_protocol(summary.protocol)
    p = summary.provenance
    pack = p.get("face_pack", {})
    det = "×".join(str(v) for v in pack.get("det_size", []))
    lines = [f"Protocol: {protocol.title}. Aggregation: {protocol.aggregation}."]
    lines.append(f"Faces: insightface pack {pack.get('pack', '?')} (largest face per frame, detector {det}, a "
                 "grey-padded retry when none is found).")
    scorers = p.get("scorers", {})
    for metric in protocol.metrics:
        info = scorers.get(metric.model or metric.key, {})  # the scorer's registry key (scorer.scorer_key)
        frames = "all frames" if metric.count is None else f"{metric.count} frames ({metric.frames})"
        what = info.get("what", metric.model or "no model")
        if metric.model == "face_pack":
            what = f"ArcFace of the {pack.get('pack', '?')} pack"
            if pack.get("pack") != "antelopev2":
                what += " (the original uses antelopev2: not comparable to published numbers)"
        weights = f", weights sha256 {_short(info.get('sha256'))}" if info.get("sha256") else ""
        note = f" {info['note']}" if info.get("note") else ""
        lines.append(f"{metric.title}: {what}{weights}; {frames}.{note}")
    if protocol.total_weights:
        total = " + ".join(f"{w:g}·{k}" for k, w in protocol.total_weights.items())
        lines.append(f"Values are percentages of the clipped, min-max normalised means; {TOTAL_TITLE} = {total}.")
    no_face = "; ".join(f"{run.name}: {run.frames_without_face}/{run.frames}" for run in summary.runs)
    lines.append(f"Frames a face metric read without a face: {no_face}. fantasyid {p.get('fantasyid_version', '?')}.")
    return lines


def _baseline_frame(name: str) -> tuple[Any, list[tuple[str, str, bool, int]], str] | None:
    """The published baselines of ``name`` as a display DataFrame (text cells), its columns and its source."""
    import pandas as pd

    baselines = BASELINES.get(name, ())
    if not baselines:
        return None
    columns = protocol_columns(name)
    rows = []
    for baseline in baselines:
        row = {"Method": baseline.method}
        for key, title, up, decimals in columns:
            value = baseline.values.get(key)
            row[f"{title} {'↑' if up else '↓'}"] = "–" if value is None else f"{value:.{decimals}f}"
        rows.append(row)
    sources = list(dict.fromkeys(b.source for b in baselines))
    return pd.DataFrame(rows), columns, "; ".join(sources)


def baselines_markdown(name: str) -> list[str]:
    """Lines of ``table.md``'s separate section of ``name``'s published baselines, with their source."""
    found = _baseline_frame(name)
    if found is None:
        return ["", "Published baselines: none typed in for this protocol (fantasyid/metrics/protocols/baselines.py "
                "holds only values read from a verifiable source)."]
    frame, _, source = found
    table = frame.to_markdown(index=False, tablefmt="pipe", colalign=("left",) + ("center",) * (frame.shape[1] - 1),
                              disable_numparse=True)
    return ["", "## Published baselines (not measured here)", "", f"Source: {source}.", "", table]


def baselines_latex(name: str, tex_escape: Callable[[str], str]) -> str:
    """A second booktabs table in ``table.tex``: ``name``'s published baselines, the source in its caption
    (``tex_escape``: the tables' LaTeX escaping)."""
    found = _baseline_frame(name)
    if found is None:
        return ""
    frame, columns, source = found
    frame = frame.rename(columns=lambda c: c.replace("↑", "$\\uparrow$").replace("↓", "$\\downarrow$"))
    frame = frame.map(lambda cell: "--" if cell == "–" else cell)
    frame["Method"] = frame["Method"].map(tex_escape)
    styler = frame.style.hide(axis="index")
    return "\n" + styler.to_latex(
        column_format="l" + "c" * len(columns), position="t", position_float="centering", hrules=True,
        label=f"tab:{name}-baselines", environment="table",
        caption=f"Published baselines under this protocol (not measured here). Source: {tex_escape(source)}.",
    )
