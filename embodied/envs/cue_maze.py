"""``cue``: a MiniWorld T-maze where a coloured box seen early decides which end of the cross-bar is the goal.

Layout (metres, MiniWorld's floor plane; the agent starts at ``(0.7, 0)`` facing ``+x``)::

    z = -3.6  [ green ball ]  <- left goal: the cue was red
              |            |
    corridor  |  junction  |  the corridor (x 0..5, z +-1.2) opens into the cross-bar (x 5.4..7.4)
    --------- |            |
    [cue sign]|            |  a red or blue panel on one side wall of the corridor, x in cue_x_m
              |            |
    z = +3.6  [ green ball ]  <- right goal: the cue was blue

Both goals are identical green balls, so nothing at the junction tells them apart: from the start the
cue panel is in view for a few frames, then it falls behind the agent and never comes back into view
before the decision (about 15 frames later at 0.25 m a step). The scripted expert walks up the
centre line whatever the cue, turns at the junction toward the cue's side, walks to the goal and
calls ``stop``; its path before the turn carries no information about the cue, so a memoryless
policy succeeds half the time. It is not the shortest successful path, which cuts the corner and
stops ``success_distance_m`` short of the ball (SPL's ``shortest``, 6.86 m and 6.90 m against the
expert's 7.75 m: SPL 0.885 and 0.89).

Observations and actions are habitat's (those of :mod:`~memstream.embodied.envs.miniworld_env`):
``rgb``, ``depth``, ``gps`` (``[forward, right]`` metres from the start), ``compass``, plus
``phase`` (always ``"task"``), ``instruction`` and ``step``. ``stop`` within ``success_distance_m``
of the right goal succeeds; a ``stop`` elsewhere, or coming within ``success_distance_m`` of the
wrong goal (the choice is committed), ends the episode as a failure.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from memstream.embodied.envs.goaldistance import goal_distance, shortest_successful_m
from memstream.embodied.envs.house import Door, HouseLayout, HouseObject, free_grid
from memstream.embodied.envs.miniworld_env import (
    ACTIONS,
    AGENT_RADIUS_M,
    SOLID_RADIUS_M,
    MiniWorldFrames,
    _house_world_class,
    _wrap,
    action_name,
)
from memstream.embodied.envs.navmetrics import NavMetrics
from memstream.embodied.envs.types import EpisodeDataset
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import ConfigError, MemstreamError

CORRIDOR = (0.0, 5.0, -1.2, 1.2)  # [min_x, max_x, min_z, max_z]
BAR = (5.4, 7.4, -3.6, 3.6)
JUNCTION_X = 6.4
GOALS_XZ = np.array([[JUNCTION_X, -3.0], [JUNCTION_X, 3.0]])  # 0: left (-z), 1: right (+z)
START_XZ = (0.7, 0.0)
CUE_COLOURS = ("red", "blue")  # red: the left goal, blue: the right one
GOAL_COLOUR = "green"
CUE_SIDE_Z = 0.93  # the panel's centre: against the side wall (z = +-1.2), 0.54 m clear of the centre line
CUE_SIZE_M = (0.6, 1.4, 0.5)  # a sign-like pillar: 0.6 m along the wall, 1.4 m tall, 0.5 m out from it
INSTRUCTION = "remember the colour of the sign in the corridor: red means the left goal, blue the right"
GRID_M = 0.1
CLEARANCE_M = 0.45


@strict_config
@dataclass(frozen=True)
class CueMazeConfig:
    """Settings of the MiniWorld cue T-maze.

    Attributes:
        image_size: pixels per side of rgb and depth.
        forward_step_m, turn_deg: habitat's ``forward_step_size`` and ``turn_angle``.
        success_distance_m: habitat's ``success_distance`` (metres from the goal ball's centre; the
            ball keeps the agent ~0.85 m away).
        cue_x_m: (lo, hi) metres along the corridor where the cue panel stands (uniform per episode);
            nearer than ~2.2 m to the start it would show for fewer than two frames.
        max_steps: time limit in actions (the expert needs 35).
    """

    image_size: Annotated[int, Field(ge=16, le=512)] = 64
    forward_step_m: Annotated[float, Field(gt=0.05, le=0.5)] = 0.25
    turn_deg: Annotated[float, Field(gt=0, le=90)] = 30.0
    success_distance_m: Annotated[float, Field(gt=0.9, le=2.0)] = 1.2
    cue_x_m: tuple[float, float] = (2.6, 3.2)
    max_steps: Annotated[int, Field(ge=1)] = 60

    def __post_init__(self) -> None:
        lo, hi = self.cue_x_m
        if not 1.5 <= lo <= hi <= CORRIDOR[1] - 0.5:
            raise ConfigError(f"cue_x_m={self.cue_x_m} must satisfy 1.5 <= lo <= hi <= {CORRIDOR[1] - 0.5}",
                                 "Use e.g. cue_x_m=(2.6, 3.2)")


@functools.cache
def _maze_world_class() -> type:
    """The house world with the cue drawn as a large panel on the corridor wall (a sign, not a 0.6 m box)."""
    house = _house_world_class()  # loads MiniWorld headless (or names the fix) before its entities are imported
    from miniworld.entity import Box

    class MazeWorld(house):  # type: ignore[misc, valid-type]
        def _gen_world(self) -> None:
            super()._gen_world()
            small = self.objects[0]
            self.entities.remove(small)
            panel = Box(color=self.layout.objects[0].colour, size=np.array(CUE_SIZE_M))
            self.objects[0] = self.place_entity(panel, pos=small.pos.copy(), dir=0.0)

    return MazeWorld


def maze_layout(cue: int, cue_x_m: float, cue_side: int) -> HouseLayout:
    """The maze as a :class:`HouseLayout` (objects: the cue (drawn as a panel), then the left and right goal balls)."""
    objects = (
        HouseObject(CUE_COLOURS[cue], "box", (float(cue_x_m), CUE_SIDE_Z * (1 if cue_side else -1))),
        HouseObject(GOAL_COLOUR, "ball", (float(GOALS_XZ[0, 0]), float(GOALS_XZ[0, 1]))),
        HouseObject(GOAL_COLOUR, "ball", (float(GOALS_XZ[1, 0]), float(GOALS_XZ[1, 1]))),
    )
    return HouseLayout(np.array([CORRIDOR, BAR]), (Door(0, 1, 0, CORRIDOR[2] + 0.1, CORRIDOR[3] - 0.1),),
                       objects, START_XZ, 0.0)


class CueMazeEnv(MiniWorldFrames):
    """A habitat-style env (``reset`` / ``step`` / ``episode_over`` / ``get_metrics``); see the module doc.

    Privileged (experts, scoring and tests only): ``cue`` (0 red / left, 1 blue / right),
    :meth:`expert_action`, :meth:`goals_gps`.

    Example (needs ``miniworld`` and EGL):
        >>> env = CueMazeEnv(CueMazeConfig())
        >>> obs = env.reset(seed=0)
        >>> while not env.episode_over:
        ...     obs = env.step(env.expert_action())
        >>> env.get_metrics()["success"]
        1.0
    """

    def __init__(self, config: CueMazeConfig | None = None) -> None:
        self.config = config or CueMazeConfig()
        self._world: Any = None
        self._fields: list[Any] | None = None
        self._shortest_m: list[float] = []  # SPL's shortest for each cue (the start never moves)
        self.template = None
        self.episode_over = True

    def require(self) -> None:
        """Load MiniWorld now (it is otherwise loaded by the first ``reset``); raises naming the fix."""
        _maze_world_class()

    def reset(self, seed: int) -> dict[str, Any]:
        """Draw the cue (colour, side, place along the corridor) from ``seed``; the first observation."""
        rng = np.random.default_rng((seed, 0xC0E))
        self.seed = seed
        self.cue = int(rng.integers(2))
        lo, hi = self.config.cue_x_m
        self.layout = maze_layout(self.cue, float(rng.uniform(lo, hi)), int(rng.integers(2)))
        if self._world is None:
            with contextlib.redirect_stdout(io.StringIO()):  # MiniWorld prints its framebuffer fallback
                self._world = _maze_world_class()(self.layout, self.config.image_size)
        else:
            self._world.layout = self.layout
        self._world.reset(seed=seed)
        self._origin = np.asarray(START_XZ, dtype=np.float64)
        if self._fields is None:  # the walls and goals never move; the cue panel stands off every shortest path
            grid, free = free_grid(self.layout, CLEARANCE_M, GRID_M, blockers=GOALS_XZ)
            self._fields = [goal_distance(grid, free, goal) for goal in GOALS_XZ]
            # SPL's shortest: from the start to where a stop succeeds, where MiniWorld lets the agent walk
            # (the cue panel stands off those paths too: measured, it changes none by a centimetre)
            _, walk = free_grid(self.layout, AGENT_RADIUS_M, GRID_M, blockers=GOALS_XZ,
                                blocker_radius_m=SOLID_RADIUS_M)
            start, success_m = np.asarray(START_XZ), self.config.success_distance_m
            self._shortest_m = [shortest_successful_m(grid, walk, start, [goal], success_m)
                                for goal in self._fields]
        self.metrics = NavMetrics([self._fields[self.cue]], self.config.success_distance_m,
                                  shortest_m=self._shortest_m[self.cue])
        self.metrics.reset(self._xz())
        self.step_index, self.episode_over, self.wrong_goal = 0, False, False
        return self._observe()

    def step(self, action: Any) -> dict[str, Any]:
        """Apply one habitat action (name, id 0-3 or ``{"action": ...}``)."""
        if self.episode_over:
            raise MemstreamError("step() after the episode ended", "Call reset(seed) for a new episode")
        name = action_name(action)
        world = self._world
        if name == "stop":
            self.metrics.stop()
        else:
            if name == "move_forward":
                world.move_agent(self.config.forward_step_m, 0.0)
            else:
                world.turn_agent(self.config.turn_deg if name == "turn_left" else -self.config.turn_deg)
            self.metrics.update(self._xz())
            wrong = GOALS_XZ[1 - self.cue]
            if np.linalg.norm(self._xz() - wrong) < self.config.success_distance_m:
                self.wrong_goal = True  # reached the other goal: the choice is made, and wrong
        self.step_index += 1
        self.episode_over = self.metrics.done or self.wrong_goal or self.step_index >= self.config.max_steps
        return self._observe()

    def get_metrics(self) -> dict[str, float]:
        """habitat's ``distance_to_goal``, ``success``, ``spl``; ``high_level_success``: the agent ended
        in the right arm of the cross-bar (it chose the right goal, reached or not); ``wrong_goal``."""
        xz = self._xz()
        arm = 0 if xz[1] < CORRIDOR[2] else 1 if xz[1] > CORRIDOR[3] else -1
        return {**self.metrics.metrics(), "high_level_success": float(arm == self.cue),
                "wrong_goal": float(self.wrong_goal)}

    def goals_gps(self) -> list[np.ndarray]:
        """The right goal's centre in the ``gps`` frame, float32 (2,)."""
        return [self.to_gps(GOALS_XZ[self.cue])]

    def expert_action(self) -> str:
        """The scripted expert: up the centre line to the junction, turn toward the cue's side, walk, stop."""
        xz, heading = self._xz(), float(self._world.agent.dir)
        step = self.config.forward_step_m
        if xz[0] < JUNCTION_X - step / 2:
            target = 0.0
        else:
            goal = GOALS_XZ[self.cue]
            if np.linalg.norm(xz - goal) <= min(1.05, self.config.success_distance_m - 0.1):
                return "stop"
            target = math.pi / 2 if self.cue == 0 else -math.pi / 2  # MiniWorld: +90 degrees faces -z
        turn = _wrap(target - heading)
        if abs(turn) > math.radians(self.config.turn_deg) / 2:
            return "turn_left" if turn > 0 else "turn_right"
        return "move_forward"

    # ---- frames (the start faces +x: gps is [x, z] from the start) --------------------------------
    def _observe(self) -> dict[str, Any]:
        world = self._world
        rgb, depth = self._rgbd()
        return {
            "rgb": rgb,
            "depth": depth,
            "gps": self.to_gps(self._xz()),
            "compass": np.array([_wrap(float(world.agent.dir))], dtype=np.float32),
            "phase": "task",
            "history_action": "",
            "instruction": INSTRUCTION,
            "step": self.step_index,
        }


