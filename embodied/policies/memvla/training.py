"""Imitation learning of the memory policy from episode-contiguous demonstrations.

The bank only helps if training shows it history, so batches are whole episodes (MemoryVLA's
``stream`` loader; ``config.group_size`` cuts them into groups as its ``group`` loader does),
padded to the longest one with a ``valid`` mask. Each step's target is the chunk of the next
``chunk_size`` expert actions, padded past the episode's end (``action_is_pad``).

Example::

    data = collect_demonstrations("cue_choice", 400, seed=0)
    policy = MemoryVLAPolicy(config_for(data), dataset_stats=dataset_stats(data))
    losses = train(policy, data, steps=600)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch

from memstream.embodied.envs.types import EpisodeDataset
from memstream.embodied.policies.memvla.configuration_memvla import ONSET_FRAMES, MemoryVLAConfig
from memstream.embodied.policies.memvla.modeling_memvla import MemoryVLAPolicy
from memstream.streaming.progress import progress as progress_bar


def dataset_stats(data: EpisodeDataset) -> dict:
    """Mean and std of actions and states (LeRobot's ``dataset_stats`` layout)."""
    return {"action": {"mean": data.actions.mean(0), "std": data.actions.std(0)},
            "observation.state": {"mean": data.states.mean(0), "std": data.states.std(0)}}


def config_for(data: EpisodeDataset, **overrides) -> MemoryVLAConfig:
    """A config whose features match the demonstrations' image, state and action shapes."""
    height, width, _ = data.images.shape[1:]
    features = {"observation.image": (3, height, width), "observation.state": (data.states.shape[1],)}
    return dataclasses.replace(MemoryVLAConfig(), input_features=features,
                               output_features={"action": (data.actions.shape[1],)}, **overrides)


def episode_batch(data: EpisodeDataset, episodes: np.ndarray, chunk_size: int) -> dict:
    """Episodes padded to a common length T, with per-step action chunks.

    Returns:
        ``observation.image`` uint8 ``(B, T, H, W, 3)``, ``observation.state`` ``(B, T, S)``,
        ``action`` ``(B, T, K, A)``, ``action_is_pad`` ``(B, T, K)``, ``valid`` ``(B, T)``,
        ``frame_index`` ``(B, T)``, ``task`` (B strings), ``goal_state`` ``(B, S)`` (each episode's
        last state: the target of the policy's optional goal loss), ``action_onset`` bool ``(B, T)``
        (the first ``ONSET_FRAMES`` frames from the episode's first non-zero action).
    """
    lengths = data.lengths[episodes]
    steps = int(lengths.max())
    starts = data.episode_bounds[episodes]
    t = np.arange(steps)
    valid = t[None] < lengths[:, None]
    rows = starts[:, None] + np.minimum(t[None], lengths[:, None] - 1)  # padded steps repeat the last frame
    ahead = t[None, :, None] + np.arange(chunk_size)[None, None]  # (B, T, K) step of each chunk entry
    pad = ahead >= lengths[:, None, None]
    action_rows = starts[:, None, None] + np.minimum(ahead, lengths[:, None, None] - 1)
    acting = (np.abs(data.actions[rows]).sum(-1) > 0) & valid  # (B, T)
    first = np.where(acting.any(1), acting.argmax(1), steps)  # no action at all: no onset
    onset = (t[None] >= first[:, None]) & (t[None] < first[:, None] + ONSET_FRAMES) & valid
    return {
        "observation.image": torch.from_numpy(data.images[rows]),
        "observation.state": torch.from_numpy(data.states[rows]),
        "action": torch.from_numpy(data.actions[action_rows]),
        "action_is_pad": torch.from_numpy(pad),
        "valid": torch.from_numpy(valid),
        "frame_index": torch.from_numpy(np.where(valid, t[None], 0)),
        "task": [data.tasks[data.task_index[s]] for s in starts],
        "goal_state": torch.from_numpy(data.states[starts + lengths - 1]),
        "action_onset": torch.from_numpy(onset),
    }


def optimizer_step(policy: MemoryVLAPolicy, batch: dict | list[dict], optimizer: torch.optim.Optimizer,
                   schedule: torch.optim.lr_scheduler.LRScheduler) -> float:
    """One step on ``batch`` (loss, backward, clip at the config's norm, AdamW, schedule); the loss.
    A list of batches (sequences of different lengths) is one step on the sum of their losses."""
    loss = sum(policy(part)[0] for part in (batch if isinstance(batch, list) else [batch]))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.get_optim_params(), policy.config.optimizer_grad_clip_norm)
    optimizer.step()
    schedule.step()
    return float(loss.detach())


def train(policy: MemoryVLAPolicy, data: EpisodeDataset, steps: int, batch_episodes: int = 16, seed: int = 0,
          log: Callable[[int, float, float], None] | None = None, log_every: int = 50,
          progress: bool | None = None) -> list[float]:
    """AdamW with the config's learning rate, weight decay and gradient clipping (cosine decay).

    Args:
        log: called as ``log(step, mean loss of the last log_every steps, seconds since the start)``
            every ``log_every`` steps and on the last one.
        progress: a bar on stderr with the steps, their rate, the time left and the recent loss:
            None shows it when stderr is a terminal (see :mod:`memstream.streaming.progress`).

    Returns:
        The loss of every step.
    """
    config = policy.config
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=config.optimizer_lr, weight_decay=config.optimizer_weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    policy.train()
    losses = []
    started = time.perf_counter()
    with progress_bar("train MemoryVLA", steps, unit="steps", show=progress) as bar:
        for step in range(steps):
            episodes = rng.choice(data.num_episodes, size=min(batch_episodes, data.num_episodes), replace=False)
            losses.append(optimizer_step(policy, episode_batch(data, episodes, config.chunk_size), optimizer, schedule))
            bar.advance()
            if step % 10 == 0 or step == steps - 1:
                bar.status(f"loss {np.mean(losses[-10:]):.4f}")
            if log is not None and (step % log_every == 0 or step == steps - 1):
                log(step, float(np.mean(losses[-log_every:])), time.perf_counter() - started)
    policy.eval()
    policy.reset()
    return losses


def as_policy_fn(policy: MemoryVLAPolicy) -> Callable[[dict], np.ndarray]:
    """The policy as ``memstream.embodied.envs.evaluate``'s ``policy_fn`` (batched obs -> numpy actions)."""
    policy.eval()
    policy.reset()

    def act(obs: dict) -> np.ndarray:
        return policy.select_action(obs).cpu().numpy()

    return act
