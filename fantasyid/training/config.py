"""The training configuration: one dataclass per section, every field documented, loaded from YAML.

A config file is YAML whose first line is the command that runs it (``# fantasyid train examples/train/tiny.yaml``);
sections and keys are the fields below. Any field can be overridden from the command line with
``--set section.key=value`` (the value is read as YAML). An unknown key is an error naming the nearest valid one.
The resolved config is saved as ``config.yaml`` next to the run, and a checkpoint only resumes under a config whose
training-relevant fields (everything but :data:`RESUMABLE_CHANGES`) are the same.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require

__all__ = ["TrainConfig", "load_config", "apply_overrides", "config_from_dict", "config_to_dict", "config_hash",
           "config_reference"]


@dataclass
class ModelConfig:
    #: where the weights start: ``tiny`` (every component tiny and random, CPU tests), ``cogvideox:PATH`` (a
    #: CogVideoX-5B-I2V diffusers folder; identity modules fresh), ``released:PATH`` (the authors' checkpoint
    #: folder), or a PATH to a ``fantasyid train`` export
    init: str = "tiny"
    #: identity branch: ``released`` (the authors' architecture) or ``paper`` (the paper's text; METHOD.md)
    variant: str = "released"
    #: what trains: ``full`` (whole transformer + identity modules: the paper's recipe), ``identity`` (identity
    #: modules only, backbone frozen) or ``lora`` (LoRA on the backbone's attention + identity modules)
    trainable: str = "full"
    lora_rank: int = 64  #: LoRA rank (``trainable: lora``)
    lora_alpha: int = 64  #: LoRA alpha (``trainable: lora``)
    identity: bool = True  #: false: no identity branch at all (CogVideoX I2V fine-tuning; a test control)
    #: face abstractor: ``c-abstractor`` (FantasyID) or ``qformer`` (Table 3 "w/o FA": a 4-layer Perceiver
    #: resampler with as many learned queries as the C-Abstractor has tokens)
    face_abstractor: str = "c-abstractor"
    vertex_tokens: bool = True  #: false: Table 3 "w/o FV" (the face tokens alone are V_F)
    #: the paper's F_l after each injection: ``null`` (as the variant: released none, paper conv) or ``false``
    #: (Table 3 "w/o LACSI")
    layer_refiner: bool | None = None
    gradient_checkpointing: bool = True  #: recompute each DiT block in the backward pass (less memory)
    eva_clip: str | None = None  #: EVA-CLIP ``.pt`` for ``cogvideox:`` inits (the others carry their own)
    mesh: str | None = None  #: the release's ``transform.pkl`` for ``cogvideox:`` inits


@dataclass
class DataConfig:
    manifest: str = ""  #: the Parquet manifest ``fantasyid prep`` wrote (paths inside are relative to it)
    frames: int = 49  #: frames per training clip (1 + a multiple of 4)
    height: int = 480  #: clips are resized and centre-cropped to height × width
    width: int = 720
    fps: float = 8.0  #: frames are sampled at this rate from each clip, whatever its own rate
    #: views per clip the reference is drawn from (MFC); 1 = always ``views[0]``, the most frontal (Table 3 "w/o MFC")
    views: int = 6
    num_workers: int = 2  #: DataLoader decoding processes per training process
    reader: str = "auto"  #: clip reader: ``auto`` (decord, PyAV fallback), ``decord`` or ``pyav``
    holdout: int = 0  #: the last N kept clips of the manifest are held out of training, for validation
    text_dropout: float = 0.1  #: probability that a caption is replaced by the empty prompt (identity kept)
    image_dropout: float = 0.05  #: probability that the I2V frame-0 condition is all zero
    image_noise_mean: float = -3.0  #: log-sigma mean of the noise added to the frame-0 image (CogVideoX)
    image_noise_std: float = 0.5  #: log-sigma std of that noise
    #: where a clip's frames start: ``0`` anywhere (uniform offset), ``N`` ≥ 1 one of N evenly spaced windows (1: the
    #: centre). A precomputed cache needs N ≥ 1: it stores the VAE latent distribution of every window
    windows: int = 0
    #: folder of precomputed VAE latent distributions and T5 states (``fantasyid train CONFIG --precompute`` builds
    #: it; empty: encode every step). The loss is the same with and without it (the drawn view stays live)
    cache: str = ""


@dataclass
class OptimConfig:
    lr: float = 3e-6  #: AdamW learning rate (the same whatever the number of devices)
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 1e-4
    eps: float = 1e-8
    #: learning-rate schedule (diffusers.optimization names): ``cosine_with_restarts``, ``cosine``, ``constant``…
    scheduler: str = "cosine_with_restarts"
    warmup_steps: int = 100  #: linear warm-up, in optimizer steps
    num_cycles: int = 1  #: restarts of ``cosine_with_restarts``
    max_grad_norm: float = 1.0  #: gradient clipping (0: off)
    #: learning rate of the identity modules (face encoder, identity attention and F_l) in their own parameter group;
    #: ``null``: the same as ``lr``. F_l's gains start at 0 and move by about lr per Adam step, so at 3e-6 the
    #: paper variant's identity branch would stay throttled for a long time: a larger rate lets it open.
    identity_lr: float | None = None


@dataclass
class TrainSection:
    global_batch: int = 16  #: samples per optimizer step over all devices (paper: 16)
    micro_batch: int = 1  #: samples per device per forward; accumulation = global / (micro × devices)
    max_steps: int = 90000  #: optimizer steps
    seed: int = 42  #: seeds initialisation, data order, views, noise, timesteps and dropouts
    mixed_precision: str = "bf16"  #: ``no``, ``bf16`` or ``fp16``
    #: timesteps are drawn uniformly from [first, last) (default: all of CogVideoX's 1000); a narrower, noisier range
    #: makes the conditions (identity, text, frame 0) the only source of the video, as the identity test uses
    timestep_range: list[int] = field(default_factory=lambda: [0, 1000])


@dataclass
class CheckpointConfig:
    every: int = 500  #: save the full training state every N steps (0: only at the end and on Ctrl-C)
    total_limit: int = 3  #: keep the last K checkpoints (0: keep all)
    export: bool = True  #: write a ``fantasyid generate --model`` folder at the end


@dataclass
class ValidationConfig:
    every: int = 0  #: every M steps generate videos for the held-out references and score them (0: off)
    references: int = 2  #: held-out clips used (``data.holdout`` must be at least this)
    steps: int = 50  #: denoising steps of the validation videos
    guidance: float = 6.0


@dataclass
class LogConfig:
    tensorboard: bool = True  #: TensorBoard scalars under OUTPUT/tensorboard
    every: int = 1  #: JSONL line (OUTPUT/log.jsonl) and progress update every N steps


@dataclass
class TrainConfig:
    output_dir: str = "runs/fantasyid"  #: the run folder: config.yaml, log.jsonl, checkpoints/, export/
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def validate(self) -> TrainConfig:
        """Check values that do not depend on the data or the devices; returns self."""
        m, d, t = self.model, self.data, self.train
        _choice("model.variant", m.variant, ("released", "paper"))
        _choice("model.trainable", m.trainable, ("full", "identity", "lora"))
        _choice("model.face_abstractor", m.face_abstractor, ("c-abstractor", "qformer"))
        _choice("data.reader", d.reader, ("auto", "decord", "pyav"))
        _choice("train.mixed_precision", t.mixed_precision, ("no", "bf16", "fp16"))
        if m.trainable == "identity" and not m.identity:
            raise ConfigError("model.trainable=identity with model.identity=false leaves nothing to train")
        if d.frames < 1 or (d.frames - 1) % 4:
            raise ConfigError(f"data.frames must be 1 + a multiple of 4, got {d.frames}", hint="e.g. 49")
        if d.height % 16 or d.width % 16:
            raise ConfigError(f"data.height and data.width must be multiples of 16, got {d.height}×{d.width}")
        if d.windows < 0:
            raise ConfigError(f"data.windows must be 0 (any offset) or a positive count, got {d.windows}")
        if d.cache and d.windows < 1:
            raise ConfigError("data.cache needs data.windows ≥ 1 (the cache stores one latent per window)",
                              hint="--set data.windows=1 (the centre window) or more")
        if not 1 <= d.views <= 6:
            raise ConfigError(f"data.views must be 1…6, got {d.views}")
        for name in ("text_dropout", "image_dropout"):
            if not 0.0 <= getattr(d, name) <= 1.0:
                raise ConfigError(f"data.{name} must be in [0, 1], got {getattr(d, name)}")
        if t.global_batch < 1 or t.micro_batch < 1 or t.global_batch % t.micro_batch:
            raise ConfigError(
                f"train.global_batch ({t.global_batch}) must be a positive multiple of train.micro_batch "
                f"({t.micro_batch})"
            )
        if len(t.timestep_range) != 2 or not 0 <= t.timestep_range[0] < t.timestep_range[1] <= 1000:
            raise ConfigError(f"train.timestep_range must be [first, last) within [0, 1000], got {t.timestep_range}")
        if self.optim.identity_lr is not None and not self.optim.identity_lr >= 0:
            raise ConfigError(f"optim.identity_lr must be ≥ 0 or null, got {self.optim.identity_lr}")
        if t.max_steps < 1:
            raise ConfigError(f"train.max_steps must be at least 1, got {t.max_steps}")
        if self.validation.every and self.validation.references > d.holdout:
            raise ConfigError(
                f"validation.references={self.validation.references} needs data.holdout ≥ that, got {d.holdout}"
            )
        return self

    def accumulation(self, num_processes: int) -> int:
        """Gradient accumulation steps for ``num_processes`` devices, keeping the global batch."""
        per_step = self.train.micro_batch * num_processes
        if self.train.global_batch % per_step:
            raise ConfigError(
                f"train.global_batch={self.train.global_batch} is not a multiple of micro_batch × devices = "
                f"{self.train.micro_batch} × {num_processes}",
                hint="change train.global_batch or train.micro_batch, or the number of processes",
            )
        return self.train.global_batch // per_step


#: Fields that may differ between a checkpoint's config and the config resuming it.
RESUMABLE_CHANGES = frozenset({
    "output_dir", "train.max_steps", "checkpoint.every", "checkpoint.total_limit", "checkpoint.export",
    "validation.every", "validation.references", "validation.steps", "validation.guidance", "log.tensorboard",
    "log.every", "data.num_workers", "data.reader", "train.micro_batch",
    "data.cache",
})


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _sections() -> dict[str, type]:
    fields = dataclasses.fields(TrainConfig)
    return {f.name: f.default_factory for f in fields if f.default_factory is not dataclasses.MISSING}


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key '{key}'{where}", hint=hint)


def _coerce(key: str, value: Any, default: Any, annotation: str) -> Any:
    """Bring a YAML value to the field's type (YAML reads ``1e-5`` as a string, for instance)."""
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"config key '{key}' cannot be empty")
    if annotation.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if annotation.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if annotation.startswith("float"):
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}") from exc
    if annotation.startswith("list[int]"):
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"config key '{key}' must be a list of integers, got {value!r}")
        return value
    if annotation.startswith("str"):
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    return value


