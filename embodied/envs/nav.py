"""Navigation environments with habitat's contract, by name: ``make_nav_env("miniworld", "findingdory")``.

A navigation env has ``reset(seed) -> observations``, ``step(action) -> observations``,
``episode_over``, ``get_metrics()`` (habitat-lab's ``distance_to_goal``, ``success``, ``spl``),
``goals_gps()`` (the true goals, for scoring high-level success and for the oracle), ``require()``
(load the simulator now or raise naming the fix) and ``close()``.
Observations and actions are habitat's (see :mod:`~memstream.embodied.envs.miniworld_env`). Building
an env imports no simulator; the first ``reset`` does, and names the fix if it is missing.

Example:
    >>> make_nav_env("habitat", "findingdory")
    Traceback (most recent call last):
    ...
    memstream.streaming.errors.ConfigError: unknown navigation environment 'habitat'. Choose one of: memory_maze, miniworld
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from memstream.embodied.envs.cue_maze import CueMazeConfig, CueMazeEnv
from memstream.embodied.envs.memory_maze_env import MAZE_SIZES, MemoryMazeConfig, MemoryMazeEnv
from memstream.embodied.envs.miniworld_env import FindingDoryConfig, FindingDoryEnv
from memstream.streaming.configtypes import parse
from memstream.streaming.registry import Registry


class NavEnv(Protocol):
    """What the navigation evaluation drives (habitat's ``Env`` surface, single episode at a time)."""

    episode_over: bool

    def require(self) -> None: ...

    def reset(self, seed: int) -> dict[str, Any]: ...

    def step(self, action: Any) -> dict[str, Any]: ...

    def get_metrics(self) -> dict[str, float]: ...

    def goals_gps(self) -> list[np.ndarray]: ...

    def close(self) -> None: ...


#: env name -> task name -> factory(options dict) -> NavEnv
NAV_ENVS: Registry[Registry[Callable[[dict[str, Any]], NavEnv]]] = Registry("navigation environment")
_MINIWORLD: Registry[Callable[[dict[str, Any]], NavEnv]] = Registry("miniworld task")
NAV_ENVS.add("miniworld", _MINIWORLD)
_MINIWORLD.add(
    "findingdory", lambda options: FindingDoryEnv(parse(FindingDoryConfig, options, "findingdory"))
)
_MINIWORLD.add("cue", lambda options: CueMazeEnv(parse(CueMazeConfig, options, "cue")))
#: Memory Maze's sizes as tasks ("9x9" .. "15x15"); options are :class:`MemoryMazeConfig`'s other fields
_MEMORY_MAZE: Registry[Callable[[dict[str, Any]], NavEnv]] = Registry("memory_maze task")
NAV_ENVS.add("memory_maze", _MEMORY_MAZE)
for _size in MAZE_SIZES:
    _MEMORY_MAZE.add(
        f"{_size}x{_size}",
        lambda options, size=_size: MemoryMazeEnv(
            parse(MemoryMazeConfig, {**options, "maze_size": size}, f"memory_maze.{size}x{size}")
        ),
    )
#: the task ``nav-eval`` runs when none is named
DEFAULT_TASKS = {"miniworld": "findingdory", "memory_maze": "9x9"}
#: (env, task) -> the config field that holds the task's time limit in actions (``nav-eval --max-steps``);
#: FindingDory's counts the task phase only, after the history
STEP_LIMIT_FIELDS: dict[tuple[str, str], str] = {
    ("miniworld", "findingdory"): "max_task_steps",
    ("miniworld", "cue"): "max_steps",
    **{("memory_maze", f"{size}x{size}"): "max_steps" for size in MAZE_SIZES},
}


def make_nav_env(env: str, task: str, options: dict[str, Any] | None = None) -> NavEnv:
    """Build ``task`` in ``env``; unknown names raise :class:`ConfigError` listing the known ones."""
    return NAV_ENVS.get(env).get(task)(dict(options or {}))
