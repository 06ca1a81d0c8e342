"""Validation during training: videos for held-out references, scored with ``fantasyid.metrics``.

Every ``validation.every`` steps the main process generates one video per held-out clip (``data.holdout``; the
first ``validation.references`` of them) from its most frontal view (``views[0]``: crop as frame 0 and EVA-CLIP input,
its FLAME vertices) and its caption, with the weights being trained, and scores them (RS, IFS, FM; the tiny model's
``buffalo_sc`` pack offline). Videos, references and the metric tables go to ``OUTPUT/validation/step-N/``; one line
per validation is appended to ``OUTPUT/validation.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

from ..data.dataset import ClipDataset
from ..data.manifest import resolve_asset
from ..errors import FantasyIDError
from ..io import write_video
from .config import TrainConfig

__all__ = ["run_validation"]


@torch.no_grad()
def run_validation(components, accelerator, config: TrainConfig, step: int, console=None) -> dict | None:
    """Generate and score the validation videos (main process; the others wait). Returns the log record."""
    from ..metrics.evaluate import evaluate_runs
    from ..pipelines.pipeline_fantasyid import IdentityInputs

    accelerator.wait_for_everyone()
    record = None
    if accelerator.is_main_process:
        d, v = config.data, config.validation
        module = accelerator.unwrap_model(components.module)
        module.eval()
        folder = Path(config.output_dir) / "validation" / f"step-{step}"
        refs = folder / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        dataset = ClipDataset(d.manifest, frames=d.frames, height=d.height, width=d.width, fps=d.fps, views=1,
                              clip_image_size=components.image_encoder.config.image_size,
                              num_vertices=components.num_vertices, seed=config.train.seed, holdout=d.holdout,
                              reader=d.reader, split="holdout",
                              vertices=config.model.identity and config.model.vertex_tokens)  # fmt: skip
        pipe = components.pipe
        device = accelerator.device
        for row in dataset.rows[: v.references]:
            crop = PIL.Image.open(resolve_asset(dataset.manifest, row["views"][0]["crop"])).convert("RGB")
            item = dataset.load(row, 0)
            cache = None
            if module.identity is not None:
                hidden = components.image_encoder(item["clip_pixels"][None].to(device)).hidden_states
                vertices = item["vertices"][None].to(device) if "vertices" in item else None  # none for w/o FV
                tokens = module.identity(list(hidden), vertices)  # (1, N_id, D)
                cache = module.transformer.prepare_identity(tokens)
            video = pipe(
                image=crop, prompt=row["caption"], height=d.height, width=d.width, num_frames=d.frames,
                num_inference_steps=v.steps, guidance_scale=v.guidance,
                generator=torch.Generator().manual_seed(config.train.seed),
                use_identity=cache is not None, identity=IdentityInputs(face_image=crop, vertices=item.get("vertices")),
                identity_cache=cache, output_type="np",
            ).frames[0]  # (F, H, W, 3) in [0, 1]
            name = str(row["clip_id"])
            # the reference for RS: the crop with a margin (detectors miss faces that fill the whole image)
            PIL.ImageOps.expand(crop, border=crop.width // 2, fill=(127, 127, 127)).save(refs / f"{name}.png")
            write_video(folder / f"{name}.mp4", np.asarray(video), fps=int(round(d.fps)))
        module.train()
        pack = "buffalo_sc" if components.info.get("face_pack") == "buffalo_sc" else "antelopev2"
        record = {"step": step, "videos": v.references, "face_pack": pack}
        try:
            summary = evaluate_runs([folder], "rs,ifs,fm", refs_dir=refs, face_pack=pack, out_dir=folder / "metrics")
        except FantasyIDError as exc:  # a metric that cannot be computed must not stop a long run
            record.update(rs=None, ifs=None, fm=None, error=exc.message)
        else:
            run = summary.runs[0]
            record.update(rs=run.rs, ifs=run.ifs, fm=run.fm, frames_without_face=run.frames_without_face)
        with open(Path(config.output_dir) / "validation.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if console is not None:
            console.print(f"validation at step {step}: RS {record['rs']}, IFS {record['ifs']}, FM {record['fm']}"
                          f"{' (' + record['error'] + ')' if 'error' in record else ''} → {folder}")
        if config.log.tensorboard:
            accelerator.log({f"val/{k}": record[k] for k in ("rs", "ifs", "fm") if record[k] is not None}, step=step)
    accelerator.wait_for_everyone()
    return record
