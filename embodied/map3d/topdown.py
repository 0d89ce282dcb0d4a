"""A top-down view of the 3D memory for navigation: which ground cells are seen, blocked by static
structure, or held by a dynamic object, and how tall the structure in each cell is (a 2.5D height grid).

Read from the memory itself, not from a second map: the static map's observed voxels
(:meth:`~memstream.embodied.map3d.psm.PersistentStructureMemory.observed_voxels`, TSDF values and
weights) and the dynamics memory's latest points per object. For each cell of a caller-given grid on
the ground plane:

* ``seen``: some voxel of its column below ``ceiling_m`` was observed on or in front of a surface
  (the floor, a surface, or free space within the TSDF's truncation band in front of one; the band
  the TSDF also writes *behind* a surface was never seen);
* ``occupied``: a voxel at a height in ``[floor_m, ceiling_m]`` lies on a static surface
  (|TSDF| within ``surface_voxels`` voxels of the zero crossing), so the floor itself never blocks;
* ``dynamic``: a dynamic object's points (at ``at_s``, the latest when None) fall in it, in the
  same height band;
* ``height_m``: the highest static surface in the band (nan where none): walls stand taller than
  furniture, which is how a planner tells rooms apart.

Heights are measured along ``up_axis`` times ``up_sign`` (a z-up world: 2, +1; OpenCV-style y-down
worlds: 1, -1); the two remaining world axes, in order, are the grid's rows and columns.

Example:
    >>> import numpy as np
    >>> view = TopDownView(np.zeros(2), 0.5, seen=np.ones((2, 2), bool), occupied=np.eye(2, dtype=bool),
    ...                    dynamic=np.zeros((2, 2), bool), height_m=np.full((2, 2), np.nan))
    >>> view.free.tolist(), view.to_cell(np.array([[0.7, 0.2]])).tolist()
    ([[False, True], [True, False]], [[1, 0]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TopDownView:
    """The memory seen from above on a grid of ``cell_m`` cells whose cell (0, 0) starts at ``origin``.

    Attributes:
        origin: float64 ``(2,)`` ground coordinates (metres) of the corner of cell (0, 0).
        cell_m: cell edge, metres.
        seen, occupied, dynamic: bool ``(rows, cols)`` (see the module docstring).
        height_m: float32 ``(rows, cols)``: the highest static surface in the height band, nan where none.
    """

    origin: np.ndarray
    cell_m: float
    seen: np.ndarray
    occupied: np.ndarray
    dynamic: np.ndarray
    height_m: np.ndarray

    @property
    def blocked(self) -> np.ndarray:
        """bool: static structure or a dynamic object."""
        return self.occupied | self.dynamic

    @property
    def free(self) -> np.ndarray:
        """bool: seen and not blocked."""
        return self.seen & ~self.blocked

    def to_cell(self, ground_xy: np.ndarray) -> np.ndarray:
        """int64 ``(n, 2)`` cells of ground points ``(n, 2)`` (may lie outside the grid)."""
        return np.floor((np.asarray(ground_xy, np.float64) - self.origin) / self.cell_m).astype(np.int64)


def _split(points: np.ndarray, up_axis: int, up_sign: float) -> tuple[np.ndarray, np.ndarray]:
    ground = [a for a in range(3) if a != up_axis]
    return points[:, ground], up_sign * points[:, up_axis]


def _flat_cells(ground: np.ndarray, origin: np.ndarray, cell_m: float, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell index of each point and which points fall inside the grid."""
    cells = np.floor((ground - origin) / cell_m).astype(np.int64)
    inside = (cells[:, 0] >= 0) & (cells[:, 0] < shape[0]) & (cells[:, 1] >= 0) & (cells[:, 1] < shape[1])
    return cells[:, 0] * shape[1] + cells[:, 1], inside


def top_down_view(
    voxels: tuple[np.ndarray, np.ndarray, np.ndarray],
    dynamic_points: np.ndarray,
    origin: np.ndarray,
    cell_m: float,
    shape: tuple[int, int],
    voxel_m: float,
    trunc_voxels: float,
    up_axis: int = 2,
    up_sign: float = 1.0,
    floor_m: float = 0.15,
    ceiling_m: float = 2.0,
    surface_voxels: float = 1.5,
) -> TopDownView:
    """The view from the static map's ``voxels`` (centres ``(n, 3)`` metres, TSDF in truncation units,
    weights; only observed ones) and dynamic ``points`` ``(m, 3)``; see the module docstring.

    Raises:
        ValueError: an empty grid, a bad axis, or a height band that is empty.
    """
    if up_axis not in (0, 1, 2) or up_sign not in (1.0, -1.0, 1, -1):
        raise ValueError(f"up_axis must be 0, 1 or 2 and up_sign +-1, got {up_axis}, {up_sign}")
    if not (cell_m > 0 and shape[0] > 0 and shape[1] > 0):
        raise ValueError(f"the grid needs cells: cell_m {cell_m}, shape {shape}")
    if not floor_m < ceiling_m:
        raise ValueError(f"need floor_m < ceiling_m, got {floor_m}, {ceiling_m}")
    origin = np.asarray(origin, np.float64).reshape(2)
    size = shape[0] * shape[1]
    centres, tsdf, _ = voxels
    ground, height = _split(np.asarray(centres, np.float64).reshape(-1, 3), up_axis, float(up_sign))
    flat, inside = _flat_cells(ground, origin, cell_m, shape)
    below = inside & (height <= ceiling_m)
    surface = np.abs(tsdf) <= surface_voxels / trunc_voxels
    seen = np.bincount(flat[below & (tsdf >= -surface_voxels / trunc_voxels)], minlength=size) > 0
    band = below & surface & (height >= floor_m)
    occupied = np.bincount(flat[band], minlength=size) > 0
    top = np.full(size, -np.inf)
    np.maximum.at(top, flat[band], height[band])
    dynamic = np.zeros(size, bool)
    if len(dynamic_points):
        ground_d, height_d = _split(np.asarray(dynamic_points, np.float64).reshape(-1, 3), up_axis, float(up_sign))
        flat_d, inside_d = _flat_cells(ground_d, origin, cell_m, shape)
        keep = inside_d & (height_d <= ceiling_m) & (height_d >= floor_m - voxel_m)
        dynamic[flat_d[keep]] = True
    top[~np.isfinite(top)] = np.nan
    return TopDownView(
        origin, float(cell_m), seen.reshape(shape), occupied.reshape(shape), dynamic.reshape(shape),
        top.astype(np.float32).reshape(shape),
    )


__all__ = ["TopDownView", "top_down_view"]
