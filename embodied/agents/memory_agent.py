"""Modular navigation agents with habitat's contract: ``reset()``, ``act(observations) -> action name``.

:class:`MapMemoryAgent` updates, every frame, an occupancy map from depth and pose, an object map by
colour (its positions in the same frame) and an episodic log of the history's interactions (which
object was picked, in what order, where; where it was placed). In the task phase it resolves the
instruction from that memory (:func:`~memstream.embodied.agents.instructions.resolve`), plans on the
map and walks to each goal in turn, calling ``stop`` at each.

The baselines differ in one thing each (``mode``):

* ``memory``: as above.
* ``wiped``: everything is forgotten when the task begins; it maps and searches (frontiers), goes to
  a named object once it sees it, and otherwise picks among the objects it has found at random.
* ``retrieval``: keeps the map (to navigate) but chooses goals among the history's keyframes (the
  poses of its pick and place frames, and the start) at random, as a frame-retrieval chooser does
  without understanding the instruction.
* ``oracle``: the ground-truth goals come from ``goal_oracle()``.

:attr:`MapMemoryAgent.chosen_goals` holds the goals it chose (map metres), for high-level success.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from memstream.embodied.agents.instructions import EpisodicMemory, goal_count, named_colour, resolve
from memstream.embodied.agents.mapping import ObjectMap, OccupancyMap, backproject
from memstream.embodied.agents.navigator import Navigator
from memstream.embodied.envs.miniworld_env import CAMERA_HEIGHT_M, FOV_DEG
from memstream.streaming.errors import MemstreamError

AgentMode = Literal["memory", "wiped", "retrieval", "oracle"]
AGENT_MODES: tuple[str, ...] = ("memory", "wiped", "retrieval", "oracle")
REQUIRED = ("rgb", "depth", "gps", "compass")
REACH_M = 0.95  # where the history's pick and place happen: this far in front of the agent


class MapMemoryAgent:
    """A map-based memory agent or one of its baselines (see the module doc).

    Args:
        mode: ``memory``, ``wiped``, ``retrieval`` or ``oracle``.
        goal_oracle: for ``oracle``: returns the true goals (map metres) once the task begins.
        seed: the random choices of ``wiped`` and ``retrieval``.
        stop_radius_m: how near a goal the agent calls ``stop``.
    """

    def __init__(
        self,
        mode: AgentMode = "memory",
        goal_oracle: Callable[[], list[np.ndarray]] | None = None,
        seed: int = 0,
        stop_radius_m: float = 1.0,
        fov_deg: float = FOV_DEG,
        camera_height_m: float = CAMERA_HEIGHT_M,
        turn_deg: float = 30.0,
        search_steps: int = 120,
    ) -> None:
        if mode not in AGENT_MODES:
            raise MemstreamError(f"unknown agent mode {mode!r}", f"Choose one of {', '.join(AGENT_MODES)}")
        if mode == "oracle" and goal_oracle is None:
            raise MemstreamError("the oracle agent needs goal_oracle", "Pass goal_oracle=env.goals_gps")
        self.mode, self.goal_oracle, self.seed = mode, goal_oracle, seed
        self.stop_radius_m, self.fov_deg, self.camera_height_m = stop_radius_m, fov_deg, camera_height_m
        self.search_steps = search_steps
        self.occupancy = OccupancyMap()
        self.objects = ObjectMap()
        self.navigator = Navigator(self.occupancy, turn_deg=turn_deg)
        self.episodes = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new episode begins."""
        self.occupancy.reset()
        self.objects.reset()
        self.navigator.reset()
        self.rng = np.random.default_rng((self.seed, self.episodes))
        self.episodes += 1
        self.picks: list[tuple[str, np.ndarray]] = []
        self.places: list[np.ndarray] = []
        self.carrying: str | None = None
        self.frame = 0
        self.task_started = False
        self.task_steps = 0
        self.chosen_goals: list[np.ndarray] | None = None
        self.goal_index = 0
        self._best = (math.inf, 0)  # (nearest distance to the current goal so far, task step it was reached)

    # ---- memory -------------------------------------------------------------------------------
    def _perceive(self, obs: dict[str, Any]) -> tuple[np.ndarray, float]:
        missing = [key for key in REQUIRED if key not in obs]
        if missing:
            raise MemstreamError(
                f"the map memory agent needs observations {', '.join(missing)}",
                "Give it an env with an RGB-D camera and a GPS+compass sensor (rgb, depth, "
                "gps, compass), e.g. --env miniworld",
            )
        gps = np.asarray(obs["gps"], dtype=np.float64).reshape(2)
        compass = float(np.asarray(obs["compass"]).reshape(-1)[0])
        points = backproject(obs["depth"], gps, compass, self.fov_deg, self.camera_height_m)
        self.occupancy.update(points, gps)
        ignore = frozenset({self.carrying}) if self.carrying else frozenset()
        self.objects.update(
            obs["rgb"], obs["depth"], gps, compass, self.frame, self.fov_deg, self.camera_height_m, ignore
        )
        self.frame += 1
        return gps, compass

    def _log_interaction(self, action: str, gps: np.ndarray, compass: float) -> None:
        ahead = gps + REACH_M * np.array([math.cos(compass), -math.sin(compass)])
        if action == "pick":
            known = {c: p for c, p in self.objects.positions.items() if c not in {c for c, _ in self.picks}}
            if not known:
                return
            colour = min(known, key=lambda c: float(np.linalg.norm(known[c] - ahead)))
            self.picks.append((colour, known[colour].copy()))
            self.carrying = colour
            self.objects.forget(colour)
        elif action == "place" and self.carrying is not None:
            self.objects.positions[self.carrying] = ahead
            self.places.append(ahead)
            self.carrying = None

    def episodic_memory(self) -> EpisodicMemory:
        return EpisodicMemory(
            picks=list(self.picks), objects=dict(self.objects.positions), same_room=self.occupancy.same_room
        )

    # ---- the task -----------------------------------------------------------------------------
    def _begin_task(self) -> None:
        self.task_started = True
        if self.mode == "wiped":
            self.occupancy.reset()
            self.objects.reset()
            self.picks, self.places = [], []
            self.navigator.reset()

    def _choose(self, instruction: str) -> list[np.ndarray] | None:
        if self.mode == "oracle":
            assert self.goal_oracle is not None
            return [np.asarray(g, dtype=np.float64) for g in self.goal_oracle()]
        if self.mode == "memory":
            return resolve(instruction, self.episodic_memory())
        count = goal_count(instruction)
        if self.mode == "retrieval":
            keyframes = [p for _, p in self.picks] + list(self.places) + [np.zeros(2)]
            picks = self.rng.choice(len(keyframes), size=min(count, len(keyframes)), replace=False)
            return [keyframes[int(i)] for i in picks]
        colour = named_colour(instruction)  # wiped: search
        if colour is not None and colour in self.objects.positions and count == 1:
            return [self.objects.positions[colour]]
        if self.task_steps < self.search_steps:
            return None
        seen = list(self.objects.positions.values())
        if not seen:
            return [self.occupancy.grid.to_xy(self.occupancy.grid.to_cell(np.zeros(2)))]
        picks = self.rng.choice(len(seen), size=min(count, len(seen)), replace=False)
        return [seen[int(i)] for i in picks]

    def _stop_radius(self, goal: np.ndarray) -> float:
        """``stop_radius_m`` at an object the map knows of; half of it at an empty spot (it gets closer)."""
        occupied = any(np.linalg.norm(p - goal) < 0.7 for p in self.objects.positions.values())
        return self.stop_radius_m if occupied else self.stop_radius_m / 2

    def act(self, observations: dict[str, Any]) -> str:
        """One habitat action name for one observation (see :mod:`~memstream.embodied.envs.miniworld_env`)."""
        phase = observations.get("phase", "task")
        if phase == "history":
            gps, compass = self._perceive(observations)
            self._log_interaction(str(observations.get("history_action", "")), gps, compass)
            return "stop"  # ignored by the env in the history phase
        if not self.task_started:
            self._begin_task()
        gps, compass = self._perceive(observations)
        self.task_steps += 1
        if self.chosen_goals is None:
            self.chosen_goals = self._choose(str(observations.get("instruction", "")))
            if self.chosen_goals is None:
                return self.navigator.frontier_action(gps, compass) or "turn_left"
        if self.goal_index >= len(self.chosen_goals):
            return "stop"
        goal = self.chosen_goals[self.goal_index]
        action = self.navigator.act(gps, compass, goal, self._stop_radius(goal))
        distance = float(np.linalg.norm(goal - gps))
        if distance < self._best[0] - 0.05:
            self._best = (distance, self.task_steps)
        stalled = self.task_steps - self._best[1]
        if action is None or (stalled >= 15 and distance <= self._stop_radius(goal) + 0.4) or stalled >= 80:
            self.goal_index += 1  # arrived, or as near as it gets (the estimate is inside an obstacle)
            self.navigator.reset()
            self._best = (math.inf, self.task_steps)
            return "stop"
        return action
