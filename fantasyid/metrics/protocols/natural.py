"""OpenS2V's NaturalScore with an OPEN vision-language judge.

The protocol (``PKU-YuanGroup/OpenS2V-Nexus eval/get_naturalscore.py``) asks the closed model
``gpt-4o-2024-11-20`` to rate how real a video looks on a 1–5 scale from 16 frames, three times, and averages the
three answers (``merge_result.py``). That judge cannot run offline and its numbers cannot be reproduced, so here the
same input goes to an open vision-language model through transformers (default ``Qwen/Qwen2.5-VL-7B-Instruct``;
any image-text-to-text checkpoint folder with a chat template can be passed): the protocol's prompt verbatim, the
same frames, greedy decoding (so one call stands for the authors' three). Numbers from it are **not comparable**
with the published NaturalScore column; :meth:`NaturalScorer.provenance` says so and names the judge.

* Frames: ``i · max(N // 16, 1)`` for ``i < 16`` (``extract_frames``), each resized to a long side of 512 px
  (``INTER_AREA``, the short side ``int(s · 512 / long)``) and JPEG-encoded by ``cv2.imencode`` (quality 95), as the
  authors send them; decoded back to RGB for the judge.
* Message: one user turn, the 16 images then the prompt text.
* Answer: the first stand-alone digit 1–5 (:func:`~fantasyid.metrics.protocols.arithmetic.parse_natural_score`);
  a video whose answer holds none has no value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fantasyid.metrics.protocols.arithmetic import parse_natural_score, sample_indices
from fantasyid.metrics.protocols.definitions import MetricSpec, Protocol
from fantasyid.metrics.protocols.scorer import ProtocolScorer, ScorerOptions, VideoSample, register
from fantasyid.metrics.protocols.weights import require_eval_weight

PUBLISHED_JUDGE = "gpt-4o-2024-11-20, three calls averaged (OpenS2V-Eval v1.0)"
MAX_NEW_TOKENS = 16  # "Please only return the score (1-5)": a digit, perhaps a few words around it

# The protocol's prompt, verbatim (get_naturalscore.py ``prompt``, leading and trailing newline included).
_PROMPT_LINES = (
    "",
    "Your task is to determine how realistic the given video clip appears, based on 16 extracted frames."
    " Consider the following aspects in your evaluation:",
    "",
    "- **Common sense consistency**: Are the objects, people, and interactions logically coherent in the"
    " context of the video?",
    "- **Physical plausibility**: Do lighting, shadows, motion, and reflections obey the laws of physics?"
    " Are the objects in motion consistent with real-world physics?",
    "- **Naturalness**: Does the visual quality (textures, details, proportions, etc.) resemble what we"
    " would expect in real life? Is there any unnatural visual distortion?",
    "- **AI generation artifacts**: Are there signs of unnatural blurring, morphing, glitches,"
    " distortions, or inconsistencies across frames? ",
    "",
    "**If the video contains humans**, pay special attention to:",
    "- Are the facial features realistic and anatomically correct (e.g., eyes, mouth, and nose"
    " proportions)?",
    "- Do the body parts appear proportionate and natural in motion (e.g., arm and leg movements, hand"
    " gestures)?",
    "",
    "If **no humans** are present in the video, you can focus on evaluating the realism of other visual"
    " aspects like object consistency, motion fluidity, and environmental plausibility without needing to"
    " specifically assess human-related elements.",
    "",
    "Output a score from 1 to 5 based on the criteria below, followed by an explanation of the reasoning"
    " behind your score:",
    "",
    "- **1 — Definitely AI-Generated**: Clear and frequent artifacts (e.g., blurry faces or objects,"
    " unnatural movements, inconsistent lighting), distorted shapes, implausible physics (e.g.,"
    " impossible movements, lighting issues), and severe inconsistencies. Violates common sense or"
    " real-world logic. Faces and bodies may be unrealistic or distorted if humans are present.",
    "- **2 — Likely AI-Generated**: Noticeable AI generation cues such as inconsistent anatomy,"
    " fluctuating object textures, or mild physical implausibility (e.g., unnatural hand positions or eye"
    " movements). Faces and bodies may appear unnatural or inconsistent if humans are present. Still"
    " clearly synthetic upon inspection.",
    "- **3 — Uncertain / Borderline**: Mixed indicators — the video may appear mostly natural but"
    " contains subtle flaws or small anomalies that raise suspicion. Faces and bodies might show mild"
    " inconsistencies (e.g., slight distortion in facial features or body parts) if humans are present."
    " Hard to determine definitively.",
    "- **4 — Likely Real**: Mostly natural and physically plausible, with only minor and rare"
    " irregularities that might be explainable (e.g., slight compression, mild lighting inconsistencies)."
    " Faces and body parts are mostly natural, with only minor imperfections, if humans are present.",
    "- **5 — Definitely Real**: Fully consistent with real-world physics, common sense, and appearance."
    " No visible artifacts or signs of AI generation. Faces and body parts appear fully realistic,"
    " without any visible distortions or unnatural movements, if humans are present.",
    "",
    "Please only return the score (1-5), no additional explanation.",
    "",
)
PROMPT = "\n".join(_PROMPT_LINES)


def judge_frames(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames as the authors send them: long side 512 (INTER_AREA), through a JPEG (cv2, quality 95), RGB."""
    import cv2

    out = []
    for frame in frames:
        height, width = frame.shape[:2]
        if height >= width:
            size = (int(width * 512 / height), 512)
        else:
            size = (512, int(height * 512 / width))
        small = cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)  # (h', w', 3)
        ok, buffer = cv2.imencode(".jpg", small[..., ::-1])  # BGR, as the authors' cv2 frames
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a frame")
        out.append(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[..., ::-1].copy())  # back to RGB (h', w', 3)
    return out


