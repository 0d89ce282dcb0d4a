"""Settings of the perceptual-cognitive memory bank (MemoryVLA, arXiv 2508.19236).

Defaults are MemoryVLA's openvla-codebase defaults (``mem_length=16``, 2 retrieval layers, one
attention head, no dropout, timestep PE on, gate fusion, token-merge consolidation, raw tokens
stored). The dexbotic codebase ("MemoryVLA+") differs in ``num_heads=4``, ``dropout=0.1``,
``update_fused=True``, ``merge_timesteps="average"`` and ``frequency_dim=256``.
"""

from __future__ import annotations

from dataclasses import dataclass

from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import ConfigError

FUSIONS = ("gate", "add")
CONSOLIDATIONS = ("tome", "fifo", "none")
MERGE_TIMESTEPS = ("keep_first", "average")


@strict_config
@dataclass(frozen=True)
class MemoryBankConfig:
    """How each stream's bank stores, consolidates, retrieves and fuses.

    Attributes:
        capacity: entries kept per episode and stream (MemoryVLA's ``mem_length`` L; the paper uses
            16, and 256 for its long real-world tasks). After every ``update`` a bank holds at most
            ``capacity`` entries. Must be >= 2.
        retrieval_layers: cross-attention blocks the current tokens pass through to read the bank.
        num_heads: attention heads per block; must divide both streams' channel counts.
        dropout: attention and FFN dropout probability, applied only in training mode.
        use_timestep_pe: add a learned embedding of each entry's timestep to the keys (never to the
            values or the queries). Off: the keys are the raw entries (paper ablation: 69.8 vs 71.9).
        fusion: ``"gate"``: ``g * current + (1 - g) * retrieved`` with
            ``g = sigmoid(Linear([current; retrieved]))``; ``"add"``: their average.
        consolidation: what happens when an update pushes a bank past ``capacity``:
            ``"tome"`` merges the most similar adjacent pair of entries (mean over tokens of the
            per-token cosine similarity) into their average; ``"fifo"`` drops the oldest entry;
            ``"none"`` (an ablation) keeps everything, so a bank grows by one entry per step up to
            ``max_entries``, after which ``update`` raises ``BankInputError`` (storage doubles as it
            grows; memory is ``B * max_entries * N * C`` values per stream at worst).
        update_fused: store the fused tokens (dexbotic) instead of the raw current ones (openvla).
        merge_timesteps: timestep of a merged entry: the older entry's (``"keep_first"``, openvla)
            or the mean of both (``"average"``, dexbotic).
        frequency_dim: size of the sinusoidal timestep features fed to the embedding MLP; None uses
            ``channels // 4`` of each stream (openvla). Must resolve to >= 2.
        max_period: longest period of the sinusoidal features, in steps.
        max_entries: hard limit per bank with ``consolidation="none"``; ignored otherwise.
        cache_projections: with autograd off (rollouts, evaluation), keep every stored entry's
            projected keys and values per retrieval block between steps, so a step projects only the
            entries it wrote (up to 2 per slot) instead of the whole bank: several times faster, for
            ``2 * retrieval_layers`` times the bank's memory. Recomputed in full whenever a weight
            changes. Never used while autograd records (training), where the projections must be
            differentiable. Results match the uncached path to float rounding (~1e-6).
    """

    capacity: int = 16
    retrieval_layers: int = 2
    num_heads: int = 1
    dropout: float = 0.0
    use_timestep_pe: bool = True
    fusion: str = "gate"
    consolidation: str = "tome"
    update_fused: bool = False
    merge_timesteps: str = "keep_first"
    frequency_dim: int | None = None
    max_period: float = 10000.0
    max_entries: int = 4096
    cache_projections: bool = True

    def __post_init__(self) -> None:
        for name, low in (("capacity", 2), ("retrieval_layers", 1), ("num_heads", 1), ("max_entries", 2)):
            _check_int(name, getattr(self, name), low)
        if self.frequency_dim is not None:
            _check_int("frequency_dim", self.frequency_dim, 2)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"MemoryBankConfig.dropout must be a number in [0, 1), got {self.dropout!r}",
                              "Use 0.0 (openvla) or 0.1 (dexbotic)")
        period = self.max_period
        if isinstance(period, bool) or not isinstance(period, (int, float)) or not period > 1:
            raise ConfigError(f"MemoryBankConfig.max_period must be a number > 1, got {self.max_period!r}",
                              "Use 10000 (MemoryVLA)")
        for name, allowed in (("fusion", FUSIONS), ("consolidation", CONSOLIDATIONS),
                              ("merge_timesteps", MERGE_TIMESTEPS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"MemoryBankConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}",
                                  f"Use {allowed[0]!r} (MemoryVLA's default)")
        for name in ("use_timestep_pe", "update_fused", "cache_projections"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"MemoryBankConfig.{name} must be True or False, got {getattr(self, name)!r}")

    def resolved_frequency_dim(self, channels: int) -> int:
        """Sinusoid feature size for a stream of ``channels`` channels (``channels // 4`` when unset)."""
        return self.frequency_dim if self.frequency_dim is not None else channels // 4


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        fix = "MemoryVLA uses capacity 16 (256 for long tasks)" if name == "capacity" else None
        raise ConfigError(f"MemoryBankConfig.{name} must be an int >= {low}, got {value!r}", fix)
