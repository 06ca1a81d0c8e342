"""Weights, found not fetched: one resolver for every weight fantasyid uses.

Order: an explicit path → ``$FANTASYID_HOME`` (default ``~/.cache/fantasyid``) → the huggingface_hub cache. A hub
download happens only when the caller asks (``download=True``: ``--download`` or ``fantasyid models fetch``). Every
lookup is recorded, so ``fantasyid models`` (:mod:`fantasyid.pipelines.inventory`) can say where each weight was
looked for and how to get it. This is the bottom of model loading: it knows weights and folders, nothing of pipelines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WeightsNotFoundError
from .face.assets import fantasyid_home

__all__ = [
    "WeightSpec", "Resolution", "fantasyid_home", "resolve", "RELEASED_WEIGHTS", "checkpoint_spec", "fetch_model",
    "CAPTIONER", "captioner_spec", "resolve_captioner",
]  # fmt: skip


@dataclass(frozen=True)
class WeightSpec:
    """One weight the configuration needs.

    Attributes:
        key: short name (``fantasyid``, ``eva_clip``, ``flame``, …).
        what: one line for people.
        home_path: where it lives below ``$FANTASYID_HOME``.
        repo_id / repo_path: where it lives on the hub (a folder when ``repo_path`` is empty), if it is there.
        how_to_get: what to do when it is missing (licences, registration, commands).
        is_dir: a folder (diffusers layout) rather than a file.
    """

    key: str
    what: str
    home_path: str
    repo_id: str | None = None
    repo_path: str = ""
    how_to_get: str = ""
    is_dir: bool = False


@dataclass
class Resolution:
    spec: WeightSpec
    path: Path | None
    looked_in: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.path is not None

    def require(self) -> Path:
        if self.path is None:
            raise WeightsNotFoundError(
                f"{self.spec.what} not found (looked in: {'; '.join(self.looked_in)})",
                hint=self.spec.how_to_get,
            )
        return self.path


def _exists(path: Path, is_dir: bool) -> bool:
    return path.is_dir() if is_dir else path.is_file()


def resolve(spec: WeightSpec, explicit: str | os.PathLike[str] | None = None, download: bool = False) -> Resolution:
    """Find ``spec``: explicit path, then ``$FANTASYID_HOME``, then the hub cache; download only if asked."""
    looked: list[str] = []
    if explicit is not None:
        path = Path(explicit).expanduser()
        looked.append(str(path))
        if _exists(path, spec.is_dir):
            return Resolution(spec, path, looked)
        raise WeightsNotFoundError(
            f"{spec.what}: '{path}' does not exist" + (" or is not a folder" if spec.is_dir else ""),
            hint=spec.how_to_get,
        )
    home = fantasyid_home() / spec.home_path
    looked.append(str(home))
    if _exists(home, spec.is_dir):
        return Resolution(spec, home, looked)
    if spec.repo_id is not None:
        looked.append(f"huggingface cache ({spec.repo_id})")
        cached = _from_hub(spec, local_only=True)
        if cached is not None:
            return Resolution(spec, cached, looked)
        if download:
            return Resolution(spec, _from_hub(spec, local_only=False), looked)
    return Resolution(spec, None, looked)


def _from_hub(spec: WeightSpec, local_only: bool) -> Path | None:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        if spec.is_dir or not spec.repo_path:
            root = Path(snapshot_download(spec.repo_id, local_files_only=local_only))
            path = root / spec.repo_path if spec.repo_path else root
        else:
            path = Path(hf_hub_download(spec.repo_id, spec.repo_path, local_files_only=local_only))
    except LocalEntryNotFoundError as exc:  # offline: HF_HUB_OFFLINE, no network, or the hub unreachable
        if local_only:
            return None
        raise _unreachable(spec, exc) from exc
    except OSError as exc:  # network failures when downloading were asked for
        if local_only:
            return None
        raise _unreachable(spec, exc) from exc
    return path if _exists(path, spec.is_dir) else None


def _unreachable(spec: WeightSpec, exc: Exception) -> WeightsNotFoundError:
    """The hub cannot be reached: say so, and how to fetch on another machine and copy the folder here."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0", "false"):
        why = "HF_HUB_OFFLINE is set"
    else:  # huggingface_hub wraps the network error: keep its first part ("ConnectError: … not known")
        why = " ".join(str(exc).split()).removeprefix("Got: ").split(" An error happened")[0][:120]
        why = why or type(exc).__name__
    target = fantasyid_home() / spec.home_path
    fetch = f"hf download {spec.repo_id}" + (f" {spec.repo_path}" if spec.repo_path else "")
    return WeightsNotFoundError(
        f"cannot reach the Hugging Face hub to download {spec.repo_id} ({why})",
        hint=f"on a machine with internet run `{fetch} --local-dir {Path(spec.home_path).name}`, then copy that "
        f"{'folder' if spec.is_dir else 'file'} to {target} on this machine (or pass --model PATH)",
    )


