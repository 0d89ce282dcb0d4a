"""The batched box Kalman filter against the textbook formulas, per object, and on synthetic motion."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.streaming import open_source
from memstream.tracking.kalman import KalmanBoxFilter, box_iou_xywh, xyah_to_xywh, xywh_to_xyah

SP, SV = 1 / 20, 1 / 160


def textbook_step(mean, cov, z):
    """One predict + update for a single object, written out from the formulas (no batching)."""
    f = np.eye(8)
    f[:4, 4:] = np.eye(4)
    h = mean[3]
    q = np.diag(np.square([SP * h, SP * h, 1e-2, SP * h, SV * h, SV * h, 1e-5, SV * h]))
    mean, cov = f @ mean, f @ cov @ f.T + q
    hm = np.eye(4, 8)
    r = np.diag(np.square([SP * mean[3], SP * mean[3], 1e-1, SP * mean[3]]))
    s = hm @ cov @ hm.T + r
    k = cov @ hm.T @ np.linalg.inv(s)
    return mean + k @ (z - hm @ mean), (np.eye(8) - k @ hm) @ cov


def test_conversions_round_trip_and_zero_height() -> None:
    boxes = np.array([[10, 20, 30, 60], [0, 0, 5, 5], [3.5, 4.25, 7.0, 2.0]])
    assert np.allclose(xyah_to_xywh(xywh_to_xyah(boxes)), boxes)
    assert xywh_to_xyah([[0, 0, 0, 0]])[0, 3] == 1.0


def test_iou_exact_values() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 0]])
    assert np.allclose(box_iou_xywh(a, b), [[50 / 150, 1.0, 0.0, 0.0]])


def test_initiate_matches_samurai_constants() -> None:
    mean, cov = KalmanBoxFilter().initiate(xywh_to_xyah([[100, 50, 20, 40]]))
    h = 40
    expected = np.square([2 * SP * h, 2 * SP * h, 1e-2, 2 * SP * h, 10 * SV * h, 10 * SV * h, 1e-5, 10 * SV * h])
    assert np.allclose(mean, [[110, 70, 0.5, 40, 0, 0, 0, 0]])
    assert np.allclose(cov[0], np.diag(expected))


def test_batched_steps_equal_the_textbook_filter_per_object() -> None:
    rng = np.random.default_rng(0)
    kf = KalmanBoxFilter()
    starts = xywh_to_xyah(rng.uniform([0, 0, 10, 10], [200, 200, 60, 80], (5, 4)))
    mean, cov = kf.initiate(starts)
    ref = [(mean[i].copy(), cov[i].copy()) for i in range(5)]
    for _ in range(20):
        z = mean[:, :4] + rng.normal(0, 2, (5, 4)) * [1, 1, 0.01, 1]
        mean, cov = kf.update(*kf.predict(mean, cov), z)
        ref = [textbook_step(m, c, z[i]) for i, (m, c) in enumerate(ref)]
    assert np.allclose(mean, np.stack([m for m, _ in ref]), rtol=1e-9, atol=1e-9)
    assert np.allclose(cov, np.stack([c for _, c in ref]), rtol=1e-9, atol=1e-9)
    assert np.allclose(cov, cov.transpose(0, 2, 1))  # stays symmetric


def test_filters_are_independent_per_object() -> None:
    kf = KalmanBoxFilter()
    mean, cov = kf.initiate(xywh_to_xyah([[0, 0, 10, 10], [100, 100, 10, 10]]))
    moved = mean[:, :4].copy()
    moved[0, 0] += 5  # only object 0 is measured elsewhere
    new_mean, _ = kf.update(*kf.predict(mean, cov), moved)
    assert new_mean[0, 0] > mean[0, 0] and new_mean[1, 0] == pytest.approx(mean[1, 0])
    assert new_mean[1, 4] == pytest.approx(0.0)


def test_learns_constant_velocity_of_a_synthetic_target() -> None:
    """Tracking the exact GT boxes of the distractors target (constant velocity across the room)."""
    with open_source("synthetic://distractors?frames=60") as source:
        boxes = [f.gt.boxes_xywh[0].astype(float) for f in source if f.gt.visible_fraction[0] > 0.95]
    kf = KalmanBoxFilter()
    mean, cov = kf.initiate(xywh_to_xyah(boxes[0]))
    errors = []
    for box in boxes[1:]:
        mean, cov = kf.predict(mean, cov)
        errors.append(1 - box_iou_xywh(xyah_to_xywh(mean[:, :4]), box[None])[0, 0])
        mean, cov = kf.update(mean, cov, xywh_to_xyah(box))
    assert len(errors) > 20
    # once the velocity is learned, the one-frame-ahead prediction overlaps the truth closely
    assert np.mean(errors[-10:]) < 0.1 and np.mean(errors[-10:]) < errors[0]
    centers = np.array([b[0] + b[2] / 2 for b in boxes])
    assert mean[0, 4] == pytest.approx(np.median(np.diff(centers[-10:])), rel=0.3)
