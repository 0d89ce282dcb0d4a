"""Score a batched policy on a task: success rate over a fixed set of episodes.

The episodes scored are the first ``num_episodes`` an env starts after a full reset (indices
``first .. first + num_episodes - 1``), whatever ``num_envs`` is and however fast the policy finishes
them; episodes started later in free slots run on but are not counted. So the same seed scores the
same episodes for every ``num_envs``, and short episodes are not over-represented.

Example:
    >>> from memstream.embodied.envs import make_env
    >>> env = make_env("cue_choice", num_envs=8, seed=0)
    >>> evaluate_env(lambda obs: env.expert_actions(), env, 16)["success_rate"]
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from memstream.embodied.envs.base import VectorEnv
from memstream.embodied.envs.registry import make_env
from memstream.embodied.envs.types import EvaluationResult, Observation
from memstream.streaming.errors import ConfigError

PolicyFn = Callable[[Observation], Any]  # batched observation -> actions float (B, 2)


def evaluate(policy_fn: PolicyFn, task: str, num_episodes: int, seed: int = 0, num_envs: int = 16,
             image_size: int = 64, task_config: Any = None) -> EvaluationResult:
    """Run ``policy_fn`` on ``num_episodes`` episodes of ``task`` in ``num_envs`` parallel slots.

    Args:
        policy_fn: called once per step with the batched :class:`Observation` of all slots; returns
            actions (B, 2). It must reset its memory of slot ``b`` when ``obs["episode_start"][b]``.
        task, seed, num_envs, image_size, task_config: as for :func:`make_env`.
        num_episodes: episodes scored, >= 1.

    Returns:
        An :class:`EvaluationResult` dict (success_rate, failure_rate, truncation_rate, episodes,
        mean_length, min_length, max_length, chance_success_rate, per-episode success, task).
    """
    env = make_env(task, num_envs=num_envs, seed=seed, image_size=image_size, task_config=task_config)
    return evaluate_env(policy_fn, env, num_episodes)


def evaluate_env(policy_fn: PolicyFn, env: VectorEnv, num_episodes: int) -> EvaluationResult:
    """:func:`evaluate` on an existing env; it is fully reset first."""
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ConfigError(f"num_episodes must be an int >= 1, got {num_episodes!r}", "Pass num_episodes >= 1")
    obs = env.reset()
    first = int(obs["episode_index"].min())
    outcome = np.full(num_episodes, -1, dtype=np.int64)  # 0 success, 1 failure, 2 truncated
    lengths = np.zeros(num_episodes, dtype=np.int64)
    while (outcome < 0).any():
        obs, _, terminated, truncated, info = env.step(policy_fn(obs))
        relative = info["episode_index"] - first
        ended = (terminated | truncated) & (relative < num_episodes)
        codes = np.where(info["success"], 0, np.where(info["failure"], 1, 2))
        outcome[relative[ended]] = codes[ended]
        lengths[relative[ended]] = info["episode_length"][ended]
    return EvaluationResult(
        task=env.name, episodes=num_episodes,
        success_rate=float(np.mean(outcome == 0)), failure_rate=float(np.mean(outcome == 1)),
        truncation_rate=float(np.mean(outcome == 2)), mean_length=float(lengths.mean()),
        min_length=int(lengths.min()), max_length=int(lengths.max()),
        chance_success_rate=env.chance_success_rate, success=outcome == 0,
    )
