"""The 3D-memory metrics on hand-computed cases and on a tiny synthetic dynamic room."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.embodied.map3d.eval import (
    GroundTruth,
    accuracy_completeness,
    ate_rpe,
    backproject,
    chamfer,
    ghost_ratio,
    ghost_zone_of,
    ground_truth,
    position_errors,
    umeyama,
    voxel_downsample,
)
from memstream.streaming import open_source


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _pose(rotation: np.ndarray, translation) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    return pose


def test_accuracy_completeness_hand_computed() -> None:
    pred = np.array([[0.0, 0, 0], [1, 0, 0]])
    gt = np.array([[0.0, 0, 0], [0, 2, 0], [3, 0, 0]])
    accuracy, completeness = accuracy_completeness(pred, gt)
    assert accuracy == pytest.approx((0 + 1) / 2)  # (1,0,0) -> (0,0,0) at 1 m
    assert completeness == pytest.approx((0 + 2 + 2) / 3)  # (0,2,0) and (3,0,0) are 2 m from pred
    assert chamfer(pred, gt) == pytest.approx((0.5 + 4 / 3) / 2)
    with pytest.raises(ValueError):
        accuracy_completeness(np.zeros((0, 3)), gt)


def test_umeyama_recovers_rigid_and_similarity_transforms() -> None:
    source = np.random.default_rng(1).normal(size=(20, 3))
    rotation = _rotation("z", 0.7) @ _rotation("x", -0.4)
    translation = np.array([0.5, -2.0, 3.0])
    scale, r, t = umeyama(source, source @ rotation.T + translation)
    assert scale == 1.0
    np.testing.assert_allclose(r, rotation, atol=1e-12)
    np.testing.assert_allclose(t, translation, atol=1e-12)
    scale, r, t = umeyama(source, 2.5 * source @ rotation.T + translation, with_scale=True)
    assert scale == pytest.approx(2.5, abs=1e-12)
    np.testing.assert_allclose(r, rotation, atol=1e-12)
    np.testing.assert_allclose(t, translation, atol=1e-12)


def _square_trajectory(e: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference on a unit square in z = 0; estimate off the plane by +-e (zero mean, no tilt)."""
    corners = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    reference = np.stack([_pose(np.eye(3), c) for c in corners])
    estimated = np.stack([_pose(np.eye(3), c + [0, 0, e * (-1) ** i]) for i, c in enumerate(corners)])
    return estimated, reference


def test_ate_of_perturbed_trajectory_is_hand_computed_rmse() -> None:
    estimated, reference = _square_trajectory(0.1)
    assert ate_rpe(estimated, reference, align="none")["ate_rmse_m"] == pytest.approx(0.1)
    # A rigid motion of the estimate changes nothing after SE(3) alignment (the best fit is the
    # inverse motion: the +-e offsets have zero mean and no correlation with the square).
    moved = np.einsum("ij,njk->nik", _pose(_rotation("y", 0.8), [3.0, 1.0, -2.0]), estimated)
    result = ate_rpe(moved, reference, align="se3")
    assert result["ate_rmse_m"] == pytest.approx(0.1, abs=1e-12)
    assert result["rpe_rot_deg"] == pytest.approx(0.0, abs=1e-6)
    assert ate_rpe(moved, reference, align="none")["ate_rmse_m"] > 1.0
    # Errors without offsets: a scaled copy is exact only under Sim(3).
    scaled = reference.copy()
    scaled[:, :3, 3] *= 3.0
    assert ate_rpe(scaled, reference, align="sim3")["ate_rmse_m"] == pytest.approx(0.0, abs=1e-12)
    assert ate_rpe(scaled, reference, align="sim3")["scale"] == pytest.approx(1 / 3)
    assert ate_rpe(scaled, reference, align="se3")["ate_rmse_m"] > 0.1


