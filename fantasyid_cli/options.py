"""Options shared by several commands, declared once (Typer ``Annotated`` aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

Seed = Annotated[int, typer.Option(help="Seed (of items that give none, in a batch).")]
Steps = Annotated[
    int | None, typer.Option(help="Denoising steps.", show_default="50; tiny: 4; a saved model: its own")
]
Guidance = Annotated[
    float | None,
    typer.Option(help="Classifier-free guidance scale (text only).", show_default="6; a saved model: its own"),
]
Frames = Annotated[int | None, typer.Option(help="Frames, 1 + a multiple of 8.", show_default="49; tiny: 9")]
Height = Annotated[
    int | None, typer.Option(help="Height in pixels, a multiple of 16 (the release: 480 only).", show_default="480; tiny: 64")
]
Width = Annotated[
    int | None, typer.Option(help="Width in pixels, a multiple of 16 (the release: 720 only).", show_default="720; tiny: 64")
]
Fps = Annotated[
    int | None, typer.Option(help="Frames per second of the mp4.", show_default="8; a saved model: its own")
]
Dtype = Annotated[Literal["auto", "bf16", "fp16", "fp32"], typer.Option(help="auto: bf16 on GPU, fp32 on CPU.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")]
FacePack = Annotated[str, typer.Option(help="insightface pack for the released model.")]
Flame = Annotated[Path | None, typer.Option(help="FLAME 2020 generic_model.pkl (licensed).")]
Deca = Annotated[Path | None, typer.Option(help="DECA deca_model.tar (licensed).")]