_FLAME_HOW = (
    "FLAME is licensed: register at https://flame.is.tue.mpg.de, download FLAME 2020 and put generic_model.pkl in "
    "$FANTASYID_HOME/deca/ (or pass --flame PATH)"
)
_DECA_HOW = (
    "DECA is licensed: register at https://deca.is.tue.mpg.de, download deca_model.tar and put it in "
    "$FANTASYID_HOME/deca/ (or pass --deca PATH)"
)

#: What the released configuration needs.
RELEASED_WEIGHTS = (
    WeightSpec(
        "fantasyid",
        "the FantasyID checkpoint (transformer, VAE, T5, scheduler, face_encoder)",
        "FantasyID",
        repo_id="acvlab/FantasyID",
        is_dir=True,
        how_to_get="fantasyid models fetch (downloads acvlab/FantasyID from the Hugging Face hub), or --model PATH",
    ),
    WeightSpec(
        "mesh",
        "the FLAME mesh hierarchy assets/transform.pkl of the authors' code release",
        "FantasyID/assets/transform.pkl",
        how_to_get="copy assets/transform.pkl from github.com/Fantasy-AMAP/fantasy-id to $FANTASYID_HOME/FantasyID/assets/ "
        "(or pass --mesh PATH)",
    ),
    WeightSpec("flame", "FLAME 2020 generic_model.pkl", "deca/generic_model.pkl", how_to_get=_FLAME_HOW),
    WeightSpec("deca", "DECA deca_model.tar", "deca/deca_model.tar", how_to_get=_DECA_HOW),
)


def _is_hub_id(value: str) -> bool:
    """``owner/name`` that is not a local path: a Hugging Face hub repository id."""
    import re

    return not Path(value).expanduser().exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", value) is not None


#: ``fantasyid prep``'s captioning model (optional: captions can come from a file instead). Qwen2.5-VL sees the clip
#: as a video; any transformers vision-language folder can be given instead (``--captioner PATH``).
CAPTIONER = WeightSpec(
    "captioner",
    "Qwen2.5-VL-7B-Instruct, the captioning model of `fantasyid prep --captioner qwen2.5-vl` (optional)",
    "Qwen2.5-VL-7B-Instruct",
    repo_id="Qwen/Qwen2.5-VL-7B-Instruct",
    is_dir=True,
    how_to_get="fantasyid models fetch --model Qwen/Qwen2.5-VL-7B-Instruct (into the Hugging Face cache), or put the "
    "folder in $FANTASYID_HOME/Qwen2.5-VL-7B-Instruct, or pass --captioner PATH; or give captions with --captions FILE",
)
#: The ``--captioner`` value that names :data:`CAPTIONER`.
CAPTIONER_NAME = "qwen2.5-vl"


def captioner_spec(value: str) -> tuple[WeightSpec, str | None]:
    """The spec and explicit path for ``--captioner``: ``qwen2.5-vl`` (:data:`CAPTIONER`), a local folder, or a hub
    id such as ``Qwen/Qwen2.5-VL-3B-Instruct`` (looked up in the hub cache, never downloaded here)."""
    if value == CAPTIONER_NAME:
        return CAPTIONER, None
    if _is_hub_id(value):
        return WeightSpec(CAPTIONER.key, f"the captioning model {value}", value.replace("/", "--"), repo_id=value,
                          is_dir=True, how_to_get=f"fantasyid models fetch --model {value}, or --captioner PATH"), None
    return WeightSpec(CAPTIONER.key, "the captioning model folder", value, is_dir=True,
                      how_to_get=f"pass a folder saved with save_pretrained, or --captioner {CAPTIONER_NAME}"), value


def resolve_captioner(value: str) -> Path:
    """The folder of the captioning model ``value`` names (see :func:`captioner_spec`), or a one-line error."""
    spec, explicit = captioner_spec(value)
    return resolve(spec, explicit).require()


def checkpoint_spec(model: str) -> tuple[WeightSpec, str | None]:
    """The spec and explicit path for ``--model``: ``released``, a local folder, or a hub id such as
    ``acvlab/FantasyID`` (looked up in the hub cache; downloaded only on request)."""
    spec = next(spec for spec in RELEASED_WEIGHTS if spec.key == "fantasyid")
    if model == "released":
        return spec, None
    if _is_hub_id(model):
        return WeightSpec(spec.key, f"the checkpoint {model}", model.replace("/", "--"), repo_id=model, is_dir=True,
                          how_to_get=f"fantasyid models fetch --model {model}, or --download"), None
    return spec, model


def fetch_model(model: str = "released") -> Path:
    """Download the released checkpoint (or another hub id) into the Hugging Face cache, on the user's request."""
    spec, explicit = checkpoint_spec(model)
    if explicit is not None:
        raise WeightsNotFoundError(f"'{model}' is a local path; only hub checkpoints can be fetched")
    return resolve(spec, None, download=True).require()
