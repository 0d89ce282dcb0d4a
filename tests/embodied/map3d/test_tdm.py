"""Transient Dynamics Memory: motion model, expiry, capacity, downsampling, queries, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.embodied.map3d.tdm import DynamicObservation, TDMConfig, TransientDynamicsMemory

FPS = 30.0
SPEED_M_S = 1.0


def cube(center: np.ndarray, side_m: float = 0.1, per_axis: int = 5) -> np.ndarray:
    """float64 (per_axis**3, 3) grid of points centred on ``center``."""
    axis = np.linspace(-side_m / 2, side_m / 2, per_axis)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid + np.asarray(center, dtype=np.float64)


def center_at(t_s: float) -> np.ndarray:
    """The moving cube's centre: 1 m/s along x from (0, 0, 1)."""
    return np.array([SPEED_M_S * t_s, 0.0, 1.0])


def moving_memory(frames: int = 10, config: TDMConfig | None = None, object_id: int = 3):
    tdm = TransientDynamicsMemory(config or TDMConfig())
    for i in range(frames):
        tdm.update(i, i / FPS, {object_id: cube(center_at(i / FPS))})
    return tdm


BAD_CONFIGS = [
    dict(window_frames=0), dict(window_frames=2.5), dict(max_age_s=0.0), dict(max_age_s=float("nan")),
    dict(max_points_per_observation=0), dict(voxel_m=-0.1), dict(max_objects=0), dict(velocity_window=0),
    dict(max_extrapolation_s=-1.0), dict(seed=-1),
]


@pytest.mark.parametrize("bad", BAD_CONFIGS)
def test_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        TDMConfig(**bad)


def test_observation_arrays_are_read_only_copies() -> None:
    source = cube(center_at(0.0))
    obs = DynamicObservation(1, 0, 0.0, source, None, source.mean(axis=0))
    assert obs.points.dtype == np.float32 and obs.centroid.dtype == np.float64
    source[:] = 99.0
    assert obs.points.max() < 2.0
    with pytest.raises(ValueError):
        obs.points[0, 0] = 1.0
    with pytest.raises(ValueError, match="colors"):
        DynamicObservation(1, 0, 0.0, source, np.zeros((2, 3), np.uint8), np.zeros(3))


def test_position_interpolates_centroids_exactly() -> None:
    tdm = moving_memory(10)
    for i in range(9):
        t = (i + 0.37) / FPS
        np.testing.assert_allclose(tdm.position(3, t), center_at(t), rtol=0, atol=1e-12)
    np.testing.assert_allclose(tdm.position(3, 4 / FPS), center_at(4 / FPS), rtol=0, atol=1e-12)
    assert tdm.position(3, -1e-3) is None
    assert tdm.position(99, 0.1) is None

    zigzag = TransientDynamicsMemory()  # interpolation, not a fit: follows a non-linear path
    for i, x in enumerate([0.0, 1.0, 0.0]):
        zigzag.update(i, float(i), {1: np.array([[x, 0.0, 0.0]])})
    np.testing.assert_allclose(zigzag.position(1, 0.5), [0.5, 0, 0])
    np.testing.assert_allclose(zigzag.position(1, 1.25), [0.75, 0, 0])


def test_extrapolation_within_limit_and_none_beyond() -> None:
    tdm = moving_memory(10)
    last = 9 / FPS
    for ahead in (0.1, 0.3, 0.5):
        np.testing.assert_allclose(tdm.position(3, last + ahead), center_at(last + ahead), rtol=0, atol=1e-9)
        np.testing.assert_allclose(tdm.points(3, last + ahead), cube(center_at(last + ahead)), atol=1e-5)
    assert tdm.position(3, last + 0.51) is None
    assert tdm.points(3, last + 0.51).shape == (0, 3)


def test_velocity_uses_the_last_window_only() -> None:
    np.testing.assert_allclose(moving_memory(10).velocity(3), [SPEED_M_S, 0, 0], atol=1e-9)
    assert np.array_equal(moving_memory(1).velocity(3), np.zeros(3))
    assert np.array_equal(TransientDynamicsMemory().velocity(5), np.zeros(3))
    tdm = TransientDynamicsMemory(TDMConfig(velocity_window=5))
    for i in range(10):  # still for 5 frames, then 1 m/s
        tdm.update(i, i / FPS, {1: cube(center_at(max(0, i - 4) / FPS))})
    np.testing.assert_allclose(tdm.velocity(1), [1.0, 0, 0], atol=1e-9)


