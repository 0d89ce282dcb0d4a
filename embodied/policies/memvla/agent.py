"""The memory policy as a Habitat-style agent: ``reset()`` before each episode, ``act(obs)`` per step.

Habitat's ``Benchmark.local_evaluate`` (and :func:`memstream.embodied.envs.run_agent`) hand the agent one
unbatched observation at a time; :class:`MemoryAgent` adds the batch axis, starts a new episode in
the policy's bank on ``reset()`` and returns one action. Its memory is the policy's bank: one slot.

Example::

    agent = MemoryAgent(MemoryVLAPolicy.from_pretrained("runs/policy"))
    run_agent(agent, make_env("cue_choice"), episodes=20)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memstream.embodied.policies.memvla.modeling_memvla import MemoryVLAPolicy


class MemoryAgent:
    """Wraps a :class:`MemoryVLAPolicy` as an ``Agent`` (see the module docstring).

    Args:
        policy: a trained policy; it is put in evaluation mode.
    """

    def __init__(self, policy: MemoryVLAPolicy) -> None:
        self.policy = policy.eval()
        self._steps = 0

    def reset(self) -> None:
        self.policy.reset()
        self._steps = 0

    def act(self, observations: dict[str, Any]) -> np.ndarray:
        """One observation (image ``(H, W, 3)``, state ``(S,)``, task str) -> action ``(A,)``."""
        batch = {key: [value] if isinstance(value, str) else np.asarray(value)[None] for key, value in observations.items()}
        batch["episode_start"] = np.array([self._steps == 0])
        batch["frame_index"] = np.array([self._steps])
        self._steps += 1
        return self.policy.select_action(batch)[0].cpu().numpy()
