"""``ClassicalConfig.world_gate``: the classical backend on frames with depth, intrinsics and pose.

The geometry exactly (a box placed in the world projects back onto its centre), the gate's reach and
size bounds, and hand-made RGB-D scenes (striped patches on a fixed noise background, exact depth and
poses): a look-alike metres away is never taken for a vanished object, a camera that jumps sideways is
followed through the projection of the object's world position, a receding object's size follows its
depth, and frames without depth are tracked exactly as without the option.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from memstream.streaming import Frame, open_source
from memstream.tracking.classical import ClassicalBackend, ClassicalConfig
from memstream.tracking.classical.world import WorldAnchor, WorldView
from memstream.tracking.kalman import box_iou_xywh
from memstream.tracking.outputs import reports_present
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt

HEIGHT, WIDTH, FOCAL, FPS = 120, 320, 100.0, 4.0
K = np.array([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1]])
BACKGROUND = cv2.GaussianBlur(np.random.default_rng(0).integers(60, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8), (5, 5), 0)
WALL_M = 8.0


def patch(side: int) -> np.ndarray:
    stripes = ((np.arange(side) * 8 // side) % 2).astype(np.float32)[None, :, None]
    noise = 1 + 0.15 * np.random.default_rng(1).uniform(-1, 1, (side, side, 1))
    return np.clip(np.asarray((240, 140, 30), np.float32) * (0.55 + 0.45 * stripes) * noise, 0, 255).astype(np.uint8)


def rgbd(index: int, objects: list[tuple[int, int, int, float]], camera_x_m: float = 0.0) -> Frame:
    """``objects``: (x, y, side px, depth m) patches, all the same striped orange; the camera at world
    ``(camera_x_m, 0, 0)`` looking down +z, no rotation."""
    rgb, depth = BACKGROUND.copy(), np.full((HEIGHT, WIDTH), WALL_M, np.float32)
    for x, y, side, z in objects:
        rgb[y : y + side, x : x + side] = patch(side)
        depth[y : y + side, x : x + side] = z
    pose = np.eye(4)
    pose[0, 3] = camera_x_m
    return Frame(index=index, timestamp_s=index / FPS, rgb=rgb, depth_m=depth, intrinsics=K, pose=pose)


def box(x: float, y: float, side: float) -> np.ndarray:
    return np.array([x, y, side, side], np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou_xywh(a, b)[0, 0])


def test_a_box_placed_in_the_world_projects_back_onto_its_centre() -> None:
    yaw = 0.3
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
    pose[:3, 3] = [1.0, -0.2, 2.0]
    depth = np.full((HEIGHT, WIDTH), 6.0, np.float32)
    depth[40:60, 100:120] = 4.0
    view = WorldView(depth, K, pose, 0.0)
    point, size = view.place(box(100, 40, 20))
    (u, v), z = view.project(point)
    assert (u, v, z) == pytest.approx((110, 50, 4.0))
    assert size == pytest.approx([20 * 4.0 / FOCAL] * 2)
    assert view.project(pose[:3, 3] - pose[:3, 2]) is None  # a point behind the camera
    assert WorldView.of(Frame(0, 0.0, np.zeros((HEIGHT, WIDTH, 3), np.uint8))) is None  # no depth, no view


def test_the_reach_grows_with_time_up_to_its_cap_and_the_size_ratio_bounds_candidates() -> None:
    anchor = WorldAnchor(np.zeros(3), np.array([0.3, 0.3]), time_s=10.0)
    at = lambda x, size=0.3: (np.array([x, 0.0, 0.0]), np.array([size, size]))  # noqa: E731
    check = lambda placed, now, cap=2.0: anchor.plausible(placed, anchor.size_m, now, 0.3, 1.0, 1.6, cap)  # noqa: E731
    assert check(at(0.25), 10.0) and not check(at(0.35), 10.0)  # the margin at once
    assert check(at(1.25), 11.0) and not check(at(1.35), 11.0)  # plus a metre per second
    assert not check(at(2.1), 60.0) and check(at(2.1), 60.0, None)  # the cap, and without one
    assert not check(at(0.0, 0.5), 10.0) and check(at(0.0, 0.45), 10.0)  # 1.6x the metric size at most
    assert check(None, 10.0)  # no depth under the box: nothing to check


def track(frames: list[Frame], prompt: np.ndarray, **config) -> tuple[list[np.ndarray], list[bool], ClassicalBackend]:
    backend = ClassicalBackend(ClassicalConfig(**config))
    tracker = Tracker(backend, "samurai")
    boxes, present = [], []
    for f in frames:
        state = tracker.update(f, [Prompt(1, prompt)] if f.index == 0 else []).get(1)
        boxes.append(state.box_xywh.copy())
        present.append(reports_present(state))
    return boxes, present, backend


def test_a_look_alike_metres_away_is_never_taken_for_the_vanished_object() -> None:
    # Both at 3 m, 80 px (2.4 m) apart: the target shows for 5 frames, vanishes for 15, comes back.
    frames = [rgbd(t, [(40, 40, 24, 3.0)] * (t < 5 or t >= 20) + [(120, 40, 24, 3.0)]) for t in range(26)]
    settings = {"lost_after_frames": 3, "redetect_every": 1}
    boxes, present, _ = track(frames, box(40, 40, 24), **settings)
    on_look_alike = [t for t in range(5, 20) if present[t] and iou(boxes[t], box(120, 40, 24)) > 0.5]
    assert on_look_alike  # without the gate the lost target is re-detected on its look-alike
    boxes, present, _ = track(frames, box(40, 40, 24), world_gate=True, **settings)
    assert all(present[:5]) and not any(present[6:20]), present
    assert all(present[21:]) and min(iou(b, box(40, 40, 24)) for b in boxes[21:]) > 0.7  # found again where it was


def test_a_camera_jumping_sideways_is_followed_through_the_objects_world_position() -> None:
    # A static object 2 m ahead; the camera steps 0.9 m a frame, so the object jumps 45 px a frame.
    frames = [rgbd(t, [(260 - 45 * t, 50, 20, 2.0)], camera_x_m=0.9 * t) for t in range(6)]
    truth = [box(260 - 45 * t, 50, 20) for t in range(6)]
    boxes, present, _ = track(frames, truth[0])
    assert min(iou(b, g) for b, g in zip(boxes, truth, strict=True)) < 0.5  # an RGB tracker's window misses it
    boxes, present, _ = track(frames, truth[0], world_gate=True)
    assert all(present) and min(iou(b, g) for b, g in zip(boxes, truth, strict=True)) > 0.7


def test_a_receding_objects_reference_size_follows_its_depth() -> None:
    # From 2 m to 4 m in 16 frames: 24 px to 12 px, its centre still.
    depths = np.linspace(2.0, 4.0, 17)
    sides = [int(round(48 / z)) for z in depths]
    frames = [rgbd(t, [(160 - s // 2, 60 - s // 2, s, float(z))]) for t, (s, z) in enumerate(zip(sides, depths, strict=True))]
    boxes, present, backend = track(frames, box(148, 48, 24), world_gate=True)
    assert all(present)
    assert min(iou(b, box(160 - s // 2, 60 - s // 2, s)) for b, s in zip(boxes, sides, strict=True)) > 0.6
    assert backend._objects[1].size_wh == pytest.approx([12, 12], abs=1.0)


def test_frames_without_depth_are_tracked_exactly_as_without_the_option() -> None:
    with open_source("synthetic://distractors?frames=40&size=160x120") as source:
        frames = [replace(f, depth_m=None) for f in source]
    prompt = frames[0].gt.boxes_xywh[0].astype(np.float64)
    runs = []
    for config in (ClassicalConfig(), ClassicalConfig(world_gate=True)):
        tracker = Tracker(ClassicalBackend(config), "samurai")
        runs.append([tracker.update(f, [Prompt(1, prompt)] if f.index == 0 else []).get(1) for f in frames])
    for plain, gated in zip(*runs, strict=True):
        assert np.array_equal(plain.box_xywh, gated.box_xywh) and np.array_equal(plain.mask, gated.mask)
        assert (plain.affinity, plain.object_score) == (gated.affinity, gated.object_score)
