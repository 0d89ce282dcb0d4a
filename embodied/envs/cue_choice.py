"""``cue_choice``: a T-maze. A lamp shows red or blue for 2-5 frames, then goes dark; walk up the
corridor and enter the goal of the lamp's colour (red = left, blue = right).

Layout (arena units, y up)::

        [lamp]                 lamp above the junction, dark after the cue phase
    [RED ==== bar ==== BLUE]   goals at the ends of the cross-bar, y in [0.62, 0.80]
            | corridor |       x in [0.40, 0.60]
            |  start   |       start on the centre line, y from 0.06 up to a per-episode bound

Each episode starts low enough that even an agent going straight up at full speed reaches the
cross-bar (``decision_y``) no earlier than ``min_gap_steps`` frames after the last cue frame; below
the cross-bar it cannot leave the corridor, so nothing it could do before then depends on the cue.
Entering the right goal wins (reward 1), the wrong goal loses; both end the episode. After the
cue phase neither the image nor the state depends on the cue (the lamp is drawn dark either way).
A memoryless policy succeeds half the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memstream.embodied.envs.arena import AGENT_RADIUS, BLUE, LAMP_OFF, RED, Layout, contains, toward
from memstream.embodied.envs.base import VectorEnv
from memstream.embodied.envs.config import EnvConfig, check_int, check_positive, check_range
from memstream.embodied.envs.registry import TASKS
from memstream.streaming.errors import ConfigError

CORRIDOR = (0.40, 0.02, 0.60, 0.80)
BAR = (0.02, 0.62, 0.98, 0.80)
GOALS = np.array([[0.02, 0.62, 0.16, 0.80], [0.84, 0.62, 0.98, 0.80]])  # 0: left/red, 1: right/blue
GOAL_CENTRES = np.array([[0.09, 0.71], [0.91, 0.71]])
LAMP = (0.04, 0.84, 0.96, 0.98)
CUE_COLOURS = np.array([RED, BLUE], dtype=np.uint8)
LAYOUT = Layout(
    free_rects=np.array([CORRIDOR, BAR]),
    painted=((tuple(GOALS[0]), RED), (tuple(GOALS[1]), BLUE)),
    start_x=0.5,
    start_y_min=0.06,
    decision_y=BAR[1] + AGENT_RADIUS,
    junction=np.array([0.5, 0.71]),
)


def highest_start_y(cue_steps: np.ndarray | int, min_gap_steps: int, max_step: float) -> np.ndarray:
    """Arena units: the highest start from which reaching the cross-bar takes >= cue + gap steps."""
    return LAYOUT.decision_y - (np.asarray(cue_steps) + min_gap_steps) * max_step


@dataclass(frozen=True)
class CueChoiceConfig:
    """Settings of ``cue_choice``.

    Attributes:
        cue_steps: (lo, hi) frames; the lamp shows the cue in the first ``U{lo..hi}`` frames.
        min_gap_steps: frames; the cross-bar is reached at the earliest this long after the cue's last frame.
        max_step: arena units moved per step at full speed (the corridor is about 20 steps long).
        max_episode_steps: time limit in actions; must leave room for the expert's longest path.
    """

    cue_steps: tuple[int, int] = (2, 5)
    min_gap_steps: int = 8
    max_step: float = 0.03
    max_episode_steps: int = 60

    def __post_init__(self) -> None:
        check_range("CueChoiceConfig", "cue_steps", self.cue_steps, 1)
        check_int("CueChoiceConfig", "min_gap_steps", self.min_gap_steps, 0)
        check_positive("CueChoiceConfig", "max_step", self.max_step, 0.1)
        check_int("CueChoiceConfig", "max_episode_steps", self.max_episode_steps, 1)
        if highest_start_y(self.cue_steps[1], self.min_gap_steps, self.max_step) < LAYOUT.start_y_min:
            raise ConfigError(f"the corridor is too short for cue_steps up to {self.cue_steps[1]} plus "
                              f"min_gap_steps={self.min_gap_steps} at max_step={self.max_step}",
                              "Lower cue_steps, min_gap_steps or max_step")
        longest = math.ceil((LAYOUT.decision_y - LAYOUT.start_y_min) / self.max_step) + 1
        longest += math.ceil((LAYOUT.junction[0] - GOALS[0, 2]) / self.max_step) + 1
        if self.max_episode_steps < longest:
            raise ConfigError(f"max_episode_steps={self.max_episode_steps} is shorter than the expert's "
                              f"longest path ({longest} steps)", f"Pass max_episode_steps >= {longest}")


def cue_choice_expert(position: np.ndarray, cue: np.ndarray, max_step: float) -> np.ndarray:
    """float32 (B, 2): up the corridor to the junction, then straight to goal ``cue`` (B,) int.

    With a constant ``cue`` this is the best memoryless policy (50% success).
    """
    in_bar = position[:, 1] >= LAYOUT.decision_y
    targets = np.where(in_bar[:, None], GOAL_CENTRES[np.asarray(cue)], LAYOUT.junction)
    return toward(position, targets, max_step)


@TASKS.register("cue_choice")
class CueChoiceEnv(VectorEnv):
    """``B`` parallel T-mazes; see the module doc. ``observation.state`` is (x, y), arena units.

    Privileged attributes (experts and tests only): ``cue`` int64 (B,), 0 = red/left, 1 = blue/right;
    ``cue_steps`` int64 (B,), frames during which the lamp shows it.
    """

    name = "cue_choice"
    instruction = "go to the goal whose colour the lamp showed"
    chance_success_rate = 0.5
    state_dim = 2
    hidden_dim = 1
    config_class = CueChoiceConfig

    def __init__(self, config: EnvConfig, task_config: CueChoiceConfig) -> None:
        super().__init__(config, LAYOUT, task_config.max_step, task_config.max_episode_steps)
        self.task_config = task_config
        self.cue = np.zeros(self.num_envs, dtype=np.int64)
        self.cue_steps = np.zeros(self.num_envs, dtype=np.int64)

    @property
    def hidden_info(self) -> np.ndarray:
        return self.cue[:, None].copy()

    @property
    def reveal_frames(self) -> np.ndarray:
        return self.cue_steps.copy()

    def expert_actions(self) -> np.ndarray:
        return cue_choice_expert(self.position, self.cue, self.max_step)

    def _begin(self, slots: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
        low, high = self.task_config.cue_steps
        draws = np.array([(rng.integers(2), rng.integers(low, high + 1), rng.random()) for rng in rngs])
        self.cue[slots] = draws[:, 0].astype(np.int64)
        self.cue_steps[slots] = draws[:, 1].astype(np.int64)
        top = highest_start_y(self.cue_steps[slots], self.task_config.min_gap_steps, self.max_step)
        start_y = LAYOUT.start_y_min + draws[:, 2] * (top - LAYOUT.start_y_min)
        return np.stack([np.full(slots.size, LAYOUT.start_x), start_y], axis=1)

    def _advance(self) -> tuple[np.ndarray, np.ndarray]:
        in_goal = contains(GOALS, self.position)  # (B, 2)
        right = in_goal[np.arange(self.num_envs), self.cue]
        wrong = in_goal[np.arange(self.num_envs), 1 - self.cue]
        return right, wrong & ~right

    def _paint(self, images: np.ndarray) -> None:
        visible = self.frame_index < self.cue_steps
        colours = np.where(visible[:, None], CUE_COLOURS[self.cue], np.array(LAMP_OFF, dtype=np.uint8))
        self.canvas.fill(images, LAMP, colours)
