"""The geodesic grid and habitat-lab's navigation measures, on grids small enough to check by hand."""

from __future__ import annotations

import importlib.util
import itertools
import math

import numpy as np
import pytest

from memstream.embodied.envs.goaldistance import GoalDistance, shortest_successful_m
from memstream.embodied.envs.navgrid import (
    GridSpec,
    chained_shortest_m,
    descend,
    distance_field,
    nearest_finite,
)
from memstream.embodied.envs.navmetrics import NavMetrics, high_level_success


def test_distance_field_is_octile_and_goes_around_walls_without_cutting_corners():
    free = np.ones((5, 5), dtype=bool)
    field = distance_field(free, [(0, 0)], cell_m=0.5)
    assert field[0, 4] == pytest.approx(2.0)  # four straight steps
    assert field[4, 4] == pytest.approx(4 * math.sqrt(2) * 0.5)  # four diagonal steps
    assert field[2, 4] == pytest.approx((2 * math.sqrt(2) + 2) * 0.5)
    free[1, 0:4] = False  # a wall with a gap at column 4
    field = distance_field(free, [(0, 0)], cell_m=1.0)
    # (0,0) -> (0,4) straight, down through the gap to (2,4), back to (2,3): no diagonal may cut the
    # wall's end at (1,3), so 4 + 2 + 1 cells
    assert field[2, 3] == pytest.approx(7.0)
    assert np.isinf(distance_field(free, [(1, 1)], 1.0)).all()  # a blocked source reaches nothing


def test_descend_follows_the_field_to_the_source_and_nearest_finite_finds_the_reachable_part():
    free = np.ones((4, 6), dtype=bool)
    free[:, 3] = False
    field = distance_field(free, [(0, 0)], cell_m=1.0)
    path = descend(field, (3, 2))
    assert path[0] == (3, 2) and path[-1] == (0, 0) and len(path) == 4  # three diagonal steps
    assert nearest_finite(field, (1, 4)) in {(0, 2), (1, 2), (2, 2)}
    assert np.isinf(field[:, 4:]).all()


def test_grid_spec_round_trips_cells_and_points():
    grid = GridSpec((-1.0, 2.0), 0.25, (8, 8))
    cells = grid.to_cell(np.array([[-1.0, 2.0], [-0.01, 2.99], [0.9, 3.9]]))
    assert cells.tolist() == [[0, 0], [3, 3], [7, 7]]
    np.testing.assert_allclose(grid.to_xy(cells[:1]), [[-0.875, 2.125]])
    assert grid.inside(np.array([[7, 7], [8, 0], [-1, 3]])).tolist() == [True, False, False]


def _line(goal_x: float):
    return lambda p: abs(float(p[0]) - goal_x)


def test_habitat_success_needs_a_stop_within_the_success_distance():
    m = NavMetrics([_line(2.0)], success_distance=0.2)
    m.reset(np.array([0.0, 0.0]))
    m.update(np.array([1.9, 0.0]))
    assert m.metrics()["success"] == 0.0 and not m.done  # near, but no stop yet
    assert m.stop() and m.done
    result = m.metrics()
    assert result["success"] == 1.0 and result["distance_to_goal"] == pytest.approx(0.1)
    assert result["spl"] == pytest.approx(2.0 / max(2.0, 1.9))  # shortest / max(shortest, path)


def test_spl_is_shortest_over_the_longer_of_shortest_and_the_path_walked():
    m = NavMetrics([_line(2.0)], success_distance=0.2)
    m.reset(np.array([0.0, 0.0]))
    for x in (1.0, 0.0, 1.0, 2.0):  # a detour: 4 m walked for a 2 m shortest path
        m.update(np.array([x, 0.0]))
    m.stop()
    assert m.metrics()["path_length"] == pytest.approx(4.0)
    assert m.metrics()["spl"] == pytest.approx(0.5)


def test_a_stop_away_from_the_goal_fails_the_episode_and_multi_goal_needs_every_goal_in_order():
    m = NavMetrics([_line(1.0), _line(3.0)], success_distance=0.5, shortest_m=2.5)  # stop past 0.5, then 2.5
    m.reset(np.array([0.0, 0.0]))
    m.update(np.array([1.0, 0.0]))
    assert m.stop() and m.goals_reached == 1 and not m.done
    m.update(np.array([2.0, 0.0]))
    assert not m.stop() and m.done  # 1 m from the second goal: the stop ends the episode
    result = m.metrics()
    assert result["success"] == 0.0 and result["spl"] == 0.0 and result["goals_reached"] == 1.0
    assert result["shortest_path_length"] == pytest.approx(2.5)


