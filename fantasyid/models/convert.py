"""Convert the authors' released transformer state dict into ours, strictly.

The release keeps everything in one state dict (``transformer/*.safetensors``): the CogVideoX-5B-I2V base under
diffusers' names, the identity branch (``face_abstractor.*``, ``vertex_spiral_net.*``, ``vertex_reducer.*``) and
the per-block injections (``layer_attention.{i}.*``). :func:`convert_released_state_dict` splits it into

* the transformer's state dict (:class:`~fantasyid.models.transformer_fantasyid.FantasyIDTransformer3DModel`):
  base keys unchanged, ``layer_attention.{i}.*`` → ``identity_attention.{i}.*``;
* the identity encoder's state dict (:class:`~fantasyid.models.identity_encoder.FantasyIDIdentityEncoder`), renamed
  by the explicit table :data:`IDENTITY_KEY_RULES`.

Every released key must be mapped and every key the mapping expects must be present (with the expected shape);
anything else raises :class:`~fantasyid.errors.CheckpointError`. The encoder's mesh buffers are not weights: they
are filled by :meth:`~fantasyid.models.identity_encoder.FantasyIDIdentityEncoder.load_mesh`, never by a checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = [
    "IDENTITY_KEY_RULES",
    "check_state_dict",
    "convert_identity_state_dict",
    "convert_released_state_dict",
    "released_identity_key",
]

# Top-level modules of diffusers' CogVideoXTransformer3DModel: their keys pass through unchanged.
BASE_PREFIXES = (
    "patch_embed.",
    "time_embedding.",
    "ofs_embedding.",
    "transformer_blocks.",
    "norm_final.",
    "norm_out.",
    "proj_out.",
)
IDENTITY_PREFIXES = ("face_abstractor.", "vertex_spiral_net.", "vertex_reducer.")
INJECTION_PREFIX = "layer_attention."

# Released injection module (LayerAttention) → IdentityAttention, per layer index.
INJECTION_KEY_MAP = {
    "norm1.weight": "norm_kv.weight",  # LayerNorm of the identity tokens
    "norm1.bias": "norm_kv.bias",
    "norm2.weight": "norm_hidden.weight",  # LayerNorm of the video tokens
    "norm2.bias": "norm_hidden.bias",
    "to_q.weight": "to_q.weight",
    "to_kv.weight": "to_kv.weight",
    "to_out.weight": "to_out.weight",
}

# Released identity-branch key → our encoder key. Placeholders: {n} an index, {p} weight|bias, {rest} anything; {m}
# is {n} - 1 (the release numbers its reducer blocks from 1). Each rule maps one-to-one, so the table also maps
# back (released_identity_key).
IDENTITY_KEY_RULES: tuple[tuple[str, str], ...] = (
    # Face abstractor
    ("face_abstractor.proj_out", "face_abstractor.proj_out"),
    ("face_abstractor.latents", "face_abstractor.latent_queries"),
    ("face_abstractor.id_embedding_mapping.0.{p}", "face_abstractor.id_embedding_mapping.linear_1.{p}"),
    ("face_abstractor.id_embedding_mapping.1.{p}", "face_abstractor.id_embedding_mapping.norm_1.{p}"),
    ("face_abstractor.id_embedding_mapping.3.{p}", "face_abstractor.id_embedding_mapping.linear_2.{p}"),
    ("face_abstractor.id_embedding_mapping.4.{p}", "face_abstractor.id_embedding_mapping.norm_2.{p}"),
    ("face_abstractor.id_embedding_mapping.6.{p}", "face_abstractor.id_embedding_mapping.linear_3.{p}"),
    ("face_abstractor.mapping_{n}.0.{p}", "face_abstractor.feature_mappings.{n}.linear_1.{p}"),
    ("face_abstractor.mapping_{n}.1.{p}", "face_abstractor.feature_mappings.{n}.norm_1.{p}"),
    ("face_abstractor.mapping_{n}.3.{p}", "face_abstractor.feature_mappings.{n}.linear_2.{p}"),
    ("face_abstractor.mapping_{n}.4.{p}", "face_abstractor.feature_mappings.{n}.norm_2.{p}"),
    ("face_abstractor.mapping_{n}.6.{p}", "face_abstractor.feature_mappings.{n}.linear_3.{p}"),
    ("face_abstractor.layers.{n}.0.pos_emb", "face_abstractor.layers.{n}.abstractor.pos_embed"),
    ("face_abstractor.layers.{n}.0.net.0.{rest}", "face_abstractor.layers.{n}.abstractor.stage1.{rest}"),
    ("face_abstractor.layers.{n}.0.net.2.{rest}", "face_abstractor.layers.{n}.abstractor.stage2.{rest}"),
    ("face_abstractor.layers.{n}.0.readout.{rest}", "face_abstractor.layers.{n}.abstractor.readout.{rest}"),
    ("face_abstractor.layers.{n}.1.0.{p}", "face_abstractor.layers.{n}.ffn.norm.{p}"),
    ("face_abstractor.layers.{n}.1.1.weight", "face_abstractor.layers.{n}.ffn.fc1.weight"),
    ("face_abstractor.layers.{n}.1.3.weight", "face_abstractor.layers.{n}.ffn.fc2.weight"),
    # Vertex queries, face-token MLPs, fusion transformer, spiral decoder
    ("vertex_spiral_net.vtx_query", "vertex_queries"),
    ("vertex_spiral_net.hw_down.{n}.{rest}", "face_to_vertex.{n}.{rest}"),
    ("vertex_spiral_net.transformer.layers.{n}.0.norm.{p}", "fusion.blocks.{n}.norm1.{p}"),
    ("vertex_spiral_net.transformer.layers.{n}.0.fn.to_qkv.weight", "fusion.blocks.{n}.attn.to_qkv.weight"),
    ("vertex_spiral_net.transformer.layers.{n}.0.fn.to_out.0.{p}", "fusion.blocks.{n}.attn.to_out.{p}"),
    ("vertex_spiral_net.transformer.layers.{n}.1.norm.{p}", "fusion.blocks.{n}.norm2.{p}"),
    ("vertex_spiral_net.transformer.layers.{n}.1.fn.net.0.{p}", "fusion.blocks.{n}.mlp.fc1.{p}"),
    ("vertex_spiral_net.transformer.layers.{n}.1.fn.net.3.{p}", "fusion.blocks.{n}.mlp.fc2.{p}"),
    ("vertex_spiral_net.vtx_upsampler.de_layers.{n}.conv.layer.{p}", "vertex_decoder.layers.{n}.conv.linear.{p}"),
    ("vertex_spiral_net.vtx_upsampler.de_layers.{n}.layer.{p}", "vertex_decoder.layers.{n}.linear.{p}"),
    ("vertex_spiral_net.vtx_descriptor_head.0.{p}", "vertex_decoder.head.{p}"),
    # ResConv1D (Conv1DReducer4)
    ("vertex_reducer.conv_block{n}.conv_in.conv1d.{p}", "reducer.blocks.{m}.conv_in.conv.{p}"),
    ("vertex_reducer.conv_block{n}.conv_in.group_norm.{p}", "reducer.blocks.{m}.conv_in.norm.{p}"),
    ("vertex_reducer.conv_block{n}.conv_out.conv1d.{p}", "reducer.blocks.{m}.conv_out.conv.{p}"),
    ("vertex_reducer.conv_block{n}.conv_out.group_norm.{p}", "reducer.blocks.{m}.conv_out.norm.{p}"),
    ("vertex_reducer.conv_block{n}.residual_conv.{p}", "reducer.blocks.{m}.shortcut.{p}"),
)

_PLACEHOLDERS = {"n": r"(?P<n>\d+)", "m": r"(?P<m>\d+)", "p": r"(?P<p>weight|bias)", "rest": r"(?P<rest>.+)"}


def _compile(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile(
        "".join(_PLACEHOLDERS[part[1:-1]] if part.startswith("{") else re.escape(part) for part in parts) + r"\Z"
    )


def _fill(template: str, groups: dict[str, str]) -> str:
    values = dict(groups)
    if "n" in values and "m" not in values:
        values["m"] = str(int(values["n"]) - 1)
    if "m" in values and "n" not in values:
        values["n"] = str(int(values["m"]) + 1)
    return template.format(**values)


_FORWARD = [(_compile(released), ours) for released, ours in IDENTITY_KEY_RULES]
_BACKWARD = [(_compile(ours), released) for released, ours in IDENTITY_KEY_RULES]


def _translate(key: str, rules) -> str | None:
    for pattern, template in rules:
        match = pattern.match(key)
        if match:
            return _fill(template, match.groupdict())
    return None


def released_identity_key(key: str) -> str:
    """Our identity-encoder key → the release's name for it (``CheckpointError`` if the release has none)."""
    released = _translate(key, _BACKWARD)
    if released is None:
        raise CheckpointError(f"the released checkpoint has no counterpart of {key!r}")
    return released


