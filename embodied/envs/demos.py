"""Expert demonstrations for imitation: run the scripted expert in a vector env, keep every frame.

The dataset holds episodes ``0 .. num_episodes - 1`` of ``make_env(task, seed=seed)``; episode
content depends only on the seed and the episode index and the experts are deterministic, so the
dataset is identical for any ``num_envs`` (a test checks it).

Example:
    >>> data = collect_demonstrations("cue_choice", num_episodes=4, seed=0)
    >>> data.images.shape[1:], data.num_episodes, bool(data.success.all())
    ((64, 64, 3), 4, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memstream.embodied.envs.config import check_int
from memstream.embodied.envs.registry import make_env
from memstream.embodied.envs.types import EpisodeDataset


def collect_demonstrations(task: str, num_episodes: int, seed: int = 0, image_size: int = 64,
                           num_envs: int = 64, task_config: Any = None) -> EpisodeDataset:
    """Roll out the expert of ``task`` for ``num_episodes`` episodes.

    Args:
        task, seed, image_size, task_config: as for :func:`make_env`.
        num_episodes: episodes to record, >= 1.
        num_envs: parallel slots used to collect (speed only; the result does not depend on it).

    Returns:
        An :class:`EpisodeDataset`, episode-contiguous; frame ``t`` pairs an observation with the
        expert action taken in it.
    """
    check_int("collect_demonstrations", "num_episodes", num_episodes, 1)
    check_int("collect_demonstrations", "num_envs", num_envs, 1)
    env = make_env(task, num_envs=min(num_envs, num_episodes), seed=seed, image_size=image_size,
                   task_config=task_config)
    hidden = np.zeros((num_episodes, env.hidden_dim), dtype=np.int64)
    reveal = np.zeros(num_episodes, dtype=np.int64)
    lengths = np.zeros(num_episodes, dtype=np.int64)
    success = np.zeros(num_episodes, dtype=bool)
    steps: list[tuple[np.ndarray, ...]] = []  # per env step: (episode, frame, image, state, action) rows kept
    obs = env.reset()
    while not lengths.all():
        keep = obs["episode_index"] < num_episodes
        starts = keep & obs["episode_start"]
        hidden[obs["episode_index"][starts]] = env.hidden_info[starts]
        reveal[obs["episode_index"][starts]] = env.reveal_frames[starts]
        actions = env.expert_actions()
        steps.append((obs["episode_index"][keep], obs["frame_index"][keep], obs["observation.image"][keep],
                      obs["observation.state"][keep], actions[keep]))
        obs, _, terminated, truncated, info = env.step(actions)
        ended = (terminated | truncated) & (info["episode_index"] < num_episodes)
        lengths[info["episode_index"][ended]] = info["episode_length"][ended]
        success[info["episode_index"][ended]] = info["success"][ended]
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return EpisodeDataset(**_scatter(steps, bounds, env.spec.image_shape, env.state_dim),
                          task_index=np.zeros(int(bounds[-1]), dtype=np.int64), tasks=(env.instruction,),
                          episode_bounds=bounds, success=success, hidden_info=hidden, reveal_frames=reveal,
                          task_name=env.name, seed=seed)


def _scatter(steps: list[tuple[np.ndarray, ...]], bounds: np.ndarray, image_shape: tuple[int, int, int],
             state_dim: int) -> dict[str, np.ndarray]:
    """Write the per-step rows to their episode-contiguous places, freeing each step as it goes."""
    total = int(bounds[-1])
    out = {"images": np.empty((total, *image_shape), dtype=np.uint8),
           "states": np.empty((total, state_dim), dtype=np.float32),
           "actions": np.empty((total, 2), dtype=np.float32),
           "episode_index": np.empty(total, dtype=np.int64), "frame_index": np.empty(total, dtype=np.int64)}
    steps.reverse()
    while steps:
        episode, frame, image, state, action = steps.pop()
        rows = bounds[episode] + frame
        out["images"][rows], out["states"][rows], out["actions"][rows] = image, state, action
        out["episode_index"][rows], out["frame_index"][rows] = episode, frame
    return out