def habitat_state(observations: dict[str, Any]) -> np.ndarray:
    """float32 (4,): the proprioceptive state a policy sees, from habitat's sensors only:
    ``gps`` (forward, right metres) and the compass as (cos, sin).

    Raises:
        MemstreamError: the observations have no ``gps`` or ``compass`` (a pose-less env).
    """
    missing = [key for key in ("gps", "compass") if key not in observations]
    if missing:
        raise MemstreamError(f"observations have no {' or '.join(missing)}: the policy needs the agent's pose",
                             "Use an env with habitat's gps and compass sensors")
    heading = float(np.asarray(observations["compass"]).reshape(-1)[0])
    gps = np.asarray(observations["gps"], dtype=np.float32).reshape(2)
    return np.array([gps[0], gps[1], math.cos(heading), math.sin(heading)], dtype=np.float32)


def cue_in_view(rgb: np.ndarray) -> bool:
    """Whether a red or blue cue shows in ``rgb`` (H, W, 3) uint8: saturated pixels, >= 4 of them
    (walls and floor are grey, the goals green)."""
    image = rgb.astype(np.int16)
    red = (image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)
    blue = (image[..., 2] > 150) & (image[..., 0] < 80) & (image[..., 1] < 80)
    return int(red.sum() + blue.sum()) >= 4