def test_rpe_of_trajectory_with_one_jump() -> None:
    n, jump_at, dx, angle = 10, 4, 0.3, np.radians(5.0)
    reference = np.stack([_pose(np.eye(3), [0, 0, 0.1 * i]) for i in range(n)])
    estimated = reference.copy()
    for i in range(jump_at, n):  # from frame 4 on: shifted 0.3 m along x and rolled 5 deg about z
        estimated[i] = _pose(_rotation("z", angle), [dx, 0, 0.1 * i])
    result = ate_rpe(estimated, reference, align="none")
    # Only the pair (3, 4) is wrong: E = [Rz(5 deg), (0.3, 0, 0)]; the others are exact.
    assert result["rpe_trans_m"] == pytest.approx(dx / np.sqrt(n - 1))
    assert result["rpe_rot_deg"] == pytest.approx(5.0 / np.sqrt(n - 1))
    assert result["ate_rmse_m"] == pytest.approx(dx * np.sqrt((n - jump_at) / n))


def _plane_and_box_truth(voxel_m: float = 0.02) -> GroundTruth:
    """Static floor z = 0 on [0, 1]^2; a 0.2 m box stood on it at (0.4..0.6)^2 before moving on."""
    grid = np.arange(0.0, 1.0 + 1e-9, voxel_m)
    floor = np.stack(np.meshgrid(grid, grid, [0.0], indexing="ij"), -1).reshape(-1, 3)
    side = np.arange(0.4, 0.6 + 1e-9, voxel_m)
    heights = np.arange(0.005, 0.2, voxel_m)
    box = np.stack(np.meshgrid(side, side, heights, indexing="ij"), -1).reshape(-1, 3)
    box = box[(np.isclose(box[:, :2], 0.4) | np.isclose(box[:, :2], 0.6)).any(axis=1)]  # the four sides
    zone = ghost_zone_of(floor, box, voxel_m)
    return GroundTruth(voxel_m, floor, box, zone, {}, None, np.zeros((0, 4, 4)), np.zeros(0))


def test_ghost_zone_excludes_points_touching_static_geometry() -> None:
    gt = _plane_and_box_truth()
    assert 0 < len(gt.ghost_zone) < len(gt.dynamic_swept)
    assert gt.ghost_zone[:, 2].min() > 2 * gt.voxel_m  # the bottom rows touch the floor


def test_ghost_ratio_clean_ghostly_and_mixed_maps() -> None:
    gt = _plane_and_box_truth()
    floor, ghosts = gt.static_points, gt.ghost_zone
    assert ghost_ratio(floor, gt) == 0.0
    assert ghost_ratio(ghosts, gt) == 1.0
    some = ghosts[:: max(len(ghosts) // 50, 1)]
    mixed = np.concatenate([floor, some])
    assert ghost_ratio(mixed, gt) == pytest.approx(len(some) / (len(floor) + len(some)))
    assert ghost_ratio(floor + [0, 0, 0.5], gt) == 0.0  # far above the box: not a ghost
    assert np.isnan(ghost_ratio(np.zeros((0, 3)), gt))


def test_backproject_round_trips_a_tilted_plane() -> None:
    k = np.array([[60.0, 0, 19.5], [0, 60.0, 14.5], [0, 0, 1]])
    pose = _pose(_rotation("y", 0.3) @ _rotation("x", 0.2), [0.5, -0.2, 1.0])
    normal, offset = np.array([0.1, -0.2, 1.0]) / np.linalg.norm([0.1, -0.2, 1.0]), 4.0  # n . x = d
    v, u = np.mgrid[0:30, 0:40]
    rays_cam = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u, float)], -1)
    rays_world = rays_cam @ pose[:3, :3].T  # z-depth is the ray parameter for rays with z = 1
    depth = ((offset - normal @ pose[:3, 3]) / (rays_world @ normal)).astype(np.float32)
    depth[0, 0], depth[1, 1] = 0.0, np.nan
    points = backproject(depth, k, pose)
    assert points.shape == (30 * 40 - 2, 3) and points.dtype == np.float64
    np.testing.assert_allclose(points @ normal, offset, atol=1e-5)  # float32 depth
    cam = (points - pose[:3, 3]) @ pose[:3, :3]
    pixels = cam[:, :2] / cam[:, 2:] * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]]
    valid = np.isfinite(depth) & (depth > 0)
    expected = np.stack([u[valid], v[valid]], 1)  # row-major, the two holes skipped
    np.testing.assert_allclose(pixels, expected, atol=1e-9)
    mask = np.zeros((30, 40), bool)
    mask[10:20, 5:15] = True
    assert len(backproject(depth, k, pose, mask)) == 100
    assert len(backproject(depth, k, pose, stride=2)) == 15 * 20 - 1  # (0, 0) has no depth