def test_high_level_success_wants_every_goal_in_order_within_the_radius():
    goals = [np.array([0.0, 0.0]), np.array([5.0, 0.0])]
    assert high_level_success([np.array([0.5, 0.0]), np.array([5.0, 0.9])], goals, 1.0) == 1.0
    assert high_level_success([np.array([5.0, 0.0]), np.array([0.0, 0.0])], goals, 1.0) == 0.0  # order
    assert high_level_success([np.array([0.0, 0.0])], goals, 1.0) == 0.0  # count
    assert high_level_success(None, goals, 1.0) == 0.0


# ---- SPL's shortest: the shortest path that succeeds, on a hand-made house ---------------------------
SUCCESS_M = 0.6


def _house():
    """A 4 x 5 m house of 0.25 m cells: a wall across it with a doorway at one end, a pillar, two
    objects (goals a and c, each blocking its footprint) and a place (goal b) on the far side."""
    grid = GridSpec((0.0, 0.0), 0.25, (16, 20))
    floor = np.ones(grid.shape, dtype=bool)
    floor[8, :] = False
    floor[8, 14:17] = True
    floor[3:6, 9] = False
    objects = np.array([[1.1, 2.6], [0.6, 4.4]])
    centres = grid.to_xy(np.indices(grid.shape).transpose(1, 2, 0))  # (rows, cols, 2)
    walk = floor & (np.linalg.norm(centres[:, :, None] - objects, axis=-1) > 0.45).all(axis=-1)
    goals = [  # each object's distance is measured on the floor without that object (the env's rule)
        GoalDistance(grid, floor, objects[0], ring_m=0.5),
        GoalDistance(grid, walk, np.array([3.3, 0.9]), ring_m=None),
        GoalDistance(grid, floor, objects[1], ring_m=0.5),
    ]
    start = grid.to_xy(np.array([13, 18])) + np.array([0.06, -0.04])  # off its cell's centre
    return grid, walk, goals, start


def _all_pairs(grid, walk):
    """Geodesic metres between every two free cells: (free cells, free cells), and the cells."""
    cells = np.argwhere(walk)
    return np.stack([distance_field(walk, [tuple(c)], grid.cell_m)[tuple(cells.T)] for c in cells]), cells


def _brute_force(grid, walk, goals, start):
    """min over stop cells p_1 .. p_n (goal i's distance at p_i's centre below SUCCESS_M) of
    |start - centre(start cell)| + geo(start cell, p_1) + geo(p_1, p_2) + ...; and the argmin."""
    pairs, cells = _all_pairs(grid, walk)
    regions = [np.flatnonzero([g(xz) < SUCCESS_M for xz in grid.to_xy(cells)]) for g in goals]
    first = int(np.flatnonzero((cells == grid.to_cell(start)).all(axis=1))[0])
    offset = float(np.linalg.norm(grid.to_xy(cells[first]) - start))
    best, stops = np.inf, None
    for chain in itertools.product(*regions):
        length = offset + pairs[first, chain[0]] + sum(pairs[a, b] for a, b in itertools.pairwise(chain))
        if length < best:
            best, stops = length, [cells[k] for k in chain]
    return best, stops


@pytest.mark.parametrize("num_goals", [1, 2, 3])
def test_the_chained_shortest_equals_a_brute_force_minimum_over_stop_cells(num_goals):
    grid, walk, goals, start = _house()
    best, _ = _brute_force(grid, walk, goals[:num_goals], start)
    assert np.isfinite(best)
    shortest = shortest_successful_m(grid, walk, start, goals[:num_goals], SUCCESS_M)
    assert shortest == pytest.approx(best, abs=1e-9)
    # the same with plain callables (evaluated cell by cell) instead of GoalDistance's vectorised path
    plain = [lambda xz, g=g: g(xz) for g in goals[:num_goals]]
    assert shortest_successful_m(grid, walk, start, plain, SUCCESS_M) == pytest.approx(best, abs=1e-9)


