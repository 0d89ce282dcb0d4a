"""Point-goal navigation on the agent's own occupancy map with habitat's discrete actions.

Every plan inflates the occupied cells by the agent's radius, treats unknown cells as traversable
(optimistic), runs Dijkstra from the goal region on the map's known bounding box, and follows the
steepest descent: turn toward a waypoint a few cells ahead, or step forward. A forward step that does
not move the agent marks the cell in front as blocked. :meth:`Navigator.frontier_action` explores
toward the nearest boundary between known-free and unknown cells.

Example:
    >>> from memstream.embodied.agents.mapping import OccupancyMap
    >>> nav = Navigator(OccupancyMap(extent_m=10.0, cell_m=0.2))
    >>> nav.act(np.zeros(2), 0.0, np.array([3.0, 0.0]), stop_radius_m=0.5)  # goal straight ahead
    'move_forward'
    >>> nav.act(np.zeros(2), 0.0, np.array([0.0, 3.0]), stop_radius_m=0.5)  # goal to the right
    'turn_right'
"""

from __future__ import annotations

import math

import numpy as np

from memstream.embodied.agents.mapping import OccupancyMap
from memstream.embodied.envs.navgrid import descend, distance_field, nearest_finite


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def inflate(mask: np.ndarray, radius_cells: float) -> np.ndarray:
    """bool like ``mask``: every cell within ``radius_cells`` (euclidean, centre to centre) of a True cell."""
    out = mask.copy()
    rows, cols = mask.shape
    reach = math.floor(radius_cells)
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            if (dr or dc) and dr * dr + dc * dc <= radius_cells * radius_cells + 1e-9:
                src = mask[max(0, -dr) : rows - max(0, dr), max(0, -dc) : cols - max(0, dc)]
                out[max(0, dr) : rows - max(0, -dr), max(0, dc) : cols - max(0, -dc)] |= src
    return out


