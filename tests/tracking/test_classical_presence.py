"""Presence in the classical backend: the followers (correlation filter, colour mean shift, optical flow)
may hold an object present only for ``follower_presence_frames`` frames since the memory's templates last
found it; re-detection of a lost object over ``redetect_scales``; the presence radius's pixel floor.

Hand-made scenes: striped patches on a fixed noise background at exact positions (as test_classical).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from memstream.streaming import Frame
from memstream.tracking.classical import ClassicalBackend, ClassicalConfig
from memstream.tracking.classical.backend import _distance_beyond_reach
from memstream.tracking.classical.memory import ObjectMemory
from memstream.tracking.classical.segmentation import ColourModel
from memstream.tracking.kalman import box_iou_xywh
from memstream.tracking.outputs import reports_present
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt

HEIGHT, WIDTH = 120, 160
BACKGROUND = cv2.GaussianBlur(np.random.default_rng(0).integers(60, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8), (5, 5), 0)
ORANGE = (240, 140, 30)


def patch(side: int, seed: int = 1) -> np.ndarray:
    stripes = ((np.arange(side) * 8 // side) % 2).astype(np.float32)[None, :, None]
    noise = 1 + 0.15 * np.random.default_rng(seed).uniform(-1, 1, (side, side, 1))
    return np.clip(np.asarray(ORANGE, np.float32) * (0.55 + 0.45 * stripes) * noise, 0, 255).astype(np.uint8)


def frame(index: int, at: tuple[int, int] | None, side: int = 24, turned: bool = False) -> Frame:
    rgb = BACKGROUND.copy()
    if at is not None:
        p = patch(side)
        rgb[at[1] : at[1] + side, at[0] : at[0] + side] = np.ascontiguousarray(p.transpose(1, 0, 2)) if turned else p
    return Frame(index=index, timestamp_s=index / 30, rgb=rgb)


def box(x: float, y: float, side: float = 24) -> np.ndarray:
    return np.array([x, y, side, side], np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou_xywh(a, b)[0, 0])


def track_a_turn(limit: int | None) -> tuple[list[bool], ClassicalBackend]:
    """Five frames of the object as prompted, then 12 frames where it has turned (the same colours,
    its stripes horizontal: the memory's templates no longer match it, the followers still box it)."""
    backend = ClassicalBackend(ClassicalConfig(follower_presence_frames=limit))
    backend.trace = []
    tracker = Tracker(backend, "samurai")
    reported = []
    for t in range(17):
        state = tracker.update(frame(t, (40, 40), turned=t >= 5), [Prompt(1, box(40, 40))] if t == 0 else []).get(1)
        reported.append(reports_present(state))
    return reported, backend


def test_followers_alone_hold_an_object_present_for_at_most_follower_presence_frames() -> None:
    unlimited, backend = track_a_turn(None)
    follower_frames = [r["frame"] for r in backend.trace if r["logit"] > 0 and r["chosen"] != "template"]
    assert all(unlimited) and len(follower_frames) >= 8  # as first built: the followers' word, indefinitely
    for limit in (0, 3):
        reported, backend = track_a_turn(limit)
        assert all(reported[:5]) and reported[5 : 5 + limit] == [True] * limit
        assert not any(reported[5 + limit :]), (limit, reported)
        # Past the limit the object score is the memory's verdict: the templates' score, below presence.
        late = [r for r in backend.trace if r["frame"] >= 5 + limit]
        assert late and all(r["logit"] <= 0 for r in late)


def test_the_memory_finding_the_object_again_restores_the_followers_grace() -> None:
    backend = ClassicalBackend(ClassicalConfig(follower_presence_frames=2))
    tracker = Tracker(backend, "samurai")
    reported = []
    # Turned for 2 frames (the followers' limit), as prompted for 3, turned for 2 again: present throughout.
    for t, turned in enumerate([False] * 4 + [True] * 2 + [False] * 3 + [True] * 2):
        state = tracker.update(frame(t, (40, 40), turned=turned), [Prompt(1, box(40, 40))] if t == 0 else []).get(1)
        reported.append(reports_present(state))
    assert all(reported), reported


def test_a_lost_object_is_redetected_at_half_its_size_over_redetect_scales() -> None:
    """It leaves, and comes back far away at half its size (it receded while out of sight)."""

    def run(scales: tuple[float, ...]) -> tuple[list[bool], list[float], ObjectMemory]:
        config = ClassicalConfig(lost_after_frames=3, redetect_every=1, redetect_scales=scales, follower_presence_frames=2)
        backend = ClassicalBackend(config)
        tracker = Tracker(backend, "samurai")
        reported, overlap, sizes = [], [], []
        for t in range(30):
            at, side = ((30, 30), 32) if t < 5 else (None, 32) if t < 15 else ((110, 80), 16)
            state = tracker.update(frame(t, at, side), [Prompt(1, box(30, 30, 32))] if t == 0 else []).get(1)
            reported.append(reports_present(state))
            overlap.append(iou(state.box_xywh, box(*at, side)) if at is not None and t >= 15 else 0.0)
            sizes.append(backend._objects[1].size_wh.copy())
        return reported, overlap, sizes

    reported, overlap, sizes = run((0.5, 0.7, 1.0, 1.4))
    assert all(reported[:7]) and not any(reported[7:15])  # the followers' 2 frames on the empty spot, then absent
    back = reported.index(True, 15)
    assert back == 15 and all(reported[back:]) and min(overlap[back:]) > 0.7, (back, overlap)
    assert sizes[back] == pytest.approx([16, 16], abs=1)  # the re-detected size, taken at once
    reported, overlap, _ = run((1.0,))
    assert max(overlap[15:]) < 0.5  # at its former size only, the half-size object is not found


def test_the_presence_radius_has_a_pixel_floor_for_small_objects() -> None:
    start = frame(0, (40, 40), 6)
    hsv = cv2.cvtColor(start.rgb, cv2.COLOR_RGB2HSV)
    grey = cv2.cvtColor(start.rgb, cv2.COLOR_RGB2GRAY)
    for floor, expected in ((0.0, 3 / 6 / 0.3 * 0.3), (4.0, 3 / (4 / 0.3))):
        config = ClassicalConfig(presence_radius_min_px=floor)
        memory = ObjectMemory.start(1, 0, grey, box(40, 40, 6), ColourModel.fit(hsv, box(40, 40, 6), 0.5), config)
        moved = _distance_beyond_reach(box(43, 40, 6), memory, config)  # 3 px to the right of a 6 px object
        assert moved == pytest.approx(expected)
        assert (moved <= config.presence_radius) == (floor >= 3)
        big = ObjectMemory.start(1, 0, grey, box(40, 40, 40), ColourModel.fit(hsv, box(40, 40, 40), 0.5), config)
        assert _distance_beyond_reach(box(52, 40, 40), big, config) == pytest.approx(12 / 40)  # sizes rule above it


def test_config_refuses_redetect_scales_without_the_last_size() -> None:
    with pytest.raises(ValueError, match="ClassicalConfig.redetect_scales=.*1.0"):
        ClassicalConfig(redetect_scales=(0.5, 0.7))
    with pytest.raises(ValueError, match="ClassicalConfig.follower_presence_frames=-1 must be >= 0"):
        ClassicalConfig(follower_presence_frames=-1)
    with pytest.raises(ValueError, match="ClassicalConfig.follower_memory_gate=-0.5"):
        ClassicalConfig(follower_memory_gate=-0.5)
    assert ClassicalConfig(redetect_scales=[1, 0.5]).redetect_scales == (1.0, 0.5)
