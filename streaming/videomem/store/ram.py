"""The RAM tier: encoded blocks in one growable slab (pinned when CUDA is available), and the table
of representative keys, which always stays in RAM.

Both own bytes only; which blocks they should hold is decided by the store from the pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_MIN_ROWS = 16


def _grown(old: torch.Tensor, rows: int, pinned: bool) -> torch.Tensor:
    new = torch.zeros((rows, *old.shape[1:]), dtype=old.dtype, pin_memory=pinned)
    new[: old.shape[0]] = old
    return new


class RamTier:
    """Encoded blocks in RAM, each a row ``(L, layer_nbytes)`` uint8 of fixed-size chunks.

    Rows live in chunks of ``chunk_rows`` allocated as needed and never copied: a multi-GB tier
    grows without the transient 2-3x of a doubling slab, and wastes at most one partial chunk. Rows
    freed by :meth:`drop` are reused, so the RAM held is bounded by ``max_blocks`` rows (rounded up
    to whole chunks).

    Args:
        n_layers: ``L``.
        layer_nbytes: bytes of one (layer, block) payload (``BlockSpec.layer_nbytes``).
        max_blocks: most blocks held at once, or None for no bound.
        pinned: allocate page-locked memory (fast, asynchronous copies to a CUDA device).
        chunk_rows: blocks per allocation.
    """

    def __init__(self, n_layers: int, layer_nbytes: int, max_blocks: int | None, pinned: bool, chunk_rows: int = _MIN_ROWS) -> None:
        self.max_blocks = max_blocks
        self.pinned = pinned
        self.n_layers, self.layer_nbytes = n_layers, layer_nbytes
        self.chunk_rows = chunk_rows if max_blocks is None else max(1, min(chunk_rows, max_blocks))
        self._chunks: list[torch.Tensor] = []
        self._row: dict[int, int] = {}
        self._free: list[int] = []

    @property
    def _rows(self) -> int:
        return len(self._chunks) * self.chunk_rows

    def _view(self, row: int) -> torch.Tensor:
        return self._chunks[row // self.chunk_rows][row % self.chunk_rows]

    def put(self, block_id: int, raw: torch.Tensor) -> None:
        """Store a block's encoded bytes, uint8 ``(L, layer_nbytes)`` (copied)."""
        if block_id in self._row:
            raise ValueError(f"block {block_id} is already in RAM")
        if not self._free:
            self._grow()
        row = self._free.pop()
        self._view(row).copy_(raw)
        self._row[block_id] = row

    def _grow(self) -> None:
        rows = self._rows
        if self.max_blocks is not None and rows >= self.max_blocks:
            raise ValueError(f"RAM tier is full ({rows} blocks); evict before putting")
        shape = (self.chunk_rows, self.n_layers, self.layer_nbytes)
        self._chunks.append(torch.empty(shape, dtype=torch.uint8, pin_memory=self.pinned))
        self._free.extend(range(rows + self.chunk_rows - 1, rows - 1, -1))  # pop() hands out low rows first

    def drop(self, block_id: int) -> None:
        """Release a block's row."""
        self._free.append(self._row.pop(block_id))

    def block(self, block_id: int) -> torch.Tensor:
        """A block's bytes, uint8 ``(L, layer_nbytes)`` (a view: copy before keeping it)."""
        return self._view(self._row[block_id])

    def gather(self, layer: int, block_ids: Sequence[int]) -> torch.Tensor:
        """One layer of several blocks, uint8 ``(n, layer_nbytes)``, a new tensor."""
        if not block_ids:
            return torch.empty((0, self.layer_nbytes), dtype=torch.uint8)
        return torch.stack([self._view(self._row[b])[layer] for b in block_ids])

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._row

    @property
    def allocated_nbytes(self) -> int:
        """Bytes of the allocated chunks, free rows included."""
        return sum(chunk.numel() for chunk in self._chunks)

    def close(self) -> None:
        """Release the chunks."""
        self._chunks.clear()
        self._row.clear()
        self._free.clear()


class ReprTable:
    """Representative keys of every live block, float32 ``(rows, L, C)``, indexed by disk slot.

    Args:
        n_layers: ``L``.
        width: ``C = n_kv_heads * head_dim``.
    """

    def __init__(self, n_layers: int, width: int) -> None:
        self._table = torch.zeros((0, n_layers, width), dtype=torch.float32)

    def set(self, slot: int, keys: torch.Tensor) -> None:
        """Store the keys ``(L, C)`` (any float dtype, any device) of the block at ``slot``."""
        if slot >= self._table.shape[0]:
            self._table = _grown(self._table, max(_MIN_ROWS, 2 * self._table.shape[0], slot + 1), False)
        self._table[slot] = keys.detach().to("cpu", torch.float32)

    def gather(self, slots: Sequence[int]) -> torch.Tensor:
        """Keys of the blocks at ``slots``, float32 ``(L, n, C)``, a new tensor."""
        return self._table[torch.tensor(list(slots), dtype=torch.long)].transpose(0, 1).contiguous()

    @property
    def nbytes(self) -> int:
        """Bytes of the table, unused rows included."""
        return self._table.numel() * 4

    def close(self) -> None:
        """Release the table."""
        self._table = self._table[:0]
