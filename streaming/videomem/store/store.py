"""`BlockStore`: the tiered store of a video KV memory (device cache, RAM, disk).

Each frame's KV cache becomes one block (all layers); retrieval then reads, per layer, a different
set of blocks. Reads come from the first tier that holds the (layer, block): the bounded device
cache (one LRU per layer, as ReKV's GPU cache), the RAM tier, else the memory-mapped disk files.
Example::

    spec = BlockSpec(n_layers=2, n_kv_heads=2, head_dim=8, block_tokens=4, model_fingerprint="tiny")
    with BlockStore(spec, "runs/session", ram_budget_bytes=64 << 20, device_cache_blocks=32) as store:
        meta = store.put(kv, repr_keys, frame_index=0, timestamp_s=0.0)   # kv: (L, 2, H, T, D)
        kv_layer = store.get(layer=1, block_ids=[meta.block_id])          # (1, 2, H, T, D)
    store = BlockStore.open("runs/session", spec)                          # resume after a restart
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import torch

from memstream.streaming.videomem.store.device import DeviceCache
from memstream.streaming.videomem.store.disk import DiskTier, Replay, read_header
from memstream.streaming.videomem.store.policies import EvictionPolicy, make_eviction_policy
from memstream.streaming.videomem.store.pool import BlockPool, device_book
from memstream.streaming.videomem.store.ram import RamTier, ReprTable
from memstream.streaming.videomem.store.spec import BlockMeta, BlockSpec, StoreError, decode_layers, encode_block

__all__ = ["BlockStore", "StoreError"]

_WARM_CHUNK_BLOCKS = 64


class BlockStore:
    """Tiered, optionally persistent store of fixed-size KV blocks.

    Tiers and bounds:

    * **disk** (when ``directory`` is given): every live block, written through on ``put``; the
      session survives a restart (:meth:`open`).
    * **RAM**: blocks added by ``put`` (and, after :meth:`open`, the newest blocks that fit), at
      most ``ram_budget_bytes`` of payload. Over budget, the eviction policy drops blocks from RAM;
      they stay on disk. Reads from disk do not refill RAM (the OS page cache serves repeats).
      Without a directory nothing can be dropped, so a put that would exceed the budget raises.
    * **device cache**: per layer, at most ``device_cache_blocks`` (layer, block) payloads on
      ``device``, filled by :meth:`get`; over capacity the eviction policy picks victims among
      the entries the current request does not use.
    * **retention** (``max_blocks``): for endless streams. When a put would exceed ``max_blocks``
      live blocks, the *oldest* blocks (lowest ids) are deleted permanently from every tier, their
      disk slots freed for reuse and a deletion line appended to the index. Reopening a store does
      not apply retention; the next put does.

    Payloads are stored encoded by ``spec.codec`` in every tier; reads return ``spec.dtype``.
    Representative keys of all live blocks always stay in RAM.

    Args:
        spec: block shape, dtype, codec and model fingerprint.
        directory: session directory (created if missing; must not hold a store already: use
            :meth:`open` to resume one), or None for a RAM-only store.
        ram_budget_bytes: bound on the RAM tier's payload bytes, or None for no bound.
        device_cache_blocks: device cache entries per layer; 0 disables the cache.
        device: device of the cache and default device of reads (``"cuda"``, ``"cpu"``).
        max_blocks: retention bound on live blocks, or None to keep all.
        eviction: eviction policy of the RAM tier and device caches, by name (``"lru"``,
            ``"fifo"``) or an :class:`EvictionPolicy` object.
        durable: sync every block to the disk before committing it (survives power loss; a few
            ms per put on a busy disk). False keeps crash safety against process crashes only;
            :meth:`flush` and :meth:`close` always sync.

    Raises:
        StoreError: the directory is a file, not writable, or already holds a store.
        ValueError: a bound is negative (or ``max_blocks`` < 1).
    """

    def __init__(
        self,
        spec: BlockSpec,
        directory: str | Path | None = None,
        *,
        ram_budget_bytes: int | None = None,
        device_cache_blocks: int = 0,
        device: str | torch.device = "cpu",
        max_blocks: int | None = None,
        eviction: str | EvictionPolicy = "lru",
        durable: bool = True,
    ) -> None:
        self._setup(spec, ram_budget_bytes, device_cache_blocks, device, max_blocks, eviction)
        self.directory = None if directory is None else Path(directory)
        self._disk = None if self.directory is None else DiskTier.create(self.directory, spec, durable)

    @staticmethod
    def read_spec(directory: str | Path) -> BlockSpec:
        """The :class:`BlockSpec` a store directory was written with (to reopen it with :meth:`open`).

        Raises:
            StoreError: the directory holds no readable store.
        """
        return read_header(Path(directory))

    @classmethod
    def open(
        cls,
        directory: str | Path,
        spec: BlockSpec,
        *,
        ram_budget_bytes: int | None = None,
        device_cache_blocks: int = 0,
        device: str | torch.device = "cpu",
        max_blocks: int | None = None,
        eviction: str | EvictionPolicy = "lru",
        durable: bool = True,
    ) -> BlockStore:
        """Reopen the session in ``directory`` (arguments as for the constructor).

        Committed blocks are kept exactly; a torn last index line (a crash during a put) is
        dropped with a warning. Nothing committed is deleted or rewritten.

        Raises:
            StoreError: the directory is missing, a file, not writable, not a store, corrupt, or
                was written with another model fingerprint, shape, dtype or codec.
        """
        store = cls.__new__(cls)
        store._setup(spec, ram_budget_bytes, device_cache_blocks, device, max_blocks, eviction)
        store.directory = Path(directory)
        store._disk, replay = DiskTier.open(store.directory, spec, durable)
        try:
            store._restore(replay)
        except BaseException:
            store.close()
            raise
        return store

    def _setup(
        self,
        spec: BlockSpec,
        ram_budget_bytes: int | None,
        device_cache_blocks: int,
        device: str | torch.device,
        max_blocks: int | None,
        eviction: str | EvictionPolicy,
    ) -> None:
        if ram_budget_bytes is not None and ram_budget_bytes < 0:
            raise ValueError(f"ram_budget_bytes must be >= 0 or None, got {ram_budget_bytes}")
        if max_blocks is not None and max_blocks < 1:
            raise ValueError(f"max_blocks must be >= 1 or None, got {max_blocks}")
        self.spec = spec
        self.ram_budget_bytes = ram_budget_bytes
        self.max_blocks = max_blocks
        self.device = torch.device(device)
        self.eviction = make_eviction_policy(eviction)
        self._closed = False
        self._pool = BlockPool()
        ram_rows = None if ram_budget_bytes is None else ram_budget_bytes // spec.block_nbytes
        if max_blocks is not None:
            ram_rows = max_blocks if ram_rows is None else min(ram_rows, max_blocks)
        self._ram = RamTier(spec.n_layers, spec.layer_nbytes, ram_rows, pinned=torch.cuda.is_available())
        self._repr = ReprTable(spec.n_layers, spec.repr_width)
        self._device = DeviceCache(spec.n_layers, spec.layer_nbytes, device_cache_blocks, self.device)

    def _restore(self, replay: Replay) -> None:
        """Rebuild the bookkeeping of a reopened store and warm RAM with its newest blocks."""
        assert self._disk is not None
        self._pool.restore(replay.entries, replay.next_id)
        ids = [meta.block_id for meta, _ in replay.entries]
        slots = [slot for _, slot in replay.entries]
        for block_id in ids:
            self._pool.mark("disk", block_id, self.spec.block_nbytes)
        for slot, keys in zip(slots, self._disk.read_repr(slots), strict=True):
            self._repr.set(slot, keys)
        n_warm = len(ids) if self._ram.max_blocks is None else min(len(ids), self._ram.max_blocks)
        warm_ids, warm_slots = ids[len(ids) - n_warm :], slots[len(ids) - n_warm :]
        for start in range(0, n_warm, _WARM_CHUNK_BLOCKS):
            chunk = slice(start, start + _WARM_CHUNK_BLOCKS)
            for block_id, raw in zip(warm_ids[chunk], self._disk.read(warm_slots[chunk]), strict=True):
                self._ram.put(block_id, raw)
                self._pool.mark("ram", block_id, self.spec.block_nbytes)

    # writes ---------------------------------------------------------------------------------------

    def put(
        self, kv: torch.Tensor, repr_keys: torch.Tensor, frame_index: int, timestamp_s: float
    ) -> BlockMeta:
        """Add one frame's block; with ``max_blocks``, first delete the oldest blocks over the bound.

        Args:
            kv: ``(L, 2, H, T, D)`` floating keys (index 0) and values (index 1), any device;
                ``T`` must be ``spec.block_tokens``.
            repr_keys: ``(L, C)`` floating representative keys (``C = H * D``), any device.
            frame_index: stream frame index of the block.
            timestamp_s: stream time of the frame, seconds.

        Returns:
            The new block's metadata (ids are 0, 1, 2, ... in insertion order).

        Raises:
            ValueError: a shape or dtype differs from the spec.
            StoreError: a RAM-only store would exceed ``ram_budget_bytes``; the store is closed.
        """
        self._check_open()
        self._check_block(kv, repr_keys)
        self._check_ram_only_budget()
        raw = encode_block(self.spec, kv.detach()).cpu()
        keys = repr_keys.detach().to("cpu", torch.float32)
        while self.max_blocks is not None and len(self._pool) >= self.max_blocks:
            self._delete(self._pool.oldest())
        meta, slot = self._pool.add(frame_index, timestamp_s)
        if self._disk is not None:
            try:
                self._disk.write(slot, raw, keys)
                self._disk.commit(meta, slot)
            except BaseException:
                self._pool.cancel(meta.block_id)
                raise
            self._pool.mark("disk", meta.block_id, self.spec.block_nbytes)
        self._repr.set(slot, keys)
        self._admit_ram(meta.block_id, raw)
        return meta

    def _check_block(self, kv: torch.Tensor, repr_keys: torch.Tensor) -> None:
        spec = self.spec
        if tuple(kv.shape) != spec.kv_shape:
            raise ValueError(
                f"kv must have shape (L, 2, H, T, D) = {spec.kv_shape} "
                f"(T = block_tokens = {spec.block_tokens}), got {tuple(kv.shape)}"
            )
        if tuple(repr_keys.shape) != (spec.n_layers, spec.repr_width):
            raise ValueError(
                f"repr_keys must have shape (L, C) = {(spec.n_layers, spec.repr_width)}, "
                f"got {tuple(repr_keys.shape)}"
            )
        if not (kv.is_floating_point() and repr_keys.is_floating_point()):
            raise ValueError(f"kv and repr_keys must be floating point, got {kv.dtype} and {repr_keys.dtype}")

    def _check_ram_only_budget(self) -> None:
        if self._disk is not None or self.ram_budget_bytes is None:
            return
        n_after = len(self._pool) + 1
        if self.max_blocks is not None:
            n_after = min(n_after, self.max_blocks)
        if n_after * self.spec.block_nbytes > self.ram_budget_bytes:
            raise StoreError(
                f"the RAM budget of {self.ram_budget_bytes} bytes holds {len(self._pool)} blocks of "
                f"{self.spec.block_nbytes} bytes and this store has no directory to keep more",
                "Pass a store directory, raise ram_budget_bytes, or set max_blocks",
            )

    def _admit_ram(self, block_id: int, raw: torch.Tensor) -> None:
        block_nbytes = self.spec.block_nbytes
        if self.ram_budget_bytes is not None:
            if block_nbytes > self.ram_budget_bytes:
                return  # the block stays on disk only (RAM-only stores never get here)
            excess = self._pool.nbytes("ram") + block_nbytes - self.ram_budget_bytes
            if excess > 0:
                n = math.ceil(excess / block_nbytes)
                for victim in self.eviction.victims(self._pool.keys("ram"), self._pool.stats("ram"), n):
                    self._ram.drop(victim)
                    self._pool.unmark("ram", victim)
        self._ram.put(block_id, raw)
        self._pool.mark("ram", block_id, block_nbytes)

    def _delete(self, block_id: int) -> None:
        """Delete a block permanently from every tier (retention)."""
        if self._disk is not None:
            self._disk.delete(block_id)
        if block_id in self._ram:
            self._ram.drop(block_id)
        for layer in range(self.spec.n_layers):
            if (layer, block_id) in self._device:
                self._device.drop(layer, block_id)
        self._pool.remove(block_id)
        if self._disk is not None and self._disk.needs_compaction(len(self._pool)):
            self._disk.compact([(self._pool.meta(i), self._pool.slot(i)) for i in self._pool.live_ids()], self._pool.next_id)

    # reads ----------------------------------------------------------------------------------------

    def get(
        self, layer: int, block_ids: Sequence[int], device: str | torch.device | None = None
    ) -> torch.Tensor:
        """Keys and values of one layer of several blocks, in the order given.

        Served from the layer's device cache, else RAM, else disk; the blocks read become the most
        recently used, and those missing from the device cache are cached (evicting by policy).

        Args:
            layer: decoder layer, ``0 <= layer < L``.
            block_ids: live block ids, repeats allowed.
            device: where to return the result; None for the store's ``device``.

        Returns:
            ``(n, 2, H, T, D)`` in ``spec.dtype`` (int8 codecs dequantised).

        Raises:
            KeyError: an id is not live (never written, or deleted by retention).
            ValueError: ``layer`` is out of range.
        """
        self._check_open()
        if not 0 <= layer < self.spec.n_layers:
            raise ValueError(f"layer must be in [0, {self.spec.n_layers}), got {layer}")
        target = self.device if device is None else torch.device(device)
        unique = list(dict.fromkeys(int(b) for b in block_ids))
        for block_id in unique:
            self._pool.slot(block_id)  # KeyError for ids that are not live
        book = device_book(layer)
        hits = [b for b in unique if self._pool.holds(book, (layer, b))]
        misses = [b for b in unique if not self._pool.holds(book, (layer, b))]
        for block_id in hits:
            self._pool.touch(book, (layer, block_id))
        miss_raw = self._read_tiers(layer, misses)
        parts = ([self._device.gather(layer, hits).to(target)] if hits else []) + [miss_raw.to(target)]
        raw = torch.cat(parts)
        row = {block_id: i for i, block_id in enumerate(hits + misses)}
        raw = raw[torch.tensor([row[int(b)] for b in block_ids], dtype=torch.long, device=target)]
        self._fill_device(layer, unique, misses, miss_raw)
        return decode_layers(self.spec, raw)

    def _read_tiers(self, layer: int, block_ids: list[int]) -> torch.Tensor:
        """Payloads uint8 ``(n, layer_nbytes)`` of one layer from RAM or disk (CPU), in order."""
        in_ram = [b for b in block_ids if b in self._ram]
        on_disk = [b for b in block_ids if b not in self._ram]
        for block_id in in_ram:
            self._pool.touch("ram", block_id)
        empty = torch.zeros(0, self.spec.layer_nbytes, dtype=torch.uint8)
        ram_raw = self._ram.gather(layer, in_ram) if in_ram else empty
        disk_raw = empty
        if on_disk:
            assert self._disk is not None, "a RAM-only store holds every block in RAM"
            disk_raw = self._disk.read([self._pool.slot(b) for b in on_disk], layer)
        order = {block_id: i for i, block_id in enumerate(in_ram + on_disk)}
        return torch.cat([ram_raw, disk_raw])[torch.tensor([order[b] for b in block_ids], dtype=torch.long)]

    def _fill_device(self, layer: int, request: list[int], misses: list[int], raw: torch.Tensor) -> None:
        """Cache the missed payloads of one layer, evicting entries the request does not use."""
        capacity = self._device.capacity_per_layer
        if capacity == 0 or not misses:
            return
        book = device_book(layer)
        keep, keep_raw = misses[-capacity:], raw[-capacity:]
        need = len(keep) - self._device.free(layer)
        if need > 0:
            in_request = set(request)
            candidates = [key for key in self._pool.keys(book) if key[1] not in in_request]
            victims = self.eviction.victims(candidates, self._pool.stats(book), need)
            for victim in victims:
                self._device.drop(*victim)
                self._pool.unmark(book, victim)
            short = need - len(victims)
            if short > 0:  # the request alone fills the cache: keep its last misses
                keep, keep_raw = keep[short:], keep_raw[short:]
        self._device.insert(layer, keep, keep_raw)
        for block_id in keep:
            self._pool.mark(book, (layer, block_id), self.spec.layer_nbytes)

    def get_blocks(self, block_ids: Sequence[int], device: str | torch.device | None = None) -> torch.Tensor:
        """All layers of several blocks, in the order given, read from RAM or disk.

        The device cache is neither read nor filled (it holds single layers for retrieval).

        Returns:
            ``(n, L, 2, H, T, D)`` in ``spec.dtype`` on ``device`` (None: the store's device).

        Raises:
            KeyError: an id is not live.
        """
        self._check_open()
        target = self.device if device is None else torch.device(device)
        ids = [int(b) for b in block_ids]
        rows = []
        for block_id in ids:
            slot = self._pool.slot(block_id)
            if block_id in self._ram:
                self._pool.touch("ram", block_id)
                rows.append(self._ram.block(block_id).clone())
            else:
                assert self._disk is not None
                rows.append(self._disk.read([slot])[0])
        spec = self.spec
        empty = torch.zeros(0, spec.n_layers, spec.layer_nbytes, dtype=torch.uint8)
        raw = torch.stack(rows) if rows else empty
        kv = decode_layers(spec, raw.to(target).reshape(-1, spec.layer_nbytes))
        return kv.reshape(len(ids), spec.n_layers, *spec.kv_shape[1:])

    def repr_keys(self, device: str | torch.device | None = None) -> torch.Tensor:
        """Representative keys of all live blocks in id order (the order of :meth:`live_ids`).

        Returns:
            float32 ``(L, N, C)`` on ``device`` (None: the store's device).
        """
        self._check_open()
        target = self.device if device is None else torch.device(device)
        return self._repr.gather([self._pool.slot(b) for b in self._pool.live_ids()]).to(target)

    def live_ids(self) -> list[int]:
        """Ids of the live blocks, ascending (the ``N`` axis of :meth:`repr_keys`)."""
        return self._pool.live_ids()

    def resident_ids(self, tier: str, layer: int | None = None) -> list[int]:
        """Ids of the blocks a tier holds, least recently used first.

        Args:
            tier: ``"device"`` (then ``layer`` is required), ``"ram"`` or ``"disk"``.
            layer: the device cache's layer.
        """
        if tier == "device":
            if layer is None:
                raise ValueError("resident_ids('device') needs the layer")
            book = device_book(layer)
        elif tier in ("ram", "disk"):
            book = tier
        else:
            raise ValueError(f"tier must be 'device', 'ram' or 'disk', got {tier!r}")
        last_used = self._pool.stats(book).last_used
        keys = sorted(self._pool.keys(book), key=last_used.__getitem__)
        return [key[1] if isinstance(key, tuple) else key for key in keys]

    def meta(self, block_id: int) -> BlockMeta:
        """Metadata of a live block (KeyError if it is not live)."""
        return self._pool.meta(block_id)

    def __len__(self) -> int:
        return len(self._pool)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._pool

    # lifetime and accounting ----------------------------------------------------------------------

    def memory_summary(self) -> dict[str, dict[str, int]]:
        """Blocks and bytes held by each tier.

        Returns:
            ``{"device": {"entries", "blocks", "bytes"}, "ram": {"blocks", "bytes"},
            "disk": {"blocks", "bytes"}, "repr": {"blocks", "bytes"}}``: ``entries`` counts
            (layer, block) pairs, ``bytes`` are payload bytes held (for disk: the files' size).
        """
        device_books = [device_book(layer) for layer in range(self.spec.n_layers)]
        device_keys = [key for book in device_books for key in self._pool.keys(book)]
        n = len(self._pool)
        return {
            "device": {
                "entries": len(device_keys),
                "blocks": len({key[1] for key in device_keys}),
                "bytes": sum(self._pool.nbytes(book) for book in device_books),
            },
            "ram": {"blocks": self._pool.count("ram"), "bytes": self._pool.nbytes("ram")},
            "disk": {
                "blocks": self._pool.count("disk"),
                "bytes": 0 if self._disk is None else self._disk.nbytes,
            },
            "repr": {"blocks": n, "bytes": n * self.spec.n_layers * self.spec.repr_width * 4},
        }

    def flush(self) -> None:
        """Flush the disk files (a no-op for a RAM-only store)."""
        self._check_open()
        if self._disk is not None:
            self._disk.flush()

    def close(self) -> None:
        """Flush and release every tier; idempotent. Reopen with :meth:`open`."""
        if self._closed:
            return
        self._closed = True
        if self._disk is not None:
            self._disk.close()
        self._ram.close()
        self._repr.close()
        self._device.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the block store is closed", "Reopen it with BlockStore.open(directory, spec)")

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
