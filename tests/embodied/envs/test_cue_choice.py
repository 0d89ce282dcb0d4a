"""cue_choice: expert 100%, a cue-blind policy at chance, no cue in frames after the cue phase."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.embodied.envs import collect_demonstrations, cue_choice_expert, evaluate, make_env
from memstream.embodied.envs.arena import BLUE, LAMP_OFF, RED
from memstream.embodied.envs.cue_choice import LAMP, LAYOUT


def test_expert_succeeds_on_every_episode_and_lengths_vary() -> None:
    data = collect_demonstrations("cue_choice", num_episodes=300, seed=1, image_size=32)
    assert data.success.all()
    assert set(data.hidden_info[:, 0].tolist()) == {0, 1}
    assert set(data.reveal_frames.tolist()) == {2, 3, 4, 5}
    lengths = data.lengths
    assert lengths.max() - lengths.min() >= 6 and len(np.unique(lengths)) >= 6
    assert 20 <= lengths.min() and lengths.max() <= 35


def test_a_cue_blind_policy_succeeds_half_the_time() -> None:
    def always_left(obs):  # the best memoryless policy: no information about the cue is available
        state = obs["observation.state"]
        return cue_choice_expert(state[:, :2].astype(np.float64), np.zeros(len(state), dtype=np.int64), 0.03)

    result = evaluate(always_left, "cue_choice", num_episodes=2000, seed=0, num_envs=256, image_size=32)
    assert abs(result["success_rate"] - 0.5) < 0.035
    # it always reaches a goal, never times out
    assert result["failure_rate"] == pytest.approx(1.0 - result["success_rate"])
    assert result["truncation_rate"] == 0.0 and result["chance_success_rate"] == 0.5


def test_frames_and_states_after_the_cue_phase_do_not_depend_on_the_cue() -> None:
    shown, flipped = make_env("cue_choice", num_envs=16, seed=3), make_env("cue_choice", num_envs=16, seed=3)
    shown.reset()
    flipped.reset()
    flipped.cue[:] = 1 - shown.cue  # same starts and cue durations, opposite cues
    cue_steps = shown.cue_steps.copy()
    a, b = shown.observe(), flipped.observe()
    rows, cols = shown.canvas.slices(LAMP)
    lamp = a["observation.image"][:, rows, cols].reshape(16, -1, 3)
    assert (lamp == np.where(shown.cue[:, None, None] == 0, RED, BLUE)).all()
    compared = differing_cue_frames = 0
    while True:
        in_first = (a["episode_index"] == np.arange(16)) & (b["episode_index"] == np.arange(16))
        if not in_first.any():
            break
        after = in_first & (a["frame_index"] >= cue_steps)
        during = in_first & ~after
        assert np.array_equal(a["observation.image"][after], b["observation.image"][after])
        assert np.array_equal(a["observation.state"][in_first], b["observation.state"][in_first])
        assert (a["observation.image"][after][:, rows, cols] == LAMP_OFF).all()
        differing_cue_frames += int((a["observation.image"][during] != b["observation.image"][during]).any(
            axis=(1, 2, 3)).sum())
        compared += int(after.sum())
        actions = shown.expert_actions()  # the same actions in both: the shown cue's expert path
        a, _, _, _, info_a = shown.step(actions)
        b, _, _, _, info_b = flipped.step(actions)
    assert compared > 16 * 15  # every slot contributed its whole post-cue trajectory
    assert differing_cue_frames == cue_steps.sum()  # the cue frames themselves do differ
    assert info_a["success"].sum() + info_b["failure"].sum() >= 1


def test_the_cross_bar_is_out_of_reach_until_8_frames_after_the_cue() -> None:
    env = make_env("cue_choice", num_envs=300, seed=4, image_size=32)
    obs = env.reset()
    cue_steps = env.cue_steps.copy()
    first_frame = np.full(300, -1)
    for _ in range(40):  # straight up at full speed: the fastest way to the cross-bar
        obs, _, terminated, truncated, _ = env.step(np.tile([0.0, 1.0], (300, 1)))
        assert not (terminated | truncated).any()
        reached = (obs["observation.state"][:, 1] >= LAYOUT.decision_y) & (first_frame < 0)
        first_frame[reached] = obs["frame_index"][reached]
    assert (first_frame >= 0).all()
    assert (first_frame >= cue_steps + 8).all()
    assert (first_frame - cue_steps).min() <= 9  # the bound is tight for some episodes
