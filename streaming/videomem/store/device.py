"""The device tier: a bounded cache of (layer, block) payloads on the accelerator.

As in ReKV's per-layer GPU cache, every decoder layer has its own cache of at most
``capacity_per_layer`` entries, because retrieval picks a different set of blocks in every layer.
The cache keeps entries *encoded* (int8 stays int8 on the device) in one preallocated buffer
``(L, capacity_per_layer, layer_nbytes)``; which entries it should hold is decided by the store
with the pool's statistics and an eviction policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class DeviceCache:
    """Encoded (layer, block) payloads on ``device``, at most ``capacity_per_layer`` per layer.

    Args:
        n_layers: ``L``.
        layer_nbytes: bytes of one (layer, block) payload (``BlockSpec.layer_nbytes``).
        capacity_per_layer: entries per layer; 0 disables the cache.
        device: where the buffer lives (``"cuda"``, ``"cpu"``...). It is allocated on first use.
    """

    def __init__(
        self, n_layers: int, layer_nbytes: int, capacity_per_layer: int, device: torch.device
    ) -> None:
        if capacity_per_layer < 0:
            raise ValueError(f"device cache capacity must be >= 0, got {capacity_per_layer}")
        self.n_layers = n_layers
        self.layer_nbytes = layer_nbytes
        self.capacity_per_layer = capacity_per_layer
        self.device = device
        self._buffer: torch.Tensor | None = None
        self._position: dict[tuple[int, int], int] = {}
        self._free: list[list[int]] = [list(range(capacity_per_layer - 1, -1, -1)) for _ in range(n_layers)]

    def _buffer_or_allocate(self) -> torch.Tensor:
        if self._buffer is None:
            shape = (self.n_layers, self.capacity_per_layer, self.layer_nbytes)
            self._buffer = torch.empty(shape, dtype=torch.uint8, device=self.device)
        return self._buffer

    def free(self, layer: int) -> int:
        """Free entries in ``layer``'s cache."""
        return len(self._free[layer])

    def insert(self, layer: int, block_ids: Sequence[int], raw: torch.Tensor) -> None:
        """Cache the payloads ``raw`` uint8 ``(n, layer_nbytes)`` (any device) of ``block_ids`` in ``layer``.

        Raises:
            ValueError: fewer than ``n`` free entries (evict first) or an entry is already cached.
        """
        if len(block_ids) > len(self._free[layer]):
            free = self.free(layer)
            raise ValueError(f"layer {layer} device cache has {free} free entries, not {len(block_ids)}")
        if not block_ids:
            return
        positions = []
        for block_id in block_ids:
            if (layer, block_id) in self._position:
                raise ValueError(f"(layer {layer}, block {block_id}) is already cached")
            positions.append(self._free[layer].pop())
            self._position[(layer, block_id)] = positions[-1]
        index = torch.tensor(positions, dtype=torch.long, device=self.device)
        self._buffer_or_allocate()[layer].index_copy_(0, index, raw.to(self.device, non_blocking=True))

    def drop(self, layer: int, block_id: int) -> None:
        """Release the entry of (layer, block)."""
        self._free[layer].append(self._position.pop((layer, block_id)))

    def gather(self, layer: int, block_ids: Sequence[int]) -> torch.Tensor:
        """Copies of the cached payloads of ``block_ids`` in ``layer``, uint8 ``(n, layer_nbytes)``."""
        positions = [self._position[(layer, b)] for b in block_ids]
        index = torch.tensor(positions, dtype=torch.long, device=self.device)
        return self._buffer_or_allocate()[layer].index_select(0, index)

    def __contains__(self, key: object) -> bool:
        return key in self._position

    def __len__(self) -> int:
        return len(self._position)

    @property
    def allocated_nbytes(self) -> int:
        """Bytes of the device buffer (0 until first use)."""
        return 0 if self._buffer is None else self._buffer.numel()

    def close(self) -> None:
        """Release the buffer."""
        self._buffer = None
        self._position.clear()
        self._free = [list(range(self.capacity_per_layer - 1, -1, -1)) for _ in range(self.n_layers)]