def test_the_old_centre_to_centre_chain_is_longer_than_the_shortest_successful_path():
    grid, walk, goals, start = _house()
    for n in (1, 2, 3):
        old, here = 0.0, start  # the former legs: start -> goal 1's centre -> goal 2's centre ...
        for goal in goals[:n]:
            old += goal(here)
            here = goal.goal_xz
        new = shortest_successful_m(grid, walk, start, goals[:n], SUCCESS_M)
        assert old >= new + 0.5 * SUCCESS_M * n  # each stop may come ~success_distance early


def _walk(metrics, cells, grid):
    for cell in cells:
        metrics.update(grid.to_xy(np.asarray(cell)))


def _oracle_run(detour_cells: int = 0):
    """An oracle along the shortest successful path (found by brute force), stopping where it meets each
    success region; ``detour_cells`` cells out and back along its first leg add a detour."""
    grid, walk, goals, start = _house()
    _, stops = _brute_force(grid, walk, goals, start)
    shortest = shortest_successful_m(grid, walk, start, goals, SUCCESS_M)
    metrics = NavMetrics(goals, SUCCESS_M, shortest_m=shortest)
    metrics.reset(start)
    here = tuple(grid.to_cell(start))
    metrics.update(grid.to_xy(np.asarray(here)))
    for goal, stop in zip(goals, stops, strict=True):
        leg = descend(distance_field(walk, [tuple(stop)], grid.cell_m), here)
        if detour_cells:  # out along the leg and back to where it began
            _walk(metrics, leg[1 : detour_cells + 1] + leg[detour_cells - 1 :: -1], grid)
            detour_cells = 0
        _walk(metrics, leg[1:], grid)
        # the stop lies at its region's boundary: within a cell's diagonal of the success distance
        assert SUCCESS_M - grid.cell_m * math.sqrt(2) <= goal(metrics.position) < SUCCESS_M
        assert metrics.stop()
        here = tuple(stop)
    return metrics.metrics(), shortest


def test_an_oracle_that_stops_at_each_success_region_gets_spl_1_and_not_above():
    result, shortest = _oracle_run()
    assert result["success"] == 1.0
    # it walked the shortest successful path (its first step: straight to its cell's centre) and no
    # shorter one succeeds; the former shortest ran on to each goal's centre, longer than any such path
    assert result["path_length"] == pytest.approx(shortest, abs=1e-9)
    assert 1.0 - 1e-9 <= result["spl"] <= 1.0


def test_a_longer_successful_path_gets_proportionally_less_spl():
    straight, shortest = _oracle_run()
    longer, _ = _oracle_run(detour_cells=3)
    extra = longer["path_length"] - straight["path_length"]
    assert extra >= 1.5 and longer["success"] == 1.0  # three cells out and back
    assert longer["spl"] == pytest.approx(shortest / (shortest + extra), rel=1e-9)


def test_distance_field_seeds_sources_with_initial_costs_and_keeps_the_cheaper_duplicate():
    free = np.ones((1, 6), dtype=bool)
    field = distance_field(free, [(0, 0), (0, 5), (0, 5)], 1.0, initial_m=[0.0, 4.0, 1.0])
    np.testing.assert_allclose(field[0], [0.0, 1.0, 2.0, 3.0, 2.0, 1.0])  # 0 + x, or 1 + (5 - x)
    unseeded = distance_field(free, [(0, 2)], 1.0)
    np.testing.assert_array_equal(distance_field(free, [(0, 2)], 1.0, initial_m=[0.0]), unseeded)
    regions = [np.isin(np.arange(6), cols)[None] for cols in ([4, 5], [0])]
    assert chained_shortest_m(free, (0, 2), 0.5, regions, 1.0) == pytest.approx(0.5 + 2 + 4)
    assert chained_shortest_m(free, (0, 2), 0.0, [np.zeros((1, 6), dtype=bool)], 1.0) == math.inf


