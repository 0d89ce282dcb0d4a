"""Demonstrations (determinism, layout, replay, save/load), evaluation, and the Habitat-style agent loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memstream.embodied.envs import (
    EpisodeDataset,
    collect_demonstrations,
    cue_choice_expert,
    evaluate,
    evaluate_env,
    make_env,
    run_agent,
)
from memstream.embodied.envs.arena import BLUE, RED
from memstream.embodied.envs.cue_choice import LAMP
from memstream.streaming.errors import MemstreamError


def same(a: EpisodeDataset, b: EpisodeDataset) -> bool:
    names = ("images", "states", "actions", "episode_index", "frame_index", "task_index", "episode_bounds",
             "success", "hidden_info", "reveal_frames")
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in names) and a.tasks == b.tasks


@pytest.mark.parametrize("task", ["cue_choice", "order"])
def test_demonstrations_are_fixed_by_the_seed_and_episode_contiguous(task: str) -> None:
    data = collect_demonstrations(task, num_episodes=40, seed=11, image_size=32, num_envs=16)
    assert same(data, collect_demonstrations(task, num_episodes=40, seed=11, image_size=32, num_envs=16))
    assert same(data, collect_demonstrations(task, num_episodes=40, seed=11, image_size=32, num_envs=3))
    assert not same(data, collect_demonstrations(task, num_episodes=40, seed=12, image_size=32, num_envs=16))
    assert data.images.shape == (data.num_frames, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.actions.dtype == np.float32 and np.abs(data.actions).max() <= 1.0
    assert data.episode_bounds[0] == 0 and data.episode_bounds[-1] == data.num_frames
    for i in range(data.num_episodes):
        rows = data.episode(i)
        assert (data.episode_index[rows] == i).all()
        assert np.array_equal(data.frame_index[rows], np.arange(data.lengths[i]))
    assert data.tasks == (make_env(task).instruction,) and (data.task_index == 0).all()
    env = make_env(task, num_envs=5, seed=11)
    env.reset()
    assert np.array_equal(data.hidden_info[:5], env.hidden_info)
    assert np.array_equal(data.reveal_frames[:5], env.reveal_frames)


def test_replaying_the_recorded_actions_reproduces_the_recorded_frames() -> None:
    data = collect_demonstrations("order", num_episodes=3, seed=2, image_size=32)
    env = make_env("order", num_envs=1, seed=2, image_size=32)
    obs = env.reset()
    for t in range(data.num_frames):
        assert obs["episode_index"][0] == data.episode_index[t]
        assert obs["frame_index"][0] == data.frame_index[t]
        assert np.array_equal(obs["observation.image"][0], data.images[t])
        assert np.array_equal(obs["observation.state"][0], data.states[t])
        obs, _, terminated, _, info = env.step(data.actions[t : t + 1])
        assert terminated[0] == (t + 1 in data.episode_bounds) and info["success"][0] == terminated[0]


def test_a_saved_dataset_loads_back_identical(tmp_path: Path) -> None:
    data = collect_demonstrations("cue_choice", num_episodes=5, seed=0, image_size=32)
    data.save(tmp_path / "demos.npz")
    loaded = EpisodeDataset.load(tmp_path / "demos.npz")
    assert same(data, loaded) and (loaded.task_name, loaded.seed) == ("cue_choice", 0)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(MemstreamError, match="cannot read demonstrations"):
        EpisodeDataset.load(tmp_path / "bad.npz")


class LampMemory:
    """Batched memory policy: reads the lamp while lit, remembers it per slot, forgets at episode starts."""

    def __init__(self, num_envs: int, image_size: int) -> None:
        self.cue = np.zeros(num_envs, dtype=np.int64)
        self.starts = 0
        rows, cols = make_env("cue_choice", image_size=image_size).canvas.slices(LAMP)
        self.pixel = ((rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2)

    def __call__(self, obs) -> np.ndarray:
        self.cue[obs["episode_start"]] = -1  # reset the memory of the slots that started an episode
        self.starts += int(obs["episode_start"].sum())
        lamp = obs["observation.image"][:, self.pixel[0], self.pixel[1]]
        self.cue[(lamp == RED).all(axis=1)] = 0
        self.cue[(lamp == BLUE).all(axis=1)] = 1
        assert (self.cue >= 0).all()  # every episode shows its cue in its first frame
        state = obs["observation.state"][:, :2].astype(np.float64)
        return cue_choice_expert(state, self.cue, 0.03)


def test_a_policy_with_memory_solves_cue_choice_through_evaluate() -> None:
    policy = LampMemory(num_envs=7, image_size=32)
    result = evaluate(policy, "cue_choice", num_episodes=50, seed=9, num_envs=7, image_size=32)
    assert result["success_rate"] == 1.0 and result["episodes"] == 50 and policy.starts >= 50
    assert 20 <= result["min_length"] < result["max_length"] <= 35


def test_evaluation_scores_the_same_episodes_for_any_number_of_slots() -> None:
    def forward_then_left(obs):
        state = obs["observation.state"][:, :2].astype(np.float64)
        return cue_choice_expert(state, np.zeros(len(state), dtype=np.int64), 0.03)

    few = evaluate(forward_then_left, "cue_choice", num_episodes=60, seed=1, num_envs=3, image_size=32)
    many = evaluate(forward_then_left, "cue_choice", num_episodes=60, seed=1, num_envs=64, image_size=32)
    assert np.array_equal(few["success"], many["success"]) and few["success_rate"] == many["success_rate"]
    demos = collect_demonstrations("cue_choice", num_episodes=60, seed=1, image_size=32)
    assert np.array_equal(few["success"], demos.hidden_info[:, 0] == 0)  # wins exactly the red-cue episodes
    with pytest.raises(MemstreamError, match="num_episodes must be an int >= 1"):
        evaluate_env(forward_then_left, make_env("cue_choice"), 0)


class OneSlotLampAgent:
    """The same memory as ``LampMemory`` behind Habitat's Agent protocol (unbatched observations)."""

    def __init__(self) -> None:
        self.inner, self.resets = LampMemory(num_envs=1, image_size=64), 0

    def reset(self) -> None:
        self.resets += 1
        self.inner.cue[:] = -1

    def act(self, observations) -> np.ndarray:
        assert observations["observation.image"].shape == (64, 64, 3)
        assert isinstance(observations["task"], str)
        batch = {key: np.asarray(value)[None] for key, value in observations.items()}
        batch["episode_start"] = np.zeros(1, dtype=bool)  # the agent's own reset() already cleared it
        return self.inner(batch)[0]


def test_run_agent_calls_reset_once_per_episode() -> None:
    agent = OneSlotLampAgent()
    result = run_agent(agent, make_env("cue_choice", num_envs=1, seed=4), episodes=6)
    assert result["success_rate"] == 1.0 and agent.resets == 6
    with pytest.raises(MemstreamError, match="one-slot env"):
        run_agent(agent, make_env("cue_choice", num_envs=2), episodes=1)
