"""Writers for ``fantasyid eval``: ``summary.json``, ``per_video.csv``, ``table.md``, ``table.tex``, the identity-vs-
motion plot and the Rich table, all in the layout of the paper's Tables 2 and 3 (FID ↓ RS ↑ IFS ↑ FM ↑, best per
column in bold). Every file is written atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fantasyid.io import atomic_path, write_text
from fantasyid.metrics.results import EvalSummary

#: Column order, header, direction (True: higher is better) and decimals of each metric, as in the paper.
COLUMNS = (
    ("fid", "FID", False, 2),
    ("rs", "RS", True, 3),
    ("ifs", "IFS", True, 3),
    ("fm", "FM", True, 3),
)


# ----------------------------------------------------------------------------------------------------------------
# Atomic files


def atomic_write(path: Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer`` on a temporary path next to ``path``, then move it into place (never a half-written file)."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_text(path, text)


# ----------------------------------------------------------------------------------------------------------------
# Table content


def _format(value: float | None, decimals: int) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def _columns(summary: EvalSummary) -> list[tuple[str, str, bool, int]]:
    return [column for column in COLUMNS if column[0] in summary.metrics]


def best_cells(summary: EvalSummary) -> dict[str, set[int]]:
    """For each metric, the indices of the runs holding the best value as displayed (ties all count). Only marked
    when at least two runs have a value."""
    marks: dict[str, set[int]] = {}
    for key, _, higher, decimals in _columns(summary):
        shown = [(i, round(getattr(run, key), decimals)) for i, run in enumerate(summary.runs)
                 if getattr(run, key) is not None]
        if len(shown) < 2:
            marks[key] = set()
            continue
        best = max(v for _, v in shown) if higher else min(v for _, v in shown)
        marks[key] = {i for i, v in shown if v == best}
    return marks


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "?"


def model_notes(summary: EvalSummary) -> list[str]:
    """One line per model / setting behind the numbers (printed under every table)."""
    p = summary.provenance
    pack = p.get("face_pack", {})
    det_size = "×".join(str(v) for v in pack.get("det_size", []))
    faces = (
        f"Faces: insightface pack {pack.get('pack', '?')} (largest face per frame, detector size {det_size}); "
        "RS/IFS: its ArcFace embeddings, cosine."
    )
    lines = [faces]
    if "fid" in summary.metrics and "inception" in p:
        counts = "; ".join(
            f"{run.name}: {run.fid_reference_crops} ref / {run.fid_generated_crops} gen" for run in summary.runs
        )
        lines.append(
            f"FID: Inception-v3 FID weights (sha256 {_short(p['inception'].get('sha256'))}…), 512 px aligned face "
            f"crops, torchmetrics Fréchet distance; crops: {counts}."
        )
    if "fm" in summary.metrics and "flow" in p:
        flow = p["flow"]
        lines.append(
            f"FM: {flow.get('method')} optical flow inside the face box on {flow.get('size')} px face crops, "
            "in crop pixels per frame."
        )
    frames = summary.settings.get("frames", "all")
    no_face = "; ".join(f"{run.name}: {run.frames_without_face}/{run.frames}" for run in summary.runs)
    lines.append(
        f"Frames evaluated per video: {frames}. Frames without a face: {no_face}. "
        f"fantasyid {p.get('fantasyid_version', '?')}."
    )
    return lines


def markdown_table(summary: EvalSummary) -> str:
    """``table.md``: the paper's layout in Markdown, best values in bold, the models used underneath."""
    columns = _columns(summary)
    marks = best_cells(summary)
    header = "| Method | " + " | ".join(f"{title} {'↑' if up else '↓'}" for _, title, up, _ in columns) + " |"
    rule = "|---|" + "|".join(":---:" for _ in columns) + "|"
    rows = []
    for i, run in enumerate(summary.runs):
        cells = []
        for key, _, _, decimals in columns:
            text = _format(getattr(run, key), decimals)
            cells.append(f"**{text}**" if i in marks[key] else text)
        name = run.name.replace("|", "\\|")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [f"- {line}" for line in model_notes(summary)]
    warnings = [f"- ⚠ {run.name}: {w}" for run in summary.runs for w in run.warnings]
    body = [header, rule, *rows, "", "Best value per column in bold.", "", *notes]
    if warnings:
        body += ["", "Warnings:", "", *warnings]
    return "\n".join(body) + "\n"


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "×": r"$\times$", "…": r"\ldots{}", "–": "--", "→": r"$\rightarrow$",
}


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(summary: EvalSummary) -> str:
    """``table.tex``: a booktabs table in the paper's layout (best in bold), the models in the caption."""
    columns = _columns(summary)
    marks = best_cells(summary)
    lines = [
        "% Generated by fantasyid eval; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        "\\begin{tabular}{l" + "c" * len(columns) + "}",
        "\\toprule",
        "Method & " + " & ".join(f"{title} $\\{'uparrow' if up else 'downarrow'}$" for _, title, up, _ in columns)
        + " \\\\",
        "\\midrule",
    ]
    for i, run in enumerate(summary.runs):
        cells = []
        for key, _, _, decimals in columns:
            text = _format(getattr(run, key), decimals).replace("–", "--")
            cells.append(f"\\textbf{{{text}}}" if i in marks[key] else text)
        lines.append(tex_escape(run.name) + " & " + " & ".join(cells) + " \\\\")
    caption = " ".join(tex_escape(line.replace("`", "")) for line in model_notes(summary))
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{Quantitative evaluation. The best results are highlighted in bold. {caption}}}",
        "\\label{tab:fantasyid-eval}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


