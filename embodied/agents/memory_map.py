"""The agent's spatial memory is the project's 3D memory; this module is its navigation-facing side.

:func:`camera_pose` turns habitat's ``gps`` + ``compass`` (and the camera's height) into the
``world_from_cam`` pose :class:`~memstream.embodied.map3d.DualMemory3D` fuses depth with. The world
frame is ``(forward, right, down)`` metres from the episode's first pose at floor level (right-handed,
so open3d's TSDF sees a proper rotation): the ground axes are exactly habitat's gps axes and height
is ``-z``.

:class:`MemoryOccupancy` is what the :class:`~memstream.embodied.agents.navigator.Navigator` plans on:
a fixed ground grid (``extent_m`` square of ``cell_m`` cells, placed so the 3D memory's voxel centres
fall on cell centres) whose ``seen`` / ``occupied`` / ``walls`` arrays are the memory's
:meth:`~memstream.embodied.map3d.DualMemory3D.top_down` view (static surfaces and dynamic objects),
refreshed when the memory has fused new frames since the last read, plus the cells the agent bumped
into (a collision is evidence no camera gives). Walls are the cells whose static structure stands
taller than ``wall_m``; rooms are the seen floor's connected parts once the walls are grown enough
to shut the doorways (:meth:`MemoryOccupancy.rooms`).

Example:
    >>> import math
    >>> pose = camera_pose(np.array([1.0, 2.0]), math.pi / 2, camera_height_m=1.5)  # facing left
    >>> pose[:3, 3].tolist(), pose[:3, 2].round(6).tolist()   # position; optical axis = -right
    ([1.0, 2.0, -1.5], [0.0, -1.0, 0.0])
"""

from __future__ import annotations

import math

import numpy as np

from memstream.embodied.agents.navigator import inflate
from memstream.embodied.envs.navgrid import GridSpec
from memstream.embodied.map3d.memory import DualMemory3D
from memstream.embodied.map3d.topdown import TopDownView

UP_AXIS, UP_SIGN = 2, -1.0  # the world is (forward, right, down)


def camera_pose(gps: np.ndarray, compass: float, camera_height_m: float) -> np.ndarray:
    """float64 ``(4, 4)`` world_from_cam (OpenCV camera axes) of a level camera at ``gps`` facing ``compass``."""
    c, s = math.cos(compass), math.sin(compass)
    pose = np.eye(4)
    pose[:3, 0] = (s, c, 0.0)  # image right
    pose[:3, 1] = (0.0, 0.0, 1.0)  # image down
    pose[:3, 2] = (c, -s, 0.0)  # optical axis: the heading (cos c, -sin c) in (forward, right)
    pose[:3, 3] = (float(gps[0]), float(gps[1]), -camera_height_m)
    return pose


def pinhole(size: int, fov_deg: float) -> np.ndarray:
    """float64 ``(3, 3)`` intrinsics of a square image with ``fov_deg`` field of view (pixel centres at integers)."""
    focal = (size / 2) / math.tan(math.radians(fov_deg) / 2)
    return np.array([[focal, 0.0, size / 2 - 0.5], [0.0, focal, size / 2 - 0.5], [0.0, 0.0, 1.0]])


