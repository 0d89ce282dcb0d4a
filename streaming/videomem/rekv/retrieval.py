"""Retrieval policies: which stored frame blocks a question is answered from.

A retrieval policy is asked once per decoder layer, inside the question's retrieval pass, for the
blocks that layer attends to. Every layer gets the same number of blocks (:meth:`count`), so the
answer's positions are the same in every layer.

* :class:`InternalRetrieval` is ReKV's: the question's mean un-rotated query at this layer against
  each block's representative key (the mean of its un-rotated keys), plain dot product, top-k per
  layer, optional grouping of consecutive blocks, results in time order
  (``model/attention/kv_cache_manager.py: _calc_block_topk`` in Becomebright/ReKV).
* :class:`ExternalRetrieval` scores frames once per question with a separate frame/text embedder
  (ReKV's paper, Table 5), so all layers share the same frames.
* :class:`RecentRetrieval`, :class:`UniformRetrieval` and :class:`RandomRetrieval` are the baselines
  the fidelity benchmarks compare against.

Policies are chosen by name (``retrieval: internal`` in YAML, ``--retrieval``). A new one is a class
registered in :data:`RETRIEVAL_POLICIES` with a ``from_config(config, device)`` classmethod; the
name is then accepted by :class:`~memstream.streaming.videomem.rekv.config.ReKVConfig` and YAML::

    @RETRIEVAL_POLICIES.register("oldest")
    class OldestRetrieval:
        name, needs_query = "oldest", False

        @classmethod
        def from_config(cls, config, device):
            return cls(config.topk)
        ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from memstream.kernels.block_topk import block_topk
from memstream.streaming.registry import Registry

if TYPE_CHECKING:
    from memstream.streaming.videomem.rekv.config import ReKVConfig


@runtime_checkable
class RetrievalPolicy(Protocol):
    """Chooses, per layer, the blocks a question attends to."""

    name: str
    #: Whether :meth:`select` needs the layer's question query (internal retrieval).
    needs_query: bool

    def count(self, n_blocks: int) -> int:
        """How many blocks every layer gets when ``n_blocks`` are stored."""
        ...

    def prepare(self, question: str, live_ids: Sequence[int]) -> None:
        """Called once per question before the pass with the ids of the stored blocks, oldest
        first (external retrieval scores frames here)."""
        ...

    def select(self, layer: int, query: torch.Tensor | None, block_keys: torch.Tensor) -> torch.Tensor:
        """Blocks for one layer.

        Args:
            layer: decoder layer index.
            query: float32 ``(Hkv*D,)`` the layer's mean question query (None unless ``needs_query``).
            block_keys: float32 ``(N, Hkv*D)`` representative keys of the stored blocks, in id order.

        Returns:
            int64 ``(count(N),)`` positions into the ``N`` stored blocks, ascending (time order).
        """
        ...


#: Retrieval policy classes by name; each has ``from_config(config: ReKVConfig, device) -> RetrievalPolicy``.
RETRIEVAL_POLICIES: Registry[type] = Registry("retrieval policy")


@RETRIEVAL_POLICIES.register("internal")
class InternalRetrieval:
    """ReKV's internal retrieval (see the module docstring).

    Args:
        topk: blocks per layer (ReKV's ``retrieve_size``, 64 by default).
        group_size: consecutive blocks scored as one group by their mean score (ReKV's
            ``retrieve_chunk_size``; 1 = single frames). Groups end at the newest block; the oldest
            ``N % group_size`` blocks are not eligible, so every layer gets the same count.
        backend: kernel backend for scoring, ``"auto"``, ``"torch"`` or ``"triton"``.
    """

    name = "internal"
    needs_query = True

    def __init__(self, topk: int = 64, group_size: int = 1, backend: str = "auto") -> None:
        if topk < 1 or group_size < 1 or topk < group_size:
            raise ValueError(f"need topk >= group_size >= 1, got topk={topk}, group_size={group_size}")
        self.topk, self.group_size, self.backend = topk, group_size, backend

    @classmethod
    def from_config(cls, config: ReKVConfig, device: torch.device | str | None = None) -> InternalRetrieval:
        """``topk``, ``group_size`` and ``kernel_backend`` of the memory's config."""
        return cls(config.topk, config.group_size, config.kernel_backend)

    def count(self, n_blocks: int) -> int:
        if n_blocks <= self.topk:
            return n_blocks
        return (self.topk // self.group_size) * self.group_size

    def prepare(self, question: str, live_ids: Sequence[int]) -> None:
        return None

    def select(self, layer: int, query: torch.Tensor | None, block_keys: torch.Tensor) -> torch.Tensor:
        if query is None:
            raise ValueError("internal retrieval needs the layer's question query")
        chosen = block_topk(
            query[None].to(block_keys.device),
            block_keys[None],
            self.topk,
            group_size=self.group_size,
            backend=self.backend,
        )
        return chosen[0]


class _QuestionBlindBaseline:
    """What the baselines share: ``topk`` blocks chosen without looking at the question's queries."""

    name = ""
    needs_query = False

    def __init__(self, topk: int = 64) -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = topk

    @classmethod
    def from_config(cls, config: ReKVConfig, device: torch.device | str | None = None) -> _QuestionBlindBaseline:
        """``topk`` of the memory's config."""
        return cls(topk=config.topk)

    def count(self, n_blocks: int) -> int:
        return min(n_blocks, self.topk)

    def prepare(self, question: str, live_ids: Sequence[int]) -> None:
        return None


@RETRIEVAL_POLICIES.register("recent")
class RecentRetrieval(_QuestionBlindBaseline):
    """Baseline: the ``topk`` newest blocks, whatever the question."""

    name = "recent"

    def select(self, layer: int, query: torch.Tensor | None, block_keys: torch.Tensor) -> torch.Tensor:
        n = block_keys.shape[0]
        return torch.arange(n - self.count(n), n)


@RETRIEVAL_POLICIES.register("uniform")
class UniformRetrieval(_QuestionBlindBaseline):
    """Baseline: ``topk`` blocks evenly spread over the stream (what re-sampling N frames does)."""

    name = "uniform"

    def select(self, layer: int, query: torch.Tensor | None, block_keys: torch.Tensor) -> torch.Tensor:
        n = block_keys.shape[0]
        k = self.count(n)
        return torch.linspace(0, n - 1, k).round().long() if k < n else torch.arange(n)


@RETRIEVAL_POLICIES.register("random")
class RandomRetrieval(_QuestionBlindBaseline):
    """Baseline: ``topk`` blocks drawn at random once per question (the same for every layer)."""

    name = "random"

    def __init__(self, topk: int = 64, seed: int = 0) -> None:
        super().__init__(topk)
        self.generator = torch.Generator().manual_seed(seed)
        self._chosen: torch.Tensor | None = None

    def prepare(self, question: str, live_ids: Sequence[int]) -> None:
        k = self.count(len(live_ids))
        self._chosen = torch.randperm(len(live_ids), generator=self.generator)[:k].sort().values

    def select(self, layer: int, query: torch.Tensor | None, block_keys: torch.Tensor) -> torch.Tensor:
        if self._chosen is None or (len(self._chosen) and int(self._chosen[-1]) >= block_keys.shape[0]):
            self.prepare("", range(block_keys.shape[0]))
        return self._chosen


@RETRIEVAL_POLICIES.register("all")
class AllRetrieval:
    """Every stored block (exact full context; only for short streams and tests)."""

    name = "all"
    needs_query = False

    @classmethod
    def from_config(cls, config: ReKVConfig, device: torch.device | str | None = None) -> AllRetrieval:
        return cls()

    def count(self, n_blocks: int) -> int:
        return n_blocks

    def prepare(self, question: str, live_ids: Sequence[int]) -> None:
        return None

    def select(self, layer: int, query: torch.Tensor | None, block_keys: torch.Tensor) -> torch.Tensor:
        return torch.arange(block_keys.shape[0])


def retrieval_for(config: ReKVConfig, device: torch.device | str | None = None) -> RetrievalPolicy:
    """The retrieval policy ``config.retrieval`` names, built by its class's ``from_config``.

    Raises:
        ConfigError: the name is not registered (the message lists the registered ones).
        TypeError: the registered class has no ``from_config(config, device)`` classmethod.
    """
    cls = RETRIEVAL_POLICIES.get(config.retrieval)
    build = getattr(cls, "from_config", None)
    if build is None:
        raise TypeError(f"retrieval policy {config.retrieval!r} ({cls.__name__}) needs a from_config(config, device) classmethod")
    return build(config, device)


def make_retrieval(name: str, **options) -> RetrievalPolicy:
    """Build a registered retrieval policy by name (``internal``, ``recent``, ``uniform``, ``random``,
    ``all``, and ``external`` once :mod:`memstream.streaming.videomem.rekv.external` is imported)."""
    return RETRIEVAL_POLICIES.get(name)(**options)