def config_from_dict(data: dict[str, Any], where: str = "") -> TrainConfig:
    """A :class:`TrainConfig` from nested dicts; unknown keys are errors naming the nearest valid key."""
    if not isinstance(data, dict):
        raise ConfigError(f"a training config is a mapping of sections{where}, got {type(data).__name__}")
    sections = _sections()
    top = [f.name for f in dataclasses.fields(TrainConfig)]
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in top:
            dotted = [f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)]
            raise _unknown(str(name), top + dotted, where)
        if name in sections:
            cls = sections[name]
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{name}' must be a mapping{where}, got {value!r}")
            fields = {f.name: f for f in dataclasses.fields(cls)}
            kwargs = {}
            for key, item in value.items():
                if key not in fields:
                    raise _unknown(f"{name}.{key}", [f"{name}.{k}" for k in fields], where)
                f = fields[key]
                kwargs[key] = _coerce(f"{name}.{key}", item, f.default, str(f.type))
            values[name] = cls(**kwargs)
        else:
            values[name] = _coerce(name, value, None, "str")
    return TrainConfig(**values)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
    target[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (value parsed as YAML) to a config dict, in order."""
    yaml = require("yaml", "train", "reading training configs")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes section.key=value, got {item!r}", hint="e.g. --set optim.lr=1e-5")
        _set(data, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from the defaults with ``path=None``), apply ``--set`` overrides, validate."""
    yaml = require("yaml", "train", "reading training configs")
    data: dict[str, Any] = {}
    where = ""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"training config '{path}' does not exist", hint="see examples/train/*.yaml")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"'{path}' is not valid YAML: {str(exc).splitlines()[0]}") from exc
        where = f" in {path}"
    data = apply_overrides(data, overrides)
    return config_from_dict(data, where).validate()


