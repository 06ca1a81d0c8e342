"""The web app's actions on the library (no browser): the CLI's errors for bad input, shape edits through
edit-shape's code, videos and sidecars as `fantasyid generate` writes them, evaluation as `fantasyid eval`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from fantasyid.app import AppBackend, AppConfig, error_text
from fantasyid.errors import FantasyIDError, InputError, NoFaceError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def backend(tmp_path_factory, face_root):
    out = tmp_path_factory.mktemp("app_backend")
    return AppBackend(AppConfig(model="tiny", out=out, device="cpu", face_root=face_root))


def test_error_text_is_the_cli_lines():
    assert error_text(InputError("bad thing", hint="do this")) == "error: bad thing\nhint: do this"
    assert error_text(InputError("bad thing")) == "error: bad thing"


def test_bad_photos_give_one_line_errors(backend, tmp_path):
    with pytest.raises(InputError, match="no reference photo"):
        backend.check_photo(None)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a supported photo format") as info:
        backend.check_photo(text)
    assert "JPEG, PNG" in info.value.hint
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="is not an image"):
        backend.check_photo(fake)
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:  # sparse: 21 MB of nothing, refused by size before it is read
        handle.truncate(21 * 1024 * 1024)
    with pytest.raises(InputError, match="21.0 MB; the app takes photos up to 20 MB"):
        backend.check_photo(huge)
    sky = tmp_path / "sky.png"
    PIL.Image.new("RGB", (160, 120), (90, 140, 200)).save(sky)
    with pytest.raises(NoFaceError, match="no face found in 'sky.png'"):
        backend.check_photo(sky)


def test_faces_are_boxed_and_the_largest_is_used(backend, tmp_path):
    check = backend.check_photo(EXAMPLE)
    assert len(check.boxes) == 1 and check.message.startswith("1 face found")
    assert check.photo.parent == backend.out / "refs" and check.photo.read_bytes() == EXAMPLE.read_bytes()
    x1, y1, x2, y2 = (round(v) for v in check.boxes[0])
    assert tuple(check.annotated[y1, (x1 + x2) // 2]) == (40, 200, 60)  # the green box of the used face
    # two people: a smaller copy beside the original; the larger one is used
    photo = PIL.Image.open(EXAMPLE).convert("RGB")
    small = photo.resize((photo.width // 2, photo.height // 2))
    pair = PIL.Image.new("RGB", (photo.width + small.width, photo.height), (255, 255, 255))
    pair.paste(photo, (0, 0))
    pair.paste(small, (photo.width, 0))
    pair.save(tmp_path / "two.png")
    check = backend.check_photo(tmp_path / "two.png")
    assert len(check.boxes) == 2 and "the largest (green box, 1) is used" in check.message
    first, second = (np.array(box) for box in check.boxes)
    assert (first[2] - first[0]) > (second[2] - second[0]) and first[0] < photo.width


def test_shape_sliders_use_edit_shape(backend):
    from fantasyid.editing.files import read_shape_file

    shape, preview, summary = backend.edit_shape(EXAMPLE, {"face_width": 1.0, "chin_length": 0.0})
    assert shape is not None and shape.parent == backend.out / "shapes" and preview.suffix == ".png"
    saved = read_shape_file(shape)
    assert saved.model == "tiny" and saved.vertices.shape[-1] == 3
    assert PIL.Image.open(preview).size[0] > 300
    assert "face_width:" in summary and "moved by" in summary
    nothing, preview, _ = backend.edit_shape(EXAMPLE, {"face_width": 0.0})
    assert nothing is None and preview.is_file()  # no edit: the original is previewed, generation uses the photo
    with pytest.raises(InputError, match=r"face_width \+4 sd is out of range"):
        backend.edit_shape(EXAMPLE, {"face_width": 4.0})
    with pytest.raises(InputError, match="unknown trait ear_size"):
        backend.edit_shape(EXAMPLE, {"ear_size": 1.0})


def test_generate_writes_what_fantasyid_generate_writes(backend, face_root, tmp_path):
    steps_seen = []
    made = backend.generate(EXAMPLE, "a woman smiles", seed=3, steps=2, guidance=5.0,
                            step_callback=lambda done, total: steps_seen.append((done, total)))  # fmt: skip
    assert steps_seen == [(1, 2), (2, 2)]
    assert made.video.parent == backend.out and made.video.suffix == ".mp4"
    sidecar = json.loads(made.video.with_suffix(".json").read_text())
    assert sidecar == made.sidecar and sidecar["status"] == "done"
    assert sidecar["seed"] == 3 and sidecar["settings"]["steps"] == 2 and sidecar["settings"]["guidance"] == 5.0
    assert Path(sidecar["ref"]).read_bytes() == EXAMPLE.read_bytes() and sidecar["model"]["model"] == "tiny"
    assert sidecar["model"]["memory_plan"] == "full"  # --memory auto on a CPU
    assert made.notes and "random" in made.notes[0]

    # the same video from the command line's code path: identical frames
    from fantasyid.generation import GenerateSettings, GenerationItem, run_generation
    from rich.console import Console

    import imageio.v3 as iio

    cli_out = tmp_path / "cli"
    settings = GenerateSettings.for_model("tiny", steps=2, guidance=5.0, seed=3)
    run_generation([GenerationItem(ref=EXAMPLE, prompt="a woman smiles", seed=3)], settings, cli_out, model="tiny",
                   console=Console(quiet=True), loaded=backend.loaded)  # fmt: skip
    (cli_video,) = cli_out.glob("*.mp4")
    assert np.array_equal(iio.imread(made.video, plugin="pyav"), iio.imread(cli_video, plugin="pyav"))

    # with a shape edit: the sidecar names the shape file
    shape, _, _ = backend.edit_shape(EXAMPLE, {"jaw_width": -0.3})
    shaped = backend.generate(EXAMPLE, "a woman smiles", seed=3, steps=1, shape=shape)
    assert shaped.sidecar["model"]["shape_file"] == str(shape.resolve())

    for bad, match in (({"prompt": "  "}, "the prompt is empty"), ({"seed": "x"}, "whole numbers"),
                       ({"steps": 0}, "steps must be ≥ 1")):  # fmt: skip
        arguments = {"prompt": "a woman smiles", **bad}
        with pytest.raises(FantasyIDError, match=match):
            backend.generate(EXAMPLE, arguments.pop("prompt"), **arguments)


def test_memory_option_as_in_generate(tmp_path, face_root):
    with pytest.raises(InputError, match="no memory plan fits 1.0 GB"):  # refused before anything loads
        AppBackend(AppConfig(model="tiny", out=tmp_path, device="cpu", face_root=face_root, memory="1"))
    backend = AppBackend(AppConfig(model="tiny", out=tmp_path, device="cpu", face_root=face_root, memory="group-leaf"))
    assert backend.loaded.info["memory_plan"] == "group-leaf"
    made = backend.generate(EXAMPLE, "a woman smiles", seed=3, steps=1)
    assert made.sidecar["model"]["memory_plan"] == "group-leaf"


def test_evaluate_runs_fantasyid_eval(backend, tmp_path):
    with pytest.raises(InputError, match="no video to evaluate yet"):
        backend.evaluate(None)
    made = backend.generate(EXAMPLE, "a woman smiles", seed=1, steps=1)
    table, folder = backend.evaluate(made.video)
    assert "| RS |" in table and "| IFS |" in table and "| FM |" in table and "buffalo_sc" in table
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["metrics"] == ["rs", "ifs", "fm"] and summary["runs"][0]["videos"] == 1
    # `fantasyid eval` on the app's folder works unchanged: references from the sidecars
    from fantasyid.metrics import evaluate_runs

    run = tmp_path / "run"
    run.mkdir()
    for path in (made.video, made.video.with_suffix(".json")):
        shutil.copy(path, run / path.name)
    again = evaluate_runs([run], "rs,ifs,fm", face_root=backend.config.face_root)
    assert again.runs[0].videos[0].reference == Path(made.sidecar["ref"])
    assert again.runs[0].frames == summary["runs"][0]["frames"]
