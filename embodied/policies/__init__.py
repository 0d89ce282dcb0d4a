"""Robot policies built on the memories, with LeRobot's conventions (one folder per policy).

``memvla/`` is a MemoryVLA-style policy: perceptual and cognitive tokens of each frame go through
the perceptual-cognitive bank (:mod:`memstream.embodied.bank`) and a flow-matching head predicts
action chunks. ``configuration_memvla.py`` / ``modeling_memvla.py`` follow LeRobot's naming, so its
factory finds :class:`MemoryVLAConfig` and :class:`MemoryVLAPolicy`; :class:`MemoryAgent` wraps a
policy in Habitat's ``reset()`` / ``act(observations)`` contract; :func:`train` is imitation
learning on episode-contiguous demonstrations. Names are loaded on first use (torch).

Example:
    >>> import torch
    >>> from memstream.embodied.bank import MemoryBankConfig
    >>> from memstream.embodied.envs import collect_demonstrations, make_env
    >>> from memstream.embodied.policies import MemoryVLAPolicy, config_for, dataset_stats
    >>> data = collect_demonstrations("cue_choice", num_episodes=4, seed=0, image_size=32)
    >>> config = config_for(data, perceptual_dim=16, perceptual_grid=2, cognitive_dim=16, hidden_dim=32,
    ...                     head_layers=1, head_heads=2, num_inference_steps=2, vocab_buckets=64,
    ...                     chunk_size=4, n_action_steps=2, bank=MemoryBankConfig(capacity=4))
    >>> _ = torch.manual_seed(0)
    >>> policy = MemoryVLAPolicy(config, dataset_stats(data))  # untrained: random weights
    >>> env = make_env("cue_choice", num_envs=3, seed=5, image_size=32)
    >>> policy.reset()
    >>> policy.select_action(env.reset()).shape  # (envs, action dims)
    torch.Size([3, 2])
"""

from __future__ import annotations

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it, imported on first use (torch)
    "MemoryAgent": "memstream.embodied.policies.memvla",
    "MemoryVLAConfig": "memstream.embodied.policies.memvla",
    "MemoryVLAPolicy": "memstream.embodied.policies.memvla",
    "PolicyInputError": "memstream.embodied.policies.memvla",
    "as_policy_fn": "memstream.embodied.policies.memvla",
    "config_for": "memstream.embodied.policies.memvla",
    "dataset_stats": "memstream.embodied.policies.memvla",
    "train": "memstream.embodied.policies.memvla",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)