class OpenJudge:
    """A transformers image-text-to-text model answering the protocol's prompt with greedy decoding."""

    def __init__(self, folder, device: str = "cpu", dtype: torch.dtype | None = None):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = device
        self.dtype = dtype or (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
        self.model = AutoModelForImageTextToText.from_pretrained(folder, dtype=self.dtype).eval().to(device)
        self.processor = AutoProcessor.from_pretrained(folder)
        architecture = ",".join(getattr(self.model.config, "architectures", None) or [type(self.model).__name__])
        self.name = f"{Path(folder).name} ({architecture})"  #: the folder's name and the model class

    def inputs(self, frames: list[np.ndarray]):
        """The processor's tensors for one user turn: the frames as images, then the prompt."""
        from PIL import Image

        content = [{"type": "image"} for _ in frames] + [{"type": "text", "text": PROMPT}]
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                  add_generation_prompt=True)
        images = [Image.fromarray(f) for f in frames]
        return self.processor(text=[text], images=images, return_tensors="pt").to(self.device)

    @torch.no_grad()
    def answer(self, frames: list[np.ndarray]) -> str:
        """The judge's greedy answer (new tokens only, special tokens dropped)."""
        inputs = self.inputs(frames)
        out = self.model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, top_p=None, top_k=None,
                                  temperature=None)  # (1, L + new)
        new = out[:, inputs["input_ids"].shape[1]:]  # (1, new)
        return self.processor.batch_decode(new, skip_special_tokens=True)[0].strip()


@register
class NaturalScorer(ProtocolScorer):
    """The open judge's 1–5 rating of a video (see the module docstring: not the published, closed judge)."""

    model_key = "natural_judge"
    needs_reference = False  # reads the generated frames only

    def __init__(self, options: ScorerOptions):
        super().__init__(options)
        self.folder = require_eval_weight("natural_judge", options.weights.get("natural_judge"))
        self.judge = OpenJudge(self.folder, options.device)
        self.answers: dict[str, str] = {}  #: each video's raw answer, for the record

    def provenance(self) -> dict[str, Any]:
        return {"model": self.model_key, "what": f"open judge {self.judge.name}", "judge": self.judge.name,
                "weights": str(self.folder),
                "decoding": f"greedy, max_new_tokens={MAX_NEW_TOKENS}", "dtype": str(self.judge.dtype),
                "prompt_sha256": hashlib.sha256(PROMPT.encode()).hexdigest(),
                "published_judge": PUBLISHED_JUDGE, "comparable_to_published": False,
                "note": "An open judge replaces the protocol's closed GPT-4o: NOT comparable with published "
                "NaturalScore values (nor, hence, the Total)."}

    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        indices = sample_indices(spec.frames, len(sample.frames), spec.count)
        if not indices:
            return None
        answer = self.judge.answer(judge_frames([sample.frames[i] for i in indices]))
        self.answers[sample.name] = answer
        return parse_natural_score(answer)
