"""Memory Maze behind habitat's names: observation keys, dtypes and units, the action mapping, seeds,
and the errors when the extra or EGL is missing (one line naming the fix, exit 2)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from memstream.embodied.envs import memory_maze_env as mm
from memstream.embodied.envs.memory_maze_env import ACTIONS, MemoryMazeConfig, MemoryMazeEnv, action_name
from memstream.embodied.envs.nav import make_nav_env
from memstream.streaming.errors import ConfigError, MemstreamError

needs_maze = pytest.mark.skipif(
    importlib.util.find_spec("memory_maze") is None, reason="needs memory-maze (memstream[maze])"
)


def test_habitat_names_map_onto_memory_mazes_ids():
    # habitat's stop/move_forward/turn_left/turn_right are Memory Maze's noop/forward/left/right (0..3)
    assert ACTIONS[:4] == ("stop", "move_forward", "turn_left", "turn_right")
    assert [action_name(a) for a in (0, 1, 2, 3, 4, 5)] == list(ACTIONS)
    assert action_name({"action": "turn_left"}) == "turn_left" and action_name(np.int64(4)) == ACTIONS[4]
    with pytest.raises(MemstreamError, match="unknown action 'jump'. Return one of stop, move_forward"):
        action_name("jump")
    with pytest.raises(MemstreamError):
        action_name(6)


def test_the_registry_builds_each_size_and_names_the_known_ones():
    assert make_nav_env("memory_maze", "13x13").config.maze_size == 13  # no simulator loaded yet
    with pytest.raises(ConfigError, match="unknown memory_maze task '10x10'. Choose one of: 11x11"):
        make_nav_env("memory_maze", "10x10")
    with pytest.raises(ConfigError, match="image_size"):
        make_nav_env("memory_maze", "9x9", {"image_size": 4})


def test_a_missing_extra_names_the_extra(monkeypatch):
    mm.load_memory_maze.cache_clear()
    monkeypatch.setitem(sys.modules, "memory_maze", None)  # import memory_maze -> ModuleNotFoundError
    try:
        with pytest.raises(MemstreamError, match=r"Memory Maze is not installed .*memstream\[maze\]"):
            MemoryMazeEnv().require()
    finally:
        mm.load_memory_maze.cache_clear()


@needs_maze
def test_without_egl_nav_eval_exits_2_with_one_line_naming_the_fix(tmp_path):
    # glvnd finds no EGL vendor library: dm_control cannot open a headless display
    env = {**os.environ, "MUJOCO_GL": "egl", "__EGL_VENDOR_LIBRARY_FILENAMES": str(tmp_path / "none.json")}
    out = tmp_path / "run"
    code = (
        "import sys; from memstream.streaming.cli import main; "
        f"sys.exit(main(['nav-eval', '--env', 'memory_maze', '--episodes', '1', '--out', {str(out)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "headless" in lines[0] and "MUJOCO_GL=egl" in lines[0] and "libegl1" in lines[0]
    assert not out.exists()


@pytest.fixture(scope="module")
def episode():
    """Seed 3: four left turns, then a short roll forward (one env, built once)."""
    if importlib.util.find_spec("memory_maze") is None:
        pytest.skip("needs memory-maze (memstream[maze])")
    env = MemoryMazeEnv(MemoryMazeConfig(max_steps=8))
    frames = [env.reset(seed=3)]
    for action in ["turn_left"] * 4 + ["move_forward"] * 4:
        frames.append(env.step(action))
    yield env, frames
    env.close()


@needs_maze
def test_observations_have_habitats_keys_dtypes_and_units(episode):
    env, frames = episode
    first, last = frames[0], frames[-1]
    assert {"rgb", "depth", "gps", "compass", "target_color", "objectgoal", "step"} <= set(first)
    assert not {"maze_layout", "targets_pos", "agent_pos", "target_pos"} & set(first)  # scoring only
    assert first["rgb"].dtype == np.uint8 and first["rgb"].shape == (64, 64, 3)
    assert first["depth"].dtype == np.float32 and first["depth"].shape == (64, 64, 1)
    assert first["gps"].dtype == np.float32 and first["compass"].dtype == np.float32
    np.testing.assert_allclose(first["gps"], 0.0, atol=1e-6)  # the first pose is the origin
    assert first["compass"][0] == 0.0
    # four left turns: heading grows to the left (positive), ~18 degrees a turn
    assert 40 < math.degrees(frames[4]["compass"][0]) < 90
    # four forward steps from there: the camera moved metres along the new heading
    moved = last["gps"] - frames[4]["gps"]
    heading = frames[4]["compass"][0]
    assert 0.8 < np.linalg.norm(moved) < 2.5
    assert np.dot(moved / np.linalg.norm(moved), [math.cos(heading), -math.sin(heading)]) > 0.9
    # the shown colour is one of the palette's, and the border of rgb shows it
    palette = [np.array(c) / 220 for c in ([170, 38, 30], [99, 170, 88], [39, 140, 217])]
    goal = int(first["objectgoal"][0])
    np.testing.assert_allclose(first["target_color"], palette[goal], atol=1e-5)
    np.testing.assert_allclose(first["rgb"][0, 32], first["target_color"] * 255 * 0.7, atol=1.0)
    assert env.get_metrics() == {"return": 0.0, "targets_collected": 0.0, "steps": 8.0}
    assert env.episode_over


@needs_maze
def test_depth_is_metres_from_the_same_camera(episode):
    env, frames = episode
    from memstream.embodied.agents.mapping import backproject

    model, data = env._physics.model, env._physics.data
    assert model.cam_fovy[env._camera_id] == mm.FOV_DEG
    assert data.cam_xpos[env._camera_id][2] == pytest.approx(mm.CAMERA_HEIGHT_M, abs=0.01)
    look = -data.cam_xmat[env._camera_id].reshape(3, 3)[:, 2]
    assert math.degrees(math.asin(look[2])) == pytest.approx(mm.CAMERA_PITCH_DEG, abs=0.05)
    obs = frames[0]
    points = backproject(
        obs["depth"], obs["gps"], float(obs["compass"][0]), mm.FOV_DEG, mm.CAMERA_HEIGHT_M, 1, 8.0,
        mm.CAMERA_PITCH_DEG,
    )
    floor = points[points[:, 2] < 0.3]  # floor pixels: back-projected with the pose, they lie at 0 m
    assert len(floor) > 100 and abs(float(np.median(floor[:, 2]))) < 0.03
    assert float(obs["depth"].max()) <= 30.0  # the open sky reads max_depth_m


@needs_maze
def test_the_same_seed_gives_the_same_episode(episode):
    env, frames = episode
    other = MemoryMazeEnv(MemoryMazeConfig(max_steps=8))
    try:
        again = [other.reset(seed=3)]
        for action in ["turn_left"] * 4 + ["move_forward"] * 4:
            again.append(other.step(action))
        for a, b in zip(frames, again, strict=True):
            np.testing.assert_array_equal(a["rgb"], b["rgb"])
            np.testing.assert_array_equal(a["depth"], b["depth"])
            np.testing.assert_array_equal(a["gps"], b["gps"])
        np.testing.assert_array_equal(other.targets_gps(), env.targets_gps())
        different = other.reset(seed=4)
        assert not np.array_equal(different["rgb"], frames[0]["rgb"])
    finally:
        other.close()
    with pytest.raises(MemstreamError, match="after the episode ended"):
        env.step("stop")


@needs_maze
def test_the_vectorised_target_check_decides_as_dm_controls_loop():
    from memstream.embodied.agents.maze_agent import MazeMemoryAgent

    env = MemoryMazeEnv(MemoryMazeConfig(max_steps=70))
    try:
        obs = env.reset(seed=2)
        agent = MazeMemoryAgent("oracle", goal_oracle=env.goals_gps)  # seed 2: it scores at step 60
        targets, decided, touching = env._env.task._targets, 0, 0
        while not env.episode_over:
            obs = env.step(agent.act(obs))
            for target in targets:  # both checks on this step's contacts, side effects undone
                decisions = []
                for check in (mm._original_update_activation, mm._update_activation):
                    target._activated = False
                    check(target, env._physics)
                    decisions.append(target._activated)
                    target.reset(env._physics)
                assert decisions[0] == decisions[1]
                decided += 1
                touching += decisions[0]
        assert decided == 3 * 70 and touching >= 1 and env.get_metrics()["return"] >= 1
    finally:
        env.close()


def test_the_border_width_follows_memory_mazes_formula():
    assert [mm.target_border_px(s) for s in (16, 32, 63, 64, 128, 256, 512)] == [0, 0, 0, 2, 2, 4, 5]
    assert [round(mm.world_reach_m(n), 1) for n in (9, 15)] == [31.1, 48.1]


@needs_maze
def test_below_64_px_the_image_is_a_view_not_a_block_of_the_target_colour():
    # Memory Maze's wrapper draws a 0 px border below 64 px as img[:, -0:]: the whole image
    env = MemoryMazeEnv(MemoryMazeConfig(image_size=32, max_steps=1))
    try:
        rgb = env.reset(seed=10_000)["rgb"]
    finally:
        env.close()
    assert rgb.shape == (32, 32, 3) and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50