def _listing(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return f"{shown}, … ({len(keys)} in all)" if len(keys) > limit else shown


def _expected_identity_shapes(config: Mapping | None) -> dict[str, tuple[int, ...]]:
    """Key → shape of an identity encoder's weights (mesh buffers excluded), built on the meta device."""
    from .configs import identity_encoder_config
    from .identity_encoder import FantasyIDIdentityEncoder

    config = identity_encoder_config("released") if config is None else dict(config)
    with torch.device("meta"):
        model = FantasyIDIdentityEncoder(**config)
    mesh = set(model.mesh_buffer_names())
    return {key: tuple(value.shape) for key, value in model.state_dict().items() if key not in mesh}


def convert_identity_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: Mapping | None = None
) -> dict[str, torch.Tensor]:
    """Released identity-branch tensors (``face_abstractor.*``, ``vertex_spiral_net.*``, ``vertex_reducer.*``) →
    our encoder's state dict (without mesh buffers).

    ``config`` is the encoder's config (default: the ``released`` one); it fixes which keys and shapes are
    expected. Unknown, missing or mis-shaped keys raise :class:`CheckpointError`.
    """
    if config is not None and config.get("variant", "released") != "released":
        raise CheckpointError(
            f"the released checkpoint fits only the 'released' identity encoder variant, not {config['variant']!r}"
        )
    expected = _expected_identity_shapes(config)
    converted: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    unknown = []
    for key, value in state_dict.items():
        ours = _translate(key, _FORWARD)
        if ours is None or ours not in expected:
            unknown.append(key)
            continue
        converted[ours] = value
        source[ours] = key
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} unknown identity keys in the released checkpoint: {_listing(unknown)}",
            hint="is this the FantasyID transformer checkpoint, and does the identity config match it?",
        )
    missing = [released_identity_key(key) for key in expected if key not in converted]
    if missing:
        raise CheckpointError(
            f"{len(missing)} identity keys missing from the released checkpoint: {_listing(missing)}",
            hint="the checkpoint is incomplete (all transformer/*.safetensors shards must be loaded)",
        )
    wrong = [
        f"{source[key]} {tuple(value.shape)} (expected {expected[key]})"
        for key, value in converted.items()
        if tuple(value.shape) != expected[key]
    ]
    if wrong:
        raise CheckpointError(f"{len(wrong)} identity keys have unexpected shapes: {_listing(wrong)}")
    return converted