def test_voxel_downsample_averages_each_voxel() -> None:
    points = np.array([[0.01, 0.01, 0.01], [0.03, 0.01, 0.01], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(voxel_downsample(points, 0.1), [[0.02, 0.01, 0.01], [0.5, 0.5, 0.5]])


def test_position_errors_counts_missing_and_extra_samples() -> None:
    times = np.array([0.0, 0.1, 0.2, 0.3])
    truth = np.zeros((4, 3))
    gt = GroundTruth(0.02, *(np.zeros((0, 3)),) * 3, {7: (times, truth)}, None, np.zeros((0, 4, 4)), times)
    pred_times = np.array([0.3, 0.0, 0.1 + 5e-7, 0.25])  # unsorted; 0.25 matches nothing
    pred = {7: (pred_times, np.array([[0, 0, 3.0], [1, 0, 0], [0, 2, 0], [9, 9, 9]]))}
    report = position_errors(pred, gt)
    assert report[7] == pytest.approx(
        {"mean_m": 2.0, "median_m": 2.0, "max_m": 3.0, "matched": 3, "missing": 1, "extra": 1}
    )
    assert report[7]["missing"] == 1  # t = 0.2 had no prediction
    unseen = position_errors({}, gt)[7]
    assert unseen["matched"] == 0 and unseen["missing"] == 4 and np.isnan(unseen["mean_m"])
    assert position_errors({9: (times, truth)}, gt)[9]["extra"] == 4  # unknown id: all extra


def test_ground_truth_of_a_tiny_dynamic_room() -> None:
    with open_source("synthetic://dynamic_room?frames=8&size=80x60") as source:
        frames = list(source)
    gt = ground_truth(frames)
    first = frames[0].gt
    dynamic_ids = {int(i) for i in first.object_ids[first.is_dynamic]}
    assert dynamic_ids == {1, 2, 3}  # walker, ball, cart; the furniture stands still
    assert len(gt.static_points) > 1000 and len(gt.ghost_zone) > 50
    assert len(gt.ghost_zone) <= len(gt.dynamic_swept)
    assert set(gt.object_centroids) == dynamic_ids and gt.track_kind == "scene_centre"
    assert gt.poses.shape == (8, 4, 4) and gt.timestamps.shape == (8,)
    for object_id, (times, centroids) in gt.object_centroids.items():
        assert len(times) > 0 and centroids.shape == (len(times), 3)
        centre_times, centres = gt.object_centres[object_id]
        np.testing.assert_array_equal(centre_times, times)
        assert np.all(np.linalg.norm(centres - centroids, axis=1) < 0.8)  # visible surface near centre
    report = position_errors(gt.object_centres, gt)
    assert all(r["max_m"] == 0.0 and r["missing"] == 0 for r in report.values())
    assert ate_rpe(gt.poses, gt.poses)["ate_rmse_m"] == pytest.approx(0.0, abs=1e-9)
    assert ghost_ratio(gt.static_points, gt) == 0.0  # the true static map has no ghosts
    accuracy, completeness = accuracy_completeness(gt.static_points, gt.static_points)
    assert accuracy == completeness == 0.0
