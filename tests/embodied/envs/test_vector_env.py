"""The vector env contract: observation layout, resets, auto-reset bookkeeping, actions, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.embodied.envs import TASKS, CueChoiceConfig, OrderConfig, make_env
from memstream.embodied.envs.arena import AGENT, AGENT_RADIUS
from memstream.streaming.errors import MemstreamError

TASK_NAMES = ["cue_choice", "order"]


@pytest.mark.parametrize("task", TASK_NAMES)
def test_observations_follow_the_lerobot_layout(task: str) -> None:
    env = make_env(task, num_envs=5, seed=0, image_size=48)
    obs = env.reset()
    spec = env.spec
    assert obs["observation.image"].dtype == np.uint8 and obs["observation.image"].shape == (5, 48, 48, 3)
    assert obs["observation.state"].dtype == np.float32
    assert obs["observation.state"].shape == (5, spec.state_dim)
    assert obs["task"] == [spec.instruction] * 5 and spec.image_shape == (48, 48, 3) and spec.action_dim == 2
    assert obs["episode_start"].all() and (obs["frame_index"] == 0).all()
    assert obs["episode_index"].tolist() == [0, 1, 2, 3, 4] and obs["episode_index"].dtype == np.int64
    assert np.array_equal(obs["observation.state"][:, :2], env.position.astype(np.float32))
    for b in range(5):  # the agent disc is drawn where the state says
        x, y = env.position[b]
        assert tuple(obs["observation.image"][b, int((1 - y) * 48), int(x * 48)]) == AGENT
    assert sorted(TASKS) == TASK_NAMES


@pytest.mark.parametrize("task", TASK_NAMES)
def test_reset_with_a_mask_resets_only_those_slots(task: str) -> None:
    env = make_env(task, num_envs=4, seed=0)
    env.reset()
    for _ in range(5):
        before, _, _, _, _ = env.step(np.tile([0.0, 1.0], (4, 1)))
    mask = np.array([True, False, True, False])
    obs = env.reset(mask)
    assert obs["episode_start"].tolist() == mask.tolist()
    assert obs["frame_index"].tolist() == [0, 5, 0, 5]
    assert obs["episode_index"].tolist() == [4, 1, 5, 3]
    kept = ~mask
    assert np.array_equal(obs["observation.image"][kept], before["observation.image"][kept])
    assert np.array_equal(obs["observation.state"][kept], before["observation.state"][kept])
    # back at the start
    assert (obs["observation.state"][mask, 1] < before["observation.state"][mask, 1]).all()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_finished_slots_restart_in_the_same_step_with_new_episode_indices(task: str) -> None:
    env = make_env(task, num_envs=6, seed=5, image_size=32)
    obs = env.reset()
    seen, ends = set(obs["episode_index"].tolist()), 0
    for _ in range(3 * env.max_episode_steps):
        previous = obs
        obs, reward, terminated, truncated, info = env.step(env.expert_actions())
        done = terminated | truncated
        assert np.array_equal(obs["episode_start"], done)
        assert np.array_equal(reward, info["success"].astype(np.float32))
        assert np.array_equal(info["episode_index"], previous["episode_index"])
        assert np.array_equal(info["episode_length"], np.where(done, previous["frame_index"] + 1, 0))
        assert (obs["frame_index"][done] == 0).all()
        assert np.array_equal(obs["frame_index"][~done], previous["frame_index"][~done] + 1)
        new = obs["episode_index"][done].tolist()
        assert not seen.intersection(new) and new == sorted(new)
        seen.update(new)
        ends += int(done.sum())
    assert ends >= 12 and seen == set(range(len(seen)))


@pytest.mark.parametrize("task", TASK_NAMES)
def test_the_time_limit_truncates(task: str) -> None:
    env = make_env(task, num_envs=3, seed=0, image_size=32)
    env.reset()
    for step in range(1, env.max_episode_steps + 1):
        _, reward, terminated, truncated, info = env.step(np.zeros((3, 2)))
        assert not terminated.any() and (reward == 0).all()
        assert truncated.all() == (step == env.max_episode_steps)
    assert (info["episode_length"] == env.max_episode_steps).all()


def test_actions_are_clipped_to_a_unit_speed_and_walls_stop_the_agent() -> None:
    env = make_env("cue_choice", num_envs=3, seed=0)
    env.reset()
    start = env.position.copy()
    env.step(np.array([[0.0, 5.0], [1.0, 1.0], [0.0, -0.5]], dtype=np.float32))
    moved = env.position - start
    assert moved[0] == pytest.approx([0.0, 0.03])  # clipped to 1 per component
    assert np.linalg.norm(moved[1]) == pytest.approx(0.03)  # a diagonal is scaled to norm 1
    assert moved[1][0] == pytest.approx(moved[1][1])
    assert moved[2][1] == pytest.approx(-0.015) or env.position[2, 1] == pytest.approx(0.02 + AGENT_RADIUS)
    for _ in range(10):
        env.step(np.tile([-1.0, 0.0], (3, 1)))
    assert env.position[:, 0] == pytest.approx(0.40 + AGENT_RADIUS)  # flush against the corridor wall


@pytest.mark.parametrize("task", TASK_NAMES)
def test_seeds_fix_the_episodes_whatever_the_number_of_slots(task: str) -> None:
    def rollout(num_envs: int, seed: int) -> list[np.ndarray]:
        env = make_env(task, num_envs=num_envs, seed=seed, image_size=32)
        frames = [env.reset()["observation.image"][:2]]
        for _ in range(20):
            frames.append(env.step(env.expert_actions() * 0.5)[0]["observation.image"][:2])
        return frames

    first, again, wider, other = rollout(2, 7), rollout(2, 7), rollout(5, 7), rollout(2, 8)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert all(np.array_equal(x, y) for x, y in zip(first, wider))  # slots 0, 1 hold episodes 0, 1 either way
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_env("maze"), "unknown embodied task 'maze'. Choose one of: cue_choice, order"),
        (lambda: make_env("cue_choice", num_envs=0), "num_envs must be an int >= 1"),
        (lambda: make_env("order", image_size=8), "image_size must be an int in [32, 512]"),
        (lambda: make_env("order", task_config=CueChoiceConfig()), "takes a OrderConfig"),
        (lambda: CueChoiceConfig(cue_steps=(2, 20)), "corridor is too short"),
        (lambda: OrderConfig(max_episode_steps=40), "shorter than the expert's longest path"),
        (lambda: OrderConfig(lit_steps=(2, 1)), "lit_steps must be a pair"),
        (lambda: make_env("cue_choice").step(np.zeros((1, 2))), "step() called before reset()"),
    ],
)
def test_bad_settings_raise_actionable_errors(call, message: str) -> None:
    with pytest.raises(MemstreamError) as error:
        call()
    assert message in str(error.value) and error.value.fix


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (np.zeros((4, 3)), "actions must have shape (4, 2)"),
        (np.zeros((3, 2)), "actions must have shape (4, 2)"),
        (np.zeros(8), "actions must have shape (4, 2)"),
        (np.full((4, 2), np.nan), "NaN or infinity"),
        ([["a", "b"]] * 4, "actions must be numbers"),
    ],
)
def test_bad_actions_and_masks_raise_actionable_errors(actions, message: str) -> None:
    env = make_env("cue_choice", num_envs=4)
    env.reset()
    with pytest.raises(MemstreamError, match=message.replace("(", r"\(").replace(")", r"\)")):
        env.step(actions)
    with pytest.raises(MemstreamError, match="reset mask must be bool of shape"):
        env.reset(np.ones(4, dtype=np.int64))
