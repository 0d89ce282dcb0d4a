"""``order``: three pads light up one at a time in a random order; step on them in that order.

Layout (arena units, y up)::

        +------ room ------+   y in [0.46, 0.98]
        |      [pad 2]     |   pad 2 centred (0.50, 0.86)
        | [pad 0]  [pad 1] |   pads 0 and 1 centred (0.18, 0.64) and (0.82, 0.64), half-side 0.08
        +--|  corridor  |--+   x in [0.40, 0.60], y in [0.02, 0.50]
           |   start    |

In the first frames each pad in turn is drawn lit (yellow) for 1-2 frames (random); afterwards all
unlit pads look the same. Stepping on the next pad of the order marks it visited (green, and a 1 in
``observation.state``); stepping on any other unvisited pad loses; visiting all three wins. Each
episode starts low enough that no pad can be reached before ``min_gap_steps`` frames after the last
lit frame. The pads form a triangle, so the straight line between two pads misses the third. A
memoryless policy (which sees the visited marks) succeeds 1 time in 3! = 6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memstream.embodied.envs.arena import PAD_LIT, PAD_UNLIT, PAD_VISITED, Layout, contains, toward
from memstream.embodied.envs.base import VectorEnv
from memstream.embodied.envs.config import EnvConfig, check_int, check_positive, check_range
from memstream.embodied.envs.registry import TASKS
from memstream.streaming.errors import ConfigError

NUM_PADS = 3
PAD_HALF = 0.08
PAD_CENTRES = np.array([[0.18, 0.64], [0.82, 0.64], [0.50, 0.86]])
PADS = np.concatenate([PAD_CENTRES - PAD_HALF, PAD_CENTRES + PAD_HALF], axis=1)  # (3, 4) rectangles
PAD_COLOURS = np.array([PAD_UNLIT, PAD_LIT, PAD_VISITED], dtype=np.uint8)  # by code 0, 1, 2
LAYOUT = Layout(
    free_rects=np.array([(0.40, 0.02, 0.60, 0.60), (0.02, 0.46, 0.98, 0.98)]),  # overlap > 2 radii
    painted=(),
    start_x=0.5,
    start_y_min=0.06,
    decision_y=float(PADS[:, 1].min()),
    junction=np.array([0.5, 0.64]),
)


def highest_start_y(show_steps: np.ndarray | int, min_gap_steps: int, max_step: float) -> np.ndarray:
    """Arena units: the highest start from which reaching a pad takes >= show + gap steps."""
    return LAYOUT.decision_y - (np.asarray(show_steps) + min_gap_steps) * max_step


@dataclass(frozen=True)
class OrderConfig:
    """Settings of ``order``.

    Attributes:
        lit_steps: (lo, hi) frames each pad stays lit during the show, drawn per pad.
        min_gap_steps: frames; no pad can be reached earlier than this after the show's last frame.
        max_step: arena units moved per step at full speed.
        max_episode_steps: time limit in actions; must leave room for the expert's longest path.
    """

    lit_steps: tuple[int, int] = (1, 2)
    min_gap_steps: int = 8
    max_step: float = 0.03
    max_episode_steps: int = 150

    def __post_init__(self) -> None:
        check_range("OrderConfig", "lit_steps", self.lit_steps, 1)
        check_int("OrderConfig", "min_gap_steps", self.min_gap_steps, 0)
        check_positive("OrderConfig", "max_step", self.max_step, 0.1)
        check_int("OrderConfig", "max_episode_steps", self.max_episode_steps, 1)
        longest_show = NUM_PADS * self.lit_steps[1]
        if highest_start_y(longest_show, self.min_gap_steps, self.max_step) < LAYOUT.start_y_min:
            raise ConfigError(f"the corridor is too short for a show of {longest_show} frames plus "
                              f"min_gap_steps={self.min_gap_steps} at max_step={self.max_step}",
                              "Lower lit_steps, min_gap_steps or max_step")
        hub = math.ceil((LAYOUT.junction[1] - LAYOUT.start_y_min) / self.max_step) + 1
        spans = np.linalg.norm(PAD_CENTRES[:, None] - np.vstack([PAD_CENTRES, LAYOUT.junction]), axis=2)
        longest = hub + NUM_PADS * (math.ceil(spans.max() / self.max_step) + 1)
        if self.max_episode_steps < longest:
            raise ConfigError(f"max_episode_steps={self.max_episode_steps} is shorter than the expert's "
                              f"longest path ({longest} steps)", f"Pass max_episode_steps >= {longest}")


def order_expert(position: np.ndarray, order: np.ndarray, progress: np.ndarray,
                 max_step: float) -> np.ndarray:
    """float32 (B, 2): up the corridor, then straight to pad ``order[b, progress[b]]``.

    Args:
        position: float (B, 2), arena units. order: int (B, 3), pad ids in the order to visit.
        progress: int (B,), pads visited so far. With a constant guessed ``order`` and the visited
            count read from ``observation.state`` this is the best memoryless policy (1/6 success).
    """
    rows = np.arange(len(position))
    before = (np.asarray(progress) == 0) & (position[:, 1] < LAYOUT.decision_y)
    pad = np.asarray(order)[rows, np.minimum(progress, NUM_PADS - 1)]
    targets = np.where(before[:, None], LAYOUT.junction, PAD_CENTRES[pad])
    return toward(position, targets, max_step)


@TASKS.register("order")
class OrderEnv(VectorEnv):
    """``B`` parallel pad rooms; see the module doc.

    ``observation.state`` is (x, y, visited_0, visited_1, visited_2): position in arena units, then
    1.0 for each pad already stepped on in the right order (also drawn green).

    Privileged attributes (experts and tests only): ``order`` int64 (B, 3), pad ids in the order
    shown; ``lit_ends`` int64 (B, 3), pad ``order[:, k]`` is lit in frames ``lit_ends[:, k-1]`` (0
    for k = 0) to ``lit_ends[:, k] - 1``; ``progress`` int64 (B,); ``visited`` bool (B, 3).
    """

    name = "order"
    instruction = "step on the pads in the order they lit up"
    chance_success_rate = 1.0 / 6.0
    state_dim = 2 + NUM_PADS
    hidden_dim = NUM_PADS
    config_class = OrderConfig

    def __init__(self, config: EnvConfig, task_config: OrderConfig) -> None:
        super().__init__(config, LAYOUT, task_config.max_step, task_config.max_episode_steps)
        self.task_config = task_config
        self.order = np.zeros((self.num_envs, NUM_PADS), dtype=np.int64)
        self.lit_ends = np.zeros((self.num_envs, NUM_PADS), dtype=np.int64)
        self.progress = np.zeros(self.num_envs, dtype=np.int64)
        self.visited = np.zeros((self.num_envs, NUM_PADS), dtype=bool)
        self._on_pad = np.zeros((self.num_envs, NUM_PADS), dtype=bool)

    @property
    def hidden_info(self) -> np.ndarray:
        return self.order.copy()

    @property
    def reveal_frames(self) -> np.ndarray:
        return self.lit_ends[:, -1].copy()

    def expert_actions(self) -> np.ndarray:
        return order_expert(self.position, self.order, self.progress, self.max_step)

    def _begin(self, slots: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
        low, high = self.task_config.lit_steps
        draws = np.array([np.concatenate([rng.permutation(NUM_PADS), rng.integers(low, high + 1, NUM_PADS),
                                          [rng.random()]]) for rng in rngs])
        self.order[slots] = draws[:, :NUM_PADS].astype(np.int64)
        self.lit_ends[slots] = np.cumsum(draws[:, NUM_PADS:2 * NUM_PADS], axis=1).astype(np.int64)
        self.progress[slots] = 0
        self.visited[slots] = False
        self._on_pad[slots] = False
        top = highest_start_y(self.lit_ends[slots, -1], self.task_config.min_gap_steps, self.max_step)
        start_y = LAYOUT.start_y_min + draws[:, -1] * (top - LAYOUT.start_y_min)
        return np.stack([np.full(slots.size, LAYOUT.start_x), start_y], axis=1)

    def _advance(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(self.num_envs)
        inside = contains(PADS, self.position)
        entered = inside & ~self._on_pad
        self._on_pad = inside
        expected = self.order[rows, np.minimum(self.progress, NUM_PADS - 1)]
        is_expected = np.arange(NUM_PADS) == expected[:, None]
        failure = (entered & ~self.visited & ~is_expected).any(axis=1)
        hit = entered[rows, expected] & ~failure
        self.visited[rows[hit], expected[hit]] = True
        self.progress += hit
        return self.progress == NUM_PADS, failure

    def _paint(self, images: np.ndarray) -> None:
        rows = np.arange(self.num_envs)
        shown = (self.frame_index[:, None] >= self.lit_ends).sum(axis=1)  # pads whose lit turn is over
        lit = np.where(shown < NUM_PADS, self.order[rows, np.minimum(shown, NUM_PADS - 1)], -1)
        codes = np.where(self.visited, 2, (np.arange(NUM_PADS) == lit[:, None]).astype(np.int64))
        for pad in range(NUM_PADS):  # a loop over the 3 pads, vectorised over slots
            self.canvas.fill(images, PADS[pad], PAD_COLOURS[codes[:, pad]])

    def _state_extras(self) -> np.ndarray:
        return self.visited.astype(np.float64)
