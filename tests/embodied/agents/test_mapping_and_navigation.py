"""The agent's maps from synthetic RGB-D, and its planner walking a simulated floor plan to a goal."""

from __future__ import annotations

import math

import numpy as np
import pytest
from memstream.embodied.agents.mapping import OccupancyMap, backproject, colour_masks
from memstream.embodied.agents.memory_agent import MapMemoryAgent
from memstream.embodied.agents.navigator import Navigator, inflate
from memstream.streaming.errors import MemstreamError

FOCAL = 32 / math.tan(math.radians(30))  # 64 px, 60 degrees


def test_backprojection_puts_pixels_where_a_pinhole_sees_them_in_the_gps_frame():
    depth = np.full((64, 64, 1), 4.0, dtype=np.float32)
    points = backproject(
        depth, np.array([1.0, 2.0]), math.pi / 2, fov_deg=60.0, camera_height_m=1.5, stride=1
    )
    points = points.reshape(64, 64, 3)
    # facing compass +90 degrees (left): forward is (0, -1) in (forward, right), so 4 m ahead is right = -2
    np.testing.assert_allclose(points[..., 1], -2.0, atol=1e-5)
    u = 63  # right-most column: (63.5 - 32) / f * 4 m to the right of the optical axis
    np.testing.assert_allclose(points[0, u, 0], 1.0 + (u + 0.5 - 32) / FOCAL * 4.0, atol=1e-5)
    np.testing.assert_allclose(points[0, 0, 2], 1.5 + (32 - 0.5) / FOCAL * 4.0, atol=1e-5)  # top row is up


def test_occupancy_marks_a_wall_occupied_the_space_before_it_free_and_the_rest_unknown():
    occupancy = OccupancyMap(extent_m=12.0, cell_m=0.2)
    depth = np.full((64, 64, 1), 3.0, dtype=np.float32)  # a wall 3 m ahead, seen from the origin
    occupancy.update(backproject(depth, np.zeros(2), 0.0, 60.0, 1.5), np.zeros(2))

    def cell(x: float, y: float) -> tuple[int, int]:
        return tuple(occupancy.grid.to_cell(np.array([x, y])))

    assert occupancy.occupied[cell(3.05, 0.0)]
    assert not occupancy.occupied[cell(1.5, 0.0)] and occupancy.seen[cell(1.5, 0.0)]
    assert not occupancy.seen[cell(-2.0, 0.0)] and not occupancy.seen[cell(5.0, 0.0)]


def test_colour_masks_find_a_red_patch_and_a_blue_one():
    rgb = np.full((64, 64, 3), 128, dtype=np.uint8)  # grey walls are no colour
    rgb[40:50, 28:36] = (200, 20, 10)
    rgb[0:4, 0:4] = (30, 40, 220)
    masks = colour_masks(rgb)
    assert masks["red"].sum() == 80 and masks["blue"].sum() == 16 and masks["green"].sum() == 0
    assert masks["red"][40:50, 28:36].all() and masks["blue"][0:4, 0:4].all()


def test_inflation_is_a_disc():
    mask = np.zeros((7, 7), dtype=bool)
    mask[3, 3] = True
    grown = inflate(mask, 2.0)
    assert grown.sum() == 13 and grown[3, 1] and grown[2, 2] and not grown[1, 1]


