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
from collections.abc import Iterable, Sequence
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
    free: np.ndarray,
    sources: Iterable[tuple[int, int]],
    cell_m: float,
    cost: np.ndarray | None = None,
    initial_m: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """float64 (rows, cols): geodesic metres from the nearest of ``sources`` to every cell (inf: unreachable).

    Args:
        free: bool (rows, cols), True where the agent's centre may be.
        sources: cells the distance is measured from; blocked or off-grid ones are ignored.
        cell_m: side of a cell, metres.
        cost: optional float (rows, cols) >= 1: a step into a cell costs ``cost`` times its length
            (planners use it to keep away from walls); None for pure geodesic distance.
        initial_m: optional metres already travelled at each of ``sources`` (same order; inf: not a
            source): the field is then the least ``initial_m[k] + geodesic(sources[k], cell)``.
            None: 0 at every source.
    """
    seeds = list(sources)
    starts = [0.0] * len(seeds) if initial_m is None else [float(m) for m in initial_m]
    if len(starts) != len(seeds):
        raise ValueError(f"initial_m has {len(starts)} values for {len(seeds)} sources")
    return np.asarray(_dijkstra(free, seeds, starts, cell_m, cost)[0])


def _dijkstra(
    free: np.ndarray,
    seeds: list[tuple[int, int]],
    starts: list[float],
    cell_m: float,
    cost: np.ndarray | None = None,
    until: np.ndarray | None = None,
) -> tuple[list[list[float]], float]:
    """:func:`distance_field`'s search as nested lists, and the metres of the first cell of ``until``
    (bool (rows, cols)) it settles, where it then stops (inf: none reached; the lists hold bounds)."""
    rows, cols = free.shape
    dist = np.full((rows, cols), np.inf).tolist()
    heap: list[tuple[float, int, int]] = []
    for (r, c), start in zip(seeds, starts, strict=True):
        if 0 <= r < rows and 0 <= c < cols and free[r, c] and start < dist[r][c]:
            dist[r][c] = start
            heap.append((start, int(r), int(c)))  # a source listed twice: the dearer entry is skipped below
    heapq.heapify(heap)
    free_list = free.tolist()
    cost_list = cost.tolist() if cost is not None else None
    until_list = until.tolist() if until is not None else None
    while heap:
        d, r, c = heapq.heappop(heap)
        if d > dist[r][c]:
            continue
        if until_list is not None and until_list[r][c]:
            return dist, d
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
    return dist, float("inf")


def chained_shortest_m(
    free: np.ndarray, start: tuple[int, int], start_m: float, regions: Sequence[np.ndarray], cell_m: float
) -> float:
    """Metres of the shortest path from ``start`` that stops in ``regions[0]``, then in ``regions[1]``, ...

    The least ``start_m + geo(start, p_1) + geo(p_1, p_2) + ... + geo(p_{n-1}, p_n)`` over stop cells
    ``p_i`` in ``regions[i]``, exactly on the grid: a chain of multi-source Dijkstras, each seeded with
    the previous region's cells at the cost of reaching them (D_1 from ``start``; D_{i+1} from the
    cells of ``regions[i]`` at cost D_i; the answer is the least D_n in ``regions[-1]``).

    Args:
        free: bool (rows, cols), True where the agent's centre may be.
        start: the start cell (row, col); blocked or off-grid: nothing is reachable.
        start_m: metres already travelled at ``start`` (the start position's offset from its cell centre).
        regions: one bool (rows, cols) per stop, in order: the cells where that stop succeeds.
        cell_m: side of a cell, metres.

    Returns:
        The length in metres; inf if some region cannot be reached in turn (or ``regions`` is empty).

    Example:
        >>> free = np.ones((1, 6), dtype=bool)                    # a corridor of six cells
        >>> near = lambda cols: np.isin(np.arange(6), cols)[None]   # a region: these columns
        >>> chained_shortest_m(free, (0, 0), 0.0, [near([3, 4, 5]), near([0, 1])], cell_m=1.0)
        5.0
    """
    if not regions:
        return float("inf")
    seeds, starts = [start], [float(start_m)]
    for region in regions[:-1]:
        cost = np.asarray(_dijkstra(free, seeds, starts, cell_m)[0])
        stops = np.argwhere(region & np.isfinite(cost))
        seeds, starts = [(r, c) for r, c in stops.tolist()], cost[stops[:, 0], stops[:, 1]].tolist()
    return _dijkstra(free, seeds, starts, cell_m, until=regions[-1])[1]  # the last leg stops at its region


