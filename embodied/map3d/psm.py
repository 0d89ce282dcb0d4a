"""Persistent Structure Memory: the static scene as a TSDF in an open3d ``VoxelBlockGrid``.

Only pixels judged static are fused (the caller zeroes the others' depth), so moving things leave
no ghost. The grid is sparse (blocks of ``block_resolution``^3 voxels allocated where surfaces are)
and bounded: past ``block_budget`` blocks, the blocks farthest from the current camera and least
recently observed are erased (:meth:`PersistentStructureMemory._evict`), so an endless exploration
keeps a local map of bounded size instead of growing until the preallocated hash map is full.

The tensor ``VoxelBlockGrid`` is used because open3d 0.20's legacy ``ScalableTSDFVolume`` extracts
nothing (a 0.20 regression measured in ``shared/reference/environment.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from memstream.embodied.map3d.geometry import camera_center
from memstream.streaming.configtypes import strict_config


@strict_config
@dataclass(frozen=True)
class PSMConfig:
    """How the static map is fused and bounded.

    Attributes:
        voxel_m: voxel edge, metres.
        block_resolution: voxels per block edge. Memory grows with its cube: the grid preallocates
            every block, so 16 instead of 8 takes 8x the bytes (about 2 GB at the default budget).
        block_budget: most blocks kept; past it, far and stale blocks are erased. It must exceed
            the blocks one frame observes (those are never erased while observed). The grid
            preallocates 1.25x the budget: 20,000 blocks of 8^3 voxels take about 250 MB.
        trunc_voxels: TSDF truncation, in voxels.
        depth_min_m, depth_max_m: depth range fused and ray-cast.
        device: open3d device (``"CPU:0"``, ``"CUDA:0"``).
    """

    voxel_m: Annotated[float, Field(gt=0)] = 0.04
    block_resolution: Annotated[int, Field(ge=2)] = 8
    block_budget: Annotated[int, Field(ge=16)] = 20000
    trunc_voxels: Annotated[float, Field(gt=0)] = 8.0
    depth_min_m: Annotated[float, Field(gt=0)] = 0.1
    depth_max_m: Annotated[float, Field(gt=0)] = 8.0
    device: Annotated[str, Field(min_length=1)] = "CPU:0"

    def __post_init__(self) -> None:
        if not self.depth_min_m < self.depth_max_m:
            raise ValueError(f"need 0 < depth_min_m < depth_max_m, got {self.depth_min_m}, {self.depth_max_m}")


def _o3d():
    try:
        import open3d as o3d
        import open3d.core as o3c
    except ImportError as exc:
        from memstream.streaming.errors import MemstreamError

        raise MemstreamError("the 3D memory needs open3d", 'Install it with: pip install "memstream[3d]"') from exc
    return o3d, o3c


class PersistentStructureMemory:
    """The static TSDF map (see the module docstring).

    Args:
        config: fusion and budget settings.
    """

    def __init__(self, config: PSMConfig | None = None) -> None:
        self.config = config or PSMConfig()
        self._o3d, self._o3c = _o3d()
        self._device = self._o3c.Device(self.config.device)
        self._grid = self._new_grid()
        self._last_seen: dict[tuple[int, int, int], int] = {}  # block -> frame counter it was last observed
        self._fragments_reserved = (0, 0)  # (blocks, fragments per block) the ray caster has room for
        self.frames_fused = 0
        self.blocks_evicted = 0

    def _new_grid(self):
        o3d, o3c, cfg = self._o3d, self._o3c, self.config
        # The hash map gets room for the budget plus one frame's worth of new blocks.
        return o3d.t.geometry.VoxelBlockGrid(
            attr_names=("tsdf", "weight", "color"),
            attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
            attr_channels=((1), (1), (3)),
            voxel_size=cfg.voxel_m,
            block_resolution=cfg.block_resolution,
            block_count=int(cfg.block_budget * 1.25) + 64,
            device=self._device,
        )

    @property
    def block_m(self) -> float:
        """Edge of one block, metres."""
        return self.config.voxel_m * self.config.block_resolution

    def __len__(self) -> int:
        """Blocks allocated."""
        return int(self._grid.hashmap().size())

    def _tensors(self, depth_m: np.ndarray, rgb: np.ndarray | None, intrinsics: np.ndarray, world_from_cam: np.ndarray):
        o3d, o3c = self._o3d, self._o3c
        depth = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(depth_m, np.float32))).to(self._device)
        color = None if rgb is None else o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(rgb, np.float32) / 255.0)).to(self._device)
        intrinsic = o3c.Tensor(np.asarray(intrinsics, np.float64))
        extrinsic = o3c.Tensor(np.linalg.inv(np.asarray(world_from_cam, np.float64)))  # open3d wants cam_from_world
        return depth, color, intrinsic, extrinsic

    def integrate(self, depth_m: np.ndarray, rgb: np.ndarray, intrinsics: np.ndarray, world_from_cam: np.ndarray) -> None:
        """Fuse one frame's static pixels.

        Args:
            depth_m: float32 ``(H, W)`` metric z-depth; 0 where a pixel must not be fused (dynamic,
                invalid).
            rgb: uint8 ``(H, W, 3)``.
            intrinsics: ``(3, 3)`` pinhole matrix, pixels.
            world_from_cam: ``(4, 4)`` camera pose, metres.
        """
        cfg = self.config
        # open3d's integration finds a voxel's pixel by truncating its projection (u = int(x)), not
        # rounding, which shifts the whole map by half a pixel (1-1.5 cm on the synthetic room's
        # planes); shifting the principal point by +0.5 px makes the fused surface exact.
        shifted = np.asarray(intrinsics, np.float64).copy()
        shifted[:2, 2] += 0.5
        depth, color, intrinsic, extrinsic = self._tensors(depth_m, rgb, shifted, world_from_cam)
        coords = self._grid.compute_unique_block_coordinates(depth, intrinsic, extrinsic, 1.0, cfg.depth_max_m, float(cfg.trunc_voxels))
        self.frames_fused += 1
        keys = coords.cpu().numpy().astype(np.int64)
        self._last_seen.update(dict.fromkeys(map(tuple, keys.tolist()), self.frames_fused))  # plain ints: a loop over numpy rows cost 1.8 ms a frame
        _, found = self._grid.hashmap().find(coords)
        new_blocks = int(keys.shape[0] - found.cpu().numpy().sum())  # blocks already held cost nothing
        if len(self) + new_blocks > cfg.block_budget:
            self._evict(len(self) + new_blocks - cfg.block_budget, camera_center(world_from_cam), protected=coords)
        if self.blocks_evicted:
            self._activate_empty(coords)
        self._grid.integrate(coords, depth, color, intrinsic, intrinsic, extrinsic, 1.0, cfg.depth_max_m, float(cfg.trunc_voxels))

    def _activate_empty(self, coords) -> None:
        """Activate the frame's new blocks with empty voxels (weight 0) before they are fused.

        The grid's buffer slots start zeroed, but an erased block's slot is reused with the erased
        block's voxels still in it, and open3d's integration blends into whatever is there: a new
        block then carried the weights and TSDF of an unrelated, evicted place, and which slot it
        got (so the map) differed from run to run. Only needed once something was evicted.
        """
        o3c = self._o3c
        buf, fresh = self._grid.hashmap().activate(coords)
        index = buf[fresh].to(o3c.int64)
        if index.shape[0] == 0:
            return
        for name in ("tsdf", "weight", "color"):
            attribute = self._grid.attribute(name)
            attribute[index] = o3c.Tensor.zeros((index.shape[0], *attribute.shape[1:]), attribute.dtype, self._device)

    def _evict(self, count: int, camera: np.ndarray, protected) -> None:
        """Erase ``count`` blocks, the farthest from ``camera`` first, then the least recently seen;
        never the blocks the current frame observes."""
        hashmap = self._grid.hashmap()
        active = hashmap.active_buf_indices().to(self._o3c.int64)
        keys = hashmap.key_tensor()[active].cpu().numpy().astype(np.int64)
        # keys as tuples of plain ints (numpy rows as tuples cost about 1 us each: 20 ms a frame at the budget)
        key_tuples = list(map(tuple, keys.tolist()))
        keep = set(map(tuple, protected.cpu().numpy().astype(np.int64).tolist()))
        centres = (keys + 0.5) * self.block_m
        distance = np.linalg.norm(centres - camera, axis=1)
        last_seen = self._last_seen
        age = np.array([self.frames_fused - last_seen.get(k, 0) for k in key_tuples], np.float64)
        score = distance / self.block_m + age  # a block a frame older weighs like a block farther
        kept = np.array([k in keep for k in key_tuples], bool)
        score[kept] = -np.inf
        order = np.argsort(-score, kind="stable")[:count]
        order = order[~kept[order]]
        victims = keys[order]
        if len(victims):
            hashmap.erase(self._o3c.Tensor(victims.astype(np.int32), device=self._device))
            for i in order.tolist():
                last_seen.pop(key_tuples[i], None)
            self.blocks_evicted += len(victims)

    def raycast(
        self, intrinsics: np.ndarray, world_from_cam: np.ndarray, width: int, height: int, colour: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Render the static map from a camera.

        Args:
            colour: also render the colour (trilinear, the larger part of a cast's cost); without
                it the colour returned is None.

        Returns:
            depth float32 ``(H, W)`` metres (0 where the ray hits nothing) and colour uint8 ``(H, W, 3)``
            (None without ``colour``).
        """
        if len(self) == 0:
            return np.zeros((height, width), np.float32), (np.zeros((height, width, 3), np.uint8) if colour else None)
        arguments = self._cast_arguments(intrinsics, world_from_cam, width, height, colour)
        self._reserve_fragments(width, height, arguments["range_map_down_factor"])
        with self._o3d.utility.VerbosityContextManager(self._o3d.utility.VerbosityLevel.Error):
            out = self._grid.ray_cast(**arguments)
        depth = out["depth"].cpu().numpy()[..., 0].astype(np.float32)
        if not colour:
            return depth, None
        color = np.clip(out["color"].cpu().numpy() * 255.0, 0, 255).astype(np.uint8)
        return depth, color

    def _cast_arguments(self, intrinsics: np.ndarray, world_from_cam: np.ndarray, width: int, height: int,
                        colour: bool) -> dict:
        """``VoxelBlockGrid.ray_cast``'s arguments for a camera."""
        cfg = self.config
        # open3d's ray caster reads the voxel below each sample (index = int(x / voxel)) without
        # interpolating while it marches, i.e. the volume it sees is shifted by half a voxel per axis;
        # casting from a camera moved by +voxel/2 on each axis cancels that.
        pose = np.asarray(world_from_cam, np.float64).copy()
        pose[:3, 3] += cfg.voxel_m / 2
        _, _, intrinsic, extrinsic = self._tensors(np.zeros((1, 1), np.float32), None, intrinsics, pose)
        return dict(
            block_coords=self._active_keys(),
            intrinsic=intrinsic, extrinsic=extrinsic, width=width, height=height,
            render_attributes=["depth", "color"] if colour else ["depth"], depth_scale=1.0,
            depth_min=cfg.depth_min_m, depth_max=cfg.depth_max_m, weight_threshold=1.0,
            trunc_voxel_multiplier=float(cfg.trunc_voxels),
            # open3d 0.20's ray caster hangs when the image size is not a multiple of its range-map
            # down factor (default 8; e.g. 120x90 never returns): take the largest that divides both.
            range_map_down_factor=next(f for f in (8, 4, 2, 1) if width % f == 0 and height % f == 0),
        )

    def _active_keys(self):
        hashmap = self._grid.hashmap()
        return hashmap.key_tensor()[hashmap.active_buf_indices().to(self._o3c.int64)]

    def _reserve_fragments(self, width: int, height: int, down: int) -> None:
        """Make sure the grid's ray-casting fragment buffer holds every fragment a cast can need.

        open3d 0.20 sizes that buffer lazily: a cast that needs more fragments than the buffer holds
        grows it but returns an incomplete image (a quarter of the hits in
        tests/embodied/map3d/test_memory.py). The buffer never shrinks, and a cast needs at most one
        fragment per 16x16 tile of its range map that a block's projection covers: at most
        ``per_block`` (below) per block. So one cast, from a far camera that sees every block as one
        fragment, over the block list repeated ``copies`` times, grows the buffer past what any later
        cast of up to twice today's blocks (at most the grid's capacity) can need, and every cast
        after it is complete the first time (it used to cast twice, every frame). Redone when the map
        outgrows the reservation or the image grows; the reservation's own image is thrown away.
        """
        blocks = len(self)
        per_block = (-(-width // down) // 16 + 2) * (-(-height // down) // 16 + 2)  # tiles a rect can touch
        if blocks <= self._fragments_reserved[0] and per_block <= self._fragments_reserved[1]:
            return
        keys = self._active_keys().cpu().numpy()
        room = min(2 * blocks, int(self._grid.hashmap().capacity()))  # twice today's blocks, at most the grid's
        copies = -(-(per_block * room) // blocks) + 1  # every block of ``room`` needing per_block, plus one each
        lo, hi = keys.min(0) * self.block_m, (keys.max(0) + 1) * self.block_m
        centre, radius = (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)) / 2, self.block_m)
        distance = 2 * radius + 1.0
        world_from_far = np.eye(4)
        world_from_far[:3, 3] = centre - np.array([0.0, 0.0, distance])  # looking along +z at the whole map
        focal = min(width, height) / 4 * (distance - radius) / radius  # the map fits the central half
        intrinsic = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
        o3c = self._o3c
        with self._o3d.utility.VerbosityContextManager(self._o3d.utility.VerbosityLevel.Error):
            self._grid.ray_cast(
                block_coords=o3c.Tensor(np.tile(keys, (copies, 1)), device=self._device),
                intrinsic=o3c.Tensor(intrinsic), extrinsic=o3c.Tensor(np.linalg.inv(world_from_far)),
                width=width, height=height, render_attributes=["depth"], depth_scale=1.0,
                depth_min=self.config.depth_min_m, depth_max=distance + radius + 1.0, weight_threshold=1.0,
                trunc_voxel_multiplier=float(self.config.trunc_voxels), range_map_down_factor=down)
        self._fragments_reserved = (room, per_block)

    def sample(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The TSDF at world points (nearest voxel).

        Args:
            points: float ``(n, 3)`` world points, metres.

        Returns:
            float32 ``(n,)`` TSDF in units of the truncation distance (``trunc_voxels * voxel_m``;
            > 0 in front of a surface, < 0 behind, nan where no block is allocated) and float32
            ``(n,)`` fusion weights (0 where never observed).
        """
        points = np.asarray(points, np.float64).reshape(-1, 3)
        tsdf, weight = np.full(len(points), np.nan, np.float32), np.zeros(len(points), np.float32)
        if len(self) == 0 or len(points) == 0:
            return tsdf, weight
        res = self.config.block_resolution
        voxel = np.floor(points / self.config.voxel_m + 0.5).astype(np.int64)  # voxel samples sit at i * voxel_m
        block = np.floor_divide(voxel, res)
        local = voxel - block * res
        buf, found = self._grid.hashmap().find(self._o3c.Tensor(block.astype(np.int32), device=self._device))
        buf, found = buf.cpu().numpy().astype(np.int64), found.cpu().numpy().astype(bool)
        # Attributes are laid out (block, z, y, x, channel); .numpy() of a CPU tensor is a view, not a copy.
        hit = (buf[found], local[found, 2], local[found, 1], local[found, 0], 0)
        tsdf[found] = self._grid.attribute("tsdf").cpu().numpy()[hit]
        weight[found] = self._grid.attribute("weight").cpu().numpy()[hit]
        tsdf[found & (weight == 0)] = np.nan
        return tsdf, weight

    def observed_voxels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every observed voxel (fusion weight > 0), read straight from the grid's buffers.

        Returns:
            float64 ``(n, 3)`` voxel centres, world metres (the points :meth:`sample` reads); float32
            ``(n,)`` TSDF in truncation units; float32 ``(n,)`` weights.
        """
        if len(self) == 0:
            return np.zeros((0, 3)), np.zeros(0, np.float32), np.zeros(0, np.float32)
        hashmap = self._grid.hashmap()
        active = hashmap.active_buf_indices().cpu().numpy().astype(np.int64)
        keys = hashmap.key_tensor().cpu().numpy()[active].astype(np.int64)
        # attributes are laid out (block, z, y, x, channel), as in sample()
        tsdf = self._grid.attribute("tsdf").cpu().numpy()[active][..., 0]
        weight = self._grid.attribute("weight").cpu().numpy()[active][..., 0]
        res = self.config.block_resolution
        z, y, x = np.meshgrid(np.arange(res), np.arange(res), np.arange(res), indexing="ij")
        local = np.stack([x, y, z], axis=-1)  # (res, res, res, 3) voxel offsets in xyz
        keep = weight > 0
        block, iz, iy, ix = np.nonzero(keep)
        voxel = keys[block] * res + local[iz, iy, ix]
        return voxel * self.config.voxel_m, tsdf[keep], weight[keep]

    def point_cloud(self) -> tuple[np.ndarray, np.ndarray]:
        """Surface points of the map: float64 ``(n, 3)`` metres and uint8 ``(n, 3)`` colours."""
        if len(self) == 0:
            return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
        pcd = self._grid.extract_point_cloud().cpu()
        points = pcd.point.positions.numpy().astype(np.float64)
        colors = pcd.point.colors.numpy() if "colors" in pcd.point else np.zeros_like(points)
        return points, np.clip(colors * 255.0, 0, 255).astype(np.uint8)

    def mesh(self):
        """The map as an open3d (legacy) ``TriangleMesh``, for ``open3d.io.write_triangle_mesh``."""
        return self._grid.extract_triangle_mesh().to_legacy()

    def memory_summary(self) -> dict:
        """Blocks held and evicted, and the bytes of the voxel attributes held."""
        voxels = self.config.block_resolution**3
        capacity = int(self._grid.hashmap().capacity())
        return {"blocks": len(self), "blocks_evicted": self.blocks_evicted, "frames_fused": self.frames_fused,
                "bytes": len(self) * voxels * (1 + 1 + 3) * 4, "allocated_bytes": capacity * voxels * (1 + 1 + 3) * 4}

    def state_dict(self) -> dict:
        """Blocks as numpy arrays (coordinates and each attribute), exact."""
        hashmap = self._grid.hashmap()
        active = hashmap.active_buf_indices().to(self._o3c.int64)
        state = {"keys": hashmap.key_tensor()[active].cpu().numpy()}
        for name in ("tsdf", "weight", "color"):
            state[name] = self._grid.attribute(name)[active].cpu().numpy()
        state["last_seen"] = dict(self._last_seen)
        state["frames_fused"], state["blocks_evicted"] = self.frames_fused, self.blocks_evicted
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (same config)."""
        o3c = self._o3c
        self._grid = self._new_grid()
        self._fragments_reserved = (0, 0)
        if len(state["keys"]):
            hashmap = self._grid.hashmap()
            buf, _ = hashmap.activate(o3c.Tensor(state["keys"], device=self._device))
            index = buf.to(o3c.int64)
            for name in ("tsdf", "weight", "color"):
                self._grid.attribute(name)[index] = o3c.Tensor(state[name], device=self._device)
        self._last_seen = dict(state["last_seen"])
        self.frames_fused, self.blocks_evicted = state["frames_fused"], state["blocks_evicted"]
