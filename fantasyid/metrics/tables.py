"""Writers for ``fantasyid eval``: ``summary.json``, ``per_video.csv``, ``table.md``, ``table.tex``, the identity-vs-
motion plot and the Rich table, all in the layout of the paper's Tables 2 and 3 (FID ↓ RS ↑ IFS ↑ FM ↑, best per
column in bold). Every table is a pandas DataFrame written by pandas (``to_csv``, ``to_markdown`` through tabulate,
``Styler.to_latex``). Every file is written atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fantasyid.errors import require
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
# Table content: pandas DataFrames


def _pandas():
    return require("pandas", "metrics", "writing the evaluation tables")


def _columns(summary: EvalSummary) -> list[tuple[str, str, bool, int]]:
    if summary.protocol != "fantasyid":
        from fantasyid.metrics.protocols.report import protocol_columns

        return protocol_columns(summary.protocol)
    return [column for column in COLUMNS if column[0] in summary.metrics]


def _value(summary: EvalSummary, run: Any, key: str) -> float | None:
    """A run's value as the table shows it (another protocol's: :func:`.protocols.report.shown_value`)."""
    if summary.protocol != "fantasyid":
        from fantasyid.metrics.protocols.report import shown_value

        return shown_value(summary.protocol, run.scores, key)
    return getattr(run, key)


def metrics_frame(summary: EvalSummary) -> Any:
    """One row per run: ``Method`` and the requested metrics as floats (NaN where missing), in the paper's order."""
    pd = _pandas()
    columns = _columns(summary)
    data = {"Method": [run.name for run in summary.runs]}
    for key, _, _, _ in columns:
        data[key] = [_value(summary, run, key) for run in summary.runs]
    return pd.DataFrame(data, columns=["Method", *(key for key, _, _, _ in columns)]).astype(
        {key: "float64" for key, _, _, _ in columns}
    )


def best_cells(summary: EvalSummary) -> dict[str, set[int]]:
    """For each metric, the indices of the runs holding the best value as displayed (ties all count). Only marked
    when at least two runs have a value."""
    frame = metrics_frame(summary)
    marks: dict[str, set[int]] = {}
    for key, _, higher, decimals in _columns(summary):
        shown = frame[key].round(decimals).dropna()
        if len(shown) < 2:
            marks[key] = set()
            continue
        best = shown.max() if higher else shown.min()
        marks[key] = set(shown.index[shown == best])
    return marks


def display_frame(summary: EvalSummary, bold: Callable[[str], str] = str, missing: str = "–") -> Any:
    """The table as shown: ``Method`` and one text column per metric headed ``FID ↓`` …, values rounded as in the
    paper, the best per column passed through ``bold``, missing values as ``missing``."""
    frame = metrics_frame(summary)
    marks = best_cells(summary)
    shown = frame[["Method"]].copy()
    for key, title, up, decimals in _columns(summary):
        shown[f"{title} {'↑' if up else '↓'}"] = [
            missing if value != value else bold(f"{value:.{decimals}f}") if i in marks[key] else f"{value:.{decimals}f}"
            for i, value in enumerate(frame[key])
        ]
    return shown


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "?"


def model_notes(summary: EvalSummary) -> list[str]:
    """One line per model / setting behind the numbers (printed under every table)."""
    if summary.protocol != "fantasyid":
        from fantasyid.metrics.protocols.report import protocol_notes

        return protocol_notes(summary)
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
    """``table.md``: the paper's layout in Markdown (``DataFrame.to_markdown``), best values in bold, the models
    used underneath."""
    shown = display_frame(summary, bold=lambda text: f"**{text}**")
    shown["Method"] = shown["Method"].str.replace("|", "\\|", regex=False)  # a pipe would end the cell
    table = shown.to_markdown(
        index=False, tablefmt="pipe", colalign=("left",) + ("center",) * (shown.shape[1] - 1), disable_numparse=True
    )
    notes = [f"- {line}" for line in model_notes(summary)]
    warnings = [f"- ⚠ {run.name}: {w}" for run in summary.runs for w in run.warnings]
    body = [table, "", "Best value per column in bold.", "", *notes]
    if summary.protocol != "fantasyid":
        from fantasyid.metrics.protocols.report import baselines_markdown

        body += baselines_markdown(summary.protocol)
    if warnings:
        body += ["", "Warnings:", "", *warnings]
    return "\n".join(body) + "\n"


