"""The disk tier: one session directory, memory-mapped and written through.

Files (all in the session directory)::

    store.json    {"format": "memstream.videomem.blockstore", "version": 1, "spec": BlockSpec.to_json(),
                   "layer_nbytes": ..., "slot_nbytes": ...}      written once, when the store is created
    blocks.bin    uint8 (slots, L, layer_nbytes): one fixed-size slot per block, all layers' encoded
                  K and V (+ int8 scales); one layer's part of a block is contiguous
    repr.bin      float32 (slots, L, C): representative keys, row = slot
    index.jsonl   append-only: {"id": 0, "slot": 0, "frame": 12, "t": 0.4} per committed block,
                  {"del": 0} per deleted block, {"skip": 7} where ids jump (the next block's id is 7:
                  ids of deleted blocks are never reused). When deletions make it long (past twice the
                  live blocks plus COMPACT_MIN_LINES lines) it is rewritten with the live blocks only
                  (:meth:`DiskTier.compact`, one atomic rename), so an endless stream under retention
                  keeps a bounded index.

A block is committed by its index line: payload and keys are written and flushed (msync) first,
then the line is appended and flushed, so a crash leaves either a committed block or an unused
slot (``durable=False`` skips the per-block syncs: safe against process crashes, not power loss).
On reopen a torn (truncated or corrupt) *last* index line is dropped with a warning;
corruption anywhere else is a :class:`StoreError`. The memory maps grow in chunks; existing bytes
are never rewritten except the slot of a deleted block, which a later block reuses.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from memstream.streaming.atomic import write_bytes_atomic, write_json_atomic
from memstream.streaming.errors import ConfigError
from memstream.streaming.videomem.store.spec import BlockMeta, BlockSpec, StoreError, decode_layers

FORMAT = "memstream.videomem.blockstore"
FORMAT_VERSION = 2  # 2: the index may hold "skip" lines (compaction); version 1 stores open and are upgraded
READABLE_VERSIONS = (1, 2)
COMPACT_MIN_LINES = 1024
FILES = ("store.json", "blocks.bin", "repr.bin", "index.jsonl")
_GROW_MIN_SLOTS, _GROW_MAX_SLOTS = 16, 256


@dataclass
class Replay:
    """What the index of a reopened store says.

    Attributes:
        entries: ``(meta, slot)`` of every live block, ids ascending.
        next_id: id of the next new block (one past the last id ever committed).
        used_slots: slots of the live blocks.
        lines: index lines replayed.
    """

    entries: list[tuple[BlockMeta, int]] = field(default_factory=list)
    next_id: int = 0
    used_slots: set[int] = field(default_factory=set)
    lines: int = 0


def check_directory(path: Path, *, create: bool) -> None:
    """Raise :class:`StoreError` unless ``path`` is (or, with ``create``, can become) a writable directory."""
    if path.exists() and not path.is_dir():
        raise StoreError(f"store directory {path} is a file", "Pass the path of a directory")
    if not path.exists():
        if not create:
            raise StoreError(f"no block store at {path}", "Create one with BlockStore(spec, directory)")
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            what = f"cannot create store directory {path}: {exc.strerror}"
            raise StoreError(what, "Pass a writable path") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreError(
            f"store directory {path} is not writable", "Fix its permissions or pass another directory"
        )


def _spec_mismatch(path: Path, stored: BlockSpec, given: BlockSpec) -> StoreError:
    if stored.model_fingerprint != given.model_fingerprint:
        what = (
            f"block store {path} was written by model {stored.model_fingerprint!r}, "
            f"not by the current model {given.model_fingerprint!r}"
        )
    else:
        stored_json, given_json = stored.to_json(), given.to_json()
        diffs = [
            f"{key}={stored_json[key]!r} (store) vs {given_json[key]!r} (given)"
            for key in stored_json
            if stored_json[key] != given_json[key]
        ]
        what = f"block store {path} holds other blocks: {', '.join(diffs)}"
    return StoreError(what, f"Use another store directory, or delete {path} to start over")


class DiskTier:
    """Blocks of one session directory; use :meth:`create` or :meth:`open`.

    Attributes:
        durable: sync (msync/fsync) payloads before their index line and deletions before a slot
            is reused, so the commit order also holds across a power loss. When False, the order
            holds across process crashes only (the OS page cache outlives the process); much
            faster on a busy disk. :meth:`flush` and :meth:`close` always sync.
    """

    def __init__(self, directory: Path, spec: BlockSpec, durable: bool = True) -> None:
        self.directory = directory
        self.spec = spec
        self.durable = durable
        self._capacity = 0
        self._blocks: np.memmap | None = None
        self._repr: np.memmap | None = None
        self._index = open(directory / "index.jsonl", "ab")  # noqa: SIM115 -- closed by close()
        self.index_lines = 0  # lines in index.jsonl (compaction rewrites it when deletions make it long)

    @classmethod
    def create(cls, directory: Path, spec: BlockSpec, durable: bool = True) -> DiskTier:
        """Start a new store in ``directory`` (created if missing).

        Raises:
            StoreError: the path is a file or not writable, or already holds a store.
        """
        check_directory(directory, create=True)
        if (directory / "store.json").exists():
            raise StoreError(
                f"{directory} already holds a block store",
                "Resume it with BlockStore.open(directory, spec), or pass another directory",
            )
        if any((directory / name).exists() and (directory / name).stat().st_size for name in FILES[1:]):
            what = f"{directory} holds block data but no store.json"
            raise StoreError(what, f"Delete {directory} or pass another directory")
        for name in FILES[1:]:
            (directory / name).write_bytes(b"")
        header = {"format": FORMAT, "version": FORMAT_VERSION, "spec": spec.to_json()}
        header |= {"layer_nbytes": spec.layer_nbytes, "slot_nbytes": spec.block_nbytes}
        write_json_atomic(directory / "store.json", header, indent=1)  # store.json appears last and atomically
        return cls(directory, spec, durable)

    @classmethod
    def open(cls, directory: Path, spec: BlockSpec, durable: bool = True) -> tuple[DiskTier, Replay]:
        """Reopen the store in ``directory`` and replay its index.

        Raises:
            StoreError: missing, not writable, not a store, written for another spec, or corrupt.
        """
        check_directory(directory, create=False)
        missing = [name for name in FILES if not (directory / name).is_file()]
        if missing:
            what = f"{directory} is not a block store (missing {', '.join(missing)})"
            raise StoreError(what, "Pass a store directory")
        stored = read_header(directory)
        if stored != spec:
            raise _spec_mismatch(directory, stored, spec)
        slot_sizes = [(directory / "blocks.bin").stat().st_size // spec.block_nbytes]
        slot_sizes.append((directory / "repr.bin").stat().st_size // (spec.n_layers * spec.repr_width * 4))
        # a committed slot lies in both files (they grow before a write): check against the smaller
        replay, keep_bytes, add_newline = _replay_index(directory / "index.jsonl", min(slot_sizes))
        if keep_bytes is not None:
            os.truncate(directory / "index.jsonl", keep_bytes)  # drop the torn, uncommitted last line
        tier = cls(directory, spec, durable)
        tier.index_lines = replay.lines
        if add_newline:  # the last line is complete but its newline was not written
            tier._index.write(b"\n")
            tier._index.flush()
        tier._map(max(slot_sizes))
        return tier, replay

    # memory maps ----------------------------------------------------------------------------------

    def _map(self, capacity: int) -> None:
        """(Re)map both files with ``capacity`` slots, extending (never shrinking) them."""
        shapes = {
            "blocks.bin": ((capacity, self.spec.n_layers, self.spec.layer_nbytes), np.uint8),
            "repr.bin": ((capacity, self.spec.n_layers, self.spec.repr_width), np.float32),
        }
        maps = []
        for name, (shape, dtype) in shapes.items():
            path = self.directory / name
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            if path.stat().st_size < nbytes:
                os.truncate(path, nbytes)
            maps.append(np.memmap(path, dtype=dtype, mode="r+", shape=shape) if capacity else None)
        self._blocks, self._repr = maps
        self._capacity = capacity

    def reserve(self, n_slots: int) -> None:
        """Make room for slots ``0 .. n_slots - 1``, growing by doubling (16 to 256 slots at a time)."""
        if n_slots > self._capacity:
            step = min(max(self._capacity, _GROW_MIN_SLOTS), _GROW_MAX_SLOTS)
            self._map(max(n_slots, self._capacity + step))

    @property
    def capacity(self) -> int:
        """Slots the files hold."""
        return self._capacity

    # writes ---------------------------------------------------------------------------------------

    def write(self, slot: int, raw: torch.Tensor, repr_keys: torch.Tensor) -> None:
        """Write a block's payload uint8 ``(L, layer_nbytes)`` and keys float32 ``(L, C)`` (CPU tensors).

        Synced to the disk when :attr:`durable`; the block is committed only by :meth:`commit`.
        """
        self.reserve(slot + 1)
        assert self._blocks is not None and self._repr is not None
        self._blocks[slot] = raw.numpy()
        self._repr[slot] = repr_keys.numpy()
        if self.durable:
            self._blocks.flush()
            self._repr.flush()

    def commit(self, meta: BlockMeta, slot: int) -> None:
        """Append the index line that commits a written block."""
        record = {"id": meta.block_id, "slot": slot, "frame": meta.frame_index, "t": meta.timestamp_s}
        self._append(record)

    def delete(self, block_id: int) -> None:
        """Append the index line that deletes a block, synced if durable: its slot may be reused next."""
        self._append({"del": block_id})
        if self.durable:
            os.fsync(self._index.fileno())

    def _append(self, record: dict) -> None:
        self._index.write(json.dumps(record).encode() + b"\n")
        self._index.flush()
        self.index_lines += 1

    def needs_compaction(self, live_blocks: int) -> bool:
        """Whether the index has grown past twice ``live_blocks`` plus :data:`COMPACT_MIN_LINES` lines."""
        return self.index_lines > 2 * live_blocks + COMPACT_MIN_LINES

    def compact(self, entries: list[tuple[BlockMeta, int]], next_id: int) -> None:
        """Rewrite the index with the live blocks ``entries`` (``(meta, slot)``, ids ascending) and
        ``next_id`` only, the same state the long index replays to, through a synced temporary file
        and one rename: a crash leaves the old index or the new one. A version-1 header is upgraded
        first (version 1 readers do not know the "skip" lines)."""
        lines, cursor = [], 0
        for meta, slot in entries:
            if meta.block_id > cursor:
                lines.append({"skip": meta.block_id})
            lines.append({"id": meta.block_id, "slot": slot, "frame": meta.frame_index, "t": meta.timestamp_s})
            cursor = meta.block_id + 1
        if next_id > cursor:
            lines.append({"skip": next_id})
        header_path = self.directory / "store.json"
        header = json.loads(header_path.read_text())
        if header.get("version") != FORMAT_VERSION:
            write_json_atomic(header_path, {**header, "version": FORMAT_VERSION}, indent=1, sync=True)
        self._index.close()
        write_bytes_atomic(self.directory / "index.jsonl", b"".join(json.dumps(line).encode() + b"\n" for line in lines), sync=True)
        self._index = open(self.directory / "index.jsonl", "ab")  # noqa: SIM115 -- closed by close()
        self.index_lines = len(lines)

    # reads ----------------------------------------------------------------------------------------

    def read(self, slots: list[int], layer: int | None = None) -> torch.Tensor:
        """Payloads of ``slots``: uint8 ``(n, layer_nbytes)`` for one layer, else ``(n, L, layer_nbytes)``."""
        assert self._blocks is not None
        index = np.asarray(slots, dtype=np.int64)
        part = self._blocks[index] if layer is None else self._blocks[index, layer]
        return torch.from_numpy(np.ascontiguousarray(part))

    def read_repr(self, slots: list[int]) -> torch.Tensor:
        """Representative keys of ``slots``, float32 ``(n, L, C)``."""
        if not slots:
            return torch.zeros(0, self.spec.n_layers, self.spec.repr_width)
        assert self._repr is not None
        return torch.from_numpy(np.ascontiguousarray(self._repr[np.asarray(slots, dtype=np.int64)]))

    @property
    def nbytes(self) -> int:
        """Bytes of ``blocks.bin`` and ``repr.bin`` as mapped."""
        return self._capacity * (self.spec.block_nbytes + self.spec.n_layers * self.spec.repr_width * 4)

    def flush(self) -> None:
        """Flush the maps and the index to the disk (msync, fsync)."""
        for mapped in (self._blocks, self._repr):
            if mapped is not None:
                mapped.flush()
        if not self._index.closed:
            self._index.flush()
            os.fsync(self._index.fileno())

    def close(self) -> None:
        """Flush and unmap; idempotent."""
        if self._index.closed:
            return
        self.flush()
        self._index.close()
        self._blocks = self._repr = None


def read_header(directory: Path) -> BlockSpec:
    path = directory / "store.json"
    try:
        header = json.loads(path.read_text())
        if header.get("format") != FORMAT or header.get("version") not in READABLE_VERSIONS:
            raise StoreError(
                f"{path} has format {header.get('format')!r} version {header.get('version')!r}, "
                f"this memstream reads {FORMAT!r} versions {', '.join(map(str, READABLE_VERSIONS))}",
                "Use the memstream version that wrote it, or another store directory",
            )
        return BlockSpec.from_json(header["spec"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as exc:  # a damaged header
        fix = f"Delete {directory} or pass another directory"
        raise StoreError(f"{path} is unreadable ({exc})", fix) from exc


def _parse_record(line: bytes) -> dict:
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if set(record) == {"del"} and type(record["del"]) is int:
        return record
    if set(record) == {"skip"} and type(record["skip"]) is int:
        return record
    if set(record) != {"id", "slot", "frame", "t"}:
        raise ValueError(f"unexpected keys {sorted(record)}")
    ints = all(type(record[key]) is int for key in ("id", "slot", "frame"))
    if not ints or type(record["t"]) not in (int, float):
        raise ValueError("id, slot and frame must be ints and t a number")
    return record


def _apply(record: dict, live: dict[int, tuple[BlockMeta, int]], replay: Replay, capacity: int) -> None:
    """Apply one index record to the live blocks; ValueError if it contradicts them."""
    if "del" in record:
        if record["del"] not in live:
            raise ValueError(f"deletes block {record['del']}, which is not live")
        replay.used_slots.discard(live.pop(record["del"])[1])
        return
    if "skip" in record:
        if record["skip"] < replay.next_id:
            raise ValueError(f"skips ids back to {record['skip']} from {replay.next_id}")
        replay.next_id = record["skip"]
        return
    if record["id"] != replay.next_id:
        raise ValueError(f"block id {record['id']} where {replay.next_id} was expected")
    if not 0 <= record["slot"] < capacity:
        raise ValueError(f"slot {record['slot']} is outside blocks.bin and repr.bin ({capacity} slots)")
    if record["slot"] in replay.used_slots:
        raise ValueError(f"slot {record['slot']} is already used by a live block")
    live[record["id"]] = (BlockMeta(record["id"], record["frame"], float(record["t"])), record["slot"])
    replay.used_slots.add(record["slot"])
    replay.next_id += 1


def _replay_index(path: Path, capacity: int) -> tuple[Replay, int | None, bool]:
    """Replay ``index.jsonl``.

    Returns:
        ``(replay, keep_bytes, add_newline)``: ``keep_bytes`` is the length to truncate the file to
        when its last line is torn (else None); ``add_newline`` is True when the last line is
        complete but lacks its newline.

    Raises:
        StoreError: a line other than the last is corrupt or contradicts the lines before it.
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    replay, live, offset = Replay(), {}, 0
    for number, line in enumerate(lines, start=1):
        try:
            record = _parse_record(line)
            _apply(record, live, replay, capacity)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            if number < len(lines):
                raise StoreError(
                    f"{path} line {number} is corrupt ({exc})",
                    f"Restore the store from a backup, or delete {path.parent} to start over",
                ) from exc
            warnings.warn(
                f"{path}: ignoring its last line {number} ({exc}); a block write was interrupted "
                "and that block was never committed",
                RuntimeWarning,
                stacklevel=4,
            )
            return _finish(replay, live), offset, False
        offset += len(line) + 1
        replay.lines += 1
    return _finish(replay, live), None, bool(data) and not data.endswith(b"\n")


