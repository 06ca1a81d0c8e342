"""Faster generation: diffusers' cache hooks and regional ``torch.compile`` on FantasyID's transformer.

Caches (``--cache NAME[:key=value,...]``), each diffusers' own hook (``diffusers.hooks``), on our transformer as is:

- ``fbc`` — First-Block Cache: when the first block's output residual barely changed since the last full call,
  the other blocks are skipped and their cached residual is added instead. Block-level: each
  :class:`~fantasyid.models.transformer_fantasyid.FantasyIDBlock` includes its identity injection, so the cached
  residual does too.
- ``pab`` — Pyramid Attention Broadcast: the blocks' self-attention outputs are reused for a few steps in the middle
  of the schedule.
- ``fastercache`` — FasterCache: reuses attention outputs and approximates the unconditional half of
  classifier-free guidance from the conditional one on most steps (needs guidance > 1).
- ``taylorseer`` — TaylorSeer: predicts the blocks' self-attention outputs from a Taylor expansion over past steps.

MagCache is not offered: it needs magnitude ratios calibrated for the checkpoint, and none exist for FantasyID.
The identity attention itself is never cached (it is cheap: a few hundred identity tokens).

Options are the fields of the diffusers config (``FirstBlockCacheConfig`` …); our defaults are diffusers' documented
CogVideoX settings. Ranges are written ``LOW..HIGH``. The pipeline counts what was really skipped: hooks from
:class:`SkipCounter` sit inside and outside each cache hook and count the calls made and the calls that ran.

This module imports torch and diffusers only inside functions, so that settings can be checked before anything heavy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

__all__ = ["CACHE_METHODS", "CacheSpec", "Acceleration", "accelerate", "describe_skips", "remove_cache"]

#: method → (diffusers config class, our defaults, one-line description)
CACHE_METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "fbc": (
        "FirstBlockCacheConfig",
        {"threshold": 0.05},
        "First-Block Cache (skips blocks 1…L-1 when block 0 barely changes)",
    ),
    "pab": (
        "PyramidAttentionBroadcastConfig",
        {"spatial_attention_block_skip_range": 2, "spatial_attention_timestep_skip_range": (100, 800)},
        "Pyramid Attention Broadcast (reuses self-attention outputs mid-schedule)",
    ),
    "fastercache": (
        "FasterCacheConfig",
        {
            "spatial_attention_block_skip_range": 2,
            "spatial_attention_timestep_skip_range": (-1, 681),
            "low_frequency_weight_update_timestep_range": (99, 641),
            "high_frequency_weight_update_timestep_range": (-1, 301),
            "unconditional_batch_skip_range": 5,
            "unconditional_batch_timestep_skip_range": (-1, 641),
            "attention_weight": 0.3,
        },
        "FasterCache (reuses attention, approximates the unconditional CFG half)",
    ),
    "taylorseer": (
        "TaylorSeerCacheConfig",
        {"cache_interval": 5, "disable_cache_before_step": 3, "max_order": 1},
        "TaylorSeer (predicts self-attention outputs from past steps)",
    ),
}

# Our blocks' self-attention modules, by name (diffusers' default patterns expect modules named "…attn").
_SELF_ATTENTION = r"transformer_blocks\.\d+\.attn1"


def _parse_value(key: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, tuple):
            low, sep, high = text.partition("..")
            if not sep:
                raise ValueError
            return (type(default[0])(float(low)) if isinstance(default[0], int) else float(low),
                    type(default[1])(float(high)) if isinstance(default[1], int) else float(high))
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(default, int):
            return int(text)
        return float(text)
    except ValueError:
        example = "LOW..HIGH" if isinstance(default, tuple) else type(default).__name__
        raise InputError(f"--cache option {key}={text!r} is not a valid {example}") from None


@dataclass(frozen=True)
class CacheSpec:
    """A cache method and its options, e.g. ``CacheSpec.parse("fbc:threshold=0.1")``."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> CacheSpec:
        """``NAME`` or ``NAME:key=value,key=value`` (ranges as ``LOW..HIGH``); unknown names and keys are errors."""
        name, _, rest = text.strip().partition(":")
        name = name.strip().lower()
        if name not in CACHE_METHODS:
            raise InputError(f"unknown cache {name!r}", hint=f"use one of: {', '.join(CACHE_METHODS)}")
        options = dict(CACHE_METHODS[name][1])
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in options:
                raise InputError(
                    f"--cache {name}: unknown option {item!r}",
                    hint=f"options of {name}: {', '.join(f'{k}={v}' for k, v in CACHE_METHODS[name][1].items())}",
                )
            options[key] = _parse_value(key, value.strip(), options[key])
        return cls(name, options)

    def __str__(self) -> str:
        def show(value):
            return f"{value[0]}..{value[1]}" if isinstance(value, tuple) else str(value)

        return self.method + ":" + ",".join(f"{k}={show(v)}" for k, v in self.options.items())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the method, diffusers' config class and every option."""
        return {
            "method": self.method,
            "diffusers_config": CACHE_METHODS[self.method][0],
            **{k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
        }

    def diffusers_config(self, current_timestep):
        """The diffusers config object; ``current_timestep()`` returns the timestep being denoised."""
        import diffusers.hooks as hooks

        options = dict(self.options)
        if self.method == "fbc":
            return hooks.FirstBlockCacheConfig(**options)
        if self.method == "pab":
            return hooks.PyramidAttentionBroadcastConfig(current_timestep_callback=current_timestep, **options)
        if self.method == "fastercache":
            weight = options.pop("attention_weight")
            return hooks.FasterCacheConfig(
                current_timestep_callback=current_timestep,
                attention_weight_callback=lambda _module: weight,
                spatial_attention_block_identifiers=(_SELF_ATTENTION,),
                tensor_format="BFCHW",  # the transformer returns (B, F, C, H, W)
                **options,
            )
        return hooks.TaylorSeerCacheConfig(cache_identifiers=[_SELF_ATTENTION], taylor_factors_dtype=None, **options)


def _register_block_metadata() -> None:
    """Tell diffusers' block registry that FantasyIDBlock returns what CogVideoXBlock returns."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    from ..models.transformer_fantasyid import FantasyIDBlock

    TransformerBlockRegistry.register(
        FantasyIDBlock, TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=1)
    )


class SkipCounter:
    """Counts calls of the blocks and self-attentions (outer hooks) and how many really ran (inner hooks)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hook(self, key: str, batch_of: str | None = None):
        from diffusers.hooks import ModelHook

        counts = self.counts

        class _Count(ModelHook):
            def pre_forward(self, module, *args, **kwargs):
                counts[key] = counts.get(key, 0) + 1
                if batch_of is not None:  # the transformer's own call: count the CFG batch it really got
                    hidden = kwargs.get(batch_of, args[0] if args else None)
                    counts[key + "_samples"] = counts.get(key + "_samples", 0) + int(hidden.shape[0])
                return args, kwargs

        return _Count()

    def reset(self) -> None:
        self.counts.clear()


@dataclass
class Acceleration:
    """What :func:`accelerate` set up on a pipeline; the pipeline calls :meth:`start_video`, :meth:`step_context`
    and :meth:`report` around each video."""

    cache: CacheSpec | None
    compiled: bool
    transformer: Any
    counter: SkipCounter = field(default_factory=SkipCounter)

    def start_video(self) -> None:
        """Forget the previous video: the hooks' state and the counts."""
        if self.cache is not None:
            self.transformer._reset_stateful_cache()
        self.counter.reset()

    def step_context(self):
        """Around each transformer call of the denoising loop (diffusers' cache hooks need a named context)."""
        if self.cache is None:
            return contextlib.nullcontext()
        return self.transformer.cache_context("cond_uncond")

    def report(self) -> dict[str, Any]:
        """Settings and what was skipped in the last video (JSON-ready)."""
        out: dict[str, Any] = {"compile": self.compiled, "cache": None if self.cache is None else self.cache.to_dict()}
        if self.cache is None:
            return out
        c = self.counter.counts
        calls, samples = c.get("transformer_calls", 0), c.get("transformer_ran_samples", 0)
        blocks_called, blocks_ran = c.get("blocks_called", 0), c.get("blocks_ran", 0)
        attn_called, attn_ran = c.get("attention_called", 0), c.get("attention_ran", 0)
        num_blocks = len(self.transformer.transformer_blocks)
        out["skipped"] = {
            "transformer_calls": calls,
            # First-Block Cache: a call whose blocks 1…L-1 all returned the cache
            "transformer_calls_skipped": (blocks_called - blocks_ran) // max(num_blocks - 1, 1),
            "blocks_called": blocks_called,
            "blocks_skipped": blocks_called - blocks_ran,
            "attention_called": attn_called,
            "attention_skipped": attn_called - attn_ran,
            # FasterCache: unconditional CFG halves approximated instead of computed
            "cfg_halves_skipped": (2 * calls - samples) if samples else 0,
        }
        return out


def accelerate(pipe, cache: CacheSpec | str | None = None, compile: bool = False, compile_kwargs: dict | None = None):
    """Enable a cache and/or regional compilation on ``pipe.transformer``; sets and returns ``pipe.acceleration``.

    With neither, nothing is changed and ``pipe.acceleration`` is ``None`` (outputs bit-identical to no call).
    ``compile`` compiles every :class:`~fantasyid.models.transformer_fantasyid.FantasyIDBlock` with
    ``torch.compile`` (diffusers' ``compile_repeated_blocks``; ``compile_kwargs`` go to ``torch.compile``).
    """
    if isinstance(cache, str):
        cache = CacheSpec.parse(cache)
    if cache is None and not compile:
        pipe.acceleration = None
        return None
    transformer = pipe.transformer
    if getattr(pipe, "acceleration", None) is not None or transformer.is_cache_enabled:
        raise InputError("this pipeline is already accelerated", hint="load a fresh pipeline to change the settings")
    acceleration = Acceleration(cache, compile, transformer)
    if cache is not None:
        from diffusers.hooks import HookRegistry

        _register_block_metadata()
        counter = acceleration.counter
        blocks = list(transformer.transformer_blocks)
        modules = [("blocks", block) for block in blocks] + [("attention", block.attn1) for block in blocks]
        # inner hooks first: a cache hook registered later wraps them, so they count only the calls that ran
        HookRegistry.check_if_exists_or_initialize(transformer).register_hook(
            counter.hook("transformer_ran", batch_of="hidden_states"), "fantasyid_count_ran"
        )
        for kind, module in modules:
            registry = HookRegistry.check_if_exists_or_initialize(module)
            registry.register_hook(counter.hook(f"{kind}_ran"), "fantasyid_count_ran")
        transformer.enable_cache(cache.diffusers_config(lambda: pipe.current_timestep))
        HookRegistry.check_if_exists_or_initialize(transformer).register_hook(
            counter.hook("transformer_calls"), "fantasyid_count_called"
        )
        for kind, module in modules:
            HookRegistry.check_if_exists_or_initialize(module).register_hook(
                counter.hook(f"{kind}_called"), "fantasyid_count_called"
            )
        HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()
    if compile:
        transformer.compile_repeated_blocks(**(compile_kwargs or {}))
    pipe.acceleration = acceleration
    return acceleration


def remove_cache(pipe) -> None:
    """Undo :func:`accelerate`'s cache (diffusers' hooks and our counters): the transformer computes every call
    again. Compiled blocks stay compiled."""
    from diffusers.hooks import HookRegistry

    acceleration = pipe.acceleration
    if acceleration is None or acceleration.cache is None:
        return
    transformer = pipe.transformer
    transformer.disable_cache()
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    for name in ("fantasyid_count_ran", "fantasyid_count_called"):
        registry.remove_hook(name, recurse=True)
    registry.invalidate_child_registries_cache()
    pipe.acceleration = Acceleration(None, True, transformer) if acceleration.compiled else None


def describe_skips(skipped: dict[str, int]) -> str:
    """One line for people: what the cache skipped in a video (from :meth:`Acceleration.report`)."""
    parts = []
    if skipped["transformer_calls_skipped"]:
        parts.append(f"{skipped['transformer_calls_skipped']} of {skipped['transformer_calls']} transformer calls")
    if skipped["blocks_skipped"]:
        parts.append(f"{skipped['blocks_skipped']} of {skipped['blocks_called']} block calls")
    if skipped["attention_skipped"]:
        parts.append(f"{skipped['attention_skipped']} of {skipped['attention_called']} self-attention calls")
    if skipped["cfg_halves_skipped"]:
        parts.append(f"{skipped['cfg_halves_skipped']} unconditional CFG halves")
    return "skipped " + ", ".join(parts) if parts else "skipped nothing"