PER_VIDEO_FIELDS = (
    "run", "video", "status", "message", "reference", "frames", "frames_without_face", "frames_multiple_faces",
    "rs", "ifs", "fm", "ifs_pairs", "fm_pairs", "fid_crops",
)


def per_video_csv(summary: EvalSummary) -> str:
    """``per_video.csv``: one row per video with its own RS, IFS, FM and frame counts (full precision)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_VIDEO_FIELDS, lineterminator="\n")
    writer.writeheader()
    for run in summary.runs:
        for video in run.videos:
            row = video.to_dict()
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in PER_VIDEO_FIELDS})
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Plot and terminal


def plot_axes(summary: EvalSummary) -> tuple[str, str] | None:
    """(x, y) metric keys of the identity-vs-motion plot: FM against RS (IFS when RS was not asked); None if FM or
    both identity metrics are missing."""
    if "fm" not in summary.metrics:
        return None
    for identity in ("rs", "ifs"):
        if identity in summary.metrics:
            return "fm", identity
    return None


def write_plot(summary: EvalSummary, path: Path) -> Path | None:
    """Identity (RS) against motion (FM), one labelled point per run, as a PNG. None when there is nothing to plot."""
    axes = plot_axes(summary)
    points = [] if axes is None else [
        (run.name, getattr(run, axes[0]), getattr(run, axes[1])) for run in summary.runs
        if getattr(run, axes[0]) is not None and getattr(run, axes[1]) is not None
    ]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4.2), dpi=150)
    ax = figure.add_subplot(1, 1, 1)
    labels_at: dict[tuple[float, float], list[str]] = {}
    for name, x, y in points:  # runs on the same spot share one point and one label
        labels_at.setdefault((round(x, 4), round(y, 4)), []).append(name)
    for (x, y), group in labels_at.items():
        ax.scatter([x], [y], s=40)
        ax.annotate(", ".join(group), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    labels = {"fm": "FM: face motion (crop px / frame) →", "rs": "RS: identity vs reference →",
              "ifs": "IFS: identity between frames →"}
    ax.set_xlabel(labels[axes[0]])
    ax.set_ylabel(labels[axes[1]])
    pack = summary.provenance.get("face_pack", {}).get("pack", "?")
    flow = summary.provenance.get("flow", {}).get("method", "?")
    ax.set_title(f"Identity vs motion ({pack} ArcFace, {flow} flow)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    figure.tight_layout()
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def rich_table(summary: EvalSummary) -> Any:
    """The table for the terminal (Rich), with the counts and the models used in the caption."""
    from rich.table import Table

    columns = _columns(summary)
    marks = best_cells(summary)
    table = Table(title="fantasyid eval", caption="\n".join(model_notes(summary)), caption_justify="left")
    table.add_column("Method", style="bold")
    for _, title, up, _ in columns:
        table.add_column(f"{title} {'↑' if up else '↓'}", justify="right")
    table.add_column("videos", justify="right")
    table.add_column("frames", justify="right")
    table.add_column("no face", justify="right")
    for i, run in enumerate(summary.runs):
        cells = []
        for key, _, _, decimals in columns:
            text = _format(getattr(run, key), decimals)
            cells.append(f"[bold green]{text}[/]" if i in marks[key] else text)
        unreadable = f" ({run.videos_unreadable} unreadable)" if run.videos_unreadable else ""
        table.add_row(run.name, *cells, f"{len(run.videos)}{unreadable}", str(run.frames),
                      str(run.frames_without_face))
    return table


def write_outputs(summary: EvalSummary, out_dir: Path) -> dict[str, Path]:
    """Write every output file into ``out_dir``; returns their paths by kind."""
    out_dir = Path(out_dir)
    files = {
        "summary": atomic_write_text(out_dir / "summary.json", summary.to_json() + "\n"),
        "per_video": atomic_write_text(out_dir / "per_video.csv", per_video_csv(summary)),
        "table_md": atomic_write_text(out_dir / "table.md", markdown_table(summary).rstrip("\n") + "\n"),
        "table_tex": atomic_write_text(out_dir / "table.tex", latex_table(summary)),
    }
    plot = write_plot(summary, out_dir / "identity_vs_motion.png")
    if plot is not None:
        files["plot"] = plot
    return files