def _finish(replay: Replay, live: dict[int, tuple[BlockMeta, int]]) -> Replay:
    replay.entries = [live[block_id] for block_id in sorted(live)]
    return replay


@dataclass
class StoreCheck:
    """What :func:`check_store` found in a store directory.

    Attributes:
        blocks: live (committed, not deleted) blocks.
        frames: ``(first, last)`` frame index of the live blocks, or None when there are none.
        seconds: ``(first, last)`` stream time of the live blocks, or None.
        torn_tail: the index ends in an interrupted write (a crash during a put); the next
            :meth:`BlockStore.open` drops that line, and no committed block is lost.
        bytes: size of the store's files.
    """

    blocks: int
    frames: tuple[int, int] | None
    seconds: tuple[float, float] | None
    torn_tail: bool
    bytes: int


def check_store(directory: str | Path, chunk_blocks: int = 64) -> StoreCheck:
    """Check a store directory without changing it: its header, every index line but an
    interrupted last one, and every live block's keys and values (decoded, all finite) and
    representative keys (finite).

    Raises:
        StoreError: the header is unreadable, a file is missing, the index is corrupt before its
            last line, or a committed block holds non-finite numbers.
    """
    directory = Path(directory)
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise StoreError(f"{directory} is not a block store (missing {', '.join(missing)})", "Pass a store directory")
    spec = read_header(directory)
    capacity = min((directory / "blocks.bin").stat().st_size // spec.block_nbytes,
                   (directory / "repr.bin").stat().st_size // (spec.n_layers * spec.repr_width * 4))
    replay, keep_bytes, _ = _replay_index(directory / "index.jsonl", capacity)
    entries = replay.entries
    if entries:
        blocks = np.memmap(directory / "blocks.bin", dtype=np.uint8, mode="r", shape=(capacity, spec.n_layers, spec.layer_nbytes))
        keys = np.memmap(directory / "repr.bin", dtype=np.float32, mode="r", shape=(capacity, spec.n_layers, spec.repr_width))
        for start in range(0, len(entries), chunk_blocks):
            chunk = entries[start : start + chunk_blocks]
            slots = np.asarray([slot for _, slot in chunk], dtype=np.int64)
            raw = torch.from_numpy(np.ascontiguousarray(blocks[slots])).reshape(-1, spec.layer_nbytes)
            finite = bool(decode_layers(spec, raw).float().isfinite().all()) and bool(np.isfinite(keys[slots]).all())
            if not finite:
                first = chunk[0][0].block_id
                raise StoreError(f"{directory}: a block among ids {first}..{chunk[-1][0].block_id} holds non-finite numbers",
                                 f"Restore the store from a backup, or delete {directory} to start over")
        del blocks, keys
    metas = [meta for meta, _ in entries]
    return StoreCheck(
        blocks=len(metas),
        frames=(metas[0].frame_index, metas[-1].frame_index) if metas else None,
        seconds=(metas[0].timestamp_s, metas[-1].timestamp_s) if metas else None,
        torn_tail=keep_bytes is not None,
        bytes=sum((directory / name).stat().st_size for name in FILES),
    )
