"""What ``fantasyid edit-shape`` runs: a face (photo → DECA → FLAME, or a saved ``SHAPE.npz``) → trait edit →
``SHAPE.npz``, and optionally a mesh file and a preview PNG.

Models (``model``):

* ``tiny``: the tiny model's FLAME-format sphere (:func:`fantasyid.face.shape.synthetic_flame_model`), and
  for a photo the very DECA encoder (random weights) and face detector (buffalo_sc) that ``generate --model tiny``
  uses, taken from :func:`~fantasyid.pipelines.loading.load_pipeline` so that an unedited shape is exactly what
  ``generate`` would have estimated.
* ``released`` or a checkpoint folder: the licensed FLAME ``generic_model.pkl`` and DECA ``deca_model.tar``
  (``--flame`` / ``--deca`` or ``$FANTASYID_HOME/deca/``, see :mod:`fantasyid.hub`); faces are found with the
  checkpoint's face pack (``face_encoder/``) or ``$FANTASYID_HOME``. Traits use FLAME's landmark embedding
  (``--landmarks``, else ``landmark_embedding.npy`` beside the FLAME file or in ``$FANTASYID_HOME/deca/``), and the
  geometric fallback with a note when there is none.

A shape file is decoded again with the chosen FLAME model and must reproduce its stored vertices: a file made with
another model is refused instead of being edited silently wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fantasyid.errors import InputError, NoFaceError
from fantasyid.io import check_output_file

from .edit import DEFAULT_BOUND, DEFAULT_MAX_CHANGE, EditResult, ShapeEditor, ShapeState, TraitEdit
from .files import MESH_SUFFIXES, export_mesh, read_shape_file, save_shape_file
from .render import render_preview

__all__ = ["EditShapeRequest", "EditShapeOutcome", "run_edit_shape"]

#: A shape file's vertices may differ from its re-decoded codes by this much (metres) before it is refused.
SHAPE_FILE_TOLERANCE = 1e-4


@dataclass
class EditShapeRequest:
    """Everything ``fantasyid edit-shape`` needs; checked on construction (one-line errors naming the option)."""

    edits: list[TraitEdit]
    out: Path  #: SHAPE.npz to write
    ref: Path | None = None  #: the photo (DECA → FLAME), unless ``shape`` is given
    shape: Path | None = None  #: an earlier SHAPE.npz to edit (wins over ``ref`` for the 3D face)
    mesh: Path | None = None  #: .obj or .ply of the edited face
    preview: Path | None = None  #: .png of the original and edited face, front and side
    mode: str | None = None  #: paper | released; default: the shape file's, else released
    model: str | None = None  #: tiny | released | PATH; default: the shape file's, else released
    flame: Path | None = None
    deca: Path | None = None
    landmarks: Path | None = None  #: FLAME's landmark_embedding.npy (or .npz)
    face_pack: str = "antelopev2"
    face_root: Path | None = None
    device: str = "cpu"
    bound: float = DEFAULT_BOUND
    max_change: float = DEFAULT_MAX_CHANGE
    #: an already loaded pipeline of ``model`` (:class:`~fantasyid.pipelines.loading.LoadedPipeline`) whose DECA,
    #: FLAME and face detector are used instead of loading them again (the web app edits many times per load)
    loaded: Any = None

    def __post_init__(self) -> None:
        if self.ref is None and self.shape is None:
            raise InputError("give the face: --ref PHOTO or --shape SHAPE.npz")
        if Path(self.out).suffix.lower() != ".npz":
            raise InputError(f"--out must be a .npz file, got '{self.out}'")
        if self.mesh is not None and Path(self.mesh).suffix.lower() not in MESH_SUFFIXES:
            raise InputError(f"--out-mesh must end in .obj or .ply, got '{self.mesh}'")
        if self.preview is not None and Path(self.preview).suffix.lower() != ".png":
            raise InputError(f"--preview must be a .png file, got '{self.preview}'")
        if self.mode not in (None, "paper", "released"):
            raise InputError(f"unknown --mode '{self.mode}'; use paper or released")
        if not self.bound > 0 or not self.max_change > 0:
            raise InputError(f"--bound and --max-change must be positive, got {self.bound} and {self.max_change}")
        for option, path in (("--ref", self.ref), ("--shape", self.shape), ("--landmarks", self.landmarks)):
            if path is not None and not Path(path).is_file():
                raise InputError(f"{option} '{path}' does not exist")


@dataclass
class EditShapeOutcome:
    """The edit and the files written."""

    result: EditResult
    model: str
    source: str
    written: dict[str, Path] = field(default_factory=dict)  #: "shape", "mesh", "preview" → path
    notes: list[str] = field(default_factory=list)
    #: the tiny pipeline loaded to read the photo, for ``--generate`` to reuse instead of loading it again
    pipeline: Any = None


@dataclass
class _Tools:
    editor: ShapeEditor
    deca_flame: Any = None  #: fantasyid.face.deca.DecaFlame, when a photo is read
    analyzer: Any = None  #: fantasyid.face.FaceAnalyzer, when a photo is read
    pipeline: Any = None  #: fantasyid.pipelines.loading.LoadedPipeline, when one was loaded for the photo


def _face_root(model: str, explicit: Path | None) -> Path | None:
    """The face-pack root: explicit, else a released checkpoint's ``face_encoder/`` when it is on disk."""
    if explicit is not None:
        return explicit
    from fantasyid.hub import RELEASED_WEIGHTS, resolve

    if model == "released":
        spec = next(spec for spec in RELEASED_WEIGHTS if spec.key == "fantasyid")
        folder = resolve(spec, None).path
    else:
        folder = Path(model)
    if folder is not None and (folder / "face_encoder").is_dir():
        return folder / "face_encoder"
    return None


