"""A thin adapter that runs this project's agents in habitat-lab, where habitat-lab and habitat-sim exist.

habitat-sim has no wheel for Python 3.11 and does not render without an NVIDIA GPU, so none of this
runs here; everything the adapter calls (the agents, their observations and actions) is exercised
through MiniWorld, and the mapping below is the only difference.

Observations, habitat -> ours (:mod:`~memstream.embodied.envs.miniworld_env` uses habitat's names):

* ``rgb`` uint8 (H, W, 3): unchanged.
* ``depth`` float32 (H, W, 1): habitat normalises it to [0, 1] by default (``normalize_depth``);
  ours is metres: ``min_depth + d * (max_depth - min_depth)`` (pass the sensor's values).
* ``gps`` float32 (2,) ``[-z, x]`` from the episode start and ``compass`` float32 (1,), left
  positive: unchanged (ours are defined the same way).
* habitat has no history phase: ``phase`` is ``"task"``; a task's instruction (e.g. FindingDory's
  ``lang_memory_goal_sensor``) goes to ``instruction`` through ``instruction_key``.

Actions, ours -> habitat: ``stop`` 0, ``move_forward`` 1, ``turn_left`` 2, ``turn_right`` 3, returned
as ``{"action": id}`` as habitat-baselines' agents do. The camera must match the agent's
(``fov_deg``, ``camera_height_m``; MiniWorld's 60 degrees and 1.5 m by default).

Example (anywhere; habitat itself is only needed for :func:`run_habitat_benchmark`):
    >>> import numpy as np
    >>> class Forward:
    ...     def reset(self): pass
    ...     def act(self, observations): return "move_forward"
    >>> adapter = HabitatAgentAdapter(Forward(), min_depth_m=0.5, max_depth_m=5.0)
    >>> adapter.act({"rgb": np.zeros((4, 4, 3), np.uint8), "depth": np.full((4, 4, 1), 0.5, np.float32),
    ...              "gps": np.zeros(2, np.float32), "compass": np.zeros(1, np.float32)})
    {'action': 1}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memstream.embodied.envs.miniworld_env import ACTIONS, action_name
from memstream.streaming.errors import MemstreamError

HABITAT_FIX = (
    "habitat-lab needs habitat-sim (conda only, Python 3.9, an NVIDIA GPU to render): conda install "
    "habitat-sim headless -c conda-forge -c aihabitat; pip install habitat-lab"
)


def habitat_observations(
    obs: dict[str, Any],
    min_depth_m: float,
    max_depth_m: float,
    normalized_depth: bool = True,
    instruction_key: str | None = None,
) -> dict[str, Any]:
    """Our observation dict from one of habitat's (see the module doc for the mapping)."""
    depth = np.asarray(obs["depth"], dtype=np.float32)
    if normalized_depth:
        depth = min_depth_m + depth * (max_depth_m - min_depth_m)
    out = {
        "rgb": np.asarray(obs["rgb"], dtype=np.uint8),
        "depth": depth,
        "gps": np.asarray(obs["gps"], dtype=np.float32)[:2],
        "compass": np.asarray(obs["compass"], dtype=np.float32).reshape(1),
        "phase": "task",
        "history_action": "",
        "instruction": "",
        "step": 0,
    }
    if instruction_key is not None and instruction_key in obs:
        out["instruction"] = str(obs[instruction_key])
    return out


class HabitatAgentAdapter:
    """habitat's ``Agent`` around one of ours: converts observations in, action names out."""

    def __init__(
        self,
        agent: Any,
        min_depth_m: float = 0.5,
        max_depth_m: float = 5.0,
        normalized_depth: bool = True,
        instruction_key: str | None = None,
    ) -> None:
        self.agent = agent
        self.min_depth_m, self.max_depth_m = min_depth_m, max_depth_m
        self.normalized_depth, self.instruction_key = normalized_depth, instruction_key

    def reset(self) -> None:
        self.agent.reset()

    def act(self, observations: dict[str, Any]) -> dict[str, int]:
        converted = habitat_observations(
            observations, self.min_depth_m, self.max_depth_m, self.normalized_depth, self.instruction_key
        )
        return {"action": ACTIONS.index(action_name(self.agent.act(converted)))}


def run_habitat_benchmark(
    config_path: str, agent: Any, episodes: int | None = None, **adapter: Any
) -> dict[str, float]:
    """``habitat.Benchmark(config_path).evaluate(HabitatAgentAdapter(agent), episodes)``; habitat's metrics.

    Raises:
        MemstreamError: habitat-lab (or habitat-sim, which it imports) is missing, naming the fix.
    """
    try:
        import habitat
    except ImportError as error:
        raise MemstreamError(f"habitat-lab cannot be imported ({error})", HABITAT_FIX) from None
    benchmark = habitat.Benchmark(config_path)
    return benchmark.evaluate(HabitatAgentAdapter(agent, **adapter), num_episodes=episodes)
