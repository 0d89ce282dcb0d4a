"""The Memory Maze agent's pieces: classical target detection (synthetic and rendered frames), the target
memory, what the no-memory baseline forgets, and a few real steps through nav-eval's evaluation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from memstream.embodied.agents.maze_agent import MazeMemoryAgent, MazeNavigator, grid_distance_field
from memstream.embodied.agents.maze_perception import (
    PALETTE_RGB,
    Detection,
    TargetDetector,
    TargetMemory,
    palette_index,
)
from memstream.streaming.errors import MemstreamError

needs_maze = pytest.mark.skipif(
    importlib.util.find_spec("memory_maze") is None, reason="needs memory-maze (memstream[maze])"
)
LEVEL = TargetDetector(pitch_deg=0.0, border_px=0)  # a level camera at 0.9 m, 80 degrees, 64 px


def scene(target_rows: slice, target_depth: float, above_depth: float, colour=(170, 38, 30)):
    """A 64x64 frame: sky (far) at the top, grey floor, a coloured patch at ``target_rows`` x cols
    28..36 at ``target_depth``, the pixels above the patch at ``above_depth``."""
    rgb = np.full((64, 64, 3), 60, dtype=np.uint8)
    depth = np.full((64, 64, 1), 25.0, dtype=np.float32)
    focal = 32 / np.tan(np.radians(40))
    depth[32:, :, 0] = (0.9 * focal / (np.arange(32, 64) + 0.5 - 32))[:, None]  # the floor
    rgb[target_rows, 28:36] = colour
    depth[target_rows, 28:36] = target_depth
    top = target_rows.start - 1
    depth[top, 28:36] = above_depth
    return rgb, depth


def test_a_low_free_standing_patch_is_a_target_at_its_centre():
    # at 3 m, rows 36..41 lie 0.15-0.55 m above the floor: a target's height
    rgb, depth = scene(slice(36, 42), 3.0, 25.0)
    found = LEVEL.detect(rgb, depth, np.zeros(2), 0.0)
    assert list(found) == [0]
    red = found[0]
    assert red.pixels >= 24 and red.distance_m == pytest.approx(3.0, abs=0.05)
    assert red.position[0] == pytest.approx(3.0 + LEVEL.push_back_m, abs=0.05)  # pushed to the centre
    assert abs(red.position[1]) < 0.1
    # the same patch seen from elsewhere, turned: the map position follows the pose
    turned = LEVEL.detect(rgb, depth, np.array([1.0, 2.0]), np.pi / 2)
    np.testing.assert_allclose(turned[0].position, [1.0 + 0.0, 2.0 - 3.45], atol=0.06)


def test_a_wall_of_the_same_colour_is_not_a_target():
    # a red wall 3 m ahead: the same colour from the floor up past the camera (heights over 0.75 m)
    rgb, depth = scene(slice(20, 42), 3.0, 25.0)
    assert LEVEL.detect(rgb, depth, np.zeros(2), 0.0) == {}


def test_a_wall_strip_under_a_nearer_occluder_is_not_a_target():
    # the patch's top is hidden by something nearer (a nearer wall's bottom edge): not free-standing
    rgb, depth = scene(slice(36, 42), 3.0, 1.5)
    assert LEVEL.detect(rgb, depth, np.zeros(2), 0.0) == {}


def test_other_colours_are_told_apart_and_the_palette_limits_them():
    green = tuple(int(v) for v in PALETTE_RGB[1])
    rgb, depth = scene(slice(36, 42), 3.0, 25.0, colour=green)
    assert list(LEVEL.detect(rgb, depth, np.zeros(2), 0.0)) == [1]
    salmon = tuple(int(v) for v in PALETTE_RGB[5])
    rgb, depth = scene(slice(36, 42), 3.0, 25.0, colour=salmon)
    three = TargetDetector(pitch_deg=0.0, border_px=0, colours=3)  # a 9x9 maze has red, green, blue
    assert list(LEVEL.detect(rgb, depth, np.zeros(2), 0.0)) == [5] and three.detect(rgb, depth, np.zeros(2), 0.0) == {}
    # the shown target colour (Memory Maze's target_color, 0..1, or the dimmed border) picks the index
    assert palette_index(PALETTE_RGB[2] / 220) == 2 and palette_index(PALETTE_RGB[0] / 220 * 255 * 0.7) == 0


def test_memory_averages_sightings_and_keeps_the_better_supported_one():
    memory = TargetMemory()
    memory.update({0: Detection(0, np.array([4.0, 1.0]), 40, 1.0)}, frame=0)
    memory.update({0: Detection(0, np.array([4.4, 1.0]), 40, 1.0)}, frame=1)
    np.testing.assert_allclose(memory.get(0), [4.2, 1.0])  # two equal sightings: their mean
    # a weak sighting 5 m away contradicts it: the memory stays, with less weight
    memory.update({0: Detection(0, np.array([9.0, 1.0]), 4, 8.0)}, frame=2)
    np.testing.assert_allclose(memory.get(0), [4.2, 1.0])
    assert memory.last_seen[0] == 1
    # a strong one there wins
    memory.update({0: Detection(0, np.array([9.0, 1.0]), 200, 1.0)}, frame=3)
    np.testing.assert_allclose(memory.get(0), [9.0, 1.0])
    memory.forget(0)
    assert memory.get(0) is None and memory.positions == {}


def observation(rgb, depth, gps=(0.0, 0.0), compass=0.0, goal=1):
    return {
        "rgb": rgb,
        "depth": depth,
        "gps": np.asarray(gps, dtype=np.float32),
        "compass": np.array([compass], dtype=np.float32),
        "target_color": (PALETTE_RGB[goal] / 220).astype(np.float32),
    }


@pytest.mark.parametrize(("mode", "remembers"), [("memory", True), ("no_memory", False)])
def test_only_the_memory_agent_remembers_a_target_out_of_sight(mode, remembers):
    agent = MazeMemoryAgent(mode, detector=LEVEL)
    seen_rgb, seen_depth = scene(slice(36, 42), 3.0, 25.0)  # the red target ahead
    empty_rgb, empty_depth = scene(slice(36, 42), 3.0, 25.0, colour=(60, 60, 60))
    agent.act(observation(seen_rgb, seen_depth, goal=1))  # current target green: red is only seen
    assert agent.memory.get(0) is not None
    agent.act(observation(empty_rgb, empty_depth, compass=np.pi, goal=1))  # turned away
    assert (agent.memory.get(0) is not None) is remembers
    # now red is the current target: the memory agent heads for where it saw it
    agent.act(observation(empty_rgb, empty_depth, compass=np.pi, goal=0))
    if remembers:
        assert agent.goal is not None and agent.goal[0] == pytest.approx(3.45, abs=0.1)
    else:
        assert agent.goal is None


def test_missing_observations_and_bad_modes_name_the_fix():
    with pytest.raises(MemstreamError, match="needs observations depth, target_color.*--env memory_maze"):
        MazeMemoryAgent().act({"rgb": np.zeros((8, 8, 3)), "gps": np.zeros(2), "compass": np.zeros(1)})
    with pytest.raises(MemstreamError, match="Choose one of memory, no_memory, oracle"):
        MazeMemoryAgent("psychic")  # type: ignore[arg-type]
    with pytest.raises(MemstreamError, match="goal_oracle"):
        MazeMemoryAgent("oracle")


def test_the_c_planner_gives_exactly_the_reference_field():
    from memstream.embodied.envs.navgrid import distance_field

    rng = np.random.default_rng(0)
    for _ in range(3):
        free = rng.random((23, 31)) > 0.3
        cost = np.where(rng.random(free.shape) > 0.5, 4.0, 1.0)
        sources = [tuple(c) for c in np.argwhere(free)[:3]] + [(-1, 5)]  # off-grid sources are ignored
        want, got = distance_field(free, sources, 0.2, cost), grid_distance_field(free, sources, 0.2, cost)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
        np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
    assert np.isinf(grid_distance_field(np.zeros((3, 3), dtype=bool), [(1, 1)], 0.2)).all()


def test_the_navigator_rolls_and_turns_at_once():
    from memstream.embodied.agents.mapping import OccupancyMap

    nav = MazeNavigator(OccupancyMap(extent_m=10.0, cell_m=0.2), turn_deg=18.0)
    assert nav.act(np.zeros(2), 0.0, np.array([3.0, 0.0]), 0.3) == "move_forward"
    nav.reset()  # (a forward step that did not move would mark the cell ahead as blocked)
    assert nav.act(np.zeros(2), 0.0, np.array([3.0, -1.5]), 0.3) == "move_forward_left"  # ~35 deg left
    nav.reset()
    assert nav.act(np.zeros(2), 0.0, np.array([0.0, 3.0]), 0.3) == "turn_right"  # 90 degrees: in place


@needs_maze
def test_detection_on_a_rendered_frame_finds_the_true_target():
    from memstream.embodied.envs.memory_maze_env import MemoryMazeConfig, MemoryMazeEnv

    env = MemoryMazeEnv(MemoryMazeConfig(max_steps=4))
    try:
        obs = env.reset(seed=3)
        for _ in range(4):  # seed 3: the red target comes into view after four left turns
            obs = env.step("turn_left")
        found = TargetDetector(colours=3).detect(obs["rgb"], obs["depth"], obs["gps"], float(obs["compass"][0]))
        assert 0 in found
        assert np.linalg.norm(found[0].position - env.targets_gps()[0]) < 0.5
    finally:
        env.close()


@needs_maze
def test_nav_evaluation_runs_a_few_real_steps():
    from memstream.embodied.agents.evaluate import evaluate_nav

    result = evaluate_nav("memory_maze", "9x9", ["memory", "no_memory"], episodes=1, options={"max_steps": 6})
    for agent in ("memory", "no_memory"):
        row = result["episodes"][agent][0]
        assert row["ok"], row.get("trace")
        assert row["steps"] == 6 and row["return"] >= 0.0 and "high_level_success" not in row
        assert result["summary"][agent]["return"] == row["return"]


def test_two_colours_remembered_too_close_to_be_two_targets_keep_the_better_seen():
    memory = TargetMemory()
    memory.update({0: Detection(0, np.array([3.4, 4.9]), 199, 1.5)}, frame=0)  # a red target, well seen
    memory.update({2: Detection(2, np.array([3.5, 5.4]), 4, 2.0)}, frame=1)  # 4 "blue" pixels at its edge
    assert memory.get(2) is None and memory.get(0) is not None
    # targets stand in distinct 2 m cells: a blue one in the next cell is remembered beside the red
    memory.update({2: Detection(2, np.array([3.4, 6.9]), 4, 2.0)}, frame=2)
    np.testing.assert_allclose(memory.get(2), [3.4, 6.9])
    assert sorted(memory.positions) == [0, 2]


def draw_corridor(occupancy):
    """A 1.6 m wide corridor along +forward, seen from forward -2.5 m to +3 m, walls on both sides,
    unknown beyond both ends: two frontiers, 3 m ahead and 2.5 m behind an agent at the origin."""
    grid = occupancy.grid
    (r0, c0), (r1, c1) = grid.to_cell(np.array([-2.5, -1.0])), grid.to_cell(np.array([3.0, 1.0]))
    occupancy.seen[r0:r1, c0:c1 + 1] = True
    occupancy.evidence[r0:r1, c0:c1 + 1] = -20  # seen free
    occupancy.evidence[r0:r1, c0:c0 + 1] = occupancy.evidence[r0:r1, c1:c1 + 1] = 20  # the walls


def test_the_frontier_choice_prices_the_turn_and_commits_to_its_choice():
    agent = MazeMemoryAgent(detector=LEVEL)
    draw_corridor(agent.occupancy)
    ahead = agent._choose_frontier(np.zeros(2), 0.0)  # facing +forward: the far end ahead is cheaper
    assert ahead is not None and ahead[0] > 2.5 and abs(ahead[1]) < 0.5
    behind = agent._choose_frontier(np.zeros(2), np.pi)  # facing back: the near end behind
    assert behind is not None and behind[0] < -2.0
    agent.turn_cost_m = 0.0  # turning free: the nearer frontier (behind) wins whatever the heading
    assert agent._choose_frontier(np.zeros(2), 0.0)[0] < -2.0
    # the choice holds while its goal borders the unknown; once the unknown there is seen, it is done
    assert agent._still_frontier(ahead, np.zeros(2))
    agent.occupancy.seen[:] = True
    assert not agent._still_frontier(ahead, np.zeros(2))
    assert agent._choose_frontier(np.zeros(2), 0.0) is None  # all seen: nothing left to explore


def test_the_agent_logs_where_its_steps_went():
    agent = MazeMemoryAgent(detector=LEVEL)
    empty_rgb, empty_depth = scene(slice(36, 42), 3.0, 25.0, colour=(60, 60, 60))
    first = [agent.act(observation(empty_rgb, empty_depth, goal=0)) for _ in range(agent.look_around_steps)]
    assert set(first) == {"turn_left"} and agent.episode_stats()["look_steps"] == agent.look_around_steps
    agent.reset()
    agent.look_around_steps = 0
    seen_rgb, seen_depth = scene(slice(36, 42), 3.0, 25.0)  # the red target ahead
    empty_rgb, empty_depth = scene(slice(36, 42), 3.0, 25.0, colour=(60, 60, 60))
    actions = [agent.act(observation(empty_rgb, empty_depth, goal=0))]  # nothing known: search
    actions.append(agent.act(observation(seen_rgb, seen_depth, goal=0)))  # red seen: head for it
    actions.append(agent.act(observation(empty_rgb, empty_depth, goal=0)))  # out of sight, remembered
    stats = agent.episode_stats()
    assert (stats["search_steps"], stats["goal_steps"], stats["roam_steps"], stats["look_steps"]) == (1, 2, 0, 0)
    kinds = stats["forward_actions"] + stats["forward_turn_actions"] + stats["turn_actions"]
    assert kinds == 3 and stats["turn_actions"] == sum(a.startswith("turn") for a in actions)
    assert stats["first_remembered"] == {"0": 1} and stats["forgotten"] == 0
    agent.reset()
    assert agent.episode_stats()["goal_steps"] == 0 and agent.episode_stats()["first_remembered"] == {}


def test_rolling_into_a_target_the_agent_turns_toward_the_other_targets():
    agent = MazeMemoryAgent(detector=LEVEL)
    agent.goal_colour = 0
    agent.memory.update({1: Detection(1, np.array([-3.0, 2.0]), 50, 3.0)}, frame=0)  # green: behind, right
    red = np.array([0.7, 0.0])  # the current (red) target 0.7 m straight ahead
    agent._speed = 0.5  # full speed: the ball coasts into it
    assert agent._coast_turn(np.zeros(2), 0.0, red) == "turn_right"
    agent.memory.update({2: Detection(2, np.array([-3.0, -6.0]), 50, 3.0)}, frame=1)  # blue: behind, left
    assert agent._coast_turn(np.zeros(2), 0.0, red) == "turn_left"  # the two others lie left on average
    assert agent._coast_turn(np.zeros(2), 0.0, np.array([2.0, 0.0])) is None  # too far to coast there
    assert agent._coast_turn(np.zeros(2), 0.0, np.array([0.5, 0.5])) is None  # not straight ahead
    agent._speed = 0.1  # slow: it must still push
    assert agent._coast_turn(np.zeros(2), 0.0, red) is None


def test_the_wider_border_of_a_large_frame_is_not_read_as_a_target():
    # Memory Maze's target-colour border is 4 px wide at 256 px: its innermost ring, beside a surface
    # 2 m away at a target's height, once read as a target of the current colour
    detector = TargetDetector(pitch_deg=0.0)  # the default border_px (3)
    rgb = np.full((256, 256, 3), 60, dtype=np.uint8)
    depth = np.full((256, 256, 1), 25.0, dtype=np.float32)
    depth[150:189, :8] = 2.0  # a free-standing surface at 2 m, 0.1-0.62 m above the floor (a target)
    red = (PALETTE_RGB[0] * 0.7).astype(np.uint8)
    rgb[:, :4] = red
    rgb[:4], rgb[-4:], rgb[:, -4:] = red, red, red
    assert detector.detect(rgb, depth, np.zeros(2), 0.0) == {}
    rgb[150:189, 6:8] = PALETTE_RGB[0]  # a real target just inside the border is found
    assert set(detector.detect(rgb, depth, np.zeros(2), 0.0)) == {0}


@pytest.mark.parametrize("size", [11, 13, 15])
def test_the_map_holds_a_large_maze_and_the_agent_heads_for_a_far_goal(size):
    from memstream.embodied.envs.memory_maze_env import world_reach_m

    agent = MazeMemoryAgent("oracle", goal_oracle=lambda: [np.array([-4.0, -26.9])], maze_size=size)
    assert -agent.occupancy.grid.origin_m[0] >= world_reach_m(size) > 22.0
    assert MazeMemoryAgent().occupancy.grid.shape == (220, 220)  # 9x9 keeps the map it was measured with
    # a target 27 m to the left, as in 15x15 seed 10003: on a 44 m map it had no path (the oracle
    # turned in place all episode); now the plan reaches the agent's cell
    rgb, depth = scene(slice(36, 42), 3.0, 25.0, colour=(60, 60, 60))
    agent.act(observation(rgb, depth, goal=0))
    nav = agent.navigator
    here = tuple(agent.occupancy.grid.to_cell(np.zeros(2)) - nav._offset)
    assert nav._field is not None and np.isfinite(nav._field[here])


@needs_maze
def test_the_video_shows_a_goal_14_m_from_the_start(tmp_path):
    import cv2
    from memstream.embodied.agents.evaluate import evaluate_nav

    # seed 10000's first target lies 14 m to the left: off the default 16 m view
    result = evaluate_nav("memory_maze", "9x9", ["oracle"], episodes=1, seed=10_000, options={"max_steps": 2},
                          videos=1, video_dir=tmp_path)
    assert result["episodes"]["oracle"][0]["ok"]
    ok, bgr = cv2.VideoCapture(str(tmp_path / "oracle_seed10000.mp4")).read()
    assert ok and bgr.shape[:2] == (512, 512)  # 44 m at 512 / 44 px a metre
    rgb = bgr[..., ::-1].astype(int)
    green = np.argwhere((rgb[..., 1] > 150) & (rgb[..., 0] < 80) & (rgb[..., 2] < 80))
    assert len(green) > 20
    # the ring is drawn at the goal: forward -9.7 m (down), right -14.3 m (left) of the centre
    scale = 512 / 44
    np.testing.assert_allclose(green.mean(axis=0), [256 + 9.73 * scale, 256 - 14.29 * scale], atol=4)