#: LaTeX for the characters that need it. pandas' own ``escape="latex"`` covers the ASCII ones only and leaves
#: ×, …, – and → (which pdflatex rejects without extra packages), so names and captions go through this map.
_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "×": r"$\times$", "…": r"\ldots{}", "–": "--", "→": r"$\rightarrow$",
}


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(summary: EvalSummary) -> str:
    """``table.tex``: a booktabs table in the paper's layout (best in bold), the models in the caption; written by
    pandas' ``Styler.to_latex``."""
    columns = _columns(summary)
    marks = best_cells(summary)
    frame = metrics_frame(summary)
    headers = {key: f"{title} $\\{'uparrow' if up else 'downarrow'}$" for key, title, up, _ in columns}
    styler = frame.rename(columns=headers).style.hide(axis="index")
    styler = styler.format(tex_escape, subset=["Method"])
    for key, _, _, decimals in columns:
        styler = styler.format(f"{{:.{decimals}f}}", subset=[headers[key]], na_rep="--")
        bold = ["textbf:--rwrap;" if i in marks[key] else "" for i in range(len(frame))]
        styler = styler.apply(lambda _, bold=bold: bold, subset=[headers[key]])
    caption = " ".join(tex_escape(line.replace("`", "")) for line in model_notes(summary))
    latex = styler.to_latex(
        column_format="l" + "c" * len(columns),
        position="t",
        position_float="centering",
        hrules=True,
        label="tab:fantasyid-eval",
        caption=f"Quantitative evaluation. The best results are highlighted in bold. {caption}",
        environment="table",
    )
    if summary.protocol != "fantasyid":
        from fantasyid.metrics.protocols.report import baselines_latex

        latex += baselines_latex(summary.protocol, tex_escape)
    return "% Generated by fantasyid eval; needs \\usepackage{booktabs}.\n" + latex


PER_VIDEO_FIELDS = (
    "run", "video", "status", "message", "reference", "frames", "frames_without_face", "frames_multiple_faces",
    "rs", "ifs", "fm", "ifs_pairs", "fm_pairs", "pairs_skipped", "fid_crops",
)


def per_video_frame(summary: EvalSummary) -> Any:
    """One row per video with its own RS, IFS, FM (another protocol: its metrics) and frame counts."""
    pd = _pandas()
    if summary.protocol != "fantasyid":
        keys = [key for key, _, _, _ in _columns(summary) if key != "total"]
        rows = [{**video.to_dict(), **{key: video.scores.get(key) for key in keys}}
                for run in summary.runs for video in run.videos]
        return pd.DataFrame(rows, columns=[*PER_VIDEO_FIELDS[:8], *keys])
    rows = [video.to_dict() for run in summary.runs for video in run.videos]
    return pd.DataFrame(rows, columns=list(PER_VIDEO_FIELDS))


def per_video_csv(summary: EvalSummary) -> str:
    """``per_video.csv``: :func:`per_video_frame` at full precision (missing values empty)."""
    return per_video_frame(summary).to_csv(index=False, lineterminator="\n")


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
    """The table for the terminal (Rich), from :func:`display_frame`, with the counts and the models used in the
    caption."""
    from rich.markup import escape
    from rich.table import Table

    shown = display_frame(summary, bold=lambda text: f"[bold green]{text}[/]")
    title = "fantasyid eval" + (f" --protocol {summary.protocol}" if summary.protocol != "fantasyid" else "")
    table = Table(title=title, caption="\n".join(model_notes(summary)), caption_justify="left")
    table.add_column("Method", style="bold")
    for title in shown.columns[1:]:
        table.add_column(title, justify="right")
    table.add_column("videos", justify="right")
    table.add_column("frames", justify="right")
    table.add_column("no face", justify="right")
    for run, cells in zip(summary.runs, shown.itertuples(index=False)):
        unreadable = f" ({run.videos_unreadable} unreadable)" if run.videos_unreadable else ""
        table.add_row(escape(run.name), *cells[1:], f"{len(run.videos)}{unreadable}", str(run.frames),
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
