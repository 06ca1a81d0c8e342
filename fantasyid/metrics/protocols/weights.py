"""The weights of the protocols' metrics, as :class:`fantasyid.hub.WeightSpec` keyed by the ``model`` key of each
:class:`~fantasyid.metrics.protocols.definitions.MetricSpec`: found through the one resolver (an explicit path, then
``$FANTASYID_HOME``, then the Hugging Face cache), never downloaded implicitly, listed by
``fantasyid models --protocol NAME``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fantasyid.errors import WeightsNotFoundError
from fantasyid.hub import Resolution, WeightSpec, resolve
from fantasyid.metrics.protocols.definitions import Protocol

_TORCHVISION_INCEPTION = "inception_v3_google-0cc3c7bd.pth"

#: Model key → where its weights live and how to get them.
EVAL_WEIGHTS: dict[str, WeightSpec] = {
    spec.key: spec
    for spec in (
        WeightSpec(
            "curricularface",
            "CurricularFace IR-101 (glint360k) face recognition weights, ConsisID's and OpenS2V's FaceSim-Cur",
            "eval/glint360k_curricular_face_r101_backbone.bin",
            repo_id="BestWishYsh/ConsisID-preview",
            repo_path="face_encoder/glint360k_curricular_face_r101_backbone.bin",
            how_to_get="hf download BestWishYsh/ConsisID-preview face_encoder/glint360k_curricular_face_r101_backbone.bin"
            " and put the file in $FANTASYID_HOME/eval/ (or pass --weights curricularface=PATH)",
        ),
        WeightSpec(
            "clip_vit_b32",
            "CLIP ViT-B/32 (openai/clip-vit-base-patch32, transformers layout), ConsisID's CLIPScore",
            "eval/clip-vit-base-patch32",
            repo_id="openai/clip-vit-base-patch32",
            is_dir=True,
            how_to_get="hf download openai/clip-vit-base-patch32 --local-dir $FANTASYID_HOME/eval/clip-vit-base-patch32 "
            "(or pass --weights clip_vit_b32=FOLDER)",
        ),
        WeightSpec(
            "inception_v3_torchvision",
            "torchvision Inception-v3 ImageNet weights (IMAGENET1K_V1), ConsisID's per-reference face FID",
            f"eval/{_TORCHVISION_INCEPTION}",
            how_to_get=f"download https://download.pytorch.org/models/{_TORCHVISION_INCEPTION} into $FANTASYID_HOME/eval/ "
            "(torchvision's own cache is looked in too; or pass --weights inception_v3_torchvision=PATH)",
        ),
        # OpenS2V-Eval human domain (get_aesscore.py, get_gmescore.py; the judge replaces get_naturalscore.py's GPT-4o)
        WeightSpec(
            "aesthetic_mlp",
            "LAION aesthetic predictor head (aesthetic-model.pth of BestWishYsh/OpenS2V-Weight), OpenS2V's Aesthetics",
            "eval/aesthetic-model.pth",
            repo_id="BestWishYsh/OpenS2V-Weight",
            repo_path="aesthetic-model.pth",
            how_to_get="hf download BestWishYsh/OpenS2V-Weight aesthetic-model.pth and put the file in "
            "$FANTASYID_HOME/eval/ (or pass --weights aesthetic_mlp=PATH)",
        ),
        WeightSpec(
            "aesthetic_clip",
            "CLIP ViT-L/14 (openai/clip-vit-large-patch14, transformers layout), the aesthetic predictor's encoder",
            "eval/clip-vit-large-patch14",
            repo_id="openai/clip-vit-large-patch14",
            is_dir=True,
            how_to_get="hf download openai/clip-vit-large-patch14 --local-dir "
            "$FANTASYID_HOME/eval/clip-vit-large-patch14 (or pass --weights aesthetic_clip=FOLDER)",
        ),
        WeightSpec(
            "gme",
            "GME (Alibaba-NLP/gme-Qwen2-VL-7B-Instruct, transformers layout), OpenS2V's GmeScore",
            "eval/gme-Qwen2-VL-7B-Instruct",
            repo_id="Alibaba-NLP/gme-Qwen2-VL-7B-Instruct",
            is_dir=True,
            how_to_get="hf download Alibaba-NLP/gme-Qwen2-VL-7B-Instruct --local-dir "
            "$FANTASYID_HOME/eval/gme-Qwen2-VL-7B-Instruct (or pass --weights gme=FOLDER)",
        ),
        WeightSpec(
            "natural_judge",
            "open NaturalScore judge (Qwen/Qwen2.5-VL-7B-Instruct; OpenS2V's own judge is the closed GPT-4o)",
            "eval/Qwen2.5-VL-7B-Instruct",
            repo_id="Qwen/Qwen2.5-VL-7B-Instruct",
            is_dir=True,
            how_to_get="hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir $FANTASYID_HOME/eval/Qwen2.5-VL-7B-Instruct "
            "(or pass --weights natural_judge=FOLDER: any image-text-to-text checkpoint with a chat template)",
        ),
    )
}

#: Model keys whose scorer needs further weights (the aesthetic head reads CLIP ViT-L/14 embeddings).
COMPANION_WEIGHTS: dict[str, tuple[str, ...]] = {"aesthetic_mlp": ("aesthetic_clip",)}


def _torch_hub_file(name: str) -> Path | None:
    """``name`` in torch's download cache (``$TORCH_HOME/hub/checkpoints``), where torchvision keeps its weights."""
    home = Path(os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "torch")
    path = home.expanduser() / "hub" / "checkpoints" / name
    return path if path.is_file() else None


def resolve_eval_weight(key: str, explicit: str | os.PathLike[str] | None = None) -> Resolution:
    """Look up the weights of model ``key`` (explicit path, ``$FANTASYID_HOME``, hub cache; torchvision's cache for
    the Inception); the :class:`Resolution` says where it looked."""
    spec = EVAL_WEIGHTS[key]
    found = resolve(spec, explicit)
    if not found.found and key == "inception_v3_torchvision":
        cached = _torch_hub_file(_TORCHVISION_INCEPTION)
        found.looked_in.append("torch hub cache (hub/checkpoints)")
        if cached is not None:
            return Resolution(spec, cached, found.looked_in)
    return found


def require_eval_weight(key: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The weights of model ``key``, or one :class:`WeightsNotFoundError` naming the model and how to get it."""
    return resolve_eval_weight(key, explicit).require()


def protocol_weight_keys(protocol: Protocol) -> list[str]:
    """The model keys of ``protocol`` that need weights (the face pack is checked on its own), in table order."""
    keys = [key for m in protocol.metrics if m.model in EVAL_WEIGHTS for key in (m.model, *COMPANION_WEIGHTS.get(m.model, ()))]
    return list(dict.fromkeys(keys))


def check_protocol_weights(protocol: Protocol, explicit: dict[str, str] | None = None) -> None:
    """Raise one :class:`WeightsNotFoundError` for the first missing weight of ``protocol`` (before any decoding)."""
    explicit = explicit or {}
    for key in protocol_weight_keys(protocol):
        try:
            require_eval_weight(key, explicit.get(key))
        except WeightsNotFoundError as exc:
            raise WeightsNotFoundError(f"--protocol {protocol.name}: {exc.message}", hint=exc.hint) from exc
