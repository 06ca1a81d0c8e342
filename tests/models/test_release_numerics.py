"""The release's numerics where they change outputs (issue 11, item 12): the identity attention's softmax in fp32
when the model runs in bf16, and the face abstractor in the model's dtype on a GPU with the vertex branch in fp32."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fantasyid.models.configs import identity_encoder_config, tiny_mesh_hierarchy
from fantasyid.models.identity_encoder import FantasyIDIdentityEncoder
from fantasyid.models.transformer_fantasyid import IdentityAttention
from fantasyid.pipelines.loading import release_precision


def _attention_inputs(dtype):
    torch.manual_seed(0)
    attention = IdentityAttention(dim=64, identity_dim=48, num_heads=4, head_dim=16).to(dtype)
    hidden = (torch.randn(2, 300, 64) * 3).to(dtype)
    kv = attention.project_kv((torch.randn(1, 7, 48) * 3).to(dtype))
    return attention, hidden, kv


def _reference(attention, hidden, kv):
    """Written out from the release's description: q·kᵀ/√d in bf16, softmax in fp32, then back to bf16."""
    batch, tokens, _ = hidden.shape
    q = attention.to_q(attention.norm_hidden(hidden)).view(batch, tokens, 4, 16).transpose(1, 2)
    k, v = (t.expand(batch, -1, -1, -1) for t in kv)
    scores = (q * 16**-0.25) @ (k * 16**-0.25).transpose(-1, -2)
    weights = torch.softmax(scores.to(torch.float32), dim=-1).to(torch.bfloat16)
    return attention.to_out((weights @ v).transpose(1, 2).reshape(batch, tokens, 64))


def test_identity_softmax_in_fp32_under_bf16():
    attention, hidden, kv = _attention_inputs(torch.bfloat16)
    with torch.no_grad():
        got = attention(hidden, kv)
        expected = _reference(attention, hidden, kv)
        # what a plain bf16 SDPA gives: the test can tell the two apart
        batch, tokens, _ = hidden.shape
        q = attention.to_q(attention.norm_hidden(hidden)).view(batch, tokens, 4, 16).transpose(1, 2)
        k, v = (t.expand(batch, -1, -1, -1) for t in kv)
        sdpa = attention.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, 64))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.equal(sdpa, expected)


def test_identity_attention_in_fp32_is_sdpa():
    attention, hidden, kv = _attention_inputs(torch.float32)
    with torch.no_grad():
        got = attention(hidden, kv)
        expected = _reference(attention.to(torch.bfloat16), hidden.to(torch.bfloat16), [t.bfloat16() for t in kv])
    torch.testing.assert_close(got, expected.float(), rtol=0.05, atol=0.05)  # same maths, another precision


def test_face_abstractor_in_bf16_on_a_gpu_vertex_branch_in_fp32():
    torch.manual_seed(0)
    encoder = FantasyIDIdentityEncoder(**identity_encoder_config("tiny")).eval()
    encoder.load_mesh(tiny_mesh_hierarchy())
    release_precision(encoder, torch.device("cpu"), torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in encoder.parameters())  # nothing changes on the CPU
    release_precision(encoder, torch.device("cuda"), torch.bfloat16)  # only casts: runs on the CPU too
    assert all(p.dtype == torch.bfloat16 for p in encoder.face_abstractor.parameters())
    others = [p for n, p in encoder.named_parameters() if not n.startswith("face_abstractor.")]
    assert others and all(p.dtype == torch.float32 for p in others)

    c = encoder.config
    hidden = [torch.randn(1, c.clip_grid_size**2 + 1, c.clip_hidden_dim) for _ in range(c.num_clip_layers)]
    vertices = torch.randn(1, c.mesh_num_vertices[0], 3) * 0.1
    with torch.no_grad():
        tokens = encoder(hidden, vertices)
        face = encoder.face_abstractor([h.bfloat16() for h in hidden])  # bf16 in, bf16 out
        vertex = encoder.reducer(encoder.encode_vertices(vertices, face))  # fp32 vertex branch
    assert face.dtype == torch.bfloat16 and vertex.dtype == torch.float32
    torch.testing.assert_close(tokens, torch.cat([face, vertex.bfloat16()], dim=1), rtol=0, atol=0)
