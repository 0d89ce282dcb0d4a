"""The trainable layers: sinusoid PE, post-norm cross-attention, gate fusion, keys-only PE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from memstream.embodied.bank.config import MemoryBankConfig
from memstream.embodied.bank.layers import AddFusion, CrossTransformerBlock, GateFusion, MemoryStream, TimestepEmbedder


def test_sinusoids_are_cosines_then_sines_with_period_up_to_max_period() -> None:
    embedder = TimestepEmbedder(dim=8, frequency_dim=5, max_period=10000)
    features = embedder.sinusoids(torch.tensor([0.0, 3.0]))
    assert features.shape == (2, 5)
    freqs = [math.exp(-math.log(10000) * i / 2) for i in range(2)]  # half = 2
    expected = [[math.cos(3 * f) for f in freqs] + [math.sin(3 * f) for f in freqs] + [0.0]]
    assert torch.allclose(features[1:], torch.tensor(expected), atol=1e-6)
    assert features[0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert embedder(torch.zeros(3, 4)).shape == (3, 4, 8)


def test_block_is_single_head_post_norm_attention() -> None:
    torch.manual_seed(0)
    block = CrossTransformerBlock(8)
    query, key, value = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    q, k, v = block.q_proj(query), block.k_proj(key), block.v_proj(value)
    attended = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1) @ v
    x = F.layer_norm(query + attended, (8,), block.attn_norm.weight, block.attn_norm.bias)
    ffn = block.ffn[2](F.gelu(block.ffn[0](x)))
    expected = F.layer_norm(x + ffn, (8,), block.ffn_norm.weight, block.ffn_norm.bias)
    assert torch.allclose(block(query, key, value), expected, atol=1e-5)


def test_padding_keys_are_ignored() -> None:
    torch.manual_seed(0)
    block = CrossTransformerBlock(8, num_heads=2)
    query, key, value = torch.randn(1, 3, 8), torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    padded_key = torch.cat([key, 100 * torch.randn(1, 2, 8)], dim=1)
    padded_value = torch.cat([value, 100 * torch.randn(1, 2, 8)], dim=1)
    valid = torch.tensor([[True] * 4 + [False] * 2])
    assert torch.allclose(block(query, padded_key, padded_value, valid), block(query, key, value), atol=1e-6)


def test_gate_starts_near_one_half_and_add_averages() -> None:
    torch.manual_seed(0)
    gate = GateFusion(64)
    assert torch.count_nonzero(gate.proj.bias) == 0 and abs(float(gate.proj.weight.detach().std()) - 1e-3) < 1e-4
    current, retrieved = torch.randn(4, 5, 64), torch.randn(4, 5, 64)
    with torch.no_grad():
        fused, g = gate(current, retrieved)
    # pre-activation std = 1e-3 * sqrt(128) for unit inputs, so g = 0.5 +- ~0.003
    assert abs(float(g.mean()) - 0.5) < 1e-3 and float((g - 0.5).abs().max()) < 0.02
    assert torch.allclose(fused, g * current + (1 - g) * retrieved)
    added, none = AddFusion()(current, retrieved)
    assert none is None and torch.equal(added, (current + retrieved) * 0.5)


def test_timestep_pe_goes_to_the_keys_only() -> None:
    torch.manual_seed(0)
    stream = MemoryStream(16, MemoryBankConfig(retrieval_layers=1))
    feats, timesteps = torch.randn(1, 2, 3, 16), torch.tensor([[4.0, 9.0]])
    seen = {}
    block = stream.retrieval_blocks[0]
    block.k_proj.register_forward_hook(lambda m, args, out: seen.__setitem__("key", args[0]))
    block.v_proj.register_forward_hook(lambda m, args, out: seen.__setitem__("value", args[0]))
    block.q_proj.register_forward_hook(lambda m, args, out: seen.__setitem__("query", args[0]))
    current = torch.randn(1, 3, 16)
    stream(current, feats, timesteps, torch.ones(1, 2, dtype=torch.bool))
    pe = stream.timestep_encoder(timesteps)  # (1, 2, 16), repeated over each entry's 3 tokens
    assert torch.equal(seen["value"], feats)  # (B, S, N, D): every entry's tokens
    assert torch.equal(seen["key"], feats + pe[:, :, None])  # its timestep's PE on each of its tokens
    assert torch.equal(seen["query"], current)


def test_single_key_output_does_not_depend_on_its_timestep() -> None:
    # With one key, softmax gives it weight 1 whatever the key is: the timestep only reaches the output
    # through the keys, so it changes nothing here, while with two keys it moves the attention.
    torch.manual_seed(0)
    stream = MemoryStream(16, MemoryBankConfig())
    current, valid = torch.randn(1, 1, 16), torch.ones(1, 1, dtype=torch.bool)
    one = torch.randn(1, 1, 1, 16)
    early = stream.retrieve(current, one, torch.tensor([[0.0]]), valid)
    late = stream.retrieve(current, one, torch.tensor([[50.0]]), valid)
    assert torch.allclose(early, late, atol=1e-6)
    two, valid2 = torch.randn(1, 2, 1, 16), torch.ones(1, 2, dtype=torch.bool)
    assert not torch.allclose(stream.retrieve(current, two, torch.tensor([[0.0, 1.0]]), valid2),
                              stream.retrieve(current, two, torch.tensor([[0.0, 50.0]]), valid2), atol=1e-4)


def test_parameter_names_match_memoryvla() -> None:
    names = set(MemoryStream(16, MemoryBankConfig(retrieval_layers=1)).state_dict())
    assert {"timestep_encoder.mlp.0.weight", "timestep_encoder.mlp.2.bias", "retrieval_blocks.0.q_proj.weight",
            "retrieval_blocks.0.ffn.0.weight", "retrieval_blocks.0.ffn.2.weight",
            "retrieval_blocks.0.attn_norm.weight",
            "retrieval_blocks.0.ffn_norm.bias", "gate_fusion_blocks.proj.weight"} <= names
