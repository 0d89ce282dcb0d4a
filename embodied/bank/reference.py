"""Plain, one-episode bank: the specification the batched ``BankStorage`` is tested against.

A list of ``(timestep, feat (N, D))`` entries, oldest first, consolidated by MemoryVLA's loop
(``CogMemBank._memory_consolidate`` in ``vla/memory_vla.py``, openvla branch): append, then *while*
the bank holds more than ``capacity`` entries, merge the most similar adjacent pair (``"tome"``) or
keep the last ``capacity`` (``"fifo"``); ``reference_read`` is its per-sample retrieval. Slow on
purpose (Python loops over pairs and slots); not used by the module.

Example:
    >>> bank = ReferenceBank(MemoryBankConfig(capacity=2))
    >>> for t in range(3):
    ...     bank.append(torch.ones(1, 4) * (t + 1), t)
    >>> [t for t, _ in bank.entries]
    [0.0, 2.0]
"""

from __future__ import annotations

import torch

from .config import MemoryBankConfig
from .layers import MemoryStream
from .storage import pair_similarity


class ReferenceBank:
    """One episode's entries under MemoryVLA's consolidation rules.

    Args:
        config: capacity, consolidation (``"tome"``, ``"fifo"`` or ``"none"``), timestep-merge rule.
    """

    def __init__(self, config: MemoryBankConfig) -> None:
        self.config = config
        self.entries: list[tuple[float, torch.Tensor]] = []

    @torch.no_grad()
    def append(self, feat: torch.Tensor, timestep: float) -> None:
        """Store ``feat (N, D)`` taken at ``timestep``, then consolidate."""
        self.entries.append((float(timestep), feat.detach().clone()))
        while self.config.consolidation != "none" and len(self.entries) > self.config.capacity:
            if self.config.consolidation == "fifo":
                self.entries = self.entries[-self.config.capacity:]
            else:
                self._merge_most_similar()

    def _merge_most_similar(self) -> None:
        scores = [float(pair_similarity(self.entries[i][1], self.entries[i + 1][1]))
                  for i in range(len(self.entries) - 1)]
        first = int(torch.tensor(scores).argmax())  # first maximum on ties, as torch.argmax
        (time_i, feat_i), (time_j, feat_j) = self.entries[first], self.entries[first + 1]
        if self.config.merge_timesteps == "average":
            # float32 as the batched storage keeps it (MemoryVLA averages whatever tensor it was given)
            time_i = float(torch.tensor(0.5, dtype=torch.float32) * (torch.tensor(time_i) + torch.tensor(time_j)))
        self.entries[first] = (time_i, 0.5 * (feat_i + feat_j))
        del self.entries[first + 1]

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(timesteps float32 (T,), feats (T, N, D))`` oldest first."""
        if not self.entries:
            raise ValueError("the bank is empty")
        return (torch.tensor([t for t, _ in self.entries], dtype=torch.float32),
                torch.stack([f for _, f in self.entries]))


def reference_read(stream: MemoryStream, current: torch.Tensor,
                   bank: ReferenceBank) -> tuple[torch.Tensor, torch.Tensor]:
    """MemoryVLA's per-sample retrieval and fusion (``process_batch`` steps 2-3) for one slot.

    Args:
        stream: the layers to use (the batched module's own, so results are comparable).
        current: ``(N, D)`` this step's tokens of the slot.
        bank: the slot's entries.

    Returns:
        ``(fused, retrieved)``, each ``(N, D)``: all entries stacked into ``(1, T * N, D)`` keys (plus the
        timestep embedding repeated over each entry's tokens) and values, no mask; an empty bank
        retrieves the working memory itself.
    """
    working = current[None]
    if bank.entries:
        timesteps, feats = bank.stacked()
        tokens = feats.shape[1]
        episode = feats.reshape(1, -1, feats.shape[-1]).to(current.dtype)
        keys = episode
        if stream.timestep_encoder is not None:
            pe = stream.timestep_encoder(timesteps.to(current.device))[None]  # (1, T, D)
            keys = episode + pe.repeat_interleave(tokens, dim=1)
        retrieved = working
        for block in stream.retrieval_blocks:
            retrieved = block(retrieved, keys, episode)
    else:
        retrieved = working
    fused, _ = stream.gate_fusion_blocks(working, retrieved)
    return fused[0], retrieved[0]
