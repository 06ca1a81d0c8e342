"""ConsisID's metrics (``PKU-YuanGroup/ConsisID`` ``eval/get_facesim_fid.py``, ``eval/get_clipscore.py``) as
:class:`~.scorer.ProtocolScorer` classes. FaceSim-Cur also serves OpenS2V's FaceSim (same model, same crops; OpenS2V
leaves out frames whose clamped similarity is 0).

Per video, as the authors' loop does it: the sampled frames (``np.linspace(0, N-1, 16, dtype=int)``) each give the
largest face (a grey-padded retry when none is found) and its 224-px ArcFace-aligned crop; frames without a face are
left out of all three face metrics, a video with none scores 0.0.

* FaceSim-Arc: ``max(0, cos)`` of the face pack's ArcFace embeddings, frame face vs reference face (the original:
  antelopev2's; offline: buffalo_sc's MobileFaceNet ArcFace, recorded in the provenance);
* FaceSim-Cur: the same with CurricularFace IR-101 on the 224 crop resized to 112 (:mod:`.curricularface`);
* FID: per frame, the Fréchet distance of one frame crop's and the reference crop's torchvision Inception-v3 pool
  features, each repeated twice, i.e. their squared distance (:func:`.arithmetic.per_reference_fid`); the input is the
  224 crop resized to 299 (PIL bilinear) as ``ToTensor`` gives it (no ImageNet normalisation; the weights'
  ``transform_input`` applies);
* CLIPScore: frames at ``int(i * N / 16)``, handed to transformers' ``CLIPProcessor`` with the prompt (padding,
  truncation), the mean of ``logits_per_image`` (``logit_scale.exp() × cos``, 100 × cos for the released model).
  The authors read frames with OpenCV and pass them on in BGR order; we do the same, so the numbers compare.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from fantasyid.metrics.protocols.arithmetic import clamped_cosine, per_reference_fid, sample_indices, video_facesim
from fantasyid.metrics.protocols.definitions import MetricSpec, Protocol
from fantasyid.metrics.protocols.scorer import ProtocolScorer, ScorerOptions, VideoSample, register
from fantasyid.metrics.protocols.weights import EVAL_WEIGHTS, require_eval_weight

#: The crop the face metrics read (insightface ``norm_crop(image, kps, image_size=224)``).
CROP = 224


def _drop_zero(protocol: Protocol) -> bool:
    """OpenS2V leaves out frames whose clamped similarity is 0 (get_facesim.py); ConsisID keeps them."""
    return protocol.name.startswith("opens2v")


class _WeightedScorer(ProtocolScorer):
    """A scorer whose model loads from one weight of :data:`.weights.EVAL_WEIGHTS`, with per-reference caching."""

    def __init__(self, options: ScorerOptions):
        super().__init__(options)
        self.path = require_eval_weight(self.model_key, options.weights.get(self.model_key))
        self._references: dict[str, Any] = {}
        self._lock = threading.Lock()

    def provenance(self) -> dict[str, Any]:
        from fantasyid.io import sha256_file

        file = self.path if self.path.is_file() else next(
            (p for p in sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin"))), None)
        return {"model": self.model_key, "what": EVAL_WEIGHTS[self.model_key].what, "weights": str(self.path),
                "sha256": sha256_file(file) if file is not None else None}

    def reference_value(self, sample: VideoSample, compute: Callable[[], Any]) -> Any:
        """``compute()`` for the sample's reference, once per distinct reference (thread-safe)."""
        with self._lock:
            if sample.reference_key not in self._references:
                self._references[sample.reference_key] = compute()
            return self._references[sample.reference_key]

    def crop_features(self, sample: VideoSample, indices: list[int], embed: Callable[[list[np.ndarray]], np.ndarray]
                      ) -> list[np.ndarray | None]:
        """``embed`` of each sampled frame's face crop (None without a face); each distinct frame computed once."""
        crops = {i: sample.face_crop(i, CROP) for i in dict.fromkeys(indices)}
        present = [i for i, crop in crops.items() if crop is not None]
        features = dict(zip(present, embed([crops[i] for i in present]))) if present else {}
        return [features.get(i) for i in indices]


@register
class FaceSimArc(ProtocolScorer):
    """FaceSim-Arc: the evaluation's face pack ArcFace (the face lookup's embeddings)."""

    model_key = "face_pack"

    def provenance(self) -> dict[str, Any]:
        return {"model": self.model_key, "what": "ArcFace embeddings of the evaluation's face pack (see face_pack)",
                "original": "insightface antelopev2 (ConsisID); numbers from another pack are not comparable"}

    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        reference = sample.reference_face
        if reference is None or reference.embedding is None:
            return None
        similarities = []
        for index in sample_indices(spec.frames, len(sample.frames), spec.count):
            face = sample.face(index)
            similarities.append(None if face is None else clamped_cosine(reference.embedding, face.embedding))
        return video_facesim(similarities, drop_zero=_drop_zero(protocol))