def _convert_injection(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``layer_attention.{i}.*`` → ``identity_attention.{i}.*``; indices must run 0 … n-1, each complete."""
    converted: dict[str, torch.Tensor] = {}
    unknown, indices = [], set()
    for key, value in state_dict.items():
        match = re.match(r"layer_attention\.(\d+)\.(.+)\Z", key)
        if match is None or match.group(2) not in INJECTION_KEY_MAP:
            unknown.append(key)
            continue
        index = int(match.group(1))
        indices.add(index)
        converted[f"identity_attention.{index}.{INJECTION_KEY_MAP[match.group(2)]}"] = value
    if unknown:
        raise CheckpointError(f"{len(unknown)} unknown injection keys in the released checkpoint: {_listing(unknown)}")
    missing = [
        f"layer_attention.{index}.{suffix}"
        for index in range(max(indices, default=-1) + 1)
        for suffix, ours in INJECTION_KEY_MAP.items()
        if f"identity_attention.{index}.{ours}" not in converted
    ]
    if missing:
        raise CheckpointError(
            f"{len(missing)} injection keys missing from the released checkpoint: {_listing(missing)}"
        )
    return converted


def convert_released_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    identity_config: Mapping | None = None,
    require_base: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split the released transformer state dict into ``(transformer_state_dict, identity_encoder_state_dict)``.

    Args:
        state_dict: every tensor of the released ``transformer/`` folder (all shards merged).
        identity_config: the identity encoder's config (default: ``identity_encoder_config("released")``).
        require_base: demand the CogVideoX base weights (turn off to convert only the identity modules and
            injections, e.g. for tests on the identity branch).

    The base keys pass through unchanged (the transformer's own :func:`check_state_dict` checks them); an
    injection layer or identity key that is unknown, missing or mis-shaped raises :class:`CheckpointError`.
    """
    base, identity, injection, unknown = {}, {}, {}, []
    for key, value in state_dict.items():
        if key.startswith(BASE_PREFIXES):
            base[key] = value
        elif key.startswith(IDENTITY_PREFIXES):
            identity[key] = value
        elif key.startswith(INJECTION_PREFIX):
            injection[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} unknown keys in the released checkpoint: {_listing(unknown)}",
            hint="expected CogVideoX keys, face_abstractor.*, vertex_spiral_net.*, vertex_reducer.*, layer_attention.*",
        )
    if require_base and not base:
        raise CheckpointError(
            "the released checkpoint has no CogVideoX base weights",
            hint="load every transformer/*.safetensors shard, or pass require_base=False for the identity part only",
        )
    if not injection:
        raise CheckpointError("the released checkpoint has no layer_attention.* (identity injection) weights")
    transformer = {**base, **_convert_injection(injection)}
    return transformer, convert_identity_state_dict(identity, identity_config)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, exclude: Iterable[str] = ()) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` has exactly ``model``'s keys and shapes.

    ``exclude`` names model keys that are not expected in ``state_dict`` (e.g. the identity encoder's
    :meth:`~fantasyid.models.identity_encoder.FantasyIDIdentityEncoder.mesh_buffer_names`, filled by ``load_mesh``).
    """
    exclude = set(exclude)
    reference = {key: tuple(value.shape) for key, value in model.state_dict().items() if key not in exclude}
    missing = [key for key in reference if key not in state_dict]
    unexpected = [key for key in state_dict if key not in reference]
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} (expected {shape})"
        for key, shape in reference.items()
        if key in state_dict and tuple(state_dict[key].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} with wrong shapes: {_listing(wrong)}")
    if problems:
        raise CheckpointError(f"state dict does not fit {type(model).__name__}: " + "; ".join(problems))
