"""``fantasyid app``: a local web page to make a video from a photo, edit the 3D face and evaluate the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import console, err_console
from ..options import Deca, Device, Dtype, Flame, Fps, Frames, Height, Width


def app_command(
    model: Annotated[str, typer.Option(help="released | tiny | PATH to a checkpoint folder.")] = "released",
    host: Annotated[
        str, typer.Option(help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: the network).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 7860,
    share: Annotated[bool, typer.Option(help="Also open a public Gradio share link (off by default).")] = False,
    out: Annotated[Path, typer.Option(help="Folder for every video, sidecar, shape and evaluation.")] = Path(
        "app_outputs"
    ),
    frames: Frames = None,
    height: Height = None,
    width: Width = None,
    fps: Fps = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    face_root: Annotated[
        Path | None, typer.Option(help="Model root holding models/<pack>/ (default: $FANTASYID_HOME).")
    ] = None,
    flame: Flame = None,
    deca: Deca = None,
    memory: Annotated[
        str | None,
        typer.Option(help="GPU memory to fit in, as in generate: auto, full, GB (24, 16, 12, 8) or a plan name.",
                     show_default="auto"),
    ] = None,
) -> None:
    """Serve a local web page: upload a photo, write a prompt, shape the face, generate, evaluate.

    One generation runs at a time; other visitors wait and see their place in the queue. Every file goes to --out,
    the same files as `fantasyid generate` writes (so `fantasyid eval OUT` works on it).

    Examples:

      fantasyid app --model tiny                    # a dry run on a CPU: http://127.0.0.1:7860

      fantasyid app --port 8080 --out runs/app      # the released model

      fantasyid app --host 0.0.0.0                  # reachable from the network (no login: trusted networks only)
    """
    from fantasyid.io import check_port

    check_port(host, port)  # before the model loads and before "serving on"
    from fantasyid.app import AppBackend, AppConfig
    from fantasyid.app.ui import require_gradio, launch_app

    require_gradio()  # the 'app' extra is installed: checked before the model loads
    config = AppConfig(model=model, out=out, device=device, dtype=dtype, face_root=face_root, frames=frames,
                       height=height, width=width, fps=fps, flame=flame, deca=deca,
                       memory=memory)  # fmt: skip
    with err_console.status(f"loading the {model} model…"):
        backend = AppBackend(config)
    console.print(f"serving on http://{host}:{port} (Ctrl-C stops) → files in {out}/", highlight=False)
    launch_app(backend, host=host, port=port, share=share, block=True)
