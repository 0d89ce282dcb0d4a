"""The memory agent on the project's memories, with exact synthetic RGB-D: persistent object ids from
the tracking memory, the 3D memory fed with depth + gps/compass pose (objects kept out of the static
map, in the dynamics memory by id), the episodic log keyed by those ids, rooms and a path through a
door planned on the 3D memory's top-down grid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memstream.embodied.agents.mapping import backproject
from memstream.embodied.agents.memory_agent import REACH_M, MapMemoryAgent, navigation_map3d_config
from memstream.embodied.agents.memory_map import MemoryOccupancy, camera_pose, pinhole
from memstream.embodied.agents.navigator import Navigator
from memstream.embodied.agents.object_tracks import ObjectTracks
from memstream.embodied.map3d.geometry import backproject_pixels
from memstream.embodied.map3d.memory import DualMemory3D
from memstream.streaming.types import Frame

SIZE, FOV, CAMERA_M = 64, 60.0, 1.5
FOCAL = (SIZE / 2) / math.tan(math.radians(FOV / 2))
GREY, RED, BLUE = (128, 128, 128), (200, 20, 10), (30, 40, 220)


class World:
    """Vertical rectangles on a floor, seen by a level pinhole camera at ``CAMERA_M`` (exact RGB-D).

    A rectangle is ``(p0, p1, top_m, colour)``: the segment p0 -> p1 in the gps frame (forward, right)
    from the floor up to ``top_m``. Rays that hit nothing within 8 m read depth 0."""

    def __init__(self, rects: list[tuple[tuple[float, float], tuple[float, float], float, tuple[int, int, int]]]):
        self.rects = rects

    def render(self, gps: np.ndarray, compass: float) -> tuple[np.ndarray, np.ndarray]:
        cols = np.arange(SIZE) + 0.5 - SIZE / 2
        angles = compass - np.arctan(cols / FOCAL)  # per column, heading of the ray (left positive)
        dirs = np.stack([np.cos(angles), -np.sin(angles)], axis=1)
        along = np.cos(angles - compass)  # z-depth per unit of horizontal distance
        slope = (SIZE / 2 - np.arange(SIZE) - 0.5) / FOCAL  # height gained per metre of z-depth, per row
        depth = np.zeros((SIZE, SIZE), np.float32)
        rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
        floor_z = np.where(slope < 0, CAMERA_M / np.maximum(-slope, 1e-9), np.inf)[:, None] * np.ones(SIZE)[None]
        best = np.where(floor_z < 8.0, floor_z, np.inf)
        rgb[np.isfinite(best)] = (90, 90, 90)
        for p0, p1, top, colour in self.rects:
            a, b = np.asarray(p0, float), np.asarray(p1, float)
            edge = b - a
            for u in range(SIZE):
                matrix = np.array([[dirs[u, 0], -edge[0]], [dirs[u, 1], -edge[1]]])
                if abs(np.linalg.det(matrix)) < 1e-9:
                    continue
                t, s = np.linalg.solve(matrix, a - gps)
                if t <= 0.05 or not 0.0 <= s <= 1.0:
                    continue
                z = t * along[u]
                height = CAMERA_M + slope * z
                hit = (height >= 0.0) & (height <= top) & (z < best[:, u]) & (z < 8.0)
                best[hit, u] = z
                rgb[hit, u] = colour
        depth[np.isfinite(best)] = best[np.isfinite(best)]
        return rgb, depth[..., None]

    def observe(self, gps, compass, phase="task", action=""):
        rgb, depth = self.render(np.asarray(gps, float), compass)
        return {"rgb": rgb, "depth": depth, "gps": np.asarray(gps, np.float32),
                "compass": np.array([compass], np.float32), "phase": phase, "history_action": action}


def two_rooms(objects=()) -> World:
    """Rooms x in [-1, 4] and [4, 9], y in [-3, 3], joined by a 1.2 m door at y in [-0.6, 0.6]."""
    walls = [((-1, -3), (9, -3)), ((9, -3), (9, 3)), ((9, 3), (-1, 3)), ((-1, 3), (-1, -3)),
             ((4, -3), (4, -0.6)), ((4, 0.6), (4, 3))]
    return World([(p0, p1, 2.5, GREY) for p0, p1 in walls] + list(objects))


def box(centre, half=0.3, colour=RED, top=0.6):
    x, y = centre
    corners = [(x - half, y - half), (x - half, y + half), (x + half, y + half), (x + half, y - half)]
    return [(corners[i], corners[(i + 1) % 4], top, colour) for i in range(4)]


def test_camera_pose_and_pinhole_place_pixels_where_the_gps_frame_backprojection_does():
    depth = np.random.default_rng(0).uniform(1.0, 5.0, (SIZE, SIZE)).astype(np.float32)
    gps, compass = np.array([1.0, -2.0]), 0.7
    world = backproject_pixels(depth, pinhole(SIZE, FOV), camera_pose(gps, compass, CAMERA_M), np.ones_like(depth, bool))
    reference = backproject(depth[..., None], gps, compass, FOV, CAMERA_M, stride=1, max_depth_m=100.0)
    np.testing.assert_allclose(world[:, :2], reference[:, :2], atol=1e-4)
    np.testing.assert_allclose(-world[:, 2], reference[:, 2], atol=1e-4)  # the world is (forward, right, down)


def _textured(rng, low, high, shape):
    return np.stack([rng.integers(lo, hi, shape) for lo, hi in zip(low, high, strict=True)], axis=-1).astype(np.uint8)


def test_object_ids_persist_when_an_object_leaves_the_view_and_comes_back():
    """Textured, so the template tracker can follow them (flat colours give it nothing to match:
    then the detector's re-prompts alone keep the ids, as in MiniWorld's flat-shaded scenes)."""
    rng = np.random.default_rng(0)
    tracks = ObjectTracks(keep_frames=3)
    empty = rng.integers(90, 170, (SIZE, SIZE, 1)).repeat(3, 2).astype(np.uint8)
    red = empty.copy()
    red[30:42, 20:30] = _textured(rng, (170, 0, 0), (230, 40, 30), (12, 10))
    both = red.copy()
    both[10:18, 44:52] = _textured(rng, (10, 20, 190), (50, 60, 250), (8, 8))
    sequence = [red, red, red] + [empty] * 5 + [both, both, red]
    ids = []
    for index, rgb in enumerate(sequence):
        output = tracks.update(Frame(index, float(index), rgb))
        ids.append([(s.object_id, int(s.mask.sum())) for s in output.states])
        if index == 7:  # gone for 5 frames: the tracker has let it go (bounded cost)
            assert tracks.tracker.object_ids == []
    assert ids[:3] == [[(1, 120)]] * 3 and ids[3:8] == [[]] * 5
    assert ids[8] == [(1, 120), (2, 64)] and ids[10] == [(1, 120)]  # red is 1 again, blue is new
    assert tracks.label_of == {1: "red", 2: "blue"} and tracks.id_of("red") == 1
    assert tracks.prompts == 3  # red twice (first sight, return), blue once: the tracker followed them between


def test_with_depth_an_objects_mask_takes_its_shaded_faces():
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    rgb[30:40, 20:30] = RED
    depth = np.full((SIZE, SIZE), 5.0, np.float32)
    depth[28:42, 18:32] = 2.0  # the object: 2 px of shaded face around its coloured one
    output = ObjectTracks().update(Frame(0, 0.0, rgb, depth))
    assert int(output.get(1).mask.sum()) == 14 * 14


@pytest.fixture(scope="module")
def history():
    """An agent that saw a red box from three headings, picked it and put it down in the other room."""
    world = two_rooms(box((2.0, 1.0)))
    agent = MapMemoryAgent("memory", fov_deg=FOV)
    for compass in (0.6, 0.3, 0.0, -0.3):
        agent.act(world.observe([0.0, 0.0], compass, phase="history"))
    facts = {"seen_before_pick": dict(agent.objects())}
    heading = math.atan2(-(1.0 - 0.0), 2.0 - 1.05)  # face the box from ~1 m
    agent.act(world.observe([1.05, 0.0], heading, phase="history", action="pick"))
    carried = two_rooms()  # the box travels with the agent: the world no longer has it
    for x in (2.0, 3.0, 4.0, 5.0):
        agent.act(carried.observe([x, 0.0], 0.0, phase="history"))
    agent.act(carried.observe([6.0, 0.0], 0.0, phase="history", action="place"))
    return agent, facts


def test_the_history_goes_into_the_tracking_and_3d_memories_and_a_log_keyed_by_id(history):
    agent, facts = history
    assert agent.tracks.label_of == {1: "red"}
    np.testing.assert_allclose(facts["seen_before_pick"][1], [2.0, 1.0], atol=0.3)  # from the dynamics memory
    assert [(e.kind, e.object_id, e.label) for e in agent.log] == [("pick", 1, "red"), ("place", 1, "red")]
    np.testing.assert_allclose(agent.log[0].position, [2.0, 1.0], atol=0.3)
    np.testing.assert_allclose(agent.log[1].position, [6.0 + REACH_M, 0.0], atol=1e-6)
    np.testing.assert_allclose(agent.object_position(1), [6.0 + REACH_M, 0.0], atol=1e-6)
    assert agent.map3d.tdm.objects() == [1] and agent.map3d.psm.frames_fused == agent.frame == 10 and agent.carrying is None
    memory = agent.episodic_memory()
    assert memory.picked == ["red"] and memory.untouched == []


def test_the_box_is_in_the_dynamics_memory_not_the_static_map_and_the_walls_are_static(history):
    agent, _ = history
    view = agent.occupancy.view()
    grid = agent.occupancy.grid

    def cell(x, y):
        return tuple(grid.to_cell(np.array([x, y])))

    centres, tsdf, _ = agent.map3d.psm.observed_voxels()
    near_box = (np.linalg.norm(centres[:, :2] - [2.0, 1.0], axis=1) < 0.4) & (-centres[:, 2] > 0.3)
    surface = np.abs(tsdf) <= 1.5 / agent.map3d_config.psm.trunc_voxels
    assert not (near_box & surface).any()  # the box never entered the static TSDF
    assert agent.occupancy.occupied[cell(4.0, 2.0)] and agent.occupancy.walls[cell(4.0, 2.0)]
    assert view.dynamic[cell(1.75, 0.75)] or view.dynamic[cell(1.75, 1.0)]


def test_rooms_come_from_the_3d_memorys_walls_with_the_door_shut(history):
    agent, _ = history
    same = agent.occupancy.same_room
    assert same(np.array([6.0, -1.0]), np.array([7.5, 1.0]))
    assert not same(np.array([2.5, 0.0]), np.array([6.0, 0.0]))  # the straight line runs through the door


def test_the_navigator_walks_through_the_door_on_the_3d_memorys_grid():
    world = two_rooms()
    memory = DualMemory3D(navigation_map3d_config())
    occupancy = MemoryOccupancy(memory, cell_m=memory.config.psm.voxel_m)
    navigator = Navigator(occupancy, agent_radius_m=0.3)
    position, heading, goal = np.array([1.0, -2.0]), 0.0, np.array([7.0, 1.5])
    for index in range(200):
        rgb, depth = world.render(position, heading)
        memory.update(Frame(index, float(index), rgb, depth[..., 0], pinhole(SIZE, FOV), camera_pose(position, heading, CAMERA_M)))
        action = navigator.act(position, heading, goal, stop_radius_m=0.5)
        if action is None:
            break
        if action == "move_forward":
            step = position + 0.25 * np.array([math.cos(heading), -math.sin(heading)])
            through_door = abs(step[1]) < 0.6 - 0.3
            if -0.7 < step[0] < 8.7 and -2.7 < step[1] < 2.7 and (abs(step[0] - 4.0) > 0.3 or through_door):
                position = step
        else:
            heading += math.radians(30) * (1 if action == "turn_left" else -1)
    assert np.linalg.norm(position - goal) <= 0.5 and occupancy.refreshes > 10