def dump_config(config: TrainConfig, command: str | None = None) -> str:
    """The config as YAML (first line: the command that runs it, when given)."""
    yaml = require("yaml", "train", "writing training configs")
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    return (f"# {command}\n" if command else "") + text


def field_docs(cls: type) -> dict[str, str]:
    """A config dataclass's ``#:`` comments (the lines before a field and the end of its own line), by field name."""
    import inspect
    import re

    names = {f.name for f in dataclasses.fields(cls)}
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("def ") or stripped.startswith("@"):
            break
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        declared = re.match(r"(\w+)\s*:", stripped)
        if declared and declared.group(1) in names:
            own = stripped.partition("#:")[2].strip()
            text = " ".join([*pending, own]).strip()
            if text:
                docs[declared.group(1)] = text.replace("``", "`")
        pending = []
    return docs


def config_reference() -> str:
    """Every config key with its default and what it does, as YAML that loads to the defaults (``fantasyid train
    --show-config``)."""
    yaml = require("yaml", "train", "writing training configs")

    def entry(owner: type, name: str, value: Any, indent: str) -> list[str]:
        doc = field_docs(owner).get(name)
        text = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=10**6).strip()[1:-1]
        return ([f"{indent}# {doc}"] if doc else []) + [f"{indent}{name}: {text}"]  # [value] → value, in YAML

    lines = ["# Every key of a `fantasyid train` config, with its default. A config file sets the keys it changes;",
             "# `--set section.key=value` overrides one from the command line.", ""]  # fmt: skip
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            lines += ["", f"{f.name}:"]
            for g in dataclasses.fields(value):
                lines += entry(type(value), g.name, getattr(value, g.name), "  ")
        else:
            lines += entry(TrainConfig, f.name, value, "")
    return "\n".join(lines) + "\n"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_hash(config: TrainConfig) -> str:
    """sha256 of the training-relevant fields (those not in :data:`RESUMABLE_CHANGES`)."""
    flat = {k: v for k, v in _flatten(config_to_dict(config)).items() if k not in RESUMABLE_CHANGES}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()


def config_differences(old: dict[str, Any], new: TrainConfig) -> list[str]:
    """Training-relevant keys whose values differ between a saved config dict and ``new``."""
    a = {k: v for k, v in _flatten(old).items() if k not in RESUMABLE_CHANGES}
    b = {k: v for k, v in _flatten(config_to_dict(new)).items() if k not in RESUMABLE_CHANGES}
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
