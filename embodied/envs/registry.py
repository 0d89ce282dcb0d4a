"""The task registry and the functions that build an env or ask its expert.

Example:
    >>> env = make_env("cue_choice", num_envs=4, seed=0)
    >>> obs = env.reset()
    >>> obs["observation.image"].shape, obs["observation.state"].shape
    ((4, 64, 64, 3), (4, 2))
    >>> obs, reward, terminated, truncated, info = env.step(expert_actions(env))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memstream.embodied.envs.base import VectorEnv
from memstream.embodied.envs.config import EnvConfig
from memstream.streaming.errors import ConfigError
from memstream.streaming.registry import Registry

# name -> env class; each class has a ``config_class`` and is built as ``cls(EnvConfig, config)``.
TASKS: Registry[Any] = Registry("embodied task")


def make_env(task: str, num_envs: int = 1, seed: int = 0, image_size: int = 64,
             task_config: Any = None) -> VectorEnv:
    """Build ``num_envs`` parallel environments of a registered task.

    Args:
        task: a name in :data:`TASKS` (``"cue_choice"``, ``"order"``).
        num_envs: slots ``B`` stepped together, >= 1.
        seed: episode ``i`` is drawn from ``default_rng((seed, i))``.
        image_size: pixels per side of the square observation image, 32..512.
        task_config: the task's ``*Config`` (e.g. :class:`CueChoiceConfig`); its defaults if None.

    Raises:
        ConfigError: unknown task (the message lists the known ones), bad sizes or config type.
    """
    cls = TASKS.get(task)
    config = EnvConfig(num_envs=num_envs, seed=seed, image_size=image_size)
    task_config = cls.config_class() if task_config is None else task_config
    if not isinstance(task_config, cls.config_class):
        expected = cls.config_class.__name__
        raise ConfigError(f"task {task!r} takes a {expected}, got {type(task_config).__name__}",
                          f"Pass task_config={cls.config_class.__name__}(...) or None")
    return cls(config, task_config)


def expert_actions(env: VectorEnv) -> np.ndarray:
    """float32 (B, 2): the scripted expert's actions for ``env``'s current state.

    The experts read the hidden information (the cue, the order) and succeed on every episode; they
    walk the same path whatever it is until the decision height, so their trajectory before it
    carries no hidden information.
    """
    return env.expert_actions()