def _default_landmarks(flame_path: Path) -> Path | None:
    from fantasyid.hub import fantasyid_home

    name = "landmark_embedding.npy"
    for candidate in (flame_path.parent / name, fantasyid_home() / "deca" / name):
        if candidate.is_file():
            return candidate
    return None


def _build_tools(request: EditShapeRequest, model: str, device: str, need_photo: bool, notes: list[str]) -> _Tools:
    """FLAME (+ DECA and a face detector for a photo) of ``model``, and the editor on that FLAME."""
    landmarks = None if request.landmarks is None else str(request.landmarks)
    limits = {"bound": request.bound, "max_change": request.max_change}
    estimator = getattr(request.loaded.pipe, "shape_estimator", None) if request.loaded is not None else None
    if estimator is not None:  # reuse the loaded pipeline's DECA + FLAME and face detector
        if landmarks is None and model != "tiny":
            from fantasyid.hub import RELEASED_WEIGHTS, resolve

            flame_path = resolve(next(s for s in RELEASED_WEIGHTS if s.key == "flame"), request.flame).path
            found = None if flame_path is None else _default_landmarks(Path(flame_path))
            landmarks = None if found is None else str(found)
        deca_flame, analyzer = estimator.deca_flame, request.loaded.pipe.face_analyzer
        return _Tools(ShapeEditor(deca_flame.flame, landmarks=landmarks, **limits), deca_flame, analyzer, request.loaded)
    if model == "tiny":
        from fantasyid.face.flame import FlameLayer
        from fantasyid.face.shape import synthetic_flame_model
        from fantasyid.pipelines.loading import load_pipeline

        if need_photo:
            loaded = load_pipeline("tiny", device=device,
                                   face_root=None if request.face_root is None else str(request.face_root))  # fmt: skip
            estimator = loaded.pipe.shape_estimator
            deca_flame, analyzer = estimator.deca_flame, loaded.pipe.face_analyzer
            notes.append("tiny model: DECA has random weights, so the shape read from the photo is arbitrary")
            return _Tools(ShapeEditor(deca_flame.flame, landmarks=landmarks, **limits), deca_flame, analyzer, loaded)
        flame = FlameLayer(synthetic_flame_model()).to(device)
        return _Tools(ShapeEditor(flame, landmarks=landmarks, **limits))

    from fantasyid.face.flame import FlameLayer, load_flame_model
    from fantasyid.hub import RELEASED_WEIGHTS, resolve

    specs = {spec.key: spec for spec in RELEASED_WEIGHTS}
    flame_path = resolve(specs["flame"], request.flame).require()
    flame = FlameLayer(load_flame_model(flame_path)).to(device).eval()
    if landmarks is None:
        found = _default_landmarks(flame_path)
        landmarks = None if found is None else str(found)
    if landmarks is None:
        notes.append("no FLAME landmark embedding found (landmark_embedding.npy): traits use geometric landmarks; "
                     "pass --landmarks for the exact ones")  # fmt: skip
    editor = ShapeEditor(flame, landmarks=landmarks, **limits)
    if not need_photo:
        return _Tools(editor)
    from fantasyid.face import FaceAnalyzer
    from fantasyid.face.deca import DecaFlame, load_deca_encoder

    encoder = load_deca_encoder(resolve(specs["deca"], request.deca).require(), device=device)
    analyzer = FaceAnalyzer(pack=request.face_pack, root=_face_root(model, request.face_root), recognition=False)
    return _Tools(editor, DecaFlame(encoder, flame).eval(), analyzer)


