"""Table writers on hand-made summaries (no models): best-per-column marks, missing values, escaping, atomic files."""

from __future__ import annotations

from pathlib import Path

import pytest

from fantasyid.metrics.evaluate import EvalSummary, RunResult, VideoResult
from fantasyid.metrics.tables import (
    atomic_write_text,
    best_cells,
    latex_table,
    markdown_table,
    per_video_csv,
    rich_table,
    tex_escape,
    write_outputs,
)


def _summary(metrics=("fid", "rs", "ifs", "fm")) -> EvalSummary:
    # the paper's Table 2
    rows = [
        ("ID-Animator", 138.27, 0.35, 0.98, 0.18),
        ("ConsisID", 149.70, 0.47, 0.93, 0.54),
        ("w/o_FA & more", None, 0.57, 0.95, 0.61),
        ("Ours", 142.50, 0.57, 0.95, 0.61),
    ]
    runs = []
    for name, fid, rs, ifs, fm in rows:
        run = RunResult(name, Path(name), rs=rs, ifs=ifs, fid=fid, fm=fm)
        run.videos = [VideoResult(name, Path(f"{name}.mp4"), frames=49, rs=rs, ifs=ifs, fm=fm)]
        runs.append(run)
    provenance = {
        "fantasyid_version": "0.0.test",
        "face_pack": {"pack": "buffalo_sc", "det_size": [640, 640]},
        "inception": {"sha256": "ab" * 32},
        "flow": {"method": "farneback", "size": 128},
    }
    return EvalSummary(tuple(metrics), runs, provenance, {"frames": "all"})


def test_best_per_column_lower_fid_higher_rest_ties_all_marked():
    marks = best_cells(_summary())
    assert marks["fid"] == {0}
    assert marks["rs"] == {2, 3} and marks["fm"] == {2, 3}
    assert marks["ifs"] == {0}


def test_single_run_is_not_marked():
    summary = _summary()
    summary.runs = summary.runs[:1]
    assert all(not cells for cells in best_cells(summary).values())


def test_markdown_layout():
    md = markdown_table(_summary())
    lines = md.splitlines()
    assert lines[0] == "| Method | FID ↓ | RS ↑ | IFS ↑ | FM ↑ |"
    assert lines[2] == "| ID-Animator | **138.27** | 0.350 | **0.980** | 0.180 |"
    assert lines[4].startswith("| w/o_FA & more | – |")
    assert "buffalo_sc" in md and "farneback" in md and "abababababab" in md


def test_only_requested_columns():
    md = markdown_table(_summary(metrics=("rs", "fm")))
    assert md.splitlines()[0] == "| Method | RS ↑ | FM ↑ |"


def test_latex():
    tex = latex_table(_summary())
    assert "w/o\\_FA \\& more & -- & \\textbf{0.570}" in tex
    assert "\\textbf{138.27}" in tex
    assert tex_escape("a_b%c#d$e") == "a\\_b\\%c\\#d\\$e"


def test_csv_and_rich():
    text = per_video_csv(_summary())
    assert text.splitlines()[0].startswith("run,video,status,message,reference,frames,frames_without_face")
    assert len(text.splitlines()) == 5
    assert rich_table(_summary()).row_count == 4


def test_write_outputs_and_plot(tmp_path):
    files = write_outputs(_summary(), tmp_path / "out")
    assert set(files) == {"summary", "per_video", "table_md", "table_tex", "plot"}
    assert files["plot"].read_bytes()[:4] == b"\x89PNG"
    # no FM: there is no motion axis, so no plot
    files = write_outputs(_summary(metrics=("fid", "rs")), tmp_path / "no_fm")
    assert "plot" not in files


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "old")

    class Boom(Exception):
        """The writer's failure."""

    from fantasyid.metrics.tables import atomic_write

    def failing(tmp: Path) -> None:
        tmp.write_text("half")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