class Navigator:
    """Plans and follows paths on ``occupancy`` (see module doc).

    Args:
        occupancy: the map it plans on (shared with the agent that updates it).
        agent_radius_m: obstacle inflation. turn_deg: the env's turn angle. lookahead_cells: how far
        ahead along the path the waypoint lies. replan_every: steps between plans for a fixed goal.
    """

    #: the planner's field (``distance_field(free, sources, cell_m, cost=...)``): the reference here,
    #: scipy's Dijkstra in subclasses that need speed (the same field, tested)
    field_fn = staticmethod(distance_field)

    def __init__(
        self,
        occupancy: OccupancyMap,
        agent_radius_m: float = 0.4,
        turn_deg: float = 30.0,
        lookahead_cells: int = 3,
        replan_every: int = 3,
    ) -> None:
        self.map = occupancy
        self.radius_cells = agent_radius_m / occupancy.grid.cell_m
        self.turn_rad = math.radians(turn_deg)
        self.lookahead_cells, self.replan_every = lookahead_cells, replan_every
        self.reset()

    def reset(self) -> None:
        self._field: np.ndarray | None = None
        self._offset = np.zeros(2, dtype=np.int64)
        self._key: object = None
        self._age = 0
        self._last: tuple[np.ndarray, str] | None = None

    # ---- planning -----------------------------------------------------------------------------
    def _window(self, *points: np.ndarray) -> tuple[slice, slice]:
        """The known bounding box of the map, grown to hold ``points``, plus a 2 m margin."""
        grid = self.map.grid
        seen = np.argwhere(self.map.seen)
        cells = np.array([grid.to_cell(p) for p in points])
        allc = np.concatenate([seen, cells]) if len(seen) else cells
        margin = int(2.0 / grid.cell_m)
        lo = np.maximum(allc.min(axis=0) - margin, 0)
        hi = np.minimum(allc.max(axis=0) + margin + 1, grid.shape)
        return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))

    def _traversable(self, window: tuple[slice, slice], radius_cells: float) -> tuple[np.ndarray, np.ndarray]:
        """Free cells (occupied ones inflated by ``radius_cells``); step cost 4 next to them, 2 a cell out."""
        blocked = inflate(self.map.occupied[window], radius_cells)
        near = inflate(blocked, 1) & ~blocked
        nearish = inflate(blocked, 2) & ~blocked & ~near
        return ~blocked, np.where(near, 4.0, np.where(nearish, 2.0, 1.0))

    def _plan(self, sources_fn, key: object, position: np.ndarray, extra: list[np.ndarray]) -> None:
        self._age += 1
        if self._field is not None and key == self._key and self._age < self.replan_every:
            return
        window = self._window(position, *extra)
        offset = np.array([window[0].start, window[1].start])
        here = tuple(self.map.grid.to_cell(position) - offset)
        for radius in (self.radius_cells, self.radius_cells - 1, 0.0):  # squeeze through if cut off
            free, cost = self._traversable(window, radius)
            sources = [tuple(c) for c in sources_fn(free, offset)]
            self._field = self.field_fn(free, sources, self.map.grid.cell_m, cost=cost)
            if np.isfinite(self._field[here]):
                break
        self._offset, self._key, self._age = offset, key, 0

    def _turn_to_waypoint(self, gps: np.ndarray, compass: float) -> float | None:
        """Radians to turn (left positive) toward the waypoint ``lookahead_cells`` down the current
        field, or None at its bottom (or if nothing is reachable)."""
        assert self._field is not None
        cell = tuple(self.map.grid.to_cell(gps) - self._offset)
        rows, cols = self._field.shape
        if not (0 <= cell[0] < rows and 0 <= cell[1] < cols and np.isfinite(self._field[cell])):
            cell = nearest_finite(self._field, cell)
            if cell is None:
                return None
        if self._field[cell] == 0.0:
            return None
        path = descend(self._field, cell, max_cells=self.lookahead_cells + 1)
        waypoint = self.map.grid.to_xy(np.asarray(path[-1]) + self._offset)
        delta = waypoint - gps
        desired = math.atan2(-delta[1], delta[0])  # heading (cos c, -sin c) in (forward, right)
        return _wrap(desired - compass)

    def _follow(self, gps: np.ndarray, compass: float) -> str | None:
        """The action down the current field, or None at its bottom (or if nothing is reachable)."""
        turn = self._turn_to_waypoint(gps, compass)
        if turn is None:
            return None
        if abs(turn) > 0.7 * self.turn_rad:
            return "turn_left" if turn > 0 else "turn_right"
        return "move_forward"

    def _bumped(self, gps: np.ndarray, compass: float) -> None:
        if (
            self._last is not None
            and self._last[1] == "move_forward"
            and np.allclose(self._last[0], gps, atol=1e-3)
        ):
            ahead = gps + 0.55 * np.array([math.cos(compass), -math.sin(compass)])
            self.map.mark_blocked(ahead)
            self._field = None

    def _remember(self, gps: np.ndarray, action: str | None) -> str | None:
        self._last = (np.array(gps, dtype=np.float64), action or "")
        return action

    # ---- actions ------------------------------------------------------------------------------
    def act(self, gps: np.ndarray, compass: float, goal: np.ndarray, stop_radius_m: float) -> str | None:
        """The next action toward ``goal`` (map metres), or None once within ``stop_radius_m`` of it."""
        gps = np.asarray(gps, dtype=np.float64)
        if np.linalg.norm(goal - gps) <= stop_radius_m:
            return self._remember(gps, None)
        self._bumped(gps, compass)
        grid = self.map.grid

        def sources(free: np.ndarray, offset: np.ndarray) -> np.ndarray:
            cells = np.argwhere(free)
            dist = np.linalg.norm(grid.to_xy(cells + offset) - goal, axis=1)
            for radius in (stop_radius_m - 0.1, stop_radius_m, stop_radius_m + 0.2, 3.0):
                near = cells[dist <= radius]
                if len(near):
                    return near
            return cells[:0]

        self._plan(sources, ("goal", tuple(np.round(goal, 2)), stop_radius_m), gps, [goal])
        return self._remember(gps, self._follow(gps, compass))

    def frontier_action(self, gps: np.ndarray, compass: float) -> str | None:
        """The next action toward the nearest frontier, or None if no frontier is left."""
        gps = np.asarray(gps, dtype=np.float64)
        self._bumped(gps, compass)

        def sources(free: np.ndarray, offset: np.ndarray) -> np.ndarray:
            window = (
                slice(offset[0], offset[0] + free.shape[0]),
                slice(offset[1], offset[1] + free.shape[1]),
            )
            known_free = self.map.seen[window] & ~self.map.occupied[window] & free
            unknown = ~self.map.seen[window]
            frontier = known_free & inflate(unknown, 1)
            here = self.map.grid.to_cell(gps) - offset
            cells = np.argwhere(frontier)
            far = np.linalg.norm(cells - here, axis=1) * self.map.grid.cell_m > 1.0
            return cells[far]

        self._plan(sources, "frontier", gps, [])
        return self._remember(gps, self._follow(gps, compass))
