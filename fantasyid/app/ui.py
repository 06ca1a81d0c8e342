"""The Gradio page of ``fantasyid app`` over :class:`~fantasyid.app.backend.AppBackend`.

Generate tab: reference photo (the faces found, with their boxes; the used one green), prompt, seed, steps,
guidance, shape sliders for the edit-shape traits (in prior standard deviations) with the FLAME preview, Generate
(progress per denoising step, the mp4 and its sidecar). Evaluate tab: RS / IFS / FM of the last video against its
reference. Errors show the command line's ``error: …`` / ``hint: …`` lines in the page; the app keeps serving.
Generations and shape edits share one queue slot (``concurrency_id="model"``): one at a time, the others wait and
see their place in the queue.
"""

from __future__ import annotations

import os
from typing import Any

from fantasyid.errors import FantasyIDError

from .backend import SLIDER_RANGE, AppBackend, error_text

__all__ = ["build_app", "launch_app", "require_gradio"]

#: Gradio's own limit on uploads (bigger files are refused before they reach the app).
GRADIO_MAX_FILE_SIZE = "200mb"


def require_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no request leaves the machine at start-up
    from fantasyid.errors import require

    return require("gradio", "app", "the web app")


def _shown(text: str) -> str:
    """Markdown that shows ``text``'s lines as lines."""
    return "  \n".join(text.splitlines())


def build_app(backend: AppBackend) -> Any:
    """The page (a ``gradio.Blocks``), not yet launched."""
    gr = require_gradio()
    from fantasyid.editing import TRAITS

    info = backend.loaded.info
    note = f"\n\n**Note:** {info['note']}" if info.get("random_weights") else ""
    default_steps = 4 if backend.config.model == "tiny" else 50

    with gr.Blocks(title="FantasyID") as demo:
        gr.Markdown(
            f"# FantasyID\nIdentity-preserving video from one photo · model **{info.get('model', '?')}** on "
            f"`{info.get('device', '?')}` · files go to `{backend.out}` (same files as `fantasyid generate`). "
            f"One generation runs at a time; others wait and see their place in the queue.{note}"
        )
        last_video = gr.State(None)
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    photo = gr.File(label="Reference photo (one clearly visible face)", type="filepath",
                                    elem_id="photo")  # fmt: skip
                    face = gr.Image(label="Faces found", interactive=False, height=260, elem_id="face")
                    face_status = gr.Markdown(elem_id="face-status")
                    status = gr.Markdown(elem_id="status")
                    video = gr.Video(label="Video", interactive=False, elem_id="video")
                with gr.Column():
                    prompt = gr.Textbox(label="Prompt", value="a person smiles at the camera", lines=2,
                                        elem_id="prompt")  # fmt: skip
                    with gr.Row():
                        seed = gr.Number(value=42, precision=0, label="Seed", elem_id="seed")
                        steps = gr.Number(value=default_steps, precision=0, minimum=1, label="Steps", elem_id="steps")
                        guidance = gr.Number(value=6.0, label="Guidance", elem_id="guidance")
                    with gr.Accordion("Face shape (3D, FLAME)", open=False):
                        sliders = [
                            gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0.0, step=0.1,
                                      label=f"{trait.name} (sd; {trait.description})",
                                      elem_id=f"trait-{trait.name}")  # fmt: skip
                            for trait in TRAITS
                        ]
                        preview = gr.Image(label="FLAME preview: original / edited", interactive=False, height=420,
                                           elem_id="preview")  # fmt: skip
                        shape_status = gr.Markdown(elem_id="shape-status")
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
            sidecar = gr.JSON(label="Sidecar (as fantasyid generate writes it)", elem_id="sidecar")
        with gr.Tab("Evaluate"):
            gr.Markdown("RS, IFS and FM of the last video against its reference photo, as `fantasyid eval` computes "
                        "them (the sidecar names the reference).")  # fmt: skip
            evaluate = gr.Button("Evaluate the last video", elem_id="evaluate")
            metrics = gr.Markdown(elem_id="metrics")

        def on_photo(upload):
            if upload is None:
                return None, ""
            try:
                check = backend.check_photo(upload)
            except FantasyIDError as exc:
                return None, _shown(error_text(exc))
            return check.annotated, check.message

        def on_shape(upload, *values):
            try:
                _, picture, summary = backend.edit_shape(upload, _traits(values))
            except FantasyIDError as exc:
                return None, _shown(error_text(exc))
            return str(picture), _shown(summary)

        def on_generate(progress=gr.Progress(), *inputs):  # Gradio finds Progress among the leading parameters
            upload, text, seed_value, steps_value, scale, *values = inputs

            def step(done: int, total: int) -> None:
                progress((done, total), desc="denoising", unit="steps")

            try:
                traits = _traits(values)
                shape = backend.edit_shape(upload, traits)[0] if any(traits.values()) else None
                made = backend.generate(upload, text, seed=seed_value, steps=steps_value, guidance=scale,
                                        shape=shape, step_callback=step)  # fmt: skip
            except FantasyIDError as exc:
                return None, None, _shown(error_text(exc)), None
            lines = [f"made {made.video.name} in {made.seconds:.1f} s", *(f"note: {n}" for n in made.notes)]
            return str(made.video), made.sidecar, _shown("\n".join(lines)), str(made.video)

        def on_evaluate(video_path):
            try:
                table, _ = backend.evaluate(video_path)
            except FantasyIDError as exc:
                return _shown(error_text(exc))
            return table

        photo.change(on_photo, [photo], [face, face_status])
        for slider in sliders:
            slider.release(on_shape, [photo, *sliders], [preview, shape_status], concurrency_id="model")
        button.click(on_generate, [photo, prompt, seed, steps, guidance, *sliders],
                     [video, sidecar, status, last_video], concurrency_id="model")  # fmt: skip
        evaluate.click(on_evaluate, [last_video], [metrics])
    return demo


def _traits(values) -> dict[str, float]:
    from fantasyid.editing import TRAIT_NAMES

    return {name: float(value or 0.0) for name, value in zip(TRAIT_NAMES, values)}


def launch_app(
    backend: AppBackend, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False, block: bool = True
) -> Any:
    """Serve the page (one model call at a time) on ``host:port``; ``block=False`` returns the running ``Blocks``
    (stop it with ``.close()``)."""
    demo = build_app(backend)
    demo.queue(default_concurrency_limit=1)
    demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=not block,
        allowed_paths=[str(backend.out.resolve())], max_file_size=GRADIO_MAX_FILE_SIZE, ssr_mode=False,
        show_error=True, inbrowser=False,
    )  # fmt: skip
    return demo