def test_points_is_the_observation_at_or_before_time() -> None:
    tdm = moving_memory(10)
    np.testing.assert_allclose(tdm.points(3), cube(center_at(9 / FPS)), atol=1e-6)
    np.testing.assert_allclose(tdm.points(3, 4.9 / FPS), cube(center_at(4 / FPS)), atol=1e-6)
    np.testing.assert_allclose(tdm.points(3, 5 / FPS), cube(center_at(5 / FPS)), atol=1e-6)
    assert tdm.points(3, -0.01).shape == (0, 3) and tdm.points(42).shape == (0, 3)
    assert tdm.points(3).dtype == np.float32
    times, centroids = tdm.trajectory(3)
    np.testing.assert_allclose(times, np.arange(10) / FPS)
    np.testing.assert_allclose(centroids, [center_at(t) for t in times], atol=1e-12)


def test_window_keeps_last_observations() -> None:
    tdm = moving_memory(10, TDMConfig(window_frames=4))
    assert [o.frame_index for o in tdm.observations(3)] == [6, 7, 8, 9]
    assert tdm.position(3, 5 / FPS) is None


def test_age_expiry_drops_old_observations_and_forgets_unseen_objects() -> None:
    tdm = TransientDynamicsMemory(TDMConfig(window_frames=1000, max_age_s=0.5))
    for i in range(60):
        seen = {2: cube(center_at(i / FPS) + [0, 1, 0])}
        if i < 10:
            seen[1] = cube(center_at(i / FPS))
        tdm.update(i, i / FPS, seen)
        if i == 24:  # object 1 last seen at 9/30 s, 0.5 s = 15 frames later it is still kept
            assert 1 in tdm and [o.frame_index for o in tdm.observations(1)] == [9]
    assert 1 not in tdm and tdm.objects() == [2] and len(tdm) == 1
    assert all(o.timestamp_s >= 59 / FPS - 0.5 - 1e-12 for o in tdm.observations(2))
    assert len(tdm.observations(2)) == 16  # frames 44..59
    for i in range(60, 80):  # nothing seen: the clock still moves and everything goes
        tdm.update(i, i / FPS, {})
    assert len(tdm) == 0 and tdm.memory_summary()["bytes"] == 0


def test_max_objects_evicts_least_recently_observed() -> None:
    tdm = TransientDynamicsMemory(TDMConfig(max_objects=3))
    for frame, object_id in enumerate([1, 2, 3, 1, 4]):
        tdm.update(frame, frame / FPS, {object_id: cube([object_id, 0, 0])})
    assert tdm.objects() == [1, 3, 4]
    tdm.update(5, 5 / FPS, {5: cube([5, 0, 0]), 6: cube([6, 0, 0])})
    assert tdm.objects() == [4, 5, 6]


def test_downsampling_bounds_points_and_is_deterministic() -> None:
    config = TDMConfig(max_points_per_observation=500, voxel_m=0.02)
    rng = np.random.default_rng(1)
    spread = rng.uniform(0, 1, (20_000, 3))  # mostly one point per voxel: random subset
    colors = rng.integers(0, 256, (20_000, 3), dtype=np.uint8)
    runs = []
    for _ in range(2):
        tdm = TransientDynamicsMemory(config)
        tdm.update(0, 0.0, {1: spread}, {1: colors})
        runs.append(tdm.observations(1)[0])
    assert runs[0].points.shape == (500, 3) and runs[0].colors.shape == (500, 3)
    assert np.array_equal(runs[0].points, runs[1].points) and np.array_equal(runs[0].colors, runs[1].colors)
    np.testing.assert_allclose(runs[0].centroid, spread.mean(axis=0))  # centroid of the full cloud

    dense = rng.uniform(0.001, 0.079, (5_000, 3))  # 4 x 4 x 4 voxels: voxel means only
    tdm = TransientDynamicsMemory(config)
    tdm.update(0, 0.0, {1: dense})
    kept = tdm.observations(1)[0].points
    assert len(kept) == len(np.unique(np.floor(dense / 0.02), axis=0)) <= 64
    expected = [dense[(np.floor(dense / 0.02) == key).all(axis=1)].mean(axis=0)
                for key in np.unique(np.floor(dense / 0.02), axis=0)]
    np.testing.assert_allclose(kept, expected, atol=1e-6)

    small = cube([0, 0, 0])
    tdm.update(1, 0.1, {2: small})
    assert np.array_equal(tdm.observations(2)[0].points, small.astype(np.float32))