@register
class FaceSimCur(_WeightedScorer):
    """FaceSim-Cur: CurricularFace IR-101 embeddings of the 224-px aligned crops."""

    model_key = "curricularface"

    def __init__(self, options: ScorerOptions):
        super().__init__(options)
        from fantasyid.metrics.protocols.curricularface import load_curricularface

        self.model = load_curricularface(self.path).to(options.device)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        from fantasyid.metrics.protocols.curricularface import preprocess

        import torch

        with torch.no_grad():
            features = self.model(preprocess(crops).to(self.options.device)).double().cpu().numpy()  # (N, 512)
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "input": "224 px ArcFace-aligned crop, cv2.resize to 112, (x/255-0.5)/0.5"}

    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        reference_crop = sample.reference_crop(CROP)
        if reference_crop is None:
            return None
        reference = self.reference_value(sample, lambda: self.embed([reference_crop])[0])
        indices = sample_indices(spec.frames, len(sample.frames), spec.count)
        features = self.crop_features(sample, indices, self.embed)
        similarities = [None if f is None else clamped_cosine(reference, f) for f in features]
        return video_facesim(similarities, drop_zero=_drop_zero(protocol))


@register
class ReferenceFID(_WeightedScorer):
    """ConsisID's per-reference face FID with torchvision's Inception-v3 (fc removed: 2048-d pool features)."""

    model_key = "inception_v3_torchvision"

    def __init__(self, options: ScorerOptions):
        super().__init__(options)
        self.model = load_torchvision_inception(self.path).to(options.device)

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        # transforms.Resize((299, 299)) on a PIL image is PIL's bilinear resize; ToTensor: x / 255, no normalisation
        resized = np.stack([np.asarray(Image.fromarray(c).resize((299, 299), Image.BILINEAR)) for c in crops])
        batch = torch.from_numpy(resized).permute(0, 3, 1, 2).float().div(255)  # (N, 3, 299, 299)
        with torch.no_grad():
            return self.model(batch.to(self.options.device)).double().cpu().numpy()  # (N, 2048)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "input": "224 px ArcFace-aligned crop, PIL bilinear to 299, x/255",
                "distance": "per frame: Fréchet distance of duplicated single features = squared L2; mean over frames"}

    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        reference_crop = sample.reference_crop(CROP)
        if reference_crop is None:
            return None
        reference = self.reference_value(sample, lambda: self.features([reference_crop])[0])
        indices = sample_indices(spec.frames, len(sample.frames), spec.count)
        return per_reference_fid(reference, self.crop_features(sample, indices, self.features))


def load_torchvision_inception(path: Any) -> Any:
    """torchvision's ``inception_v3`` with the ``IMAGENET1K_V1`` layout (``transform_input=True``, as the weights
    set it) and the state dict of ``path`` (``weights_only=True``); ``fc`` replaced by identity; eval mode."""
    import torch
    from torchvision.models import inception_v3

    from fantasyid.errors import CheckpointError
    from fantasyid.face.assets import torch_load_weights

    hint = EVAL_WEIGHTS["inception_v3_torchvision"].how_to_get
    state = torch_load_weights(path, hint=hint)
    model = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a torchvision Inception-v3 state dict", hint=hint)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: keys do not match torchvision's Inception-v3 (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})", hint=hint)
    model.fc = torch.nn.Identity()
    return model.eval()


@register
class CLIPScore(_WeightedScorer):
    """ConsisID's CLIPScore: transformers' CLIP ViT-B/32, the mean ``logits_per_image`` of 16 frames vs the prompt."""

    model_key = "clip_vit_b32"
    needs_prompt = True
    needs_reference = False

    def __init__(self, options: ScorerOptions):
        super().__init__(options)
        from transformers import CLIPModel, CLIPProcessor

        self.model = CLIPModel.from_pretrained(str(self.path)).to(options.device).eval()
        self.processor = CLIPProcessor.from_pretrained(str(self.path))

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "input": "frames in BGR order as the authors' OpenCV reader gives them, "
                "CLIPProcessor(text=prompt, images=frames, padding=True, truncation=True)",
                "score": "mean of logits_per_image (logit_scale.exp() × cosine)"}

    def score(self, spec: MetricSpec, protocol: Protocol, sample: VideoSample) -> float | None:
        import torch

        indices = sample_indices(spec.frames, len(sample.frames), spec.count)
        if not indices or not sample.prompt:
            return None
        frames = [np.ascontiguousarray(sample.frames[i][:, :, ::-1]) for i in indices]  # RGB → BGR, as cv2 reads
        inputs = self.processor(text=sample.prompt, images=frames, return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            logits = self.model(**inputs.to(self.options.device)).logits_per_image  # (frames, 1)
        return float(logits.double().mean())
