"""The geometry of ``benchmarks/diag_mikasa_push.py line`` (no simulator): the centroid finds a small
ball's centre on the scene's wood to a fraction of a pixel wherever its window sits, a pixel carried
onto a plane projects back to itself, and a line through points on it misses a point beside it by
exactly the offset."""

import sys
from pathlib import Path

import numpy as np
import pytest

from memstream.embodied.policies.memvla.mikasa import project_to_pixels

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import diag_mikasa_push as diag  # noqa: E402


def _camera() -> tuple[np.ndarray, np.ndarray]:
    # 128 px pinhole looking down at the table from 1 m, tilted 30 degrees about x (OpenCV axes)
    intrinsic = np.array([[110.0, 0.0, 64.0], [0.0, 110.0, 64.0], [0.0, 0.0, 1.0]])
    angle = np.deg2rad(150.0)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]])
    centre = np.array([0.0, -0.5, 1.0])
    return intrinsic, np.hstack([rotation, (-rotation @ centre)[:, None]])


def test_a_pixel_carried_onto_the_plane_projects_back_to_itself():
    intrinsic, extrinsic = _camera()
    for point in ([0.1, 0.2, 0.02], [-0.3, 0.05, 0.02], [0.0, 0.4, 0.1]):
        uv = project_to_pixels(np.array([point]), intrinsic, extrinsic)[0]
        assert np.isfinite(uv).all() and (uv > 0).all() and (uv < 128).all()
        np.testing.assert_allclose(diag.onto_plane(uv, intrinsic, extrinsic, point[2]), point[:2], atol=1e-9)


def test_the_centroid_finds_a_small_ball_between_pixels_on_the_wood_not_the_window():
    # a 2.5 px red disc at a sub-pixel centre on the scene's wood (red minus the mean of green and blue
    # ~120: the test the centroid used until stop 45 took the wood for the ball and followed its window)
    rng = np.random.default_rng(0)
    wood = np.array([230.0, 140.0, 90.0]) + rng.normal(0, 10, (32, 32, 1))
    centre = np.array([13.3, 17.8])  # (u, v) in pixels, pixel centres at +0.5
    fine = (np.arange(32 * 8) + 0.5) / 8
    inside = ((fine[None, :] - centre[0]) ** 2 + (fine[:, None] - centre[1]) ** 2 <= 1.25 ** 2)
    cover = inside.reshape(32, 8, 32, 8).mean(axis=(1, 3))[..., None]
    image = np.clip(np.round(cover * np.array([190.0, 2.0, 2.0]) + (1 - cover) * wood), 0, 255).astype(np.uint8)
    for near in (centre, centre + [2.0, 0.0], centre + [-1.0, 3.0]):  # wherever the window sits
        found = diag.ball_centroid(image, near, radius=4)
        assert found is not None and np.linalg.norm(found - centre) < 0.25, (near, found)
    assert diag.ball_centroid(image, centre + [6.0, 0.0], radius=4) is None  # found, but not near
    plain = np.clip(np.round(wood), 0, 255).astype(np.uint8)
    assert diag.ball_centroid(plain, centre, radius=4) is None  # the wood alone is no ball


def test_a_line_misses_a_point_beside_it_by_the_offset():
    direction = np.array([0.6, 0.8])
    points = [np.array([0.1, -0.2]) + s * direction for s in (0.0, 0.05, 0.1, 0.2)]
    beside = np.array([0.1, -0.2]) + 0.5 * direction + 0.013 * np.array([-0.8, 0.6])
    assert diag.miss_by(points, beside) == pytest.approx(0.013, abs=1e-12)
    assert diag.miss_by(points, np.array([0.1, -0.2]) + 0.7 * direction) == pytest.approx(0.0, abs=1e-12)


def test_push_record_compares_the_policy_with_the_expert_after_the_handover_and_follows_the_ball():
    # (policy action, expert action, tip height, ball planar velocity, goal minus ball) per step after it
    lift = np.array([0.0, 0.0, 1.0, 0, 0, 0, -1.0], np.float32)
    steps = [
        (lift, lift, 0.10, np.zeros(2), np.array([0.0, -0.6])),  # the expert barely moves in the plane: skipped
        (np.array([0.0, 0.5, 0, 0, 0, 0, -1]), np.array([0.3, 0.0, 0, 0, 0, 0, -1]), 0.10,  # moving, tip high: 90 deg
         np.zeros(2), np.array([0.0, -0.6])),
        (np.array([0.0, -0.4, 0, 0, 0, 0, -1]), np.array([0.0, -0.8, 0, 0, 0, 0, -1]), 0.03,  # a push, half as strong
         np.array([0.0, -0.3]), np.array([0.0, -0.5])),
        (np.array([0.4, -0.4, 0, 0, 0, 0, -1]), np.array([0.0, -0.8, 0, 0, 0, 0, -1]), 0.03,  # a push 45 deg off
         np.array([0.5, -0.5]), np.array([0.0, -0.4])),  # the ball's fastest step: 45 deg off the goal
        (lift, lift, 0.10, np.array([0.05, -0.05]), np.array([0.03, -0.04])),  # 5 cm from the goal's centre
    ]
    record = diag.push_record(steps)
    assert record["after_steps_recorded"] == 5 and record["after_moving_frames"] == 3 and record["after_push_frames"] == 2
    assert record["after_heading_median_deg"] == 45.0 and record["after_push_heading_median_deg"] == 22.5
    assert record["after_push_strength_median"] == pytest.approx((0.5 + np.sqrt(0.32) / 0.8) / 2, abs=0.01)
    assert record["after_ball_top_speed_m_s"] == pytest.approx(np.sqrt(0.5), abs=1e-4)
    assert record["after_ball_heading_to_goal_deg"] == 45.0
    assert record["after_closest_ball_to_goal_m"] == pytest.approx(0.05)
    assert diag.push_record([]) == {}  # never handed over: nothing followed
    summary = diag.push_summary([{"success": True, **record}, {"success": False}])
    assert summary["success_after_ball_heading_to_goal_deg"] == 45.0 and summary["failure_after_ball_top_speed_m_s"] is None
