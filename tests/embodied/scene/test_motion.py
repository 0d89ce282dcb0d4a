"""Motion detection on scripted positions: hysteresis, a bad first mask, an object already moving
when first seen, slow drift, and what happens out of view."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.embodied.scene import ObjectObservation, SceneConfig, SceneMemory

FPS = 30.0
CUP_M2 = 0.02  # a cup's visible area, square metres: small enough for motion_start_m to apply


def _run(xs: list[float | None], config: SceneConfig | None = None) -> SceneMemory:
    """One object along x (metres) per frame; None: out of view."""
    memory = SceneMemory(config)
    for i, x in enumerate(xs):
        seen = (
            ()
            if x is None
            else (ObjectObservation(1, i, i / FPS, (x, 0.0, 5.0), "world", 0.9, (0, 0, 9, 9), "cup", CUP_M2),)
        )
        memory.observe(i, i / FPS, seen)
    return memory


def _rows(memory: SceneMemory) -> list[tuple]:
    return [(m.start_frame, m.end_frame, round(m.distance_m, 3)) for m in memory.motions("cup")[::-1]]


#: How far (frames) a detected start or end may be from the true one at 1 m/s: the rest radius
#: (0.08 m = 2.4 frames at 1 m/s and 30 fps) and one frame of the 3-frame smoothing median.
SLACK = 4


def _one_move(rows: list[tuple], start: int, end: int, distance_m: float) -> bool:
    ((found_start, found_end, found_distance),) = rows
    return (
        start <= found_start <= start + SLACK
        and end - SLACK <= found_end <= end + 1
        and abs(found_distance - distance_m) <= SceneConfig().motion_rest_m
    )


def test_a_move_is_dated_from_its_last_frame_at_rest_to_its_first_frame_at_rest() -> None:
    # rest at 0 until frame 59, move 1 m over 30 frames, at rest at 1 from frame 89
    xs = [0.0] * 60 + [i / 30 for i in range(1, 31)] + [1.0] * 60
    assert _one_move(_rows(_run(xs)), 59, 89, 1.0)


def test_noise_inside_the_hysteresis_band_is_no_motion() -> None:
    rng = np.random.default_rng(0)
    xs = list(0.15 * np.sin(np.arange(600) / 7) * (rng.random(600) < 0.5))  # jumps of up to 0.15 m < 0.2 m
    assert _rows(_run(xs)) == []


def test_a_bad_first_mask_is_not_where_the_object_rests() -> None:
    xs = [0.15] + [0.0] * 59 + [i / 30 for i in range(1, 31)] + [1.0] * 30
    assert _one_move(_rows(_run(xs)), 59, 89, 1.0)  # not back-dated to frame 0


def test_an_object_moving_when_first_seen_moved_from_there() -> None:
    xs = [i / 30 for i in range(31)] + [1.0] * 30
    assert _rows(_run(xs))[0][0] == 0 and _one_move(_rows(_run(xs)), 0, 30, 1.0)


def test_a_slow_drift_is_followed_and_a_slow_motion_is_seen_as_short_moves() -> None:
    config = SceneConfig()
    limit = config.motion_rest_m / config.rest_follow_s  # 1.6 cm/s
    drift = [0.5 * limit * i / FPS for i in range(900)]  # 30 s at half the limit: 24 cm in all
    assert _rows(_run([0.0] * 30 + drift, config)) == []
    # three times the limit (4.8 cm/s) is below motion_rest_m / motion_settle_s (16 cm/s): it "rests"
    # between short moves, each just past motion_start_m, which add up to the whole way
    slow = [3 * limit * i / FPS for i in range(600)]
    rows = _rows(_run([0.0] * 30 + slow + [slow[-1]] * 30, config))
    assert len(rows) >= 2 and all(config.motion_start_m <= d <= 2 * config.motion_start_m for _, _, d in rows)
    assert sum(d for _, _, d in rows) == pytest.approx(slow[-1], abs=config.motion_start_m)


def test_out_of_view_a_move_spans_the_gap() -> None:
    xs = [0.0] * 60 + [None] * 60 + [1.0] * 60  # it left at rest and came back elsewhere
    assert _rows(_run(xs)) == [(59, 120, 1.0)]  # from its last sighting to its first at the new place
    moving = [i / 30 for i in range(30)]
    xs = [0.0] * 30 + moving + [None] * 30 + [2.0 + i / 30 for i in range(16)] + [2.5] * 30
    # moving when it left, moving when it came back: one motion, ended once it stays put after the gap
    assert _one_move(_rows(_run(xs)), 29, 105, 2.5)


def test_in_image_space_thresholds_scale_and_distances_are_pixels() -> None:
    config = SceneConfig()  # 100 px count as a metre: start at 20 px, rest within 8 px
    memory = SceneMemory(config)
    us = [10.0] * 30 + [10.0 + 3 * i for i in range(1, 31)] + [100.0] * 30  # 90 px at 3 px a frame
    for i, u in enumerate(us):
        memory.observe(
            i, i / FPS, (ObjectObservation(1, i, i / FPS, (u, 50.0), "image", 0.9, (0, 0, 9, 9), "cup", 9.0),)
        )
    (motion,) = memory.motions("cup")
    assert motion.space == "image" and abs(motion.distance_m - 90.0) <= 8.0
    assert 29 <= motion.start_frame <= 29 + 4 and 59 - 4 <= motion.end_frame <= 60


def test_an_object_lost_as_it_stops_and_found_where_it_was_stopped_then() -> None:
    # moving 1 m over 30 frames, lost for 60 frames from its first frame at the end (a tracker that
    # drops it as it stops), found again at that same place: it stopped on frame 90, not on its return
    xs = [0.0] * 60 + [i / 30 for i in range(1, 31)] + [1.0] + [None] * 60 + [1.0] * 30
    assert _one_move(_rows(_run(xs)), 59, 89, 1.0)
    # found elsewhere after the gap: the stay begins after it, as before
    xs = [0.0] * 60 + [i / 30 for i in range(1, 31)] + [1.0] + [None] * 60 + [1.5] * 30
    ((_, end, distance),) = _rows(_run(xs))
    assert end == 151 and distance == pytest.approx(1.5, abs=0.01)


def test_there_and_back_within_motion_confirm_s_is_no_motion() -> None:
    # a mask that takes in a nearer occluder for a second: the estimate jumps 0.8 m and comes back
    xs = [0.0] * 60 + [0.8] * 30 + [0.0] * 60
    assert _rows(_run(xs)) == []
    # out and back in small steps, each a motion of its own: the last one ends where it all began
    xs = [0.0] * 60 + [0.5] * 30 + [1.0] * 30 + [0.0] * 60
    assert _rows(_run(xs)) == []
    # away for longer than motion_confirm_s (3 s), then back: two motions
    xs = [0.0] * 60 + [0.8] * int(4 * FPS) + [0.0] * 60
    assert [(d) for _, _, d in _rows(_run(xs))] == [pytest.approx(0.8), pytest.approx(0.8)]


def test_a_big_object_must_move_by_a_share_of_its_size() -> None:
    # a 0.8 m table (0.64 m^2 seen) must move motion_size_ratio x 0.8 = 0.4 m: its estimate's 0.3 m
    # step is no motion (a cup's is), the 1 m after it is
    assert SceneConfig().motion_size_ratio * 0.8 == pytest.approx(0.4)
    xs = [0.0] * 60 + [0.3] * 60 + [1.3] * 60
    assert [round(d, 1) for _, _, d in _rows(_run(xs))] == [0.3, 1.0]  # the cup
    memory = SceneMemory()
    for i, x in enumerate(xs):
        seen = (ObjectObservation(5, i, i / FPS, (x, 0.0, 5.0), "world", 0.9, (0, 0, 9, 9), "table", 0.64),)
        memory.observe(i, i / FPS, seen)
    assert [round(m.distance_m, 1) for m in memory.motions("table")] == [1.3]


def test_an_occluded_view_does_not_feed_motion_detection() -> None:
    memory = SceneMemory()
    for i in range(150):
        x = 0.8 if 60 <= i < 120 else 0.0  # where the occluder pulls it, while it is in front
        occluded = 60 <= i < 120
        box = (0, 0, 9, 9)
        at = (x, 0.0, 5.0)
        seen = (ObjectObservation(1, i, i / FPS, at, "world", 0.9, box, "cup", CUP_M2, occluded=occluded),)
        memory.observe(i, i / FPS, seen)
    assert memory.motions("cup") == [] and memory.where("cup", 100 / FPS).position[0] == pytest.approx(0.8)
