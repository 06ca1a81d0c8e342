"""Table 3's module ablations as swaps on a built identity branch (the data ablation, "w/o MFC", is ``data.views``).

* **w/o FA** — :class:`QFormerAbstractor` replaces the C-Abstractor face abstractor: learned queries cross-attend
  to the EVA-CLIP features (IP-Adapter-Plus's Perceiver resampler, 4 layers), giving the same number of face tokens
  of the same width (:func:`use_qformer`; the encoder's config records ``face_abstractor_type="qformer"``).
* **w/o FV** — :class:`IdentityBranch` with ``vertex_tokens=False``: the face tokens alone are ``V_F`` (projected to
  the identity width when the face tokens are narrower; :func:`drop_vertex_tokens`, recorded as
  ``vertex_tokens=False``).

Both switches live in the identity encoder's config, so an exported ablation loads and generates as trained.
* **w/o LACSI** — :func:`drop_layer_refiner` removes the paper's ``F_l`` after each injection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..models.qformer import QFormerAbstractor

__all__ = ["IdentityBranch", "QFormerAbstractor", "drop_layer_refiner", "drop_vertex_tokens", "use_qformer"]


def use_qformer(identity_encoder) -> None:
    """w/o FA: replace the encoder's face abstractor by a :class:`QFormerAbstractor` of the same output shape (the
    encoder's config records it: an export loads with the Q-Former)."""
    from ..models.identity_encoder import qformer_abstractor

    identity_encoder.face_abstractor = qformer_abstractor(identity_encoder.config)
    identity_encoder.register_to_config(face_abstractor_type="qformer")


def drop_vertex_tokens(identity_encoder) -> None:
    """w/o FV: the encoder returns its face tokens alone (lifted to the identity width when narrower); the config
    records it, so the pipeline of an export forms the tokens the same way."""
    from ..models.identity_encoder import face_to_identity

    identity_encoder.face_to_identity = face_to_identity(identity_encoder.config, vertex_tokens=False)
    identity_encoder.register_to_config(vertex_tokens=False)


def drop_layer_refiner(transformer) -> None:
    """w/o LACSI: no ``F_l`` after the identity attention (the release's injection)."""
    for layer in transformer.identity_attention:
        layer.refiner = None
    transformer.register_to_config(identity_refiner=None)


class IdentityBranch(nn.Module):
    """Identity tokens with gradients: EVA-CLIP hidden states + vertices → ``(B, N_id, identity_dim)``.

    ``vertex_tokens=False`` ("w/o FV") switches the encoder to its face tokens alone (:func:`drop_vertex_tokens`);
    the encoder's vertex modules are then unused.
    """

    def __init__(self, identity_encoder, vertex_tokens: bool = True):
        super().__init__()
        if not vertex_tokens and identity_encoder.config.vertex_tokens:
            drop_vertex_tokens(identity_encoder)
        self.encoder = identity_encoder
        self.vertex_tokens = identity_encoder.config.vertex_tokens

    def vertex_module_names(self) -> list[str]:
        """Encoder parameters that only the vertex path uses (unused, hence frozen, in "w/o FV")."""
        prefixes = ("vertex_queries", "vertex_encoder.", "face_to_vertex.", "fusion.", "vertex_decoder.", "reducer.")
        return [name for name, _ in self.encoder.named_parameters() if name.startswith(prefixes)]

    def forward(self, clip_hidden_states: Sequence[torch.Tensor], vertices: torch.Tensor) -> torch.Tensor:
        return self.encoder(clip_hidden_states, vertices)
