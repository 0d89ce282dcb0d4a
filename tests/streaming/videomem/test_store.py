"""The tiered video KV block store: pool bookkeeping, eviction order, round trips, persistence."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import pytest
import torch

from memstream.streaming.errors import ConfigError
from memstream.streaming.videomem.store import (
    AccessStats,
    BlockMeta,
    BlockPool,
    BlockSpec,
    BlockStore,
    EvictionPolicy,
    FIFOEviction,
    LRUEviction,
    StoreError,
)

L, H, T, D = 2, 2, 4, 8


def make_spec(**overrides) -> BlockSpec:
    fields = dict(n_layers=L, n_kv_heads=H, head_dim=D, block_tokens=T, dtype=torch.float16)
    fields |= dict(codec="none", model_fingerprint="tiny-model@1")
    return BlockSpec(**(fields | overrides))


def make_block(i: int, dtype: torch.dtype = torch.float16) -> tuple[torch.Tensor, torch.Tensor]:
    """Block ``i`` of a synthetic stream: kv (L, 2, H, T, D) and repr keys (L, C), deterministic."""
    g = torch.Generator().manual_seed(i)
    kv = torch.randn((L, 2, H, T, D), generator=g).to(dtype)
    return kv, kv[:, 0].float().mean(dim=2).reshape(L, H * D)  # mean key per layer, as ReKV


def fill(store: BlockStore, n: int, start: int = 0) -> list[BlockMeta]:
    blocks = [make_block(i, store.spec.dtype) for i in range(start, start + n)]
    return [store.put(kv, keys, 10 * i, 0.5 * i) for i, (kv, keys) in enumerate(blocks, start=start)]


# pool: bookkeeping with no tensors -----------------------------------------------------------------


def test_pool_ids_are_dense_and_slots_are_reused_lowest_first() -> None:
    pool = BlockPool()
    metas = [pool.add(frame_index=i, timestamp_s=i / 10)[0] for i in range(4)]
    assert [m.block_id for m in metas] == [0, 1, 2, 3] and pool.n_slots == 4
    assert pool.slot(2) == 2 and pool.meta(3) == BlockMeta(3, 3, 0.3)
    assert pool.remove(2) == 2 and pool.remove(0) == 0
    assert pool.free_slots() == [0, 2] and pool.live_ids() == [1, 3] and pool.oldest() == 1
    meta, slot = pool.add(7, 0.7)
    assert (meta.block_id, slot) == (4, 0)  # ids never reused, lowest free slot is
    assert pool.add(8, 0.8)[1] == 2 and pool.add(9, 0.9)[1] == 4 and pool.n_slots == 5
    with pytest.raises(KeyError, match="block 2 is not in the store"):
        pool.meta(2)
    pool.cancel(6)  # a failed write gives its id back
    assert pool.next_id == 6 and pool.free_slots() == [4]


def test_pool_tracks_residency_bytes_and_recency_per_tier() -> None:
    pool = BlockPool()
    for i in range(3):
        pool.add(i, float(i))
    pool.mark("ram", 0, 100)
    pool.mark("ram", 1, 100)
    pool.mark("device:1", (1, 0), 10)
    pool.mark("device:1", (1, 2), 10)
    assert pool.nbytes("ram") == 200 and pool.count("device:1") == 2 and pool.nbytes("device:0") == 0
    pool.touch("ram", 0)
    stats = pool.stats("ram")
    assert stats.last_used[0] > stats.last_used[1] and stats.inserted[0] < stats.inserted[1]
    assert stats.uses == {0: 1, 1: 0}
    pool.remove(0)  # gone from every tier book
    assert pool.keys("ram") == [1] and pool.keys("device:1") == [(1, 2)] and pool.nbytes("ram") == 100
    pool.unmark("device:1", (1, 2))
    assert pool.nbytes("device:1") == 0 and not pool.holds("device:1", (1, 2))
    with pytest.raises(KeyError):
        pool.unmark("ram", 0)
    with pytest.raises(KeyError):
        pool.mark("ram", 0, 100)  # block 0 no longer exists


def test_pool_restore_rebuilds_free_slots_and_next_id() -> None:
    pool = BlockPool()
    pool.restore([(BlockMeta(3, 30, 3.0), 0), (BlockMeta(5, 50, 5.0), 3)], next_id=7)
    assert pool.live_ids() == [3, 5] and pool.free_slots() == [1, 2] and pool.next_id == 7
    assert pool.add(0, 0.0) == (BlockMeta(7, 0, 0.0), 1)
    with pytest.raises(ValueError, match="empty pool"):
        pool.restore([], next_id=0)
    with pytest.raises(ValueError, match="slot taken"):
        BlockPool().restore([(BlockMeta(0, 0, 0.0), 1), (BlockMeta(1, 0, 0.0), 1)], next_id=2)


# eviction policies ---------------------------------------------------------------------------------


def test_lru_and_fifo_order_victims_by_their_statistic() -> None:
    stats = AccessStats(inserted={"a": 1, "b": 2, "c": 3}, last_used={"a": 9, "b": 4, "c": 6}, uses={})
    assert LRUEviction().victims(["a", "b", "c"], stats, 2) == ["b", "c"]
    assert FIFOEviction().victims(["a", "b", "c"], stats, 2) == ["a", "b"]
    assert LRUEviction().victims(["a"], stats, 5) == ["a"] and isinstance(LRUEviction(), EvictionPolicy)
    with pytest.raises(ConfigError, match="unknown eviction policy 'mru'.*fifo, lru"):
        BlockStore(make_spec(), eviction="mru")


# spec ----------------------------------------------------------------------------------------------


def test_spec_validates_and_round_trips_through_json() -> None:
    spec = make_spec(dtype=torch.bfloat16, codec="int8-channel")
    assert BlockSpec.from_json(json.dumps(spec.to_json())) == spec and spec.to_json()["dtype"] == "bfloat16"
    assert spec.repr_width == H * D and spec.layer_nbytes % 16 == 0
    assert spec.block_nbytes == L * spec.layer_nbytes
    assert make_spec().layer_nbytes == 2 * H * T * D * 2
    assert make_spec(codec="int8-token").layer_nbytes == 2 * H * T * D + 2 * H * T * 4
    with pytest.raises(ConfigError, match="codec 'int4'"):
        make_spec(codec="int4")
    with pytest.raises(ConfigError, match="block_tokens must be a positive int"):
        make_spec(block_tokens=0)
    with pytest.raises(ConfigError, match="dtype"):
        make_spec(dtype=torch.int8)


# round trips and reads -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("on_disk", [False, True])
def test_codec_none_round_trips_bitwise(tmp_path: Path, dtype: torch.dtype, on_disk: bool) -> None:
    directory = tmp_path / "s" if on_disk else None
    with BlockStore(make_spec(dtype=dtype), directory, ram_budget_bytes=0 if on_disk else None) as store:
        metas = fill(store, 5)
        assert [m.block_id for m in metas] == list(range(5)) and metas[3] == BlockMeta(3, 30, 1.5)
        expected = torch.stack([make_block(i, dtype)[0] for i in range(5)])
        assert store.get_blocks([4, 0, 2]).dtype == dtype
        assert torch.equal(store.get_blocks(range(5)), expected)
        assert torch.equal(store.get_blocks([4, 0, 2]), expected[[4, 0, 2]])
        for layer in range(L):  # per layer, in the order asked, repeats allowed
            assert torch.equal(store.get(layer, [3, 1, 3]), expected[[3, 1, 3], layer])
        repr_keys = store.repr_keys()
        assert repr_keys.shape == (L, 5, H * D) and repr_keys.dtype == torch.float32
        assert torch.equal(repr_keys[:, 2], make_block(2, dtype)[1])
        assert store.get(0, []).shape == (0, 2, H, T, D)


@pytest.mark.parametrize("codec", ["int8-channel", "int8-token"])
def test_int8_codecs_round_trip_within_half_a_scale(tmp_path: Path, codec: str) -> None:
    from memstream.kernels.quant8 import dequantize_int8, quantize_int8

    spec = make_spec(dtype=torch.float32, codec=codec)
    with BlockStore(spec, tmp_path / "s", device_cache_blocks=2) as store:
        fill(store, 3)
        got = store.get_blocks(range(3))
        for layer in range(L):
            assert torch.equal(store.get(layer, [2, 0]), got[[2, 0], layer])
            assert torch.equal(store.get(layer, [2, 0]), got[[2, 0], layer])  # from the device cache
    key_dim = -2 if codec == "int8-channel" else -1  # of (L, H, T, D): tokens, head_dim
    for i in range(3):
        kv = make_block(i, torch.float32)[0]
        for part, dim in ((0, key_dim), (1, -1)):  # values always per token
            q, scale = quantize_int8(kv[:, part], reduce_dim=dim)
            assert scale.shape[dim] == 1
            assert torch.equal(got[i, :, part], dequantize_int8(q, scale, torch.float32))
            assert ((got[i, :, part] - kv[:, part]).abs() <= scale / 2 * (1 + 1e-5) + 1e-7).all()


def test_put_checks_shapes() -> None:
    store = BlockStore(make_spec())
    kv, keys = make_block(0)
    with pytest.raises(ValueError, match=r"T = block_tokens = 4\), got \(2, 2, 2, 3, 8\)"):
        store.put(kv[:, :, :, :3], keys, 0, 0.0)
    with pytest.raises(ValueError, match="repr_keys must have shape"):
        store.put(kv, keys[:, :5], 0, 0.0)
    with pytest.raises(KeyError, match="block 0"):
        store.get(0, [0])
    with pytest.raises(ValueError, match="layer must be in"):
        store.get(L, [])


# device cache and RAM budget -----------------------------------------------------------------------


@pytest.mark.parametrize(("eviction", "kept"), [("lru", [2, 0]), ("fifo", [1, 2])])
def test_device_cache_is_bounded_per_layer_in_policy_order(eviction: str, kept: list[int]) -> None:
    store = BlockStore(make_spec(), device_cache_blocks=2, device="cpu", eviction=eviction)
    fill(store, 5)
    for block_id in (0, 1, 0, 2):  # LRU evicts 1 (least recently used), FIFO evicts 0 (entered first)
        store.get(1, [block_id])
    assert sorted(store.resident_ids("device", layer=1)) == sorted(kept)
    assert store.resident_ids("device", layer=0) == []  # layers have their own caches
    store.get(0, [3, 4, 1, 0])  # a request larger than the cache keeps its last blocks
    assert store.resident_ids("device", layer=0) == [1, 0]
    expected = {"entries": 4, "blocks": len({*kept, 0, 1}), "bytes": 4 * store.spec.layer_nbytes}
    assert store.memory_summary()["device"] == expected


def test_device_cache_serves_hits_without_reading_other_tiers(tmp_path: Path) -> None:
    store = BlockStore(make_spec(), tmp_path / "s", ram_budget_bytes=0, device_cache_blocks=3)
    fill(store, 4)
    reads: list[list[int]] = []
    original = store._disk.read
    store._disk.read = lambda slots, layer=None: reads.append(slots) or original(slots, layer)
    first = store.get(1, [2, 3])
    assert store.resident_ids("device", layer=1) == [2, 3]
    store.get(1, [0])  # cache: 2, 3, 0 (full)
    again = store.get(1, [3, 2])  # hits: nothing read; recency is now 0, 3, 2
    assert torch.equal(again, first[[1, 0]]) and reads == [[2, 3], [0]]
    store.get(1, [1])  # evicts 0, the least recently used
    assert store.resident_ids("device", layer=1) == [3, 2, 1]
    store.close()


def test_ram_budget_evicts_to_disk_by_lru(tmp_path: Path) -> None:
    spec = make_spec()
    store = BlockStore(spec, tmp_path / "s", ram_budget_bytes=3 * spec.block_nbytes + 5)
    fill(store, 6)
    assert store.resident_ids("ram") == [3, 4, 5]
    assert store.memory_summary()["ram"]["bytes"] == 3 * spec.block_nbytes
    store.get(0, [3])  # 3 becomes the most recently used
    fill(store, 1, start=6)
    assert store.resident_ids("ram") == [5, 3, 6]  # 4 evicted, not 3
    assert len(store.resident_ids("disk")) == 7
    expected = torch.stack([make_block(i)[0] for i in range(7)])
    assert torch.equal(store.get_blocks(range(7)), expected)  # evicted blocks come from disk
    store.close()


def test_ram_only_store_refuses_to_exceed_its_budget() -> None:
    spec = make_spec()
    store = BlockStore(spec, ram_budget_bytes=2 * spec.block_nbytes)
    fill(store, 2)
    with pytest.raises(StoreError, match="no directory.*Pass a store directory, raise ram_budget_bytes"):
        fill(store, 1, start=2)
    assert len(store) == 2 and torch.equal(store.get(0, [1]), make_block(1)[0][None, 0])
    bounded = BlockStore(spec, ram_budget_bytes=2 * spec.block_nbytes, max_blocks=2)
    fill(bounded, 5)  # retention keeps it within budget
    assert bounded.live_ids() == [3, 4]


def test_memory_stays_bounded_on_a_long_stream(tmp_path: Path) -> None:
    spec = make_spec()
    budget = 16 * spec.block_nbytes
    # durable=False: no msync per put (a busy shared disk makes 2,000 of them take seconds)
    store = BlockStore(spec, tmp_path / "s", ram_budget_bytes=budget, device_cache_blocks=4, durable=False)
    for i in range(2000):
        store.put(*make_block(i % 50), frame_index=i, timestamp_s=i / 30)
        if i % 100 == 99:
            store.get(i % L, [i, i - 50, 7])
            assert store.memory_summary()["ram"]["bytes"] <= budget
    summary = store.memory_summary()
    assert summary["ram"] == {"blocks": 16, "bytes": budget} and summary["disk"]["blocks"] == 2000
    assert store._ram.allocated_nbytes <= budget and summary["device"]["entries"] <= 4 * L
    assert torch.equal(store.get(1, [1234]), make_block(1234 % 50)[0][None, 1])
    store.close()


# retention and persistence -------------------------------------------------------------------------


def test_max_blocks_deletes_the_oldest_permanently(tmp_path: Path) -> None:
    spec = make_spec()
    store = BlockStore(spec, tmp_path / "s", max_blocks=3, device_cache_blocks=2)
    fill(store, 3)
    store.get(0, [0, 1])
    fill(store, 2, start=3)
    assert store.live_ids() == [2, 3, 4] and len(store) == 3 and 0 not in store and 4 in store
    assert store.resident_ids("device", layer=0) == [] and store.repr_keys().shape == (L, 3, H * D)
    with pytest.raises(KeyError):
        store.meta(1)
    with pytest.raises(KeyError):
        store.get(1, [0])
    assert store._disk.capacity == 16 and sorted(store._pool.slot(b) for b in store.live_ids()) == [0, 1, 2]
    store.close()
    lines = (tmp_path / "s" / "index.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[3:5] == [{"del": 0}, {"id": 3, "slot": 0, "frame": 30, "t": 1.5}]
    with BlockStore.open(tmp_path / "s", spec, max_blocks=3) as reopened:
        assert reopened.live_ids() == [2, 3, 4] and reopened.meta(4) == BlockMeta(4, 40, 2.0)
        assert fill(reopened, 1, start=5)[0].block_id == 5 and reopened.live_ids() == [3, 4, 5]


def test_the_index_of_an_endless_stream_under_retention_stays_bounded_and_replays_the_same(tmp_path: Path, monkeypatch) -> None:
    """Every retained block adds a line and every deleted one another: without compaction the index
    grew 5 KB per 1,000 frames for ever (the 100k-frame scene soak). It is rewritten with the live
    blocks once it passes twice their number plus COMPACT_MIN_LINES lines."""
    from memstream.streaming.videomem.store import disk

    monkeypatch.setattr(disk, "COMPACT_MIN_LINES", 16)
    spec = make_spec()
    index = tmp_path / "s" / "index.jsonl"
    with BlockStore(spec, tmp_path / "s", max_blocks=4) as store:
        longest = 0
        for start in range(0, 200, 10):
            fill(store, 10, start=start)
            longest = max(longest, len(index.read_text().splitlines()))
        data, metas = store.get_blocks(store.live_ids()), [store.meta(i) for i in store.live_ids()]
    assert longest <= 2 * 4 + 16 + 1 and store.live_ids() == [196, 197, 198, 199]
    assert json.loads((tmp_path / "s" / "store.json").read_text())["version"] == 2
    assert not list((tmp_path / "s").glob("*.tmp"))
    with BlockStore.open(tmp_path / "s", spec, max_blocks=4) as reopened:
        assert reopened.live_ids() == [196, 197, 198, 199] and [reopened.meta(i) for i in reopened.live_ids()] == metas
        assert torch.equal(reopened.get_blocks(reopened.live_ids()), data)
        assert fill(reopened, 1, start=200)[0].block_id == 200  # ids of deleted blocks are never reused


def test_skip_lines_move_the_next_id_forward_only(tmp_path: Path) -> None:
    spec = _store_of_four(tmp_path / "s")
    index = tmp_path / "s" / "index.jsonl"
    lines = index.read_text().splitlines()
    index.write_text("\n".join([lines[0], '{"skip": 5}', lines[1].replace('"id": 1', '"id": 5'), '{"skip": 9}']) + "\n")
    with BlockStore.open(tmp_path / "s", spec) as reopened:
        assert reopened.live_ids() == [0, 5] and fill(reopened, 1, start=9)[0].block_id == 9
    index.write_text("\n".join([lines[0], lines[1], '{"skip": 1}', lines[2]]) + "\n")
    with pytest.raises(StoreError, match="line 3 is corrupt.*skips ids back"):
        BlockStore.open(tmp_path / "s", spec)


def test_a_version_1_store_opens(tmp_path: Path) -> None:
    spec = _store_of_four(tmp_path / "s")
    header = tmp_path / "s" / "store.json"
    header.write_text(json.dumps({**json.loads(header.read_text()), "version": 1}))
    with BlockStore.open(tmp_path / "s", spec) as reopened:
        assert reopened.live_ids() == [0, 1, 2, 3]


@pytest.mark.parametrize("codec", ["none", "int8-token"])
def test_reopen_after_close_gives_identical_data(tmp_path: Path, codec: str) -> None:
    spec = make_spec(codec=codec)
    with BlockStore(spec, tmp_path / "s", ram_budget_bytes=2 * spec.block_nbytes) as store:
        fill(store, 6)
        before, keys, metas = store.get_blocks(range(6)), store.repr_keys(), [store.meta(i) for i in range(6)]
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.get(0, [0])
    with BlockStore.open(tmp_path / "s", spec, ram_budget_bytes=2 * spec.block_nbytes) as reopened:
        assert torch.equal(reopened.get_blocks(range(6)), before) and torch.equal(reopened.repr_keys(), keys)
        assert [reopened.meta(i) for i in range(6)] == metas and reopened.resident_ids("ram") == [4, 5]
        assert fill(reopened, 1, start=6)[0].block_id == 6


def _store_of_four(directory: Path) -> BlockSpec:
    spec = make_spec()
    with BlockStore(spec, directory) as store:
        fill(store, 4)
    return spec


def test_reopen_after_a_torn_index_line_keeps_committed_blocks_and_warns(tmp_path: Path) -> None:
    spec = _store_of_four(tmp_path / "s")
    index = tmp_path / "s" / "index.jsonl"
    index.write_bytes(index.read_bytes()[:-7])  # crash while appending block 3's line
    with pytest.warns(RuntimeWarning, match=r"index.jsonl: ignoring its last line 4 .*never committed"):
        store = BlockStore.open(tmp_path / "s", spec)
    assert store.live_ids() == [0, 1, 2]
    assert torch.equal(store.get_blocks(range(3)), torch.stack([make_block(i)[0] for i in range(3)]))
    assert fill(store, 1, start=9)[0].block_id == 3  # the torn id and its slot are reused
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the torn tail was dropped: a clean reopen
        with BlockStore.open(tmp_path / "s", spec) as clean:
            assert torch.equal(clean.get(0, [3]), make_block(9)[0][None, 0])


def test_reopen_after_a_payload_without_index_line_keeps_committed_blocks(tmp_path: Path) -> None:
    spec = _store_of_four(tmp_path / "s")
    store = BlockStore.open(tmp_path / "s", spec)
    meta, slot = store._pool.add(99, 9.9)  # crash after the payload write, before the index line
    store._disk.write(slot, torch.full((L, spec.layer_nbytes), 7, dtype=torch.uint8), torch.ones(L, H * D))
    store.close()
    with BlockStore.open(tmp_path / "s", spec) as reopened:
        assert reopened.live_ids() == [0, 1, 2, 3]
        assert torch.equal(reopened.get_blocks(range(4)), torch.stack([make_block(i)[0] for i in range(4)]))
        assert fill(reopened, 1, start=4)[0].block_id == 4
        assert torch.equal(reopened.get_blocks([4])[0], make_block(4)[0])


def test_a_last_index_line_without_its_newline_is_committed(tmp_path: Path) -> None:
    spec = _store_of_four(tmp_path / "s")
    index = tmp_path / "s" / "index.jsonl"
    index.write_bytes(index.read_bytes()[:-1])  # crash between the line and its newline
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with BlockStore.open(tmp_path / "s", spec) as store:
            assert store.live_ids() == [0, 1, 2, 3] and fill(store, 1, start=4)[0].block_id == 4
        with BlockStore.open(tmp_path / "s", spec) as store:
            assert store.live_ids() == [0, 1, 2, 3, 4]


def test_corruption_before_the_last_index_line_is_an_error(tmp_path: Path) -> None:
    spec = _store_of_four(tmp_path / "s")
    index = tmp_path / "s" / "index.jsonl"
    lines = index.read_text().splitlines(keepends=True)
    index.write_text("".join(lines[:1] + ['{"id": 1, "slot"\n'] + lines[2:]))
    with pytest.raises(StoreError, match=r"index.jsonl line 2 is corrupt.*Restore the store from a backup"):
        BlockStore.open(tmp_path / "s", spec)


def test_reopen_with_another_model_or_shape_is_refused(tmp_path: Path) -> None:
    spec = _store_of_four(tmp_path / "s")
    fingerprints = r"model 'tiny-model@1', not by the current model 'other@2'.*another store"
    with pytest.raises(StoreError, match=fingerprints):
        BlockStore.open(tmp_path / "s", make_spec(model_fingerprint="other@2"))
    values = r"n_layers=2 \(store\) vs 3 \(given\), codec='none' \(store\) vs 'int8-token'"
    with pytest.raises(StoreError, match=values):
        BlockStore.open(tmp_path / "s", make_spec(n_layers=3, codec="int8-token"))
    with pytest.raises(StoreError, match="already holds a block store.*BlockStore.open"):
        BlockStore(spec, tmp_path / "s")
    with pytest.raises(StoreError, match="no block store at"):
        BlockStore.open(tmp_path / "missing", spec)
    with BlockStore.open(tmp_path / "s", spec) as store:
        assert store.live_ids() == [0, 1, 2, 3]  # refusals changed nothing


def test_a_file_or_read_only_directory_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "not_a_dir"
    file.write_text("x")
    for make in (lambda: BlockStore(make_spec(), file), lambda: BlockStore.open(file, make_spec())):
        with pytest.raises(StoreError, match=re.escape(f"store directory {file} is a file")):
            make()
    store = BlockStore(make_spec(), tmp_path / "a" / "b")  # missing parents are created
    assert (tmp_path / "a" / "b" / "store.json").is_file()
    store.close()
    if os.geteuid() != 0:  # root may write anywhere: the permission case cannot be staged
        read_only = tmp_path / "ro"
        read_only.mkdir()
        read_only.chmod(0o500)
        try:
            with pytest.raises(StoreError, match=re.escape(f"store directory {read_only} is not writable")):
                BlockStore(make_spec(), read_only)
        finally:
            read_only.chmod(0o700)
