"""Bookkeeping of a block store, with no tensors: ids, metadata, disk slots, residency, recency.

The pool is the single source of truth for *which* blocks exist, where each is stored on disk and
which tiers currently hold it; the tier modules (``ram``, ``device``, ``disk``) own only bytes.
Because it holds no tensors, its tests run with no payloads at all.

Residency is tracked per *tier book*: ``"disk"`` and ``"ram"`` hold whole blocks (key: block id),
each layer's device cache ``"device:<layer>"`` holds (layer, block) pairs (key: ``(layer, id)``).
Every book keeps the access statistics that eviction policies read: a logical clock value at
insertion and at last use, and a use count.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field

from memstream.streaming.videomem.store.spec import BlockMeta

Key = Hashable
"""A residency key: a block id (``"ram"``, ``"disk"``) or ``(layer, block_id)`` (device books)."""


def device_book(layer: int) -> str:
    """Name of the tier book of one layer's device cache."""
    return f"device:{layer}"


@dataclass
class AccessStats:
    """Access statistics of the keys of one tier book, on the pool's logical clock.

    Attributes:
        inserted: clock value when each key entered the tier (FIFO order).
        last_used: clock value of each key's latest insertion or use (LRU order).
        uses: reads served from the tier for each key since it entered.
    """

    inserted: dict[Key, int] = field(default_factory=dict)
    last_used: dict[Key, int] = field(default_factory=dict)
    uses: dict[Key, int] = field(default_factory=dict)


@dataclass
class _TierBook:
    nbytes: dict[Key, int] = field(default_factory=dict)
    total_bytes: int = 0
    stats: AccessStats = field(default_factory=AccessStats)


def _block_of(key: Key) -> int:
    return key[1] if isinstance(key, tuple) else key  # type: ignore[return-value]


