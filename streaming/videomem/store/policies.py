"""Eviction policies: which entries a bounded tier (RAM, a layer's device cache) gives up first.

An eviction policy only *orders* candidates from the pool's access statistics; the store removes
the victims. Policies are looked up by name in :data:`EVICTION_POLICIES`::

    EVICTION_POLICIES.register("lfu")(LFUEviction)   # a class whose instances implement victims()
    store = BlockStore(spec, directory, eviction="lfu")

Eviction never deletes data: an entry evicted from RAM stays on disk, one evicted from a device
cache stays in RAM or on disk. (Permanent deletion is the store's ``max_blocks`` retention.)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from memstream.streaming.registry import Registry
from memstream.streaming.videomem.store.pool import AccessStats, Key


@runtime_checkable
class EvictionPolicy(Protocol):
    """Orders the entries of one tier for eviction.

    Attributes:
        name: registry name (``"lru"``, ``"fifo"``).
    """

    name: str

    def victims(self, candidates: Sequence[Key], stats: AccessStats, n: int) -> list[Key]:
        """Pick entries to evict.

        Args:
            candidates: keys the tier may evict (block ids, or ``(layer, block_id)`` pairs).
            stats: the tier's access statistics; holds every candidate.
            n: how many victims are needed.

        Returns:
            ``min(n, len(candidates))`` distinct candidates, the first to evict first.
        """
        ...


class LRUEviction:
    """Evict the least recently used entry first (smallest ``stats.last_used``); the default."""

    name = "lru"

    def victims(self, candidates: Sequence[Key], stats: AccessStats, n: int) -> list[Key]:
        """See :meth:`EvictionPolicy.victims`."""
        return heapq.nsmallest(max(n, 0), candidates, key=stats.last_used.__getitem__)


class FIFOEviction:
    """Evict the entry that entered the tier first (smallest ``stats.inserted``), ignoring reads."""

    name = "fifo"

    def victims(self, candidates: Sequence[Key], stats: AccessStats, n: int) -> list[Key]:
        """See :meth:`EvictionPolicy.victims`."""
        return heapq.nsmallest(max(n, 0), candidates, key=stats.inserted.__getitem__)


EVICTION_POLICIES: Registry[Callable[[], EvictionPolicy]] = Registry("eviction policy")
EVICTION_POLICIES.add("lru", LRUEviction)
EVICTION_POLICIES.add("fifo", FIFOEviction)


def make_eviction_policy(eviction: str | EvictionPolicy) -> EvictionPolicy:
    """An eviction policy from its registry name, or ``eviction`` itself if it is one.

    Raises:
        ConfigError: the name is not registered (the message lists the known names).
        TypeError: ``eviction`` is neither a name nor an object with ``victims``.
    """
    if isinstance(eviction, str):
        return EVICTION_POLICIES.get(eviction)()
    if not isinstance(eviction, EvictionPolicy):
        raise TypeError(f"eviction must be a registered name or an EvictionPolicy, got {eviction!r}")
    return eviction
