"""The scorer's geodesic distance to a goal, and the length of the shortest path that succeeds.

habitat-lab's ObjectNav scores against the goal's *success region*: ``distance_to_goal`` is the
geodesic distance to the nearest view point, success needs it below ``success_distance``, and SPL's
``shortest`` is the geodesic distance from the start to that region, so the shortest successful path
earns SPL 1 and nothing shorter can succeed. Here an episode succeeds where :class:`GoalDistance` is
below ``success_distance`` at each goal in turn; :func:`shortest_successful_m` measures the shortest
such path on the navigation grid (:func:`~memstream.embodied.envs.navgrid.chained_shortest_m`).

Example:
    >>> grid = GridSpec((0.0, 0.0), 0.1, (40, 10))                 # a 4 x 1 m room, no walls
    >>> free = np.ones(grid.shape, dtype=bool)
    >>> goal = GoalDistance(grid, free, np.array([3.55, 0.55]), ring_m=None)
    >>> start = np.array([0.55, 0.55])
    >>> round(goal(start), 3)                                      # 3 m straight along the room
    3.0
    >>> round(shortest_successful_m(grid, free, start, [goal], success_distance_m=1.25), 3)
    1.8
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from memstream.embodied.envs.navgrid import (
    GridSpec,
    chained_shortest_m,
    descend,
    descent_ends,
    distance_field,
    nearest_finite,
    nearest_finite_cells,
)


class GoalDistance:
    """``distance(xz)``: geodesic metres on ``free`` to the goal at ``goal_xz`` (2,) metres.

    With ``ring_m``: to a free cell within ``ring_m`` of the goal's cell, then straight to the goal's
    centre (an object stands there); without: to the goal's own cell. A point off the grid's reachable
    part is first taken straight to the nearest reachable cell.

    Attributes:
        grid: where the grid lies. field: float64 (rows, cols), geodesic metres from each cell to the
            ring (or the goal's cell); inf where unreachable. goal_xz: float64 (2,) metres.
        ring_m: metres, or None.
    """

    def __init__(
        self, grid: GridSpec, free: np.ndarray, goal_xz: np.ndarray, ring_m: float | None = 1.0
    ) -> None:
        self.grid, self.goal_xz, self.ring_m = grid, np.asarray(goal_xz, dtype=np.float64), ring_m
        cell = grid.to_cell(self.goal_xz)
        if ring_m is None:
            ring = cell[None]
        else:
            ring = np.argwhere(free)
            ring = ring[np.linalg.norm(ring - cell, axis=1) * grid.cell_m <= ring_m]
        self.field = distance_field(free, [(r, c) for r, c in ring.tolist()], grid.cell_m)
        self._ends: np.ndarray | None = None

    def __call__(self, xz: np.ndarray) -> float:
        grid, field = self.grid, self.field
        here = tuple(grid.to_cell(xz))
        if not (grid.inside(np.asarray(here)) and np.isfinite(field[here])):
            here = nearest_finite(field, here)
            if here is None:
                return float("inf")
        base = float(field[here]) + float(np.linalg.norm(grid.to_xy(np.asarray(here)) - xz))
        if self.ring_m is None:
            return base
        end = descend(field, here)[-1]  # the ring cell the descent ends at, then straight to the centre
        return base + float(np.linalg.norm(grid.to_xy(np.asarray(end)) - self.goal_xz))

    def at_centres(self, cells: np.ndarray, below_m: float = float("inf")) -> np.ndarray:
        """float64 (k,): the distance from the centre of each of ``cells`` (k, 2) row, col, exactly as
        ``self(grid.to_xy(cell))`` gives it, computed for all cells at once.

        ``below_m``: only values below it are needed; a cell farther than that from every reachable
        cell (so at least that far from the goal) reads inf instead, and costs no nearest-cell search.
        """
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        grid, field = self.grid, self.field
        reachable = np.isfinite(field)
        if not reachable.any():
            return np.full(len(cells), np.inf)
        wanted = np.ones(len(cells), dtype=bool)
        if math.isfinite(below_m):  # within ceil(below_m / cell) steps (8-neighbour) of a reachable cell
            near = _grow(reachable, math.ceil(below_m / grid.cell_m))
            inside = grid.inside(cells)
            wanted[inside] = near[cells[inside, 0], cells[inside, 1]]  # off the grid: searched
        out = np.full(len(cells), np.inf)
        cells = cells[wanted]
        here = nearest_finite_cells(field, cells)  # a cell off the reachable part: __call__'s nearest_finite
        kept = field[here[:, 0], here[:, 1]] + np.linalg.norm(grid.to_xy(here) - grid.to_xy(cells), axis=1)
        if self.ring_m is not None:
            if self._ends is None:
                self._ends = descent_ends(field)
            ends = self._ends[here[:, 0], here[:, 1]]
            kept += np.linalg.norm(grid.to_xy(ends) - self.goal_xz, axis=1)
        out[wanted] = kept
        return out


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """bool like ``mask``: the cells within ``steps`` 8-neighbour steps of a True cell."""
    grown = mask.copy()
    for _ in range(steps):
        padded = np.pad(grown, 1)
        grown = np.zeros_like(mask)
        for dr in (0, 1, 2):
            for dc in (0, 1, 2):
                grown |= padded[dr : dr + mask.shape[0], dc : dc + mask.shape[1]]
    return grown


def goal_distance(
    grid: GridSpec, free: np.ndarray, goal_xz: np.ndarray, ring_m: float | None = 1.0
) -> GoalDistance:
    """A :class:`GoalDistance` (the name its callers know)."""
    return GoalDistance(grid, free, goal_xz, ring_m)


def shortest_successful_m(
    grid: GridSpec,
    free: np.ndarray,
    start_xz: np.ndarray,
    goals: Sequence[Callable[[np.ndarray], float]],
    success_distance_m: float,
) -> float:
    """SPL's ``shortest``: metres of the shortest path from ``start_xz`` (2,) that stops where each of
    ``goals`` is below ``success_distance_m``, in order, measured on ``free``.

    The least ``geo(start, p_1) + geo(p_1, p_2) + ... + geo(p_{n-1}, p_n)`` over stop cells ``p_i``
    whose centre has ``goals[i](centre) < success_distance_m``, plus the straight metres from
    ``start_xz`` to its cell's centre (to the nearest free cell's where its own is blocked). Exact on
    the grid: a stop inside a cell rather than at its centre is within a cell's diagonal of it.

    Args:
        grid, free: the grid the agent walks on (bool (rows, cols), True where its centre may be); a
            :class:`GoalDistance` among ``goals`` must lie on the same ``grid`` (its own ``free`` may differ).
        start_xz: float (2,) metres. goals: distance functions (:class:`GoalDistance` is evaluated on
            every free cell at once; any other callable cell by cell). success_distance_m: metres.

    Returns:
        Metres; inf if some goal's success region cannot be reached in turn.
    """
    cells = np.argwhere(free)
    regions = []
    for goal in goals:
        if isinstance(goal, GoalDistance):
            if goal.grid != grid:
                raise ValueError(f"a goal's grid {goal.grid} is not the walking grid {grid}")
            values = goal.at_centres(cells, below_m=success_distance_m)
        else:
            values = np.array([goal(xz) for xz in grid.to_xy(cells)])
        region = np.zeros(free.shape, dtype=bool)
        region[tuple(cells[values < success_distance_m].T)] = True
        regions.append(region)
    start_xz = np.asarray(start_xz, dtype=np.float64)
    start = grid.to_cell(start_xz)
    if not (grid.inside(start) and free[tuple(start)]):
        if len(cells) == 0:
            return float("inf")
        start = cells[int(np.argmin(np.linalg.norm(grid.to_xy(cells) - start_xz, axis=1)))]
    start_m = float(np.linalg.norm(grid.to_xy(start) - start_xz))
    return chained_shortest_m(free, (int(start[0]), int(start[1])), start_m, regions, grid.cell_m)