def test_time_going_backwards_raises_and_changes_nothing() -> None:
    tdm = moving_memory(5)
    before = tdm.memory_summary()
    with pytest.raises(ValueError, match="backwards"):
        tdm.update(5, 3 / FPS, {3: cube([0, 0, 0])})
    with pytest.raises(ValueError, match="backwards"):
        tdm.update(2, 6 / FPS, {3: cube([0, 0, 0])})
    with pytest.raises(ValueError, match="ids"):
        tdm.update(5, 5 / FPS, {0: cube([0, 0, 0])})
    with pytest.raises(ValueError, match="shape"):
        tdm.update(5, 5 / FPS, {3: cube([0, 0, 0]), 4: np.zeros((4, 2))})
    assert tdm.memory_summary() == before and [o.frame_index for o in tdm.observations(3)] == [0, 1, 2, 3, 4]
    tdm.update(5, 4 / FPS, {3: cube([7, 0, 0]), 4: np.zeros((0, 3))})  # same time: replaces; empty: ignored
    assert [o.frame_index for o in tdm.observations(3)] == [0, 1, 2, 3, 5] and tdm.objects() == [3]


def test_occupied_near_current_points_not_where_it_was_long_ago() -> None:
    tdm = moving_memory(90)  # 0 m -> ~3 m; window 30 frames = 1 s
    now = tdm.points(3)
    assert tdm.occupied(now).all()
    assert tdm.occupied(now + [0, 0.049, 0], radius_m=0.05).all()
    assert not tdm.occupied(now + [0, 0.2, 0], radius_m=0.05).any()
    assert not tdm.occupied(cube(center_at(0.0))).any()
    last = 89 / FPS
    assert tdm.occupied([center_at(last + 0.3)], at_s=last + 0.3).all()
    assert not tdm.occupied([center_at(last + 0.3)], at_s=last).any()
    assert TransientDynamicsMemory().occupied(np.zeros((2, 3))).tolist() == [False, False]


def test_snapshot_labels_points_by_object() -> None:
    tdm = TransientDynamicsMemory()
    tdm.update(0, 0.0, {9: cube([0, 0, 0], per_axis=2), 4: cube([2, 0, 0], per_axis=3)})
    points, ids = tdm.snapshot()
    assert points.dtype == np.float32 and ids.dtype == np.int32
    assert ids.tolist() == [4] * 27 + [9] * 8
    np.testing.assert_allclose(points[ids == 9], cube([0, 0, 0], per_axis=2), atol=1e-6)
    empty_points, empty_ids = TransientDynamicsMemory().snapshot()
    assert empty_points.shape == (0, 3) and empty_ids.shape == (0,)


def assert_states_equal(a: object, b: object) -> None:
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_states_equal(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_states_equal(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    else:
        assert a == b


def test_state_dict_round_trip_is_exact() -> None:
    config = TDMConfig(window_frames=6, max_points_per_observation=100)
    tdm = TransientDynamicsMemory(config)
    rng = np.random.default_rng(2)
    for i in range(12):
        colors = {1: rng.integers(0, 256, (125, 3), dtype=np.uint8)}
        tdm.update(i, i / FPS, {1: cube(center_at(i / FPS)), 2: rng.normal(size=(300, 3))}, colors)
    state = tdm.state_dict()
    restored = TransientDynamicsMemory(config)
    restored.load_state_dict(state)
    assert_states_equal(restored.state_dict(), state)
    assert restored.memory_summary() == tdm.memory_summary()
    for memory in (tdm, restored):  # the window still applies after loading
        memory.update(12, 12 / FPS, {1: cube(center_at(12 / FPS))})
    assert_states_equal(restored.state_dict(), tdm.state_dict())
    assert np.array_equal(restored.position(1, 12.2 / FPS), tdm.position(1, 12.2 / FPS))
    with pytest.raises(ValueError, match="saved with"):
        TransientDynamicsMemory(TDMConfig()).load_state_dict(state)
    restored.reset()
    assert len(restored) == 0 and restored.memory_summary()["bytes"] == 0
    restored.update(0, 0.0, {1: cube([0, 0, 0])})  # the clock was reset too


def test_long_stream_memory_stays_bounded() -> None:
    tdm = TransientDynamicsMemory(TDMConfig(max_points_per_observation=64))
    rng = np.random.default_rng(3)
    sizes = {}
    for i in range(5_000):
        base = 3 * (i // 200)  # fresh ids every 200 frames: the old ones must age out
        t = i / FPS
        clouds = {base + k + 1: rng.normal(center_at(t) + [0, k, 0], 0.05, (40 + 20 * k, 3))
                  for k in range(3)}
        tdm.update(i, t, clouds)
        if i + 1 in (1_000, 5_000):
            sizes[i + 1] = tdm.memory_summary()
    assert sizes[5_000] == sizes[1_000]
    assert sizes[5_000]["objects"] == 3 and sizes[5_000]["observations"] == 90
    bound = 3 * 30 * (64 * (12 + 3) + 24)
    assert 0 < sizes[5_000]["bytes"] <= bound
