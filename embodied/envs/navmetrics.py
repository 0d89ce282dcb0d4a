"""habitat-lab's navigation measures, with its exact definitions, for one or several goals in order.

habitat-lab (``tasks/nav/nav.py``):

* ``distance_to_goal``: geodesic distance from the agent to the (nearest view point of the) goal.
* ``success``: 1 if the agent called ``stop`` and ``distance_to_goal < success_distance``, else 0.
* ``spl``: ``success * shortest / max(shortest, path_length)``, where ``shortest`` is the geodesic
  distance from the start to the goal's success region (ObjectNav: to the nearest view point, the
  points ``distance_to_goal`` is measured to) and ``path_length`` the sum of the agent's displacements.

For FindingDory-style multi-goal tasks the agent must ``stop`` within ``success_distance`` of each
goal in turn; a ``stop`` elsewhere ends the episode as a failure (FindingDory's
``pddl_intermediate_stop`` plays the same role); ``distance_to_goal`` is measured to the current goal.
``shortest`` is then the length of the shortest *successful* path: the least
``geo(start, p_1) + geo(p_1, p_2) + ... + geo(p_{n-1}, p_n)`` over stop points ``p_i`` with
``distance_to_goal_i(p_i) < success_distance``, so that no path that succeeds is shorter and only the
shortest one earns SPL 1 (the simulators here measure it on their navigation grid:
:func:`~memstream.embodied.envs.goaldistance.shortest_successful_m`). It is passed in as
``shortest_m``; without it, ``shortest`` is ``distance_to_goal`` at the start (one goal).

Example:
    >>> line = lambda a: (lambda p: abs(float(p[0]) - a))          # geodesic = |x - a| on a line
    >>> m = NavMetrics([line(3.0)], success_distance=0.5, shortest_m=2.5)  # stops past x = 2.5 succeed
    >>> m.reset(np.array([0.0, 0.0]))
    >>> for x in (1.0, 2.0, 2.6):
    ...     m.update(np.array([x, 0.0]))
    >>> m.stop()                                                    # within 0.5 m of the goal
    True
    >>> m.metrics()["success"], round(m.metrics()["spl"], 3)      # 2.5 m / 2.6 m walked
    (1.0, 0.962)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

#: distance_to_goal(position (2,) metres) -> geodesic metres
DistanceFn = Callable[[np.ndarray], float]


class NavMetrics:
    """Tracks one episode's ``distance_to_goal``, ``success`` and ``spl`` over a sequence of goals.

    Args:
        goal_distances: one geodesic distance function per goal, in the order they must be reached.
        success_distance: metres; habitat's ``SUCCESS_DISTANCE``.
        shortest_m: SPL's ``shortest``, metres: the length of the shortest path from the start that
            stops where each goal counts reached, in order (see the module docstring). None:
            ``goal_distances[0]`` at the start position (habitat's PointNav ``shortest``, one goal).
    """

    def __init__(
        self,
        goal_distances: Sequence[DistanceFn],
        success_distance: float,
        shortest_m: float | None = None,
    ) -> None:
        if not goal_distances:
            raise ValueError("NavMetrics needs at least one goal")
        self.goal_distances = list(goal_distances)
        self.success_distance = float(success_distance)
        self.given_shortest_m = None if shortest_m is None else float(shortest_m)
        self.reset(np.zeros(2))

    def reset(self, position: np.ndarray) -> None:
        """Start measuring at ``position`` (2,) metres."""
        self.position = np.asarray(position, dtype=np.float64)
        self.path_length_m = 0.0
        self.goals_reached = 0
        self.stopped = False
        self.failed = False
        given = self.given_shortest_m
        self.shortest_m = given if given is not None else float(self.goal_distances[0](self.position))

    @property
    def done(self) -> bool:
        """The episode is over: every goal reached, or a stop away from the current goal."""
        return self.failed or self.goals_reached == len(self.goal_distances)

    def distance_to_goal(self) -> float:
        """Geodesic metres to the current goal (to the last goal once all are reached)."""
        goal = min(self.goals_reached, len(self.goal_distances) - 1)
        return float(self.goal_distances[goal](self.position))

    def update(self, position: np.ndarray) -> None:
        """The agent moved to ``position`` (2,) metres (call after every action, moved or not)."""
        position = np.asarray(position, dtype=np.float64)
        self.path_length_m += float(np.linalg.norm(position - self.position))
        self.position = position

    def stop(self) -> bool:
        """The agent called ``stop``; returns whether it reached the current goal."""
        if self.done:
            return False
        reached = self.distance_to_goal() < self.success_distance
        if reached:
            self.goals_reached += 1
        else:
            self.failed = True
        return reached

    def metrics(self) -> dict[str, float]:
        """``distance_to_goal``, ``success``, ``spl`` (habitat's), ``goals_reached``, ``path_length``."""
        success = float(self.goals_reached == len(self.goal_distances))
        shortest = self.shortest_m
        if shortest > 0 and math.isfinite(shortest):
            spl = success * shortest / max(shortest, self.path_length_m)
        else:  # at the goal already, or no successful path known to the scorer: SPL is success
            spl = success
        return {
            "distance_to_goal": self.distance_to_goal(),
            "success": success,
            "spl": float(spl),
            "goals_reached": float(self.goals_reached),
            "path_length": self.path_length_m,
            "shortest_path_length": shortest,
        }


def high_level_success(
    chosen: Sequence[np.ndarray] | None, goals: Sequence[np.ndarray], radius_m: float
) -> float:
    """FindingDory's high-level success by distance: 1.0 if the agent chose as many goals as there are, in
    order, each within ``radius_m`` of the true one (positions (2,) in one frame), else 0.0."""
    if chosen is None or len(chosen) != len(goals):
        return 0.0
    near = [
        np.linalg.norm(np.asarray(c, dtype=np.float64) - np.asarray(g, dtype=np.float64)) <= radius_m
        for c, g in zip(chosen, goals, strict=True)
    ]
    return float(all(near))
