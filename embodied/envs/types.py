"""What the embodied tasks produce: batched observations, step info, specs, demonstrations, scores.

Observations use LeRobot's keys (``observation.image``, ``observation.state``, ``task``) plus the
bookkeeping a memory policy needs to reset per slot (``episode_start``, ``frame_index``,
``episode_index``). Arena units: the arena is the unit square, x right, y up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from memstream.streaming.errors import MemstreamError

Observation = TypedDict(
    "Observation",
    {
        "observation.image": np.ndarray,  # uint8 (B, H, W, 3), top-down RGB, row 0 = top of the arena
        "observation.state": np.ndarray,  # float32 (B, S): agent x, y (arena units), then task extras
        "task": list,  # B instruction strings
        "episode_start": np.ndarray,  # bool (B,): this observation is the first of a new episode
        "frame_index": np.ndarray,  # int64 (B,): index of this observation in its episode (0 = first)
        "episode_index": np.ndarray,  # int64 (B,): unique index of the slot's episode in this env
    },
)
Observation.__doc__ = """One batched observation; see the key comments in ``embodied/envs/types.py``."""


class StepInfo(TypedDict):
    """Per-slot facts about the step just taken (all (B,) arrays, about the episode that stepped).

    success: bool, the episode was won by this step. failure: bool, lost by this step (wrong goal or
    pad). episode_index: int64, the episode that took the step (the returned observation may already
    show the next one). episode_length: int64, number of actions of the episode that ended here, 0
    where none ended.
    """

    success: np.ndarray
    failure: np.ndarray
    episode_index: np.ndarray
    episode_length: np.ndarray


class EvaluationResult(TypedDict):
    """Scores of a policy over the episodes ``first .. first + episodes - 1`` of an env.

    success_rate / failure_rate / truncation_rate: fractions of the episodes that were won, lost
    (wrong goal or pad) or cut by the time limit; they sum to 1. mean_length, min_length, max_length:
    actions per episode. success: bool (episodes,) per episode, in episode-index order.
    chance_success_rate: what a policy without memory (but otherwise perfect) achieves; None where unknown.
    """

    task: str
    episodes: int
    success_rate: float
    failure_rate: float
    truncation_rate: float
    mean_length: float
    min_length: int
    max_length: int
    chance_success_rate: float | None
    success: np.ndarray


@dataclass(frozen=True)
class EnvSpec:
    """Static description of a vector env.

    Attributes:
        task: registered task name. instruction: the ``task`` string of every observation.
        num_envs: slots ``B``. image_shape: (H, W, 3) pixels. state_dim: ``S``. action_dim: 2.
        max_step: arena units moved by an action of norm 1 (actions are clipped to [-1, 1] per
            component, then scaled to norm <= 1). max_episode_steps: time limit, actions.
        chance_success_rate: success rate of a memoryless but otherwise perfect policy; None where unknown.
        hidden_dim: columns of ``hidden_info`` (the cue, or the order of the pads).
    """

    task: str
    instruction: str
    num_envs: int
    image_shape: tuple[int, int, int]
    state_dim: int
    action_dim: int
    max_step: float
    max_episode_steps: int
    chance_success_rate: float | None
    hidden_dim: int


@dataclass(frozen=True)
class EpisodeDataset:
    """Expert demonstrations, episode-contiguous (sorted by episode, then frame).

    Frame ``t`` holds the observation and the action taken in it. Episode ``i`` spans rows
    ``episode_bounds[i]:episode_bounds[i + 1]``; its last row is the last action before the episode
    ended (the terminal observation is not stored, as in LeRobot datasets).

    Attributes:
        images: uint8 (T, H, W, 3). states: float32 (T, S). actions: float32 (T, 2), in [-1, 1].
        episode_index: int64 (T,), 0 .. N-1. frame_index: int64 (T,), 0 .. length-1 per episode.
        task_index: int64 (T,), index into ``tasks`` (instruction strings).
        episode_bounds: int64 (N + 1,), row offsets. success: bool (N,), expert won the episode.
        hidden_info: int64 (N, K), the hidden information (cue: K=1, 0 red/left, 1 blue/right;
            order: K=3, pad ids in the order shown). reveal_frames: int64 (N,), number of first
            frames in which it is visible. task_name, seed: what generated the data.
    """

    images: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    episode_index: np.ndarray
    frame_index: np.ndarray
    task_index: np.ndarray
    tasks: tuple[str, ...]
    episode_bounds: np.ndarray
    success: np.ndarray
    hidden_info: np.ndarray
    reveal_frames: np.ndarray
    task_name: str
    seed: int

    def __post_init__(self) -> None:
        frames, episodes = len(self.images), len(self.success)
        per_frame = ("states", "actions", "episode_index", "frame_index", "task_index")
        bad = [name for name in per_frame if len(getattr(self, name)) != frames]
        bad += [name for name in ("hidden_info", "reveal_frames") if len(getattr(self, name)) != episodes]
        if len(self.episode_bounds) != episodes + 1 or (episodes and self.episode_bounds[-1] != frames):
            bad.append("episode_bounds")
        if bad:
            raise MemstreamError(f"inconsistent EpisodeDataset fields: {', '.join(bad)}",
                                 "Build it with collect_demonstrations or load it from a saved file")

    @property
    def num_episodes(self) -> int:
        return len(self.success)

    @property
    def num_frames(self) -> int:
        return len(self.images)

    @property
    def lengths(self) -> np.ndarray:
        """int64 (N,): frames (= actions) per episode."""
        return np.diff(self.episode_bounds)

    def episode(self, i: int) -> slice:
        """Rows of episode ``i``."""
        return slice(int(self.episode_bounds[i]), int(self.episode_bounds[i + 1]))

    def save(self, path: str | Path) -> None:
        """Write an uncompressed ``.npz`` (``np.load``-able; strings stored as unicode arrays)."""
        arrays = {name: getattr(self, name) for name in _ARRAY_FIELDS}
        np.savez(path, tasks=np.array(self.tasks), task_name=np.array(self.task_name),
                 seed=np.array(self.seed), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> EpisodeDataset:
        """Read a file written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in _ARRAY_FIELDS}
                return cls(tasks=tuple(str(t) for t in data["tasks"]), task_name=str(data["task_name"]),
                           seed=int(data["seed"]), **arrays)
        except (OSError, KeyError, ValueError) as error:
            raise MemstreamError(f"cannot read demonstrations from {str(path)!r}: {error}",
                                 "Pass a file written by EpisodeDataset.save") from error


_ARRAY_FIELDS = ("images", "states", "actions", "episode_index", "frame_index", "task_index",
                 "episode_bounds", "success", "hidden_info", "reveal_frames")