class BlockPool:
    """Ids, metadata, disk slots and per-tier residency of the blocks of one store.

    Block ids are dense (0, 1, 2, ...) in insertion order and never reused. Disk slots are reused:
    a new block takes the lowest free slot, else a new slot at the end.
    """

    def __init__(self) -> None:
        self._meta: dict[int, BlockMeta] = {}  # insertion ordered = id ordered
        self._slot: dict[int, int] = {}
        self._slot_set: set[int] = set()
        self._free_slots: list[int] = []  # min-heap
        self._n_slots = 0
        self._next_id = 0
        self._clock = 0
        self._books: dict[str, _TierBook] = {}
        self._where: dict[int, set[tuple[str, Key]]] = {}  # block id -> (tier, key) holding it

    # ids, metadata, slots -------------------------------------------------------------------------

    def add(self, frame_index: int, timestamp_s: float) -> tuple[BlockMeta, int]:
        """Allocate the next block id and a disk slot; returns ``(meta, slot)``."""
        meta = BlockMeta(self._next_id, int(frame_index), float(timestamp_s))
        slot = heapq.heappop(self._free_slots) if self._free_slots else self._n_slots
        self._insert(meta, slot)
        return meta, slot

    def restore(self, entries: Iterable[tuple[BlockMeta, int]], next_id: int) -> None:
        """Re-register the committed blocks of a reopened store; only on an empty pool.

        Args:
            entries: ``(meta, slot)`` of every live block, ids ascending.
            next_id: id the next new block gets (ids of deleted blocks are never reused).

        Raises:
            ValueError: the pool is not empty, ids do not ascend, a slot is negative or taken twice.
        """
        if self._meta or self._next_id:
            raise ValueError("restore needs an empty pool")
        for meta, slot in entries:
            if meta.block_id < self._next_id or slot < 0 or slot in self._slot_set:
                raise ValueError(f"block {meta.block_id} at slot {slot}: id out of order or slot taken")
            self._insert(meta, slot)
        if next_id < self._next_id:
            raise ValueError(f"next id {next_id} is not above the last live id {self._next_id - 1}")
        self._next_id = next_id
        self._free_slots = sorted(set(range(self._n_slots)) - self._slot_set)

    def _insert(self, meta: BlockMeta, slot: int) -> None:
        self._meta[meta.block_id] = meta
        self._slot[meta.block_id] = slot
        self._slot_set.add(slot)
        self._n_slots = max(self._n_slots, slot + 1)
        self._next_id = meta.block_id + 1

    def remove(self, block_id: int) -> int:
        """Forget a block everywhere (all tier books included) and free its slot; returns the slot."""
        self._require(block_id)
        del self._meta[block_id]
        slot = self._slot.pop(block_id)
        self._slot_set.discard(slot)
        heapq.heappush(self._free_slots, slot)
        for tier, key in self._where.pop(block_id, set()):
            self._drop_key(self._books[tier], key)
        return slot

    def cancel(self, block_id: int) -> None:
        """Undo the latest :meth:`add` (its write failed): the id will be handed out again."""
        if block_id != self._next_id - 1:
            raise ValueError(f"only the newest block ({self._next_id - 1}) can be cancelled, not {block_id}")
        self.remove(block_id)
        self._next_id = block_id

    def meta(self, block_id: int) -> BlockMeta:
        """Metadata of a live block (KeyError if it does not exist)."""
        return self._meta[self._require(block_id)]

    def slot(self, block_id: int) -> int:
        """Disk slot of a live block."""
        return self._slot[self._require(block_id)]

    def live_ids(self) -> list[int]:
        """Ids of all live blocks, ascending."""
        return list(self._meta)

    def oldest(self) -> int:
        """Id of the oldest live block (ValueError when empty)."""
        if not self._meta:
            raise ValueError("the pool holds no blocks")
        return next(iter(self._meta))

    @property
    def n_slots(self) -> int:
        """Slots ever allocated (the disk files' minimum size, in slots)."""
        return self._n_slots

    @property
    def next_id(self) -> int:
        """Id the next added block will get."""
        return self._next_id

    def free_slots(self) -> list[int]:
        """Free slots below :attr:`n_slots`, ascending."""
        return sorted(self._free_slots)

    def _require(self, block_id: int) -> int:
        if block_id not in self._meta:
            raise KeyError(f"block {block_id} is not in the store (never written, or deleted by retention)")
        return block_id

    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._meta

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._meta))

    # residency and access statistics --------------------------------------------------------------

    def _book(self, tier: str) -> _TierBook:
        return self._books.setdefault(tier, _TierBook())

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def mark(self, tier: str, key: Key, nbytes: int) -> None:
        """Record that ``tier`` now holds ``key`` (``nbytes`` of it); counts as its latest use."""
        block_id = self._require(_block_of(key))
        book = self._book(tier)
        if key in book.nbytes:
            self._drop_key(book, key)
        now = self._tick()
        book.nbytes[key] = nbytes
        book.total_bytes += nbytes
        self._where.setdefault(block_id, set()).add((tier, key))
        book.stats.inserted[key] = now
        book.stats.last_used[key] = now
        book.stats.uses[key] = 0

    def unmark(self, tier: str, key: Key) -> None:
        """Record that ``tier`` no longer holds ``key`` (KeyError if it did not)."""
        book = self._book(tier)
        if key not in book.nbytes:
            raise KeyError(f"tier {tier!r} does not hold {key!r}")
        self._drop_key(book, key)
        self._where[_block_of(key)].discard((tier, key))

    @staticmethod
    def _drop_key(book: _TierBook, key: Key) -> None:
        book.total_bytes -= book.nbytes.pop(key)
        del book.stats.inserted[key], book.stats.last_used[key], book.stats.uses[key]

    def touch(self, tier: str, key: Key) -> None:
        """Record a read of ``key`` served by ``tier``: it becomes the most recently used."""
        stats = self._book(tier).stats
        if key not in stats.last_used:
            raise KeyError(f"tier {tier!r} does not hold {key!r}")
        stats.last_used[key] = self._tick()
        stats.uses[key] += 1

    def holds(self, tier: str, key: Key) -> bool:
        """Whether ``tier`` currently holds ``key``."""
        return key in self._book(tier).nbytes

    def keys(self, tier: str) -> list[Key]:
        """Keys held by ``tier``, in the order they entered it."""
        return list(self._book(tier).nbytes)

    def stats(self, tier: str) -> AccessStats:
        """Access statistics of ``tier`` (live view; do not modify)."""
        return self._book(tier).stats

    def count(self, tier: str) -> int:
        """Number of keys held by ``tier``."""
        return len(self._book(tier).nbytes)

    def nbytes(self, tier: str) -> int:
        """Bytes held by ``tier``."""
        return self._book(tier).total_bytes

    def tiers(self) -> list[str]:
        """Names of the tier books used so far."""
        return list(self._books)
