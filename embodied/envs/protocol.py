"""Habitat-style single-episode agents: ``Agent.reset()`` / ``act(observations) -> action``.

Habitat's ``Benchmark.local_evaluate`` calls ``agent.reset()`` before each episode and
``agent.act(obs)`` each step; :func:`run_agent` does the same on a one-slot :class:`VectorEnv`, handing
the agent unbatched observations (image uint8 (H, W, 3), state float32 (S,), task str, ...).

Example:
    >>> from memstream.embodied.envs import make_env
    >>> class Forward:
    ...     def reset(self) -> None: ...
    ...     def act(self, observations): return np.array([0.0, 1.0])
    >>> run_agent(Forward(), make_env("cue_choice", seed=0), 2)["success_rate"]
    0.0
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from memstream.embodied.envs.base import VectorEnv
from memstream.embodied.envs.evaluate import evaluate_env
from memstream.embodied.envs.types import EvaluationResult, Observation
from memstream.streaming.errors import ConfigError, MemstreamError


@runtime_checkable
class Agent(Protocol):
    """A policy that sees one episode at a time and keeps its own memory."""

    def reset(self) -> None:
        """Called before the first step of every episode: clear the memory."""

    def act(self, observations: dict[str, Any]) -> Any:
        """Return the action float (2,) for one unbatched observation (keys as in :class:`Observation`)."""


def unbatch(obs: Observation, slot: int = 0) -> dict[str, Any]:
    """The observation of one slot: each array loses its batch axis, ``task`` becomes a str."""
    return {key: value[slot] for key, value in obs.items()}


def run_agent(agent: Agent, env: VectorEnv, episodes: int) -> EvaluationResult:
    """Score ``agent`` over ``episodes`` episodes of a one-slot ``env`` (see :func:`evaluate_env`)."""
    if env.num_envs != 1:
        raise ConfigError(f"run_agent needs a one-slot env, got num_envs={env.num_envs}",
                          "Build it with make_env(task, num_envs=1), or use evaluate() for batches")

    def policy(obs: Observation) -> np.ndarray:
        if obs["episode_start"][0]:
            agent.reset()
        action = np.asarray(agent.act(unbatch(obs)), dtype=np.float32)
        if action.shape != (2,):
            raise MemstreamError(f"Agent.act must return a (2,) action, got shape {action.shape}",
                                 "Return one planar velocity (vx, vy)")
        return action[None]

    return evaluate_env(policy, env, episodes)
