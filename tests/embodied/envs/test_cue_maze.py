"""The MiniWorld cue T-maze: the expert wins (SPL under 1: it keeps to the centre line where the shortest
successful path cuts the corner), the cue shows early and never at the decision,
the choice is committed, demonstrations hold habitat action ids (needs miniworld + EGL)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import memstream.embodied.policies.memvla.nav_agent  # noqa: F401 - loads triton before MiniWorld's EGL (see there)
from memstream.embodied.envs.cue_maze import (
    CueMazeConfig,
    CueMazeEnv,
    collect_cue_demonstrations,
    cue_in_view,
    habitat_state,
)
from memstream.embodied.envs.miniworld_env import ACTIONS
from memstream.embodied.envs.nav import make_nav_env
from memstream.streaming.errors import ConfigError, MemstreamError

needs_miniworld = pytest.mark.skipif(importlib.util.find_spec("miniworld") is None,
                                     reason="miniworld is not installed (pip install 'memstream[sim]')")


@pytest.fixture(scope="module")
def env():
    environment = CueMazeEnv(CueMazeConfig(image_size=32))
    yield environment
    environment.close()


def rollout(env, seed):
    obs, frames, actions = env.reset(seed), [], []
    while not env.episode_over:
        frames.append(obs["rgb"])
        actions.append(env.expert_action())
        obs = env.step(actions[-1])
    return frames, actions, env.get_metrics()


@needs_miniworld
def test_the_expert_reaches_the_cued_goal_for_both_cues_and_spl_measures_it_against_the_shortest_success(env):
    cues = set()
    for seed in range(4):
        _, actions, metrics = rollout(env, seed)
        cues.add(env.cue)
        assert metrics["success"] == 1.0 and metrics["high_level_success"] == 1.0 and metrics["wrong_goal"] == 0.0
        assert actions[-1] == "stop"
        # up the centre line, a turn, down the arm: 7.75 m where the shortest path that stops within
        # success_distance_m cuts the corner (6.86-6.90 m); before, shortest ran to the ball (8.0 m): SPL 1
        assert 6.8 < metrics["shortest_path_length"] < 7.0 and metrics["path_length"] == pytest.approx(7.75)
        assert metrics["spl"] == pytest.approx(metrics["shortest_path_length"] / 7.75)
        turn = "turn_left" if env.cue == 0 else "turn_right"  # red: the left goal (-z)
        assert turn in actions and ({"turn_left", "turn_right"} - {turn}).isdisjoint(actions)
    assert cues == {0, 1}


@needs_miniworld
def test_the_cue_shows_in_the_first_frames_only_and_the_frames_before_the_turn_do_not_depend_on_it(env):
    seeds = {}
    for seed in range(20):
        env.reset(seed)
        seeds.setdefault(env.cue, seed)
    (red, red_actions, _), (blue, blue_actions, _) = rollout(env, seeds[0]), rollout(env, seeds[1])
    turn = red_actions.index("turn_left")
    assert blue_actions[:turn] == red_actions[:turn] == ["move_forward"] * turn
    for frames in (red, blue):
        shown = [cue_in_view(f) for f in frames]
        assert shown[0] and sum(shown) >= 2 and not any(shown[sum(shown):])  # one run of frames from the start
        assert turn - sum(shown) >= 12  # the decision comes long after the cue was last in view
    last_seen = max(sum(cue_in_view(f) for f in frames) for frames in (red, blue))
    for t in range(last_seen + 1, turn + 1):  # the same pixels whichever the cue: only memory can tell
        np.testing.assert_array_equal(red[t], blue[t])


@needs_miniworld
def test_reaching_the_wrong_goal_ends_the_episode_as_a_failure_and_a_stop_elsewhere_fails(env):
    env.reset(0)
    wrong = "turn_right" if env.cue == 0 else "turn_left"
    while env.expert_action() == "move_forward":  # up the corridor to the junction
        env.step("move_forward")
    for _ in range(3):  # 90 degrees toward the other goal, then straight on
        env.step(wrong)
    while not env.episode_over:
        env.step("move_forward")
    metrics = env.get_metrics()
    assert metrics["wrong_goal"] == 1.0 and metrics["success"] == 0.0 and metrics["high_level_success"] == 0.0
    env.reset(1)
    env.step("stop")
    assert env.episode_over and env.get_metrics()["success"] == 0.0
    with pytest.raises(MemstreamError, match="after the episode ended"):
        env.step("move_forward")


@needs_miniworld
def test_demonstrations_hold_habitat_ids_states_from_gps_and_compass_and_the_cue():
    data = collect_cue_demonstrations(3, seed=5, config=CueMazeConfig(image_size=32))
    assert data.images.shape[1:] == (32, 32, 3) and data.states.shape[1] == 4 and data.actions.shape[1] == 1
    assert set(np.unique(data.actions)) <= set(range(len(ACTIONS))) and data.success.all()
    for i in range(3):
        rows = data.episode(i)
        assert data.actions[rows][-1, 0] == ACTIONS.index("stop") and data.frame_index[rows][0] == 0
        np.testing.assert_allclose(data.states[rows][0], [0.0, 0.0, 1.0, 0.0], atol=1e-6)  # start: origin, heading 0
    assert (data.reveal_frames >= 2).all() and set(data.hidden_info.ravel()) <= {0, 1}


def test_bad_settings_and_pose_less_observations_name_the_fix():
    with pytest.raises(ConfigError, match="cue_x_m"):
        CueMazeConfig(cue_x_m=(0.5, 1.0))
    with pytest.raises(ConfigError, match="unknown miniworld task 'maze'"):
        make_nav_env("miniworld", "maze")
    assert isinstance(make_nav_env("miniworld", "cue", {"image_size": 32}), CueMazeEnv)
    with pytest.raises(MemstreamError, match="no gps or compass"):
        habitat_state({"rgb": np.zeros((4, 4, 3), np.uint8)})
    np.testing.assert_allclose(habitat_state({"gps": np.array([1.0, -2.0]), "compass": np.array([np.pi / 2])}),
                               [1.0, -2.0, 0.0, 1.0], atol=1e-6)