def collect_cue_demonstrations(num_episodes: int, seed: int = 0, config: CueMazeConfig | None = None,
                               env: CueMazeEnv | None = None) -> EpisodeDataset:
    """Roll out the scripted expert for episodes ``seed .. seed + num_episodes - 1`` (in ``env``,
    closed at the end, or a new one built from ``config``).

    Returns:
        An :class:`EpisodeDataset`: ``images`` the rgb frames, ``states`` :func:`habitat_state`,
        ``actions`` float32 (T, 1) habitat action ids (:data:`ACTIONS`), ``hidden_info`` the cue,
        ``reveal_frames`` the frames in which the cue panel was in view.
    """
    if num_episodes < 1:
        raise MemstreamError(f"num_episodes must be >= 1, got {num_episodes}", "Pass num_episodes=300")
    env = env if env is not None else CueMazeEnv(config)
    images, states, actions, frame_index, lengths, hidden, reveal, success = [], [], [], [], [], [], [], []
    try:
        for episode in range(num_episodes):
            obs, steps, seen = env.reset(seed + episode), 0, 0
            while not env.episode_over:
                action = env.expert_action()
                images.append(obs["rgb"])
                states.append(habitat_state(obs))
                actions.append(ACTIONS.index(action))
                frame_index.append(steps)
                seen += cue_in_view(obs["rgb"])
                obs = env.step(action)
                steps += 1
            lengths.append(steps)
            hidden.append([env.cue])
            reveal.append(seen)
            success.append(env.get_metrics()["success"] == 1.0)
    finally:
        env.close()
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return EpisodeDataset(
        images=np.stack(images), states=np.stack(states), actions=np.array(actions, dtype=np.float32)[:, None],
        episode_index=np.repeat(np.arange(num_episodes), lengths).astype(np.int64),
        frame_index=np.array(frame_index, dtype=np.int64), task_index=np.zeros(len(images), dtype=np.int64),
        tasks=(INSTRUCTION,), episode_bounds=bounds, success=np.array(success), hidden_info=np.array(hidden, dtype=np.int64),
        reveal_frames=np.array(reveal, dtype=np.int64), task_name="miniworld/cue", seed=seed)
