"""Reruns of one process (``generate_batch`` with a cheap runner): what counts as done, what is remade and why."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from fantasyid.batch import BatchFolder, try_claim
from fantasyid.batch.claims import Claim
from fantasyid.errors import InputError
from fantasyid.generation import (
    GenerateSettings,
    GenerationItem,
    batch_status,
    generate_batch,
    item_request,
    model_key,
    read_prompt_file,
)

SETTINGS = GenerateSettings(steps=2, frames=9, height=32, width=32)
MODEL = {"model": "test"}


class Runner:
    """Makes frames from the seed and remembers what it was asked for."""

    def __init__(self, fail: str | None = None):
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, item, seed):
        self.calls.append(item.name)
        if item.name == self.fail:
            raise InputError(f"{item.name} cannot be made")
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (SETTINGS.frames, SETTINGS.height, SETTINGS.width, 3), dtype=np.uint8), {}


@pytest.fixture
def ref(tmp_path) -> Path:
    path = tmp_path / "face.png"
    PIL.Image.new("RGB", (32, 32), (200, 150, 100)).save(path)
    return path


def _items(ref: Path, *names: str, prompt: str = "a man smiles") -> list[GenerationItem]:
    return [GenerationItem(ref=ref, prompt=prompt, seed=k, name=name) for k, name in enumerate(names)]


def _run(items, out, runner=None, settings=SETTINGS, **options):
    runner = runner or Runner()
    notes: list[str] = []
    summary = generate_batch(runner, items, settings, out, MODEL, model=model_key("test"),
                             on_note=lambda index, text: notes.append(text), **options)  # fmt: skip
    return summary, runner.calls, notes


def test_rerun_skips_only_what_matches_the_request(ref, tmp_path):
    out = tmp_path / "out"
    summary, calls, _ = _run(_items(ref, "a", "b"), out)
    assert (summary.done, calls) == (2, ["a", "b"])
    sidecar = json.loads((out / "a.json").read_text())
    assert sidecar["request"]["settings"]["steps"] == 2 and sidecar["request"]["model"] == {"model": "test",
                                                                                             "shape_sha256": None}

    summary, calls, notes = _run(_items(ref, "a", "b"), out)
    assert (summary.skipped, calls, notes) == (2, [], [])

    # a new prompt: both remade, each saying so
    summary, calls, notes = _run(_items(ref, "a", "b", prompt="a man laughs"), out)
    assert (summary.done, calls) == (2, ["a", "b"])
    assert notes[0] == 'a.mp4: request changed: prompt "a man smiles" → "a man laughs"; making it again'
    assert json.loads((out / "a.json").read_text())["prompt"] == "a man laughs"

    # new settings, a new seed, a new reference photo, another model: each is a change
    more_steps = GenerateSettings(steps=3, frames=9, height=32, width=32, guidance=4.0)
    _, calls, notes = _run(_items(ref, "a", prompt="a man laughs"), out, settings=more_steps)
    assert calls == ["a"] and "guidance 6.0 → 4.0" in notes[0] and "steps 2 → 3" in notes[0]
    items = _items(ref, "a", prompt="a man laughs")
    items[0].seed = 99
    _, calls, notes = _run(items, out, settings=more_steps)
    assert calls == ["a"] and "seed 0 → 99" in notes[0]
    PIL.Image.new("RGB", (32, 32), (0, 0, 0)).save(ref)
    _, calls, notes = _run(items, out, settings=more_steps)
    assert calls == ["a"] and "ref file changed" in notes[0]
    summary = generate_batch(Runner(), items, more_steps, out, MODEL, model=model_key("tiny"))
    assert summary.done == 1


def test_no_overwrite_refuses_and_keeps(ref, tmp_path):
    out = tmp_path / "out"
    _run(_items(ref, "a"), out)
    before = (out / "a.mp4").read_bytes()
    summary, calls, _ = _run(_items(ref, "a", prompt="something else"), out, no_overwrite=True)
    assert (summary.refused, summary.ok, calls) == (1, False, [])
    assert "request changed" in summary.results[0].error and "--no-overwrite" in summary.results[0].error
    assert (out / "a.mp4").read_bytes() == before


def test_truncated_or_wrong_video_is_not_done(ref, tmp_path):
    out = tmp_path / "out"
    _run(_items(ref, "a", "b"), out)
    data = (out / "a.mp4").read_bytes()
    (out / "a.mp4").write_bytes(data[: len(data) * 2 // 3])  # header intact, the last frames gone
    summary, calls, notes = _run(_items(ref, "a", "b"), out)
    assert calls == ["a"] and "a.mp4 is broken" in notes[0]
    (out / "b.mp4").unlink()
    _, calls, notes = _run(_items(ref, "a", "b"), out)
    assert calls == ["b"] and "b.mp4 is missing" in notes[0]
    (out / "a.json").write_text("{not json")
    _, calls, _ = _run(_items(ref, "a", "b"), out)
    assert calls == ["a"]


def test_legacy_sidecar_without_request_still_resumes(ref, tmp_path):
    out = tmp_path / "out"
    _run(_items(ref, "a"), out)
    sidecar = json.loads((out / "a.json").read_text())
    del sidecar["request"]  # as written before requests were recorded
    (out / "a.json").write_text(json.dumps(sidecar))
    generate_batch(Runner(), _items(ref, "a"), SETTINGS, out, MODEL)  # model key from model_info
    summary, calls, _ = _run(_items(ref, "a"), out)
    assert calls == [] and summary.skipped == 1


def test_two_rows_with_one_name_fail_before_anything_runs(ref, tmp_path):
    prompts = tmp_path / "batch.csv"
    prompts.write_text(f"ref,prompt,seed,name\n{ref},one,1,clip\n{ref},two,2,other\n{ref},three,3,Clip\n")
    items, bad = read_prompt_file(prompts)
    runner = Runner()
    with pytest.raises(InputError, match=r"line 2 and line 4 both write 'Clip.mp4'"):
        generate_batch(runner, items, SETTINGS, tmp_path / "out", MODEL)
    assert runner.calls == []


def test_malformed_csv_names_the_line(tmp_path):
    prompts = tmp_path / "batch.csv"
    for text, message in [
        ('a.png,"a man smiles,1\nb.png,a woman walks,2\nc.png,a child runs,3\n', "a quote opened on line 2 is never closed"),
        ('a.png,"a man smiles,1\nb.png,a woman walks,2\nc.png,"a child",3\n', "a quote opened on line 2 runs on to line 4"),
        ('a.png,"a man smiles,1\nb.png,a woman walks,2\nc.png",3\n', "a quote opened on line 2 runs on to line 4"),
        ('a.png,a man smiles,1\nb.png,"a woman walks,2\n', "a quote opened on line 3 is never closed"),
    ]:  # fmt: skip
        prompts.write_text("ref,prompt,seed\n" + text)
        with pytest.raises(InputError, match=f"batch.csv:{message[23]}: malformed CSV: {message}"):
            read_prompt_file(prompts)
    prompts.write_text('ref,prompt,seed\na.png,a man, smiling,1\nb.png,"a woman, walking",2\n')
    items, bad = read_prompt_file(prompts)
    assert [item.prompt for item in items] == ["a woman, walking"]
    assert bad == ['batch.csv:2: 4 fields, the header has 3 (quote a prompt that holds commas: "a man, smiling")']


def test_stale_partial_files_go_and_live_ones_stay(ref, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".a.{'k' * 8}.partial.mp4"  # what a killed write of atomic_path leaves (no claim any more)
    leftover = out / ".other.abcd_123.partial.json"  # an item not in this batch
    stale.write_bytes(b"x"), leftover.write_bytes(b"{")
    claim = try_claim(BatchFolder(out).claims_dir, "b")  # a live process (this one) is writing b
    assert isinstance(claim, Claim)
    live = out / f".b.{'z' * 8}.partial.mp4"
    live.write_bytes(b"y")
    summary, calls, _ = _run(_items(ref, "a", "b"), out)
    assert calls == ["a"] and summary.busy == 1
    assert not stale.exists() and not leftover.exists()
    assert live.exists()
    claim.release()
    _, calls, _ = _run(_items(ref, "a", "b"), out)
    assert calls == ["b"] and not live.exists()


def test_failed_item_is_recorded_and_tried_again_next_run(ref, tmp_path):
    out = tmp_path / "out"
    summary, calls, _ = _run(_items(ref, "a", "b"), out, runner=Runner(fail="a"))
    assert (summary.done, summary.failed, calls) == (1, 1, ["a", "b"])
    assert "a cannot be made" in json.loads((out / ".fantasyid" / "failed" / "a.json").read_text())["error"]
    rows = batch_status(_items(ref, "a", "b"), SETTINGS, out, model_key("test"))
    assert [(row.stem, row.check.state) for row in rows] == [("a", "failed"), ("b", "done")]
    summary, calls, _ = _run(_items(ref, "a", "b"), out)
    assert (summary.done, calls) == (1, ["a"])
    assert not (out / ".fantasyid" / "failed" / "a.json").exists()


def test_status_names_every_state(ref, tmp_path):
    out = tmp_path / "out"
    items = _items(ref, "done", "stale", "claimed", "missing") + [GenerationItem(tmp_path / "nope.png", "x", 1, "gone")]
    _run(items[:2], out)
    changed = _items(ref, "done", "stale")[1]
    changed.prompt = "now something else"
    items[1] = changed
    claim = try_claim(BatchFolder(out).claims_dir, "claimed")
    rows = batch_status(items, SETTINGS, out, model_key("test"))
    claim.release()
    states = {row.stem: (row.check.state, row.check.detail) for row in rows}
    assert states["done"] == ("done", "")
    assert states["stale"][0] == "stale" and "prompt" in states["stale"][1]
    assert states["claimed"][0] == "claimed" and str(__import__("os").getpid()) in states["claimed"][1]
    assert states["missing"] == ("missing", "")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = BatchFolder(out).claims_dir / "missing.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": 0, "token": "t"}))
    (row,) = batch_status(items[3:4], SETTINGS, out, model_key("test"))
    assert row.check.state == "missing" and f"abandoned claim: process {dead.pid} on this host is gone" in row.check.detail
    assert states["gone"] == ("failed", "the reference image does not exist")
    assert not list(out.glob("missing*")), "--status writes nothing"


def test_settings_refuse_zero_steps_and_warn_on_low_guidance():
    with pytest.raises(InputError, match="--steps must be ≥ 1, got 0"):
        GenerateSettings.for_model("tiny", steps=0)
    with pytest.raises(InputError, match="1 \\+ a multiple of 8"):
        GenerateSettings.for_model("tiny", frames=5)
    assert GenerateSettings.for_model("tiny").steps == 4 and GenerateSettings.for_model("released").steps == 50
    assert GenerateSettings(guidance=6.0).warnings() == []
    assert "below 1" in GenerateSettings(guidance=0.5).warnings()[0]


def test_request_holds_everything_that_changes_a_video(ref):
    item = GenerationItem(ref=ref, prompt="p")
    request = item_request(item, 3, GenerateSettings(negative_prompt="blurry"), model_key("tiny", variant="paper"))
    assert request["negative_prompt"] == "blurry" and request["seed"] == 3
    assert request["model"] == {"model": "tiny", "shape_sha256": None, "variant": "paper"}
    assert set(request["settings"]) == {"steps", "guidance", "frames", "height", "width", "fps", "cache", "compile"}


def test_frames_of_the_wrong_count_fail_the_item_and_leave_no_file(ref, tmp_path):
    def eight_frames(item, seed):  # what CogVideoX's VAE makes of --frames 5
        return np.zeros((8, SETTINGS.height, SETTINGS.width, 3), np.uint8), {}

    out = tmp_path / "out"
    summary = generate_batch(eight_frames, _items(ref, "a"), SETTINGS, out, MODEL)
    assert summary.failed == 1 and "shape (8, 32, 32, 3), not (9, 32, 32, 3)" in summary.results[0].error
    assert not (out / "a.mp4").exists() and not (out / "a.json").exists()


def test_sidecar_records_the_video_hash_and_an_unchanged_file_is_not_decoded_again(ref, tmp_path, monkeypatch):
    import fantasyid.batch.folder as folder

    out = tmp_path / "out"
    _run(_items(ref, "a"), out)
    assert len(json.loads((out / "a.json").read_text())["video_sha256"]) == 64
    decoded = []
    monkeypatch.setattr(folder, "video_problem", lambda *args: decoded.append(args) or None)
    summary, calls, _ = _run(_items(ref, "a"), out)
    assert (summary.skipped, calls, decoded) == (1, [], [])
    (out / "a.mp4").write_bytes((out / "a.mp4").read_bytes() + b"\0")  # another file: decoded again
    _run(_items(ref, "a"), out)
    assert len(decoded) == 1


def test_batch_names_do_not_shift_when_a_bad_row_is_fixed(ref, tmp_path):
    """Automatic names number each row by its own place in the file: a skipped bad row renumbers nothing, so after
    it is fixed the finished videos are kept (not made again under new names) and no orphan files appear."""
    other = tmp_path / "other.png"
    PIL.Image.new("RGB", (32, 32), (20, 50, 200)).save(other)
    prompts, out = tmp_path / "batch.csv", tmp_path / "out"
    rows = ["ref,prompt", f"{ref},first", f"{other},", f"{ref},third"]  # the second row has no prompt
    prompts.write_text("\n".join(rows) + "\n")
    items, bad = read_prompt_file(prompts)
    assert len(items) == 2 and bad == ["batch.csv:3: needs both 'ref' and 'prompt'"]
    summary, _, _ = _run(items, out, Runner(fail="nothing"))
    assert summary.done == 2
    made = sorted(p.name for p in out.glob("*.mp4"))
    assert made == ["0000_face_s42.mp4", "0002_face_s42.mp4"]  # the row numbers 0 and 2, not 0 and 1

    rows[2] = f"{other},second"
    prompts.write_text("\n".join(rows) + "\n")
    items, bad = read_prompt_file(prompts)
    summary, _, notes = _run(items, out, Runner(fail="nothing"))
    assert (summary.skipped, summary.done, bad, notes) == (2, 1, [], [])  # only the fixed row is made
    assert sorted(p.name for p in out.glob("*.mp4")) == ["0000_face_s42.mp4", "0001_other_s42.mp4",
                                                          "0002_face_s42.mp4"]
    assert json.loads((out / "0002_face_s42.json").read_text())["prompt"] == "third"

    jsonl = tmp_path / "batch.jsonl"  # the same for JSONL, blank lines not counted
    jsonl.write_text(f'{{"ref": "{ref}", "prompt": "first"}}\n\nnot json\n{{"ref": "{ref}", "prompt": "third"}}\n')
    items, bad = read_prompt_file(jsonl)
    assert [item.number for item in items] == [0, 2] and len(bad) == 1
