"""The memory policy as a habitat navigation agent, and its imitation of a scripted expert.

:class:`NavPolicyAgent` wraps a :class:`MemoryVLAPolicy` with the discrete action head as habitat's
``Agent``: ``reset()`` clears its bank, ``act(observations)`` reads ``rgb``, ``gps`` and ``compass``
(nothing privileged) and returns one of habitat's action names. :data:`NAV_VARIANTS` are the
memory ablations trained and compared on the MiniWorld cue T-maze (``benchmarks/bench_nav_cue.py``,
``memstream nav-train``).

Example (needs ``miniworld`` and EGL)::

    data = collect_cue_demonstrations(300, seed=0)
    policy = nav_policy(data, "bank", seed=0)
    train(policy, data, steps=300)
    result = evaluate_nav("miniworld", "cue", ["bank"], 200, seed=1000,
                          agent_factory=lambda name, env, seed: NavPolicyAgent(policy))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from memstream.embodied.bank import MemoryBankConfig
from memstream.embodied.envs.cue_maze import CueMazeEnv, collect_cue_demonstrations, habitat_state
from memstream.embodied.envs.miniworld_env import ACTIONS
from memstream.embodied.envs.nav import make_nav_env
from memstream.embodied.envs.types import EpisodeDataset
from memstream.embodied.policies.memvla.modeling_memvla import MemoryVLAPolicy, PolicyInputError
from memstream.embodied.policies.memvla.training import config_for, dataset_stats
from memstream.streaming.errors import ConfigError

#: name -> MemoryVLAConfig overrides (``bank`` holds MemoryBankConfig overrides)
NAV_VARIANTS: dict[str, dict[str, Any]] = {
    "no_memory": {"memory": "none"},
    "bank": {},  # MemoryVLA's: token-merge consolidation + gate fusion, both streams
    "fifo": {"bank": {"consolidation": "fifo"}},
}
#: the navigation defaults: closed-loop control (one action per prediction) on short chunks
NAV_POLICY_DEFAULTS: dict[str, Any] = {"action_head": "discrete", "num_discrete_actions": len(ACTIONS),
                                       "chunk_size": 4, "n_action_steps": 1, "hidden_dim": 64, "head_layers": 2}


def collect_nav_demonstrations(env: str, task: str, num_episodes: int, seed: int = 0,
                               options: dict[str, Any] | None = None) -> EpisodeDataset:
    """The scripted expert's demonstrations in a navigation task that has one (``miniworld`` / ``cue``)."""
    nav_env = make_nav_env(env, task, options)
    if not isinstance(nav_env, CueMazeEnv):
        raise ConfigError(f"{env}/{task} has no scripted expert to imitate", "Use --env miniworld --task cue")
    return collect_cue_demonstrations(num_episodes, seed, env=nav_env)


def nav_policy(data: EpisodeDataset, variant: str, seed: int = 0, **overrides: Any) -> MemoryVLAPolicy:
    """A fresh policy for ``data`` (images, habitat state, action ids) with ``variant``'s memory.

    Every variant starts from the same initial weights: the ``bank`` variant is built under
    ``torch.manual_seed(seed)`` and each parameter the variant shares with it (encoders, head, and
    for FIFO the whole bank) is copied from it, so only the memory differs.
    """
    if variant not in NAV_VARIANTS:
        raise ConfigError(f"unknown policy variant {variant!r}", f"Choose among {', '.join(NAV_VARIANTS)}")

    def build(name: str) -> MemoryVLAPolicy:
        settings = {**NAV_POLICY_DEFAULTS, **{k: v for k, v in NAV_VARIANTS[name].items() if k != "bank"}, **overrides}
        bank = dataclasses.replace(MemoryBankConfig(), **NAV_VARIANTS[name].get("bank", {}))
        torch.manual_seed(seed)
        return MemoryVLAPolicy(config_for(data, bank=bank, **settings), dataset_stats(data))

    policy, reference = build(variant), build("bank").state_dict()
    shared = {k: v for k, v in reference.items() if k in policy.state_dict() and policy.state_dict()[k].shape == v.shape}
    policy.load_state_dict(shared, strict=False)
    return policy


class NavPolicyAgent:
    """A trained discrete-action :class:`MemoryVLAPolicy` as habitat's ``Agent`` (see the module doc).

    Raises (from ``act``):
        PolicyInputError: no ``rgb``, or an image of another size than the policy was trained on.
        MemstreamError: no ``gps`` / ``compass``.
    """

    def __init__(self, policy: MemoryVLAPolicy) -> None:
        if policy.config.action_head != "discrete":
            raise ConfigError("NavPolicyAgent needs a policy with action_head='discrete'",
                              "Train one with memstream nav-train or nav_policy()")
        self.policy = policy.eval()
        self._size = policy.config.input_features[policy.config.image_key][-2:]
        self._steps = 0

    def reset(self) -> None:
        self.policy.reset()
        self._steps = 0

    def act(self, observations: dict[str, Any]) -> str:
        """One observation -> one of :data:`ACTIONS`."""
        rgb = observations.get("rgb")
        if rgb is None or np.asarray(rgb).shape[:2] != tuple(self._size):
            got = None if rgb is None else np.asarray(rgb).shape
            raise PolicyInputError(f"the policy needs rgb images of {tuple(self._size)} pixels, got {got}",
                                   f"Run the env with image_size={self._size[0]}")
        batch = {"observation.image": np.asarray(rgb)[None], "observation.state": habitat_state(observations)[None],
                 "task": [str(observations.get("instruction", ""))], "episode_start": np.array([self._steps == 0]),
                 "frame_index": np.array([self._steps])}
        self._steps += 1
        action = int(self.policy.select_action(batch)[0, 0])
        return ACTIONS[action]
