"""A training-free Memory Maze agent with habitat's contract: ``reset()``, ``act(observations) -> action``.

Every frame it updates an occupancy map from depth and pose (walls: points 0.7-1.6 m high; the targets,
at most 0.6 m high, are driven through, not around), detects the palette's targets in RGB-D
(:class:`~memstream.embodied.agents.maze_perception.TargetDetector`) and folds them into its target
memory (every colour it sees, not only the current one: the next target is another colour). It reads
the current target's colour from ``target_color`` and goes to the remembered target of that colour
along a path planned on its map, turning while the ball coasts into it toward the other remembered
targets. When it knows of none it explores: first a look all around (the camera sees 80 degrees),
then the frontier that is cheapest to reach counting the turn the ball must make first, less what its
width may show, kept until it no longer borders the unknown (when the maze is all mapped, it roams to
far free cells). :meth:`MazeMemoryAgent.episode_stats` says where an episode's steps went. A
remembered target it reached without scoring is forgotten; progress is measured along the planned path (the way to a target often leads
away from it first), and a plan that stops making progress far from the target is replanned. Modes:

* ``memory``: as above.
* ``no_memory``: the same agent with its target memory wiped every step (it keeps its map to move):
  it goes to a target only while it sees it, and otherwise explores or roams.
* ``oracle``: goes to the true current target (``goal_oracle()``, the env's scoring information).

Example (needs ``memory-maze`` and EGL):
    >>> from memstream.embodied.envs.memory_maze_env import MemoryMazeConfig, MemoryMazeEnv
    >>> env, agent = MemoryMazeEnv(MemoryMazeConfig(max_steps=5)), MazeMemoryAgent()
    >>> obs = env.reset(seed=0); agent.reset()
    >>> while not env.episode_over:
    ...     obs = env.step(agent.act(obs))
    >>> agent.frame
    5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from memstream.embodied.agents.mapping import OccupancyMap, backproject
from memstream.embodied.agents.maze_perception import TargetDetector, TargetMemory, palette_index
from memstream.embodied.agents.navigator import Navigator, inflate
from memstream.embodied.envs.navgrid import descend
from memstream.embodied.envs.memory_maze_env import CAMERA_HEIGHT_M, CAMERA_PITCH_DEG, FOV_DEG, world_reach_m
from memstream.streaming.errors import MemstreamError

MazeAgentMode = Literal["memory", "no_memory", "oracle"]
MAZE_AGENT_MODES: tuple[str, ...] = ("memory", "no_memory", "oracle")


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
REQUIRED = ("rgb", "depth", "gps", "compass", "target_color")


def grid_distance_field(
    free: np.ndarray, sources: list[tuple[int, int]], cell_m: float, cost: np.ndarray | None = None
) -> np.ndarray:
    """:func:`~memstream.embodied.envs.navgrid.distance_field`'s exact result (8 neighbours, no corner
    cutting, a step costs its length times ``cost`` of the cell entered), by scipy's C Dijkstra: the
    agent replans every other step, and the pure-Python heap took most of its time."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    rows, cols = free.shape
    index = np.arange(rows * cols).reshape(rows, cols)
    weight = np.ones((rows, cols)) if cost is None else np.asarray(cost, dtype=np.float64)
    heads, tails, lengths = [], [], []
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if not (dr or dc):
                continue
            r0, r1 = max(0, -dr), rows - max(0, dr)  # cells whose neighbour (r + dr, c + dc) is on the grid
            c0, c1 = max(0, -dc), cols - max(0, dc)
            ok = free[r0:r1, c0:c1] & free[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
            if dr and dc:  # both orthogonal neighbours free: no corner cutting
                ok &= free[r0 + dr : r1 + dr, c0:c1] & free[r0:r1, c0 + dc : c1 + dc]
            # edges run neighbour -> cell: the field grows outward from the sources, and a step of
            # the agent from the neighbour into the cell costs the entered cell's weight
            heads.append(index[r0 + dr : r1 + dr, c0 + dc : c1 + dc][ok])
            tails.append(index[r0:r1, c0:c1][ok])
            step = (math.sqrt(2.0) if dr and dc else 1.0) * cell_m
            lengths.append(step * weight[r0 + dr : r1 + dr, c0 + dc : c1 + dc][ok])
    starts = [int(index[r, c]) for r, c in sources if 0 <= r < rows and 0 <= c < cols and free[r, c]]
    if not starts:
        return np.full((rows, cols), np.inf)
    graph = coo_matrix(
        (np.concatenate(lengths), (np.concatenate(tails), np.concatenate(heads))), shape=(rows * cols,) * 2
    ).tocsr()
    field = dijkstra(graph, directed=True, indices=starts, min_only=True)
    return np.asarray(field).reshape(rows, cols)


def map_extent_m(maze_size: int, cell_m: float = 0.2) -> float:
    """Side of the agent's square map, centred on its start, for a ``maze_size`` maze.

    9x9: 44 m, the map its published results were measured and tuned with (every free cell of a 9x9
    maze lies within 22.6 m of any start). Larger mazes: :func:`world_reach_m` on every side, in whole
    cells (a fixed 44 m left a 15x15 maze's far targets off the map, and the agent turned in place).
    """
    if maze_size <= 9:
        return 44.0
    return 2 * math.ceil(world_reach_m(maze_size) / cell_m) * cell_m


class MazeNavigator(Navigator):
    """The occupancy-map navigator with Memory Maze's forward-and-turn actions: it keeps rolling while
    it corrects a heading error below ``combo_deg`` instead of stopping to turn in place."""

    field_fn = staticmethod(grid_distance_field)  # Navigator's field, in C

    def __init__(self, occupancy: OccupancyMap, combo_deg: float = 50.0, **kwargs: Any) -> None:
        super().__init__(occupancy, **kwargs)
        self.combo_rad = math.radians(combo_deg)

    def remaining_m(self, gps: np.ndarray, goal: np.ndarray) -> float:
        """Metres left along the current plan from ``gps`` (straight to ``goal`` without a plan)."""
        if self._field is not None:
            cell = tuple(self.map.grid.to_cell(gps) - self._offset)
            rows, cols = self._field.shape
            if 0 <= cell[0] < rows and 0 <= cell[1] < cols and np.isfinite(self._field[cell]):
                return float(self._field[cell])
        return float(np.linalg.norm(np.asarray(goal) - gps))

    def _follow(self, gps: np.ndarray, compass: float) -> str | None:
        turn = self._turn_to_waypoint(gps, compass)
        if turn is None:
            return None
        if abs(turn) <= 0.5 * self.turn_rad:
            return "move_forward"
        side = "left" if turn > 0 else "right"
        previous = self._last[1] if self._last is not None else ""
        if abs(turn) > math.radians(120) and previous.endswith(("left", "right")):
            side = "left" if previous.endswith("left") else "right"  # behind: keep turning one way
        return f"move_forward_{side}" if abs(turn) <= self.combo_rad else f"turn_{side}"


class MazeMemoryAgent:
    """The Memory Maze agent or its baselines (see the module doc).

    Args:
        mode: ``memory``, ``no_memory`` or ``oracle``.
        goal_oracle: for ``oracle``: returns the true current target (gps metres).
        seed: the roaming choices.
        targets: how many targets (palette colours) the maze holds: 3 in 9x9, 4, 5, 6 in the larger.
        maze_size: cells per side (9 .. 15): sets the map's size (:func:`map_extent_m`), which must
            hold the whole maze around the start.
        detector: the target detector (its camera must match the env's; ``targets`` sets its colours).
        turn_cost_m / gain_cap_m: the frontier choice's price of turning (metres per radian) and
        most it credits a frontier's width (see :meth:`_choose_frontier`).
        look_around_steps: at the start, while the current colour is not seen, turn in place this
        many steps (the camera sees 80 degrees: the frontier choice then knows every way out).
    """

    turn_cost_m: float = 1.6
    gain_cap_m: float = 2.0
    coast_m: float = 0.9
    coast_speed_m: float = 0.4
    goal_combo_deg: float = 70.0
    explore_combo_deg: float = 50.0
    look_around_steps: int = 16  # 16 x 18 degrees + the 80-degree view: all around

    def __init__(
        self,
        mode: MazeAgentMode = "memory",
        goal_oracle: Callable[[], list[np.ndarray]] | None = None,
        seed: int = 0,
        targets: int = 3,
        detector: TargetDetector | None = None,
        maze_size: int = 9,
    ) -> None:
        if mode not in MAZE_AGENT_MODES:
            raise MemstreamError(
                f"unknown Memory Maze agent {mode!r}", f"Choose one of {', '.join(MAZE_AGENT_MODES)}"
            )
        if mode == "oracle" and goal_oracle is None:
            raise MemstreamError("the oracle agent needs goal_oracle", "Pass goal_oracle=env.goals_gps")
        self.mode, self.goal_oracle, self.seed = mode, goal_oracle, seed
        self.detector = detector or TargetDetector(FOV_DEG, CAMERA_HEIGHT_M, CAMERA_PITCH_DEG, colours=targets)
        extent_m = map_extent_m(maze_size)
        self.occupancy = OccupancyMap(extent_m=extent_m, cell_m=0.2, floor_m=0.7, ceiling_m=1.6)
        self.navigator = MazeNavigator(
            self.occupancy, agent_radius_m=0.45, turn_deg=18.0, lookahead_cells=5, replan_every=2
        )
        self.memory = TargetMemory()
        self.episodes = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new episode begins."""
        self.occupancy.reset()
        self.navigator.reset()
        self.memory.reset()
        self.rng = np.random.default_rng((self.seed, self.episodes))
        self.episodes += 1
        self.frame = 0
        self.goal_colour: int | None = None
        self.goal: np.ndarray | None = None
        self.roam_goal: np.ndarray | None = None
        self.frontier_goal: np.ndarray | None = None
        self._best = (math.inf, 0)
        self.phase = "goal"
        self._last_gps: np.ndarray | None = None
        self._speed = 0.0
        self.stats: dict[str, Any] = {
            **{f"{phase}_steps": 0 for phase in ("goal", "search", "roam", "look")},
            **{f"{kind}_actions": 0 for kind in ("forward", "forward_turn", "turn")},
            "forgotten": 0,
            "replans": 0,
            "first_remembered": {},
        }

    # ---- perception and memory ----------------------------------------------------------------
    def _perceive(self, obs: dict[str, Any]) -> tuple[np.ndarray, float]:
        missing = [key for key in REQUIRED if key not in obs]
        if missing:
            raise MemstreamError(
                f"the Memory Maze agent needs observations {', '.join(missing)}",
                "Give it an env with an RGB-D camera, a GPS+compass sensor and the target colour "
                "(rgb, depth, gps, compass, target_color), e.g. --env memory_maze",
            )
        gps = np.asarray(obs["gps"], dtype=np.float64).reshape(2)
        compass = float(np.asarray(obs["compass"]).reshape(-1)[0])
        points = backproject(
            obs["depth"], gps, compass, self.detector.fov_deg, self.detector.camera_height_m,
            stride=2, max_depth_m=12.0, pitch_deg=self.detector.pitch_deg,
        )
        self.occupancy.update(points, gps)
        if self.mode == "no_memory":
            self.memory.reset()  # the baseline: nothing about targets survives a step
        self.memory.update(self.detector.detect(obs["rgb"], obs["depth"], gps, compass), self.frame)
        self.frame += 1
        return gps, compass

    # ---- acting -------------------------------------------------------------------------------
    def _target(self, colour: int) -> np.ndarray | None:
        if self.mode == "oracle":
            assert self.goal_oracle is not None
            return np.asarray(self.goal_oracle()[0], dtype=np.float64)
        return self.memory.get(colour)

    def _new_goal(self, goal: np.ndarray | None) -> None:
        moved = (goal is None) != (self.goal is None) or (
            goal is not None and self.goal is not None and np.linalg.norm(goal - self.goal) > 0.5
        )
        if moved:
            self.navigator.reset()
            self._best = (math.inf, self.frame)
        self.goal = goal

    def act(self, observations: dict[str, Any]) -> str:
        """One habitat action name (Memory Maze's extended set) for one observation."""
        self.phase = "goal"
        action = self._act(observations)
        stats = self.stats
        stats[f"{self.phase}_steps"] += 1
        kind = "turn" if action.startswith("turn") else "forward_turn" if "forward_" in action else "forward"
        stats[f"{kind}_actions"] += 1
        for colour in self.memory.positions:
            stats["first_remembered"].setdefault(str(colour), self.frame - 1)
        return action

    def episode_stats(self) -> dict[str, Any]:
        """Where this episode's steps went, from the agent's side only (no scoring information):
        ``goal_steps`` (heading for a remembered target), ``search_steps`` (exploring frontiers: the
        current colour is not remembered), ``roam_steps`` (nothing left to explore and still not
        remembered), ``look_steps`` (the look-around at the start); ``forward`` / ``forward_turn`` /
        ``turn`` action counts; ``forgotten`` (a remembered spot reached without scoring: a wrong
        memory), ``replans`` (a plan that stopped making progress); ``first_remembered`` (colour ->
        the frame its target entered the memory)."""
        return {key: dict(value) if isinstance(value, dict) else value for key, value in self.stats.items()}

    def _act(self, observations: dict[str, Any]) -> str:
        gps, compass = self._perceive(observations)
        self._speed = 0.0 if self._last_gps is None else float(np.linalg.norm(gps - self._last_gps))
        self._last_gps = gps
        colour = palette_index(np.asarray(observations["target_color"]))
        if colour != self.goal_colour:  # a target was collected (or the episode began)
            self.goal_colour, self.roam_goal, self.frontier_goal = colour, None, None
        goal = self._target(colour)
        if goal is None and self.frame <= self.look_around_steps:
            self.phase = "look"
            return "turn_left"  # at rest at the start: look all around before choosing a frontier
        self._new_goal(goal)
        self.navigator.combo_rad = math.radians(self.goal_combo_deg if goal is not None else self.explore_combo_deg)
        if goal is not None:
            coast = self._coast_turn(gps, compass, goal)
            if coast is not None:
                return coast
            action = self.navigator.act(gps, compass, goal, stop_radius_m=0.15)
            remaining = self.navigator.remaining_m(gps, goal)
            if remaining < self._best[0] - 0.1 or remaining > self._best[0] + 1.0:
                self._best = (remaining, self.frame)  # nearer along the plan, or a longer new plan
            stalled = self.frame - self._best[1] > 25
            if action is None or (stalled and np.linalg.norm(goal - gps) < 1.2):
                # at the remembered spot without scoring: the memory was wrong
                if self.mode != "oracle":
                    self.memory.forget(colour)
                    self.stats["forgotten"] += 1
                self._new_goal(None)
                return "turn_left"
            if stalled:  # far from the spot and no nearer along the plan: the plan fails, not the memory
                self.occupancy.mark_blocked(gps + 0.55 * np.array([math.cos(compass), -math.sin(compass)]))
                self.navigator.reset()
                self._best = (math.inf, self.frame)
                self.stats["replans"] += 1
            return action
        return self._explore(gps, compass)

    def _coast_turn(self, gps: np.ndarray, compass: float, goal: np.ndarray) -> str | None:
        """A turn while the ball coasts into the target, or None. Rolling at full speed (a step moved
        more than ``coast_speed_m``) straight at a target less than ``coast_m`` ahead, the ball
        touches it without more force: the step is better spent turning toward where the agent will
        go next (the other remembered targets; the next target is one of them), a turn it must make
        anyway once the target is collected."""
        delta = goal - gps
        distance = float(np.linalg.norm(delta))
        if distance >= self.coast_m or self._speed < self.coast_speed_m:
            return None
        if abs(_wrap(math.atan2(-delta[1], delta[0]) - compass)) > math.radians(15):
            return None
        others = [p for c, p in self.memory.positions.items() if c != self.goal_colour]
        if not others:
            return "turn_left"
        away = np.mean(others, axis=0) - gps
        return "turn_left" if _wrap(math.atan2(-away[1], away[0]) - compass) > 0 else "turn_right"

    def _explore(self, gps: np.ndarray, compass: float) -> str:
        self.phase = "search"
        if self.roam_goal is None:
            if self.frontier_goal is not None and not self._still_frontier(self.frontier_goal, gps):
                self.frontier_goal = None
            if self.frontier_goal is None:
                self.frontier_goal = self._choose_frontier(gps, compass)
                self.navigator.reset()
            if self.frontier_goal is not None:
                action = self.navigator.act(gps, compass, self.frontier_goal, stop_radius_m=0.5)
                if action is not None:
                    return action
                self.frontier_goal = None  # reached: the next frontier on the next step
                return self._explore(gps, compass)
            self.roam_goal = self._far_free_cell(gps)
            self.navigator.reset()
        self.phase = "roam"
        action = self.navigator.act(gps, compass, self.roam_goal, stop_radius_m=0.8)
        if action is None:
            self.roam_goal = None
            self.navigator.reset()
            return "turn_left"
        return action

    def _frontier(self, window: tuple[slice, slice], free: np.ndarray) -> np.ndarray:
        """bool over ``window``: traversable cells seen free beside a never-seen cell."""
        seen = self.occupancy.seen[window]
        return seen & ~self.occupancy.occupied[window] & free & inflate(~seen, 1)

    def _still_frontier(self, goal: np.ndarray, gps: np.ndarray) -> bool:
        """The committed frontier goal still borders the unknown (within 0.6 m) and is not reached."""
        if np.linalg.norm(goal - gps) < 0.5:
            return False
        grid = self.occupancy.grid
        r, c = grid.to_cell(goal)
        k = 3
        window = (slice(max(r - k, 0), r + k + 1), slice(max(c - k, 0), c + k + 1))
        seen = self.occupancy.seen[window]
        return bool((seen & ~self.occupancy.occupied[window] & inflate(~seen, 1)).any())

    def _choose_frontier(self, gps: np.ndarray, compass: float) -> np.ndarray | None:
        """The frontier to explore next: of every group of frontier cells reachable on the map, the
        one that is cheapest to reach in steps (metres along the path plus the turn the ball must
        make first, ``turn_cost_m`` per radian: a half turn costs ten 18-degree turns, ~5 m of
        rolling) less what it may show (its width, up to ``gain_cap_m``). None when no frontier
        is left. The choice is kept until the goal no longer borders the unknown, so the agent does
        not swing between two frontiers as each step reveals a little of both."""
        from scipy import ndimage

        nav, grid = self.navigator, self.occupancy.grid
        window = nav._window(gps)
        offset = np.array([window[0].start, window[1].start])
        here = tuple(int(v) for v in grid.to_cell(gps) - offset)
        field = free = None
        for radius in (nav.radius_cells, nav.radius_cells - 1, 0.0):  # squeeze out of a tight spot
            free, cost = nav._traversable(window, radius)
            field = grid_distance_field(free, [here], grid.cell_m, cost=cost)
            if np.isfinite(field).sum() > 1:
                break
        assert field is not None and free is not None
        frontier = self._frontier(window, free) & np.isfinite(field)
        cells = np.argwhere(frontier)
        if len(cells) == 0:
            return None
        near = np.linalg.norm(cells - np.array(here), axis=1) * grid.cell_m <= 1.0
        frontier[tuple(cells[near].T)] = False
        labels, count = ndimage.label(frontier, structure=np.ones((3, 3), dtype=bool))
        best, best_score = None, math.inf
        for label in range(1, count + 1):
            group = np.argwhere(labels == label)
            cell = tuple(group[int(np.argmin(field[tuple(group.T)]))])
            path = descend(field, cell)  # from the frontier down to the agent
            lead = path[max(len(path) - 1 - 5, 0)]  # ~1 m out along the way there
            delta = grid.to_xy(np.asarray(lead) + offset) - gps
            turn = abs(_wrap(math.atan2(-delta[1], delta[0]) - compass)) if np.any(delta) else 0.0
            score = field[cell] + self.turn_cost_m * turn - min(len(group) * grid.cell_m, self.gain_cap_m)
            if score < best_score:
                best, best_score = grid.to_xy(np.asarray(cell) + offset), score
        return best

    def _far_free_cell(self, gps: np.ndarray) -> np.ndarray:
        """A random seen, free cell at least 4 m away (the nearest far one if the map is small)."""
        grid = self.occupancy.grid
        free = np.argwhere(self.occupancy.seen & ~self.occupancy.occupied)
        if len(free) == 0:
            return gps + np.array([2.0, 0.0])
        xy = grid.to_xy(free)
        far = xy[np.linalg.norm(xy - gps, axis=1) >= 4.0]
        pool = far if len(far) else xy
        return pool[int(self.rng.integers(len(pool)))]
