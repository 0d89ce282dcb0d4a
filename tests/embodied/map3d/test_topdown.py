"""The 3D memory's top-down view: a floor and a wall fused from exact depth give free floor in front
of the wall, the wall as tall occupied cells, nothing seen behind it; dynamic points mark their cells;
an OpenCV-style (y-down) world gives the same view; bad grids are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memstream.embodied.map3d.memory import DualMemory3D, Map3DConfig
from memstream.embodied.map3d.psm import PSMConfig
from memstream.embodied.map3d.topdown import top_down_view
from memstream.streaming.types import Frame

SIZE, HEIGHT_M, WALL_X = 96, 1.5, 3.0
FOCAL = (SIZE / 2) / math.tan(math.radians(30))
K = np.array([[FOCAL, 0.0, SIZE / 2 - 0.5], [0.0, FOCAL, SIZE / 2 - 0.5], [0.0, 0.0, 1.0]])
VOXEL = 0.1
CELL_ORIGIN = np.array([-2.05, -3.05])  # voxel centres (multiples of 0.1) on cell centres
SHAPE = (80, 60)


def _pose_zup(yaw: float) -> np.ndarray:
    """world_from_cam of a level camera at (0, 0, HEIGHT_M) in a z-up world (x forward, y left), yawed."""
    c, s = math.cos(yaw), math.sin(yaw)
    pose = np.eye(4)
    pose[:3, 0] = (s, -c, 0.0)  # image right
    pose[:3, 1] = (0.0, 0.0, -1.0)  # image down
    pose[:3, 2] = (c, s, 0.0)  # optical axis
    pose[:3, 3] = (0.0, 0.0, HEIGHT_M)
    return pose


def _depth(yaw: float) -> np.ndarray:
    """Exact z-depth of the floor (z = 0) and the wall x = WALL_X, whichever the ray meets first."""
    v, u = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / FOCAL, (v - K[1, 2]) / FOCAL, np.ones_like(u)], axis=-1)  # per unit z
    world = rays @ _pose_zup(yaw)[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        to_wall = np.where(world[..., 0] > 1e-6, WALL_X / world[..., 0], np.inf)
        to_floor = np.where(world[..., 2] < -1e-6, HEIGHT_M / -world[..., 2], np.inf)
    depth = np.minimum(to_wall, to_floor)
    return np.where(np.isfinite(depth) & (depth < 8.0), depth, 0.0).astype(np.float32)


YAWS = np.radians([-20.0, 0.0, 20.0])


def _memory(to_world: np.ndarray | None = None) -> DualMemory3D:
    to_world = np.eye(4) if to_world is None else to_world
    memory = DualMemory3D(Map3DConfig(psm=PSMConfig(voxel_m=VOXEL), dynamic_masks=("tracking",), pose="given"))
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    for index, yaw in enumerate(YAWS):
        memory.update(Frame(index, float(index), rgb, _depth(yaw), K, to_world @ _pose_zup(yaw)))
    return memory


@pytest.fixture(scope="module")
def memory() -> DualMemory3D:
    return _memory()


def _cell(x: float, y: float) -> tuple[int, int]:
    return tuple(np.floor((np.array([x, y]) - CELL_ORIGIN) / VOXEL).astype(int))


def test_observed_voxels_are_the_voxels_the_map_samples(memory):
    centres, tsdf, weight = memory.psm.observed_voxels()
    assert len(centres) > 1000 and (weight > 0).all()
    sampled, sampled_weight = memory.psm.sample(centres)
    np.testing.assert_array_equal(sampled, tsdf)
    np.testing.assert_array_equal(sampled_weight, weight)


def test_floor_before_the_wall_is_free_the_wall_is_tall_and_occupied_and_behind_it_is_unseen(memory):
    view = memory.top_down(CELL_ORIGIN, VOXEL, SHAPE)
    for y in (-0.5, 0.0, 0.5):
        wall = _cell(WALL_X, y)
        assert view.occupied[wall] and view.height_m[wall] >= 1.9  # the band's top (ceiling 2.0 m)
        floor = _cell(2.8, y)  # the camera sees the floor from 2.6 m on
        assert view.seen[floor] and view.free[floor] and np.isnan(view.height_m[floor])
        assert not view.seen[_cell(3.6, y)]  # inside the band the TSDF writes behind the wall
        assert not view.seen[_cell(1.0, y)]  # under the camera's view: never observed
    occupied_x = (np.argwhere(view.occupied)[:, 0] + 0.5) * VOXEL + CELL_ORIGIN[0]
    assert np.all(np.abs(occupied_x - WALL_X) <= 1.5 * VOXEL)  # the floor never blocks: nothing but the wall
    assert not view.dynamic.any()


def test_a_thinner_surface_band_keeps_the_wall_but_fewer_cells_around_it(memory):
    thick = memory.top_down(CELL_ORIGIN, VOXEL, SHAPE)
    thin = memory.top_down(CELL_ORIGIN, VOXEL, SHAPE, surface_voxels=0.75)
    assert thin.occupied.sum() < thick.occupied.sum() and not (thin.occupied & ~thick.occupied).any()
    assert all(thin.occupied[_cell(WALL_X, y)] for y in (-0.5, 0.0, 0.5))


def test_dynamic_points_mark_their_cells_in_the_height_band(memory):
    points = np.array([[2.0, 1.0, 0.5], [2.0, -1.0, 2.6]])  # the second floats above the band
    view = top_down_view(memory.psm.observed_voxels(), points, CELL_ORIGIN, VOXEL, SHAPE, VOXEL, 8.0)
    assert view.dynamic[_cell(2.0, 1.0)] and not view.dynamic[_cell(2.0, -1.0)]
    assert view.blocked[_cell(2.0, 1.0)] and view.dynamic.sum() == 1


def test_a_y_down_world_gives_the_same_view():
    to_cv = np.eye(4)
    to_cv[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # (x, y, z) z-up -> (x, -z, y): y points down
    cv = _memory(to_cv).top_down(CELL_ORIGIN, VOXEL, SHAPE, up_axis=1, up_sign=-1.0)
    zup = _memory().top_down(CELL_ORIGIN, VOXEL, SHAPE)
    assert (cv.occupied == zup.occupied).mean() > 0.995 and (cv.seen == zup.seen).mean() > 0.99
    assert cv.occupied.sum() > 20


@pytest.mark.parametrize(
    "kwargs, says",
    [({"up_axis": 3}, "up_axis"), ({"floor_m": 2.0, "ceiling_m": 1.0}, "floor_m"), ({"shape": (0, 5)}, "cells")],
)
def test_bad_grids_are_refused(kwargs, says):
    args = {"origin": np.zeros(2), "cell_m": 0.1, "shape": (4, 4), "voxel_m": 0.1, "trunc_voxels": 8.0, **kwargs}
    empty = (np.zeros((0, 3)), np.zeros(0, np.float32), np.zeros(0, np.float32))
    with pytest.raises(ValueError, match=says):
        top_down_view(empty, np.zeros((0, 3)), **args)
