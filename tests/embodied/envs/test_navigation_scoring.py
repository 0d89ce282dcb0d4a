"""The geodesic grid and habitat-lab's navigation measures, on grids small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memstream.embodied.envs.navgrid import GridSpec, descend, distance_field, nearest_finite
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
    m = NavMetrics([_line(1.0), _line(3.0)], success_distance=0.5, chain_lengths_m=[1.0, 2.0])
    m.reset(np.array([0.0, 0.0]))
    m.update(np.array([1.0, 0.0]))
    assert m.stop() and m.goals_reached == 1 and not m.done
    m.update(np.array([2.0, 0.0]))
    assert not m.stop() and m.done  # 1 m from the second goal: the stop ends the episode
    result = m.metrics()
    assert result["success"] == 0.0 and result["spl"] == 0.0 and result["goals_reached"] == 1.0
    assert result["shortest_path_length"] == pytest.approx(3.0)


def test_high_level_success_wants_every_goal_in_order_within_the_radius():
    goals = [np.array([0.0, 0.0]), np.array([5.0, 0.0])]
    assert high_level_success([np.array([0.5, 0.0]), np.array([5.0, 0.9])], goals, 1.0) == 1.0
    assert high_level_success([np.array([5.0, 0.0]), np.array([0.0, 0.0])], goals, 1.0) == 0.0  # order
    assert high_level_success([np.array([0.0, 0.0])], goals, 1.0) == 0.0  # count
    assert high_level_success(None, goals, 1.0) == 0.0