class MemoryOccupancy:
    """The navigator's grid over a :class:`~memstream.embodied.map3d.DualMemory3D` (see the module doc).

    Args:
        memory: the 3D memory (the agent feeds it; this only reads it).
        extent_m, cell_m: the grid. floor_m, ceiling_m: the height band of obstacles.
        wall_m: structure taller than this is a wall.
        door_close_m: walls grown by this much shut the doorways (more than half a doorway's width),
            which splits the seen floor into rooms.
        still_m: a dynamic object's footprint is the union of its sightings since it last moved
            (centroids within ``still_m`` of the latest), not only its latest, often partial, one.
        bump_m: a bump blocks the cells within this of the point it happened at.
        surface_voxels: the 3D memory's surface band for the view (see ``DualMemory3D.top_down``).
    """

    def __init__(
        self,
        memory: DualMemory3D,
        extent_m: float = 30.0,
        cell_m: float = 0.2,
        floor_m: float = 0.3,
        ceiling_m: float = 2.0,
        wall_m: float = 1.0,
        door_close_m: float = 0.9,
        still_m: float = 0.5,
        bump_m: float = 0.2,
        surface_voxels: float = 1.5,
    ) -> None:
        n = round(extent_m / cell_m)
        voxel = memory.config.psm.voxel_m
        corner = -n // 2 * cell_m  # voxel centres (multiples of voxel_m) on cell centres when cell_m == voxel_m
        shift = (cell_m / 2) if math.isclose(cell_m, voxel, rel_tol=1e-6) else 0.0
        self.grid = GridSpec((corner - shift, corner - shift), cell_m, (n, n))
        self.floor_m, self.ceiling_m, self.wall_m, self.door_close_m = floor_m, ceiling_m, wall_m, door_close_m
        self.still_m = still_m
        self.bump_m, self.surface_voxels = bump_m, surface_voxels
        ring = np.linspace(0.0, 2 * math.pi, 12, endpoint=False)
        self._bump_offsets = np.concatenate([np.zeros((1, 2)), bump_m * np.stack([np.cos(ring), np.sin(ring)], 1)])
        self.attach(memory)

    def attach(self, memory: DualMemory3D) -> None:
        """Read ``memory`` from now on (a fresh one after a wipe); forgets the bumps."""
        self.memory = memory
        self.bumps = np.zeros(self.grid.shape, bool)
        self._view: TopDownView | None = None
        self._rooms: tuple[TopDownView, np.ndarray] | None = None
        self._version: tuple[int, int] = (-1, -1)
        self.refreshes = 0

    def view(self) -> TopDownView:
        """The memory's top-down view on this grid, recomputed only after new frames were fused."""
        version = (self.memory.psm.frames_fused, len(self.memory.poses))
        if self._view is None or version != self._version:
            self._view = self.memory.top_down(
                np.asarray(self.grid.origin_m), self.grid.cell_m, self.grid.shape, UP_AXIS, UP_SIGN,
                floor_m=self.floor_m, ceiling_m=self.ceiling_m, still_m=self.still_m,
                surface_voxels=self.surface_voxels,
            )
            self._version = version
            self.refreshes += 1
        return self._view

    @property
    def seen(self) -> np.ndarray:
        return self.view().seen | self.bumps

    @property
    def occupied(self) -> np.ndarray:
        """bool: static structure, a dynamic object, or a bump."""
        return self.view().blocked | self.bumps

    @property
    def walls(self) -> np.ndarray:
        """bool: structure taller than ``wall_m``."""
        return np.nan_to_num(self.view().height_m, nan=-np.inf) > self.wall_m

    def rooms(self) -> np.ndarray:
        """int32 room labels per cell (0: none): the seen cells left once the walls are grown by
        ``door_close_m`` (which shuts the doorways), split into connected parts; cells the growth
        took get the label of the nearest labelled cell."""
        view = self.view()
        if self._rooms is None or self._rooms[0] is not view:
            from scipy import ndimage

            closed = inflate(self.walls, self.door_close_m / self.grid.cell_m)
            labels, count = ndimage.label(view.seen & ~closed)
            if count:
                _, (rows, cols) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
                labels = np.where(view.seen, labels[rows, cols], 0).astype(np.int32)
            self._rooms = (view, labels.astype(np.int32))
        return self._rooms[1]

    def mark_blocked(self, xy: np.ndarray) -> None:
        """A bump: the cells within ``bump_m`` of ``xy`` are an obstacle whatever the memory says (the
        camera cannot see what stops the agent: at 60 degrees it sees no floor nearer than 2.6 m)."""
        cells = self.grid.to_cell(np.asarray(xy, np.float64)[None] + self._bump_offsets)
        cells = cells[self.grid.inside(cells)]
        self.bumps[cells[:, 0], cells[:, 1]] = True

    def same_room(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether two points lie in one room of :meth:`rooms` (False where either is in none)."""
        labels = self.rooms()
        cells = self.grid.to_cell(np.stack([np.asarray(a, np.float64), np.asarray(b, np.float64)]))
        if not self.grid.inside(cells).all():
            return False
        first, second = (int(labels[r, c]) for r, c in cells)
        return first > 0 and first == second


__all__ = ["MemoryOccupancy", "camera_pose", "pinhole"]
