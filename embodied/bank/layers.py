"""The trainable parts of one memory stream: timestep embedding, retrieval blocks, fusion.

Parameter names follow MemoryVLA's openvla code (``retrieval_blocks.{i}.q_proj``, ``ffn.0``,
``gate_fusion_blocks.proj``, ``timestep_encoder.mlp.0``, ...), so the weights of its ``per_mem_bank``
and ``cog_mem_bank`` load into our ``perceptual`` and ``cognitive`` streams after a prefix rename.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from memstream.streaming.errors import ConfigError

from .config import MemoryBankConfig


class TimestepEmbedder(nn.Module):
    """Episode step index -> a ``dim``-channel embedding: sinusoids, then Linear -> SiLU -> Linear.

    Args:
        dim: output channels (the stream's channel count).
        frequency_dim: number of sinusoidal features (cosines first, then sines; a zero is appended
            when odd).
        max_period: longest period of the sinusoids, in steps (MemoryVLA: 10000).
    """

    def __init__(self, dim: int, frequency_dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.max_period = float(max_period)
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def sinusoids(self, timestep: torch.Tensor) -> torch.Tensor:
        """float32 ``(..., frequency_dim)`` features of timesteps ``(...)``."""
        half = self.frequency_dim // 2
        exponent = torch.arange(half, dtype=torch.float32, device=timestep.device) / half
        freqs = torch.exp(-math.log(self.max_period) * exponent)
        args = timestep.float()[..., None] * freqs
        features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.frequency_dim % 2:
            features = F.pad(features, (0, 1))
        return features

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        """Embed timesteps ``(...)`` (any real values) -> ``(..., dim)`` in the MLP's dtype."""
        return self.mlp(self.sinusoids(timestep).to(self.mlp[0].weight.dtype))


class CrossTransformerBlock(nn.Module):
    """Post-norm cross-attention block: ``x = LN(q + Attn(q, k, v)); out = LN(x + FFN(x))``.

    The FFN is Linear(D, 4D) -> GELU -> Linear(4D, D). With one head this is MemoryVLA's openvla block
    exactly; dropout (dexbotic uses 0.1 on attention and FFN) applies only in training mode.
    """

    def __init__(self, dim: int, num_heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"{dim} channels cannot be split into {num_heads} attention heads",
                              "Choose MemoryBankConfig.num_heads dividing every stream's channel count")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``query (B, Q, D)`` to ``key``/``value (B, M, D)``.

        Args:
            key_valid: bool ``(B, M)``, False for padding keys; every row needs one True.

        Returns:
            ``(B, Q, D)``.
        """
        return self.attend(query, self.k_proj(key), self.v_proj(value), key_valid)

    def attend(self, query: torch.Tensor, key_projected: torch.Tensor, value_projected: torch.Tensor,
               key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` with keys and values already through ``k_proj`` / ``v_proj`` (``(B, M, D)``)."""
        dropout = self.dropout if self.training else 0.0
        q, k, v = self._heads(self.q_proj(query)), self._heads(key_projected), self._heads(value_projected)
        mask = None if key_valid is None else key_valid[:, None, None, :]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(query.shape)
        x = self.attn_norm(query + attended)
        return self.ffn_norm(x + F.dropout(self.ffn(x), dropout, self.training))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.reshape(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)


class GateFusion(nn.Module):
    """``g = sigmoid(Linear_{2D->D}([current; retrieved]))``, ``out = g * current + (1 - g) * retrieved``.

    Weights start at N(0, 1e-3) and the bias at zero, so ``g`` starts at 0.5 (MemoryVLA draws the
    bias from N(0, 1e-3) too; the difference is within 1e-3 of 0.5).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)
        nn.init.normal_(self.proj.weight, mean=0.0, std=1e-3)
        nn.init.zeros_(self.proj.bias)

    def forward(self, current: torch.Tensor, retrieved: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse ``(..., D)`` tensors; returns ``(fused, gate)``, both ``(..., D)``."""
        gate = torch.sigmoid(self.proj(torch.cat([current, retrieved], dim=-1)))
        return gate * current + (1 - gate) * retrieved, gate


class AddFusion(nn.Module):
    """MemoryVLA's ``"add"`` fusion: the average of current and retrieved tokens (no parameters)."""

    def forward(self, current: torch.Tensor, retrieved: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Fuse ``(..., D)`` tensors; returns ``(fused, None)``."""
        return (current + retrieved) * 0.5, None


class MemoryStream(nn.Module):
    """Reads one stream's bank with the current tokens and fuses the result with them.

    Args:
        dim: the stream's channel count.
        config: the bank settings (layers, heads, dropout, PE, fusion).
    """

    def __init__(self, dim: int, config: MemoryBankConfig) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"a stream's channel count must be an int >= 1, got {dim!r}")
        frequency_dim = config.resolved_frequency_dim(dim)
        if config.use_timestep_pe and frequency_dim < 2:
            raise ConfigError(f"the timestep PE of a {dim}-channel stream would have {frequency_dim} "
                              "sinusoid features",
                              "Set MemoryBankConfig.frequency_dim (>= 2)")
        self.dim = dim
        self.timestep_encoder = (TimestepEmbedder(dim, frequency_dim, config.max_period)
                                 if config.use_timestep_pe else None)
        self.retrieval_blocks = nn.ModuleList(
            CrossTransformerBlock(dim, config.num_heads, config.dropout) for _ in range(config.retrieval_layers))
        self.gate_fusion_blocks = GateFusion(dim) if config.fusion == "gate" else AddFusion()

    def forward(self, current: torch.Tensor, feats: torch.Tensor, timesteps: torch.Tensor, valid: torch.Tensor,
                projected: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Retrieve and fuse.

        Args:
            current: ``(B, N, D)`` working-memory tokens (the queries).
            feats: ``(B, S, N, D)`` stored entries, any order (attention does not depend on it).
            timesteps: float32 ``(B, S)`` step index of each entry.
            valid: bool ``(B, S)``, False for empty slots.
            projected: optional per block ``(keys, values)`` of ``feats``, each ``(B, S * N, D)``,
                as ``project_entries`` computes them (a cache); None computes them here.

        Returns:
            ``(fused, retrieved, gate)``; ``retrieved`` is ``current`` for a slot with no valid entry.
        """
        retrieved = self.retrieve(current, feats, timesteps, valid, projected)
        fused, gate = self.gate_fusion_blocks(current, retrieved)
        return fused, retrieved, gate

    def retrieve(self, current: torch.Tensor, feats: torch.Tensor, timesteps: torch.Tensor, valid: torch.Tensor,
                 projected: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """Cross-attend ``current (B, N, D)`` to the bank; keys = entries + PE(their timestep)."""
        batch, slots, tokens, dim = feats.shape
        if slots == 0:
            return current
        if projected is None:
            projected = [(k.reshape(batch, slots * tokens, dim), v.reshape(batch, slots * tokens, dim))
                         for k, v in self.project_entries(feats.to(current.dtype), timesteps)]
        empty = ~valid.any(dim=1)
        # A row with no entry attends to its first slot (whatever it holds) so softmax stays finite; the
        # result is replaced by the working memory below (MemoryVLA: "working memory as episode memory").
        valid = valid.clone()
        valid[:, 0] |= empty
        key_valid = valid[:, :, None].expand(batch, slots, tokens).reshape(batch, slots * tokens)
        query = current
        for block, (keys, values) in zip(self.retrieval_blocks, projected):
            query = block.attend(query, keys, values, key_valid)
        return torch.where(empty[:, None, None], current, query)

    def project_entries(self, feats: torch.Tensor,
                        timesteps: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per retrieval block, ``(k_proj(entry + PE(t)), v_proj(entry))`` of entries ``(..., N, D)``
        stored at ``timesteps (...)``: the PE reaches the keys only, repeated over an entry's tokens."""
        values = feats.to(self.retrieval_blocks[0].k_proj.weight.dtype)
        keys = values
        if self.timestep_encoder is not None:
            keys = values + self.timestep_encoder(timesteps)[..., None, :].to(values.dtype)
        return [(block.k_proj(keys), block.v_proj(values)) for block in self.retrieval_blocks]

    def weights_version(self) -> tuple:
        """Changes whenever a parameter is replaced or updated in place (optimizer step, load)."""
        return tuple((p.data_ptr(), p._version, p.dtype) for p in self.parameters())
