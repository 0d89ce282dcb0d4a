"""The static map's block bookkeeping (last-seen frame per block, eviction past the budget) gives
exactly what the former per-row loops gave, on a stream that evicts on most frames."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.embodied.map3d.geometry import camera_center
from memstream.embodied.map3d.psm import PersistentStructureMemory, PSMConfig
from memstream.streaming import open_source


class _LoopPSM(PersistentStructureMemory):
    """The former bookkeeping: numpy rows turned into tuples one by one."""

    def integrate(self, depth_m, rgb, intrinsics, world_from_cam):
        cfg = self.config
        shifted = np.asarray(intrinsics, np.float64).copy()
        shifted[:2, 2] += 0.5
        depth, color, intrinsic, extrinsic = self._tensors(depth_m, rgb, shifted, world_from_cam)
        coords = self._grid.compute_unique_block_coordinates(depth, intrinsic, extrinsic, 1.0, cfg.depth_max_m, float(cfg.trunc_voxels))
        self.frames_fused += 1
        keys = coords.cpu().numpy().astype(np.int64)
        for key in map(tuple, keys):
            self._last_seen[key] = self.frames_fused
        _, found = self._grid.hashmap().find(coords)
        new_blocks = int(keys.shape[0] - found.cpu().numpy().sum())
        if len(self) + new_blocks > cfg.block_budget:
            self._evict(len(self) + new_blocks - cfg.block_budget, camera_center(world_from_cam), protected=coords)
        self._grid.integrate(coords, depth, color, intrinsic, intrinsic, extrinsic, 1.0, cfg.depth_max_m, float(cfg.trunc_voxels))

    def _evict(self, count, camera, protected):
        hashmap = self._grid.hashmap()
        active = hashmap.active_buf_indices().to(self._o3c.int64)
        keys = hashmap.key_tensor()[active].cpu().numpy().astype(np.int64)
        keep = {tuple(k) for k in protected.cpu().numpy().astype(np.int64)}
        centres = (keys + 0.5) * self.block_m
        distance = np.linalg.norm(centres - camera, axis=1)
        age = np.array([self.frames_fused - self._last_seen.get(tuple(k), 0) for k in keys], np.float64)
        score = distance / self.block_m + age
        score[[tuple(k) in keep for k in keys]] = -np.inf
        victims = keys[np.argsort(-score, kind="stable")[:count]]
        victims = victims[[tuple(v) not in keep for v in victims]]
        if len(victims):
            hashmap.erase(self._o3c.Tensor(victims.astype(np.int32), device=self._device))
            for v in map(tuple, victims):
                self._last_seen.pop(v, None)
            self.blocks_evicted += len(victims)


@pytest.fixture(scope="module")
def glances():
    """Every 20th frame of 40 s of the navqa room: the camera glances aside and back, so a map of
    at most 1,700 blocks (a frame sees about 1,600) evicts on most frames after the first glance."""
    with open_source("synthetic://navqa?frames=100000&size=160x120&fps=30") as source:
        return [frame for i, frame in zip(range(1200), source, strict=False) if i % 20 == 0]


CONFIG = PSMConfig(voxel_m=0.04, block_budget=1700)


def _fuse(psm, frame):
    psm.integrate(np.nan_to_num(frame.depth_m.astype(np.float32)), frame.rgb, frame.intrinsics, frame.pose)


def _sorted_state(psm):
    state = psm.state_dict()
    order = np.lexsort(state["keys"].T)
    return {name: state[name][order] for name in ("keys", "tsdf", "weight", "color")}


def test_bookkeeping_and_eviction_match_the_former_loops(glances):
    fast, loops = PersistentStructureMemory(CONFIG), _LoopPSM(CONFIG)
    for frame in glances:
        _fuse(fast, frame)
        _fuse(loops, frame)
        assert fast.blocks_evicted == loops.blocks_evicted and len(fast) == len(loops)
    assert fast.blocks_evicted > 50
    assert fast._last_seen == loops._last_seen
    assert np.array_equal(_sorted_state(fast)["keys"], _sorted_state(loops)["keys"])
    assert all(type(v) is int for key in fast._last_seen for v in key)  # plain ints


def test_a_block_in_an_evicted_blocks_slot_starts_empty_and_the_map_is_the_same_every_run(glances):
    first, second = PersistentStructureMemory(CONFIG), PersistentStructureMemory(CONFIG)
    checked = 0
    for frame in glances:
        held = set(map(tuple, first._active_keys().cpu().numpy().tolist()))
        _fuse(first, frame)
        _fuse(second, frame)
        new = [key for key in first._active_keys().cpu().numpy().tolist() if tuple(key) not in held]
        if first.blocks_evicted and new:  # blocks new on this frame, some in evicted blocks' slots
            buf, found = first._grid.hashmap().find(first._o3c.Tensor(np.asarray(new, np.int32)))
            assert found.cpu().numpy().all()
            weights = first._grid.attribute("weight").cpu().numpy()[buf.cpu().numpy().astype(np.int64)]
            assert weights.max() <= 1.0, "a new block carries an evicted block's weights"
            checked += len(new)
    assert checked > 50
    assert first.blocks_evicted > 50
    a, b = _sorted_state(first), _sorted_state(second)
    for name in ("keys", "tsdf", "weight", "color"):
        assert np.array_equal(a[name], b[name]), name