def _state_from_photo(tools: _Tools, path: Path, mode: str) -> ShapeState:
    """DECA's codes for the largest face of the photo, decoded in ``mode``."""
    import torch

    from fantasyid.face import load_image

    image = load_image(path)
    faces = tools.analyzer.detect(image, crop_512=False)
    if not faces:
        raise NoFaceError(f"no face found in '{path}'", hint="use a photo with one clearly visible, frontal face")
    inputs = tools.deca_flame.prepare(image, mode=mode, bbox=np.asarray(faces[0].bbox))  # (1, 3, 224, 224)
    with torch.no_grad():
        codes = tools.deca_flame.encoder(inputs)
    return tools.editor.state(
        codes.shape[0].cpu().numpy(), codes.exp[0].cpu().numpy(), codes.pose[0].cpu().numpy(), mode=mode
    )


def _state_from_file(editor: ShapeEditor, saved, mode: str | None) -> ShapeState:
    """The saved codes, checked against this FLAME model; the stored vertices are kept as they are."""
    if mode is not None and mode != saved.mode:
        raise InputError(f"'{saved.path.name}' is a {saved.mode}-mode shape; it cannot be edited as --mode {mode}",
                         hint="drop --mode, or start again from the photo with --ref")  # fmt: skip
    if saved.betas.size != editor.n_shape:
        raise InputError(f"'{saved.path.name}' has {saved.betas.size} shape coefficients; this FLAME model uses "
                         f"{editor.n_shape}", hint="pass the --model / --flame the file was made with")  # fmt: skip
    expression = saved.expression if saved.expression.size else None
    state = editor.state(saved.betas, expression, saved.pose, mode=saved.mode)
    if state.vertices.shape != saved.vertices.shape:
        raise InputError(
            f"'{saved.path.name}' has {len(saved.vertices)} vertices; this FLAME model has {len(state.vertices)}",
            hint="pass the --model / --flame the file was made with",
        )
    difference = float(np.abs(state.vertices - saved.vertices).max())
    if difference > SHAPE_FILE_TOLERANCE:
        raise InputError(f"'{saved.path.name}' was made with another FLAME model (its vertices are up to "
                         f"{1000 * difference:.2f} mm from its own codes decoded here)",
                         hint="pass the --model / --flame the file was made with")  # fmt: skip
    state.vertices = saved.vertices.copy()
    return state


def _device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; other names as given (checked by torch)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return str(torch.device(name))
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r}", hint="e.g. cpu, cuda, cuda:1") from exc


def run_edit_shape(request: EditShapeRequest) -> EditShapeOutcome:
    """Read the face, apply the edits, write ``SHAPE.npz`` (and the mesh and preview when asked)."""
    notes: list[str] = []
    for option, path in (("--out", request.out), ("--out-mesh", request.mesh), ("--preview", request.preview)):
        if path is not None:  # one line now, not a traceback after DECA ran
            check_output_file(path, option)
    device = _device(request.device)
    # 1. where the face comes from, and which model decodes it
    saved = read_shape_file(request.shape) if request.shape is not None else None
    model = request.model or (saved.model if saved is not None and saved.model else "released")
    if saved is not None and saved.model and request.model and request.model != saved.model:
        notes.append(f"{saved.path.name} was written with --model {saved.model}; decoding it with {request.model}")
    mode = request.mode or (saved.mode if saved is not None else "released")

    # 2. FLAME, DECA and the editor
    tools = _build_tools(request, model, device, need_photo=saved is None, notes=notes)

    # 3. the input shape
    if saved is not None:
        state, source = _state_from_file(tools.editor, saved, request.mode), str(Path(request.shape).resolve())
    else:
        state, source = _state_from_photo(tools, Path(request.ref), mode), str(Path(request.ref).resolve())

    # 4. the edit
    result = tools.editor.edit(state, request.edits)

    # 5. the files
    faces = tools.editor.faces
    outcome = EditShapeOutcome(result, model, source, notes=notes, pipeline=tools.pipeline)
    outcome.written["shape"] = save_shape_file(request.out, result, faces, model=model, source=source)
    if request.mesh is not None:
        outcome.written["mesh"] = export_mesh(request.mesh, result.after.vertices, faces)
    if request.preview is not None:
        outcome.written["preview"] = render_preview(request.preview, result, faces, weights=tools.editor.meter.weights)
    return outcome