def test_goal_distance_at_every_cell_centre_is_what_calling_it_there_gives():
    grid, _, goals, _ = _house()
    every = np.argwhere(np.ones(grid.shape, dtype=bool))
    cells = np.concatenate([every, [[-2, 3], [17, 25]]])  # and two off the grid
    for goal in goals:
        called = np.array([goal(xz) for xz in grid.to_xy(cells)])
        np.testing.assert_allclose(goal.at_centres(cells), called, atol=1e-12)
        near = goal.at_centres(cells, below_m=SUCCESS_M)
        np.testing.assert_allclose(near[called < SUCCESS_M], called[called < SUCCESS_M], atol=1e-12)
        assert (near[called >= SUCCESS_M] >= SUCCESS_M).all()


def test_spl_with_no_successful_path_known_is_success_not_nan():
    m = NavMetrics([_line(2.0)], success_distance=0.5, shortest_m=math.inf)
    m.reset(np.array([0.0, 0.0]))
    m.update(np.array([1.8, 0.0]))
    assert m.metrics()["spl"] == 0.0
    m.stop()
    assert m.metrics()["spl"] == 1.0


@pytest.mark.skipif(importlib.util.find_spec("miniworld") is None, reason="needs miniworld (memstream[sim])")
def test_findingdory_scores_spl_against_the_shortest_path_that_stops_near_each_goal():
    from memstream.embodied.envs.miniworld_env import (
        AGENT_RADIUS_M,
        SOLID_RADIUS_M,
        FindingDoryConfig,
        FindingDoryEnv,
    )

    env = FindingDoryEnv(FindingDoryConfig(image_size=32))
    try:
        obs = env.reset(13)  # two goals: an object, then a place
        while obs["phase"] == "history":
            obs = env.step("stop")
        metrics, start = env.metrics, env._xz()
        goals, success_m = metrics.goal_distances, metrics.success_distance
        assert len(goals) == 2
        grid, walk = env._grid(clearance_m=AGENT_RADIUS_M, blocker_radius_m=SOLID_RADIUS_M)
        # the stops of the shortest successful path, back from the last: p_2 then p_1
        first = distance_field(walk, [tuple(grid.to_cell(start))], grid.cell_m)
        cells = np.argwhere(walk)
        regions = [cells[goal.at_centres(cells) < success_m] for goal in goals]
        middle = distance_field(walk, [tuple(c) for c in regions[0]], grid.cell_m,
                                initial_m=first[tuple(regions[0].T)])
        last = tuple(regions[1][np.argmin(middle[tuple(regions[1].T)])])
        back = distance_field(walk, [last], grid.cell_m)
        stop = tuple(regions[0][np.argmin(first[tuple(regions[0].T)] + back[tuple(regions[0].T)])])
        path = descend(first, stop)[::-1] + descend(back, stop)[1:]
        old = goals[0](start) + goals[1](np.asarray(env.goals[0].xz))  # start -> centre -> centre
        assert metrics.shortest_m < old - success_m
        for cell in path:  # an oracle teleported along it, cell centre to cell centre
            metrics.update(grid.to_xy(np.asarray(cell)))
            if cell in (stop, last):
                assert metrics.stop()
        result = env.get_metrics()
        assert result["success"] == 1.0
        assert result["path_length"] == pytest.approx(metrics.shortest_m, abs=1e-9)
        assert result["spl"] == pytest.approx(1.0)
    finally:
        env.close()


@pytest.mark.skipif(importlib.util.find_spec("miniworld") is None, reason="needs miniworld (memstream[sim])")
def test_a_findingdory_task_starts_where_its_goals_can_be_reached():
    from memstream.embodied.envs.miniworld_env import FindingDoryConfig, FindingDoryEnv

    env = FindingDoryEnv(FindingDoryConfig(image_size=32))
    starts = {}
    try:
        # seed 11: an object beside a doorway cut the first drawn start's room off (every agent failed it);
        # seed 13: its first draw reaches the goals, so its start is the one earlier versions drew
        for seed in (11, 13):
            obs = env.reset(seed)
            while obs["phase"] == "history":
                obs = env.step("stop")
            starts[seed] = (env._xz().round(3).tolist(), round(env.metrics.shortest_m, 3), env.start_draws)
    finally:
        env.close()
    assert np.isfinite(starts[11][1]) and starts[11][1] > 0 and starts[11][2] > 1  # bench_nav --rescore reruns it
    assert starts[13] == ([2.45, 2.65], 11.901, 1)  # the first draw, as before the redraw
