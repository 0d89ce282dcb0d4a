"""order: expert 100%, a fixed-guess policy at 1/6, wrong pads lose, no order in frames after the show."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.embodied.envs import collect_demonstrations, evaluate, make_env, order_expert
from memstream.embodied.envs.order import LAYOUT, PADS


def test_expert_succeeds_on_every_episode_and_lengths_vary() -> None:
    data = collect_demonstrations("order", num_episodes=300, seed=1, image_size=32)
    assert data.success.all()
    assert len({tuple(row) for row in data.hidden_info.tolist()}) == 6  # all 3! orders occur
    assert set(data.reveal_frames.tolist()) == {3, 4, 5, 6}
    lengths = data.lengths
    assert lengths.max() - lengths.min() >= 6 and len(np.unique(lengths)) >= 6
    last = data.states[data.episode_bounds[1:] - 1]  # the last frame before the final pad
    assert (last[:, 2:].sum(axis=1) == 2).all()  # two pads marked visited in the state


def test_a_fixed_guess_succeeds_one_time_in_six() -> None:
    def guess(obs):  # sees the visited marks, guesses the order (0, 1, 2): the best memoryless policy
        state = obs["observation.state"].astype(np.float64)
        progress = state[:, 2:].sum(axis=1).astype(np.int64)
        return order_expert(state[:, :2], np.tile([0, 1, 2], (len(state), 1)), progress, 0.03)

    result = evaluate(guess, "order", num_episodes=1500, seed=0, num_envs=256, image_size=32)
    assert abs(result["success_rate"] - 1 / 6) < 0.035
    assert result["truncation_rate"] == 0.0
    assert result["success_rate"] + result["failure_rate"] == pytest.approx(1.0)


def test_stepping_on_a_wrong_pad_ends_the_episode_as_a_failure() -> None:
    env = make_env("order", num_envs=64, seed=2, image_size=32)
    env.reset()
    failures = 0
    for _ in range(60):
        wrong_first = np.roll(env.order, -1, axis=1)  # heads for the second pad of the order first
        actions = order_expert(env.position, wrong_first, env.progress, 0.03)
        _, reward, terminated, truncated, info = env.step(actions)
        first = info["episode_index"] < 64
        assert not info["success"][first].any() and (reward[first] == 0).all()
        assert np.array_equal(terminated, info["success"] | info["failure"]) and not truncated.any()
        failures += int((info["failure"] & first).sum())
    assert failures == 64


def test_frames_and_states_after_the_show_do_not_depend_on_the_order() -> None:
    shown, other = make_env("order", num_envs=16, seed=3), make_env("order", num_envs=16, seed=3)
    shown.reset()
    other.reset()
    other.order[:] = shown.order[:, [0, 2, 1]]  # same first pad, the other two swapped
    first_end, show_end = shown.lit_ends[:, 0].copy(), shown.lit_ends[:, -1].copy()
    a, b = shown.observe(), other.observe()
    compared = differing_show_frames = 0
    while True:
        same = (a["episode_index"] == np.arange(16)) & (b["episode_index"] == np.arange(16))
        if not same.any():
            break
        after = same & (a["frame_index"] >= show_end)
        during = same & ~after
        assert np.array_equal(a["observation.image"][after], b["observation.image"][after])
        assert np.array_equal(a["observation.state"][same], b["observation.state"][same])
        differing_show_frames += int((a["observation.image"][during] != b["observation.image"][during]).any(
            axis=(1, 2, 3)).sum())
        compared += int(after.sum())
        actions = shown.expert_actions()
        a, _, _, _, _ = shown.step(actions)
        b, _, _, _, _ = other.step(actions)
    assert compared > 16 * 20
    assert differing_show_frames == (show_end - first_end).sum()  # frames lighting the 2nd and 3rd pads


def test_no_pad_is_reachable_until_8_frames_after_the_show() -> None:
    env = make_env("order", num_envs=300, seed=4, image_size=32)
    obs = env.reset()
    show_end = env.lit_ends[:, -1].copy()
    first_frame = np.full(300, -1)
    for _ in range(30):  # straight up at full speed: the fastest way to any pad's height
        obs, *_ = env.step(np.tile([0.0, 1.0], (300, 1)))
        reached = (obs["observation.state"][:, 1] >= LAYOUT.decision_y) & (first_frame < 0)
        first_frame[reached] = obs["frame_index"][reached]
    assert (first_frame >= 0).all()
    assert (first_frame >= show_end + 8).all()
    assert LAYOUT.decision_y == PADS[:, 1].min()  # below it the agent's centre is in no pad