class FloorPlan:
    """A tiny kinematic world: two rooms joined by a door; habitat's actions move a disc of radius 0.3."""

    def __init__(self) -> None:
        self.walls = [((4.0, -3.0), (4.0, -0.5)), ((4.0, 0.5), (4.0, 3.0))]  # x = 4 with a 1 m door at y 0
        self.pos, self.heading = np.array([1.0, -2.0]), 0.0

    def blocked(self, p: np.ndarray) -> bool:
        if not (-0.7 < p[0] < 8.7 and -2.7 < p[1] < 2.7):
            return True
        return any(abs(p[0] - 4.0) < 0.3 and (a[1] - 0.3 < p[1] < b[1] + 0.3) for a, b in self.walls)

    def depth(self) -> np.ndarray:
        """Ray-cast depth (64 columns, one row band at the camera height) into the walls and the border."""
        out = np.full((64, 64, 1), 20.0, dtype=np.float32)
        for u in range(64):
            angle = self.heading - math.atan((u + 0.5 - 32) / FOCAL)
            direction = np.array([math.cos(angle), -math.sin(angle)])
            for t in np.arange(0.1, 12.0, 0.05):
                p = self.pos + t * direction
                hit = not (-1.0 < p[0] < 9.0 and -3.0 < p[1] < 3.0) or any(
                    abs(p[0] - 4.0) < 0.05 and a[1] <= p[1] <= b[1] for a, b in self.walls
                )
                if hit:
                    out[24:40, u, 0] = t * math.cos(angle - self.heading)
                    break
        return out

    def step(self, action: str) -> None:
        if action == "move_forward":
            nxt = self.pos + 0.25 * np.array([math.cos(self.heading), -math.sin(self.heading)])
            if not self.blocked(nxt):
                self.pos = nxt
        elif action in ("turn_left", "turn_right"):
            self.heading += math.radians(30) * (1 if action == "turn_left" else -1)


def test_the_navigator_maps_and_walks_through_the_door_to_a_goal_in_the_other_room():
    world, occupancy = FloorPlan(), OccupancyMap(extent_m=24.0, cell_m=0.2)
    navigator = Navigator(occupancy, agent_radius_m=0.3)
    goal = np.array([7.0, 1.5])
    for _ in range(200):
        occupancy.update(backproject(world.depth(), world.pos, world.heading, 60.0, 1.5, stride=4), world.pos)
        action = navigator.act(world.pos, world.heading, goal, stop_radius_m=0.5)
        if action is None:
            break
        world.step(action)
    assert np.linalg.norm(world.pos - goal) <= 0.5  # arrived, through the door at x = 4


def test_the_agent_names_the_observations_it_is_missing():
    agent = MapMemoryAgent("memory")
    with pytest.raises(MemstreamError, match="depth") as error:
        agent.act({"rgb": np.zeros((8, 8, 3), np.uint8), "gps": np.zeros(2), "compass": np.zeros(1)})
    assert "gps" not in str(error.value).split(".")[0]
    with pytest.raises(MemstreamError, match="goal_oracle"):
        MapMemoryAgent("oracle")


def test_the_habitat_adapter_denormalises_depth_maps_actions_to_ids_and_names_the_fix_without_habitat():
    from memstream.embodied.agents.habitat_adapter import (
        HabitatAgentAdapter,
        habitat_observations,
        run_habitat_benchmark,
    )

    obs = {
        "rgb": np.zeros((4, 4, 3), np.uint8),
        "depth": np.array([0.0, 0.5, 1.0], np.float32).reshape(1, 3, 1),
        "gps": np.array([1.0, 2.0], np.float32),
        "compass": np.array([0.3], np.float32),
        "goal": "the red box",
    }
    ours = habitat_observations(obs, min_depth_m=0.5, max_depth_m=5.0, instruction_key="goal")
    np.testing.assert_allclose(ours["depth"].ravel(), [0.5, 2.75, 5.0])
    assert ours["phase"] == "task" and ours["instruction"] == "the red box" and ours["compass"].shape == (1,)

    class Turner:
        def reset(self) -> None: ...

        def act(self, observations):
            return "turn_right" if observations["depth"].max() > 4 else "stop"

    assert HabitatAgentAdapter(Turner()).act(obs) == {"action": 3}
    with pytest.raises(MemstreamError, match="habitat-lab cannot be imported") as error:
        run_habitat_benchmark("benchmark.yaml", Turner())
    assert "conda install habitat-sim" in str(error.value)
