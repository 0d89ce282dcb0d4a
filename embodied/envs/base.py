"""The vectorised environment every task builds on: slots, episode bookkeeping, moves, rendering.

``B`` slots step together; all per-slot state is held in (B, ...) numpy arrays and every step is
vectorised. A slot whose episode ends (terminated or truncated) is **reset automatically within the
same step**: the observation returned by :meth:`VectorEnv.step` then already shows the new
episode's first frame, flagged by ``obs["episode_start"]``, while ``reward``, ``terminated``,
``truncated`` and ``info`` describe the step of the episode that ended (``info["episode_index"]``).

Episode ``i`` of an env is drawn from ``np.random.default_rng((seed, i))``; episode indices are
handed out in slot order at each reset, so the episodes depend on the seed and their index only.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from memstream.embodied.envs.arena import AGENT, AGENT_RADIUS, Layout, shrink, slide
from memstream.embodied.envs.config import EnvConfig
from memstream.embodied.envs.render import Canvas
from memstream.embodied.envs.types import EnvSpec, Observation, StepInfo
from memstream.streaming.errors import MemstreamError


class VectorEnv(abc.ABC):
    """``B`` parallel episodes of one task; subclasses define the task.

    Args:
        config: slots, seed and image size.
        layout: the arena.
        max_step: arena units moved by an action of norm 1.
        max_episode_steps: time limit in actions; the episode is truncated when it is reached.

    Attributes:
        position: float64 (B, 2), agent centres, arena units. frame_index, episode_index: int64 (B,).
        episode_start: bool (B,), the current observation is the first of its episode.
    """

    name: ClassVar[str] = ""
    instruction: ClassVar[str] = ""
    chance_success_rate: ClassVar[float] = 0.0
    state_dim: ClassVar[int] = 2
    hidden_dim: ClassVar[int] = 1

    def __init__(self, config: EnvConfig, layout: Layout, max_step: float, max_episode_steps: int) -> None:
        self.config = config
        self.num_envs = config.num_envs
        self.layout = layout
        self.max_step = float(max_step)
        self.max_episode_steps = int(max_episode_steps)
        self.canvas = Canvas(config.image_size, layout)
        self._free = shrink(layout.free_rects, AGENT_RADIUS)
        self._instructions = [self.instruction] * self.num_envs
        self._next_episode = 0
        self.position = np.zeros((self.num_envs, 2))
        self.frame_index = np.zeros(self.num_envs, dtype=np.int64)
        self.episode_index = np.full(self.num_envs, -1, dtype=np.int64)
        self.episode_start = np.zeros(self.num_envs, dtype=bool)

    @property
    def spec(self) -> EnvSpec:
        size = self.config.image_size
        return EnvSpec(task=self.name, instruction=self.instruction, num_envs=self.num_envs,
                       image_shape=(size, size, 3), state_dim=self.state_dim, action_dim=2,
                       max_step=self.max_step, max_episode_steps=self.max_episode_steps,
                       chance_success_rate=self.chance_success_rate, hidden_dim=self.hidden_dim)

    def reset(self, mask: Any = None) -> Observation:
        """Start new episodes in the slots where ``mask`` (bool (B,)) holds, in all slots if ``None``.

        Returns the observation of every slot; ``episode_start`` is True exactly in the reset slots,
        the other slots keep their episode and show their current frame again.
        """
        if mask is None:
            slots = np.arange(self.num_envs)
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != bool:
                raise MemstreamError(f"reset mask must be bool of shape ({self.num_envs},), got "
                                     f"{mask.dtype} {mask.shape}", "Pass one bool per slot, or None for all")
            slots = np.flatnonzero(mask)
        self.episode_start[:] = False
        self._start_episodes(slots)
        return self.observe()

    def step(self, actions: Any) -> tuple[Observation, np.ndarray, np.ndarray, np.ndarray, StepInfo]:
        """Apply one action per slot; auto-reset the slots whose episode ended (see the module doc).

        Args:
            actions: float (B, 2) planar velocities; each component is clipped to [-1, 1], then the
                vector is scaled to norm <= 1 and the agent moves ``max_step * action`` arena units,
                sliding along walls. Anything ``np.asarray`` accepts (a CPU torch tensor too).

        Returns:
            (observation, reward float32 (B,) = 1 on success else 0, terminated bool (B,),
            truncated bool (B,), info).
        """
        if self.episode_index[0] < 0:
            raise MemstreamError("step() called before reset()", "Call env.reset() first")
        velocity = self._check_actions(actions)
        self.position = slide(self.position, velocity * self.max_step, self._free)
        self.frame_index += 1
        success, failure = self._advance()
        terminated = success | failure
        truncated = ~terminated & (self.frame_index >= self.max_episode_steps)
        done = terminated | truncated
        info = StepInfo(success=success, failure=failure, episode_index=self.episode_index.copy(),
                        episode_length=np.where(done, self.frame_index, 0))
        self.episode_start[:] = False
        self._start_episodes(np.flatnonzero(done))
        return self.observe(), success.astype(np.float32), terminated, truncated, info

    def observe(self) -> Observation:
        """Render the current observation of every slot (no state change)."""
        images = self.canvas.blank(self.num_envs)
        self._paint(images)
        self.canvas.discs(images, self.position, AGENT_RADIUS, AGENT)
        state = np.concatenate([self.position, self._state_extras()], axis=1).astype(np.float32)
        return {"observation.image": images, "observation.state": state, "task": list(self._instructions),
                "episode_start": self.episode_start.copy(), "frame_index": self.frame_index.copy(),
                "episode_index": self.episode_index.copy()}

    def _check_actions(self, actions: Any) -> np.ndarray:
        try:
            array = np.asarray(actions, dtype=np.float64)
        except (TypeError, ValueError, RuntimeError) as error:  # RuntimeError: a torch tensor needing grad
            raise MemstreamError(f"actions must be numbers, got {type(actions).__name__} ({error})",
                                 f"Pass a float array of shape ({self.num_envs}, 2); detach torch tensors "
                                 "and move them to the CPU") from error
        if array.shape != (self.num_envs, 2):
            raise MemstreamError(f"actions must have shape ({self.num_envs}, 2) (slots, planar velocity), "
                                 f"got {array.shape}", "Return one (vx, vy) pair per slot")
        if not np.isfinite(array).all():
            raise MemstreamError("actions contain NaN or infinity", "Check the policy's output")
        array = np.clip(array, -1.0, 1.0)
        return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1.0)

    def _start_episodes(self, slots: np.ndarray) -> None:
        if slots.size == 0:
            return
        ids = self._next_episode + np.arange(slots.size, dtype=np.int64)
        self._next_episode += slots.size
        rngs = [np.random.default_rng((self.config.seed, int(i))) for i in ids]
        self.position[slots] = self._begin(slots, rngs)
        self.episode_index[slots] = ids
        self.frame_index[slots] = 0
        self.episode_start[slots] = True

    @abc.abstractmethod
    def expert_actions(self) -> np.ndarray:
        """float32 (B, 2): the scripted expert's actions for the current state (uses hidden info)."""

    @property
    @abc.abstractmethod
    def hidden_info(self) -> np.ndarray:
        """int64 (B, hidden_dim): the information the agent must remember (privileged)."""

    @property
    @abc.abstractmethod
    def reveal_frames(self) -> np.ndarray:
        """int64 (B,): the hidden information is visible in frames ``0 .. reveal_frames - 1``."""

    @abc.abstractmethod
    def _begin(self, slots: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
        """Draw the new episodes of ``slots`` (one generator each); return start positions float (n, 2)."""

    @abc.abstractmethod
    def _advance(self) -> tuple[np.ndarray, np.ndarray]:
        """Update the task after the move; return (success, failure) bool (B,)."""

    @abc.abstractmethod
    def _paint(self, images: np.ndarray) -> None:
        """Draw the task's dynamic elements (lamp, pads) on the background copies, in place."""

    def _state_extras(self) -> np.ndarray:
        """float (B, state_dim - 2): task columns of ``observation.state`` after x, y."""
        return np.zeros((self.num_envs, 0))