def descent_ends(field: np.ndarray) -> np.ndarray:
    """int64 (rows, cols, 2): for every cell, the cell :func:`descend` ends at from it (itself where no
    neighbour is lower), computed for the whole grid at once."""
    rows, cols = field.shape
    padded = np.pad(field, 1, constant_values=np.inf)
    finite = np.isfinite(padded)
    values = []
    for dr, dc in _NEIGHBOURS:  # in next_cell's order: argmin keeps the first of equal values, as it does
        value = padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
        if dr and dc:  # next_cell's corner rule: both cells beside the diagonal must be finite
            beside_r = finite[1 + dr : 1 + dr + rows, 1 : 1 + cols]
            beside_c = finite[1 : 1 + rows, 1 + dc : 1 + dc + cols]
            value = np.where(beside_r & beside_c, value, np.inf)
        values.append(value)
    values = np.stack(values)
    best = values.argmin(axis=0)
    lower = np.take_along_axis(values, best[None], axis=0)[0] < field
    offsets = np.asarray(_NEIGHBOURS)[best]
    r, c = np.indices((rows, cols))
    succ = np.where(lower, (r + offsets[..., 0]) * cols + c + offsets[..., 1], r * cols + c).ravel()
    while True:  # pointer jumping: each pass doubles the length of the descent followed
        jumped = succ[succ]
        if np.array_equal(jumped, succ):
            break
        succ = jumped
    return np.stack(np.divmod(succ, cols), axis=-1).reshape(rows, cols, 2)


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


def nearest_finite_cells(field: np.ndarray, cells: np.ndarray, window: int = 3) -> np.ndarray:
    """int64 (k, 2): :func:`nearest_finite` of each of ``cells`` (k, 2) at once (the same cell, ties
    included; a cell whose own value is finite is its own); all -1 where ``field`` has no finite cell.
    ``window``: cells first searched within this many cells, the rest against every finite cell."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    finite_mask = np.isfinite(field)
    finite = np.argwhere(finite_mask)
    out = np.full_like(cells, -1)
    if len(finite) == 0:
        return out
    rows, cols = field.shape
    span = np.arange(-window, window + 1)
    offsets = np.stack(np.meshgrid(span, span, indexing="ij"), axis=-1).reshape(-1, 2)
    offsets = offsets[(offsets**2).sum(axis=1) <= window**2]  # the whole disc lies in the window
    # nearest first; among equals the first in row-major order, nearest_finite's (argmin's) choice
    offsets = offsets[np.lexsort((offsets[:, 1], offsets[:, 0], (offsets**2).sum(axis=1)))]
    todo = np.ones(len(cells), dtype=bool)
    for dr, dc in offsets:
        k = np.flatnonzero(todo)
        r, c = cells[k, 0] + dr, cells[k, 1] + dc
        hit = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        hit[hit] = finite_mask[r[hit], c[hit]]
        out[k[hit]] = np.stack([r[hit], c[hit]], axis=1)
        todo[k[hit]] = False
    rest = np.flatnonzero(todo)
    for chunk in np.array_split(rest, -(-len(rest) // 256)) if len(rest) else ():  # 256 cells at a time
        squared = (cells[chunk, :1] - finite[:, 0]) ** 2 + (cells[chunk, 1:] - finite[:, 1]) ** 2
        out[chunk] = finite[squared.argmin(axis=1)]
    return out
