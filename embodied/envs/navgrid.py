"""Geodesic distances on a 2D occupancy grid: the scorer's shortest paths and the agents' planner.

A grid is a bool array ``free`` (rows, cols) over the floor plane with square cells of ``cell_m``
metres; cell ``(r, c)`` covers ``origin + (r, c) * cell_m`` to ``origin + (r + 1, c + 1) * cell_m``.
Paths move between the 8 neighbours of a cell (octile distances: 1 or sqrt(2) cells), never through
a blocked cell nor cutting a blocked corner. Habitat measures geodesic distance on its navmesh; this
grid plays that role for the simulators that run here.

Example:
    >>> free = np.ones((3, 4), dtype=bool); free[1, 1:3] = False   # a wall in the middle row
    >>> field = distance_field(free, [(2, 0)], cell_m=0.5)
    >>> float(field[0, 3]), float(field[1, 3])                     # two ways round, equally long
    (2.5, 2.0)
    >>> next_cell(field, (0, 3))                                   # the first lower neighbour found
    (0, 2)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

_NEIGHBOURS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc)


@dataclass(frozen=True)
class GridSpec:
    """Where a grid lies on the floor: cell (0, 0)'s corner ``origin_m`` (x0, y0), side ``cell_m``, shape."""

    origin_m: tuple[float, float]
    cell_m: float
    shape: tuple[int, int]

    def to_cell(self, xy_m: np.ndarray) -> np.ndarray:
        """int64 (..., 2) row, col of points ``xy_m`` (..., 2), metres (not clipped to the grid)."""
        xy = np.asarray(xy_m, dtype=np.float64)
        return np.floor((xy - np.asarray(self.origin_m)) / self.cell_m).astype(np.int64)

    def to_xy(self, cells: np.ndarray) -> np.ndarray:
        """float64 (..., 2): metres, the centres of ``cells`` (..., 2) row, col."""
        return (np.asarray(cells, dtype=np.float64) + 0.5) * self.cell_m + np.asarray(self.origin_m)

    def inside(self, cells: np.ndarray) -> np.ndarray:
        """bool (...,): which ``cells`` (..., 2) lie on the grid."""
        cells = np.asarray(cells)
        return (
            (cells[..., 0] >= 0)
            & (cells[..., 0] < self.shape[0])
            & (cells[..., 1] >= 0)
            & (cells[..., 1] < self.shape[1])
        )


def distance_field(
    free: np.ndarray, sources: Iterable[tuple[int, int]], cell_m: float, cost: np.ndarray | None = None
) -> np.ndarray:
    """float64 (rows, cols): geodesic metres from the nearest of ``sources`` to every cell (inf: unreachable).

    Args:
        free: bool (rows, cols), True where the agent's centre may be.
        sources: cells the distance is measured from; blocked or off-grid ones are ignored.
        cell_m: side of a cell, metres.
        cost: optional float (rows, cols) >= 1: a step into a cell costs ``cost`` times its length
            (planners use it to keep away from walls); None for pure geodesic distance.
    """
    rows, cols = free.shape
    field = np.full((rows, cols), np.inf)
    heap: list[tuple[float, int, int]] = []
    for r, c in sources:
        if 0 <= r < rows and 0 <= c < cols and free[r, c] and field[r, c] > 0:
            field[r, c] = 0.0
            heap.append((0.0, int(r), int(c)))
    heapq.heapify(heap)
    free_list = free.tolist()
    cost_list = cost.tolist() if cost is not None else None
    dist = field.tolist()
    while heap:
        d, r, c = heapq.heappop(heap)
        if d > dist[r][c]:
            continue
        for dr, dc in _NEIGHBOURS:
            nr, nc = r + dr, c + dc
            if not (0 <= nr < rows and 0 <= nc < cols) or not free_list[nr][nc]:
                continue
            if dr and dc and not (free_list[r + dr][c] and free_list[r][c + dc]):
                continue  # no corner cutting
            step = (math.sqrt(2.0) if dr and dc else 1.0) * cell_m
            if cost_list is not None:
                step *= cost_list[nr][nc]
            nd = d + step
            if nd < dist[nr][nc]:
                dist[nr][nc] = nd
                heapq.heappush(heap, (nd, nr, nc))
    return np.asarray(dist)


def next_cell(field: np.ndarray, cell: tuple[int, int]) -> tuple[int, int] | None:
    """The neighbour of ``cell`` with the smallest finite ``field`` value below ``cell``'s, else None."""
    rows, cols = field.shape
    r, c = cell
    best, best_value = None, field[r, c] if 0 <= r < rows and 0 <= c < cols else np.inf
    for dr, dc in _NEIGHBOURS:
        nr, nc = r + dr, c + dc
        if 0 <= nr < rows and 0 <= nc < cols and field[nr, nc] < best_value:
            if dr and dc and not (np.isfinite(field[r + dr, c]) and np.isfinite(field[r, c + dc])):
                continue
            best, best_value = (nr, nc), field[nr, nc]
    return best


def descend(field: np.ndarray, cell: tuple[int, int], max_cells: int = 100_000) -> list[tuple[int, int]]:
    """Cells from ``cell`` down ``field`` to a source (``cell`` first); stops where no neighbour is lower."""
    path = [cell]
    while len(path) < max_cells:
        step = next_cell(field, path[-1])
        if step is None:
            break
        path.append(step)
    return path


def nearest_finite(field: np.ndarray, cell: tuple[int, int]) -> tuple[int, int] | None:
    """The cell with a finite ``field`` value nearest (euclidean) to ``cell``, or None if there is none."""
    finite = np.argwhere(np.isfinite(field))
    if len(finite) == 0:
        return None
    best = int(np.argmin(((finite - np.asarray(cell)) ** 2).sum(axis=1)))
    return int(finite[best, 0]), int(finite[best, 1])
