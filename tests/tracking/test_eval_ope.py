"""OPE metrics against values worked out by hand, and against a per-frame loop of pytracking's rules.

Conventions used in the comments: boxes are ``[x, y, w, h]``, pixel-inclusive (``x2 = x + w - 1``),
centre ``c = (x + (w - 1) / 2, y + (h - 1) / 2)``; thresholds are ``tau = 0, 0.05, ..., 1`` (success,
strict ``>``), ``0..50 px`` and ``0, 0.01, ..., 0.5`` (precision, ``<=``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from memstream.tracking.eval import (
    NORM_PRECISION_THRESHOLDS,
    PRECISION_THRESHOLDS_PX,
    SUCCESS_THRESHOLDS,
    box_iou_lasot,
    center_error_px,
    evaluate_dataset,
    evaluate_sequence,
    norm_center_error,
    prepare_predictions,
)

BOX = [0.0, 0.0, 10.0, 10.0]  # centre (4.5, 4.5), area 100


def three_frame_case():
    """GT is BOX on 3 frames; the IoUs are 1.0 (frame 0 := GT), 0.5 and 0.0."""
    gt = np.array([BOX, BOX, BOX])
    # frame 0: anything, it is overwritten by the GT.
    # frame 1: [0,0,10,5] -> x2,y2 = 9,4; I = 10*5 = 50; U = 50 + 100 - 50 = 100 -> IoU 0.5.
    #          centre (4.5, 2.0) -> error |4.5 - 2.0| = 2.5 px, normalised 2.5 / 10 = 0.25.
    # frame 2: [50,50,10,10] -> no overlap -> IoU 0; centre (54.5, 54.5) -> error 50*sqrt(2) px.
    pred = np.array([[5.0, 5.0, 3.0, 3.0], [0.0, 0.0, 10.0, 5.0], [50.0, 50.0, 10.0, 10.0]])
    return pred, gt


def test_thresholds_are_the_toolkit_ones() -> None:
    assert SUCCESS_THRESHOLDS.shape == (21,) and SUCCESS_THRESHOLDS[10] == 0.5
    assert SUCCESS_THRESHOLDS[0] == 0.0 and SUCCESS_THRESHOLDS[-1] == 1.0
    assert PRECISION_THRESHOLDS_PX.tolist() == list(range(51))
    assert NORM_PRECISION_THRESHOLDS.shape == (51,) and NORM_PRECISION_THRESHOLDS[20] == 0.2


def test_pixel_inclusive_iou_by_hand() -> None:
    gt = np.array([[10, 10, 4, 4]] * 4 + [BOX], float)  # x2 = y2 = 13
    pred = np.array(
        [
            [12, 12, 4, 4],  # I = (13-12+1)^2 = 4, U = 16 + 16 - 4 = 28
            [13, 10, 4, 4],  # one shared column: I = 1*4 = 4, U = 28
            [14, 10, 4, 4],  # touching edges, x1 = 14 > 13: I = 0
            [10, 10, 4, 4],  # identical
            [0.5, 0, 10, 10],  # I = (9 - 0.5 + 1) * 10 = 95, U = 200 - 95 = 105
        ],
        float,
    )
    assert np.allclose(box_iou_lasot(pred, gt), [4 / 28, 4 / 28, 0.0, 1.0, 95 / 105], rtol=0, atol=1e-15)


def test_centre_errors_by_hand() -> None:
    gt = np.array([BOX, [0, 0, 100, 50]], float)
    pred = np.array([[3, 4, 10, 10], [20, 10, 100, 50]], float)
    # (3,4) shift: 5 px, normalised sqrt(0.3^2 + 0.4^2) = 0.5; (20,10) shift on 100x50: sqrt(500) px,
    # normalised sqrt(0.2^2 + 0.2^2).
    assert np.allclose(center_error_px(pred, gt), [5.0, math.sqrt(500)])
    assert np.allclose(norm_center_error(pred, gt), [0.5, math.sqrt(0.08)])


def test_three_frame_success_curve_and_auc_by_hand() -> None:
    pred, gt = three_frame_case()
    result = evaluate_sequence(pred, gt)
    assert result.iou.tolist() == [1.0, 0.5, 0.0]
    # IoU > tau: tau = 0 .. 0.45 (10 thresholds): frames 0, 1 -> 2/3; tau = 0.5 .. 0.95 (10): frame 0
    # only (0.5 > 0.5 is false) -> 1/3; tau = 1.0: nothing (1.0 > 1.0 is false) -> 0.
    expected = np.array([2 / 3] * 10 + [1 / 3] * 10 + [0.0])
    assert np.allclose(result.success_curve, expected, rtol=0, atol=1e-15)
    # AUC = (10 * 2/3 + 10 * 1/3 + 0) / 21 = 10 / 21.
    assert result.auc == pytest.approx(10 / 21, abs=1e-15)
    # Errors 0, 2.5, 70.7 px: P(0..2) = 1/3, P(3..50) = 2/3; P = P(20) = 2/3.
    assert np.allclose(result.precision_curve, [1 / 3] * 3 + [2 / 3] * 48)
    assert result.precision == pytest.approx(2 / 3)
    # Normalised 0, 0.25 (exactly: 2.5 / 10), 7.07: P_norm(0..0.24) = 1/3, P_norm(0.25..0.5) = 2/3.
    assert np.allclose(result.norm_precision_curve, [1 / 3] * 25 + [2 / 3] * 26)
    assert result.norm_precision == pytest.approx(1 / 3)
    assert result.valid.all() and result.num_frames == 3


def test_empty_and_nan_predictions_hold_the_previous_box() -> None:
    gt = np.array([BOX] * 5)
    shifted = [2.0, 0.0, 10.0, 10.0]  # I = 8 * 10 = 80, U = 200 - 80 = 120 -> IoU 2/3
    pred = np.array([[90, 90, 5, 5], shifted, [0, 0, 0, 0], [np.nan] * 4, [1, 1, -3, 4]], float)
    fixed = prepare_predictions(pred, gt)
    assert fixed.tolist() == [BOX, shifted, shifted, shifted, shifted]
    assert np.allclose(evaluate_sequence(pred, gt).iou, [1, 2 / 3, 2 / 3, 2 / 3, 2 / 3])
    # An empty box on frame 1 holds frame 0 *after* it was replaced by the GT, not the raw output.
    held = prepare_predictions(np.array([[90, 90, 5, 5], [0, 0, 0, 0]], float), gt[:2])
    assert held.tolist() == [BOX, BOX]


def absent_case():
    """4 frames, perfect predictions, the target absent on frame 2."""
    gt = np.array([BOX] * 4)
    return gt.copy(), gt, np.array([True, True, False, True])


def test_absent_frame_is_a_failure_under_lasot() -> None:
    pred, gt, visible = absent_case()
    result = evaluate_sequence(pred, gt, visible, protocol="lasot")
    assert result.iou.tolist() == [1.0, 1.0, -1.0, 1.0]
    assert result.center_error_px[2] == np.inf and result.norm_center_error[2] == np.inf
    # 3 successes out of all 4 frames for tau < 1, none at tau = 1: AUC = 20 * (3/4) / 21 = 5/7.
    assert np.allclose(result.success_curve, [0.75] * 20 + [0.0])
    assert result.auc == pytest.approx(5 / 7) and result.precision == 0.75 and result.norm_precision == 0.75


@pytest.mark.parametrize("protocol", ["got10k", "valid_only"])
def test_absent_frame_is_excluded_under_got10k(protocol: str) -> None:
    pred, gt, visible = absent_case()
    result = evaluate_sequence(pred, gt, visible, protocol=protocol)
    # 3 successes out of the 3 valid frames: AUC = 20 / 21.
    assert result.auc == pytest.approx(20 / 21) and result.precision == 1.0 and result.norm_precision == 1.0


@pytest.mark.parametrize("bad_gt", [[0, 0, 0, 0], [0, 0, 10, -1], [np.nan] * 4])
def test_an_invalid_gt_box_marks_the_frame_absent(bad_gt: list[float]) -> None:
    pred, gt, _ = absent_case()
    gt[2] = bad_gt
    result = evaluate_sequence(pred, gt)
    assert result.valid.tolist() == [True, True, False, True] and result.iou[2] == -1.0
    assert result.auc == pytest.approx(5 / 7)


def test_precision_counts_exactly_20_px() -> None:
    gt = np.array([BOX] * 3)
    # Frame 1 shifted 20 px right: error exactly 20 (counted, <=); frame 2 shifted 20.5 px (not counted).
    pred = np.array([BOX, [20, 0, 10, 10], [20.5, 0, 10, 10]], float)
    result = evaluate_sequence(pred, gt)
    assert result.center_error_px.tolist() == [0.0, 20.0, 20.5]
    assert result.precision_curve[19] == pytest.approx(1 / 3)
    assert result.precision == pytest.approx(2 / 3) and result.precision_curve[21] == 1.0


def test_normalised_precision_at_0_20_by_hand() -> None:
    gt = np.array([[0, 0, 100, 50]] * 4, float)
    # Shifts (20, 0) / (100, 50) -> 0.2; (0, 10) -> 0.2; (21, 0) -> 0.21: errors 0, 0.2, 0.2, 0.21.
    pred = np.array([[0, 0, 100, 50], [20, 0, 100, 50], [0, 10, 100, 50], [21, 0, 100, 50]], float)
    result = evaluate_sequence(pred, gt)
    assert result.norm_center_error.tolist() == [0.0, 0.2, 0.2, 0.21]
    assert result.norm_precision == 0.75  # 0, 0.2, 0.2 <= 0.20
    assert result.norm_precision_curve[19] == 0.25 and result.norm_precision_curve[21] == 1.0
    assert result.precision == 0.75  # pixel errors 0, 20, 10, 21


def test_longer_predictions_are_truncated_and_shorter_ones_rejected() -> None:
    pred, gt = three_frame_case()
    longer = np.vstack([pred, [[0, 0, 0, 0], [7, 7, 7, 7]]])
    assert np.array_equal(evaluate_sequence(longer, gt).iou, evaluate_sequence(pred, gt).iou)
    with pytest.raises(ValueError, match="2 predicted boxes for 3 ground-truth frames"):
        evaluate_sequence(pred[:2], gt)


def test_bad_arguments_raise() -> None:
    pred, gt = three_frame_case()
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_sequence(pred, gt, protocol="otb")
    with pytest.raises(ValueError, match="target_visible has 2 flags for 3 frames"):
        evaluate_sequence(pred, gt, np.ones(2, bool))
    with pytest.raises(ValueError, match="frame 0"):
        evaluate_sequence(pred, np.vstack([[0, 0, 0, 0], gt[1:]]))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        evaluate_sequence(pred[:, :3], gt)


def test_dataset_means_weight_sequences_equally_and_ao_pools_frames() -> None:
    pred, gt = three_frame_case()
    results = {"a": evaluate_sequence(pred, gt), "b": evaluate_sequence(gt[:2], gt[:2])}
    report = evaluate_dataset(results)
    # a: AUC 10/21, P 2/3, Pn 1/3.  b: IoU 1, 1 -> AUC 20/21, P 1, Pn 1.
    assert report.auc == pytest.approx(100 * (10 / 21 + 20 / 21) / 2)
    assert report.precision == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert report.norm_precision == pytest.approx(100 * (1 / 3 + 1) / 2)
    assert np.allclose(report.success_curve, (results["a"].success_curve + results["b"].success_curve) / 2)
    # Frame-pooled without frame 0: IoUs 0.5, 0.0 (a) and 1.0 (b): AO 50, SR50 = SR75 = 1/3.
    assert report.ao == pytest.approx(50.0)
    assert report.sr50 == pytest.approx(100 / 3) and report.sr75 == pytest.approx(100 / 3)
    assert report.names == ("a", "b") and np.allclose(report.sequence_auc, [1000 / 21, 2000 / 21])
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["num_sequences"] == 2 and len(as_dict["precision_curve"]) == 51


def test_ao_skips_absent_frames() -> None:
    pred, gt, visible = absent_case()
    pred[3] = [0, 0, 10, 5]  # IoU 0.5
    report = evaluate_dataset({"s": evaluate_sequence(pred, gt, visible)})
    assert report.ao == pytest.approx(75.0)  # frames 1 and 3: (1.0 + 0.5) / 2
    with pytest.raises(ValueError, match="no sequence results"):
        evaluate_dataset({})


def pytracking_loop(pred, gt, visible, protocol):
    """The rules of the reference written frame by frame, for the vectorised code to match."""
    pred, n = [list(map(float, row)) for row in pred[: len(gt)]], len(gt)
    pred[0] = list(gt[0])
    for t in range(1, n):
        if not all(math.isfinite(v) for v in pred[t]) or pred[t][2] <= 0 or pred[t][3] <= 0:
            pred[t] = pred[t - 1]
    ious, errors, norm_errors, valid = [], [], [], 0
    for p, g, seen in zip(pred, gt, visible):
        if not (seen and g[2] > 0 and g[3] > 0):
            ious.append(-1.0), errors.append(math.inf), norm_errors.append(math.inf)
            continue
        valid += 1
        w = max(min(p[0] + p[2], g[0] + g[2]) - max(p[0], g[0]), 0)  # (x2 - x1 + 1) inclusive
        h = max(min(p[1] + p[3], g[1] + g[3]) - max(p[1], g[1]), 0)
        ious.append(w * h / (p[2] * p[3] + g[2] * g[3] - w * h))
        dx, dy = p[0] + (p[2] - 1) / 2 - g[0] - (g[2] - 1) / 2, p[1] + (p[3] - 1) / 2 - g[1] - (g[3] - 1) / 2
        errors.append(math.hypot(dx, dy)), norm_errors.append(math.hypot(dx / g[2], dy / g[3]))
    frames = n if protocol == "lasot" else valid
    success = [sum(i > tau for i in ious) / frames for tau in SUCCESS_THRESHOLDS]
    precision = [sum(e <= th for e in errors) / frames for th in PRECISION_THRESHOLDS_PX]
    norm = [sum(e <= th for e in norm_errors) / frames for th in NORM_PRECISION_THRESHOLDS]
    return ious, success, precision, norm


@pytest.mark.parametrize("protocol", ["lasot", "got10k"])
def test_matches_a_frame_by_frame_loop_on_random_sequences(protocol: str) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 60
        gt = np.column_stack([rng.uniform(0, 200, (n, 2)), rng.uniform(5, 80, (n, 2))])
        pred = gt + rng.normal(0, 12, (n, 4))
        pred[rng.random(n) < 0.15, 2:] = 0  # empty outputs
        gt[rng.random(n) < 0.05] = 0  # unannotated frames
        gt[0] = [10, 10, 30, 30]
        visible = rng.random(n) > 0.1
        result = evaluate_sequence(pred, gt, visible, protocol=protocol)
        ious, success, precision, norm = pytracking_loop(pred, gt, visible, protocol)
        assert np.allclose(result.iou, ious, rtol=0, atol=1e-12)
        assert np.allclose(result.success_curve, success, rtol=0, atol=1e-12)
        assert np.allclose(result.precision_curve, precision, rtol=0, atol=1e-12)
        assert np.allclose(result.norm_precision_curve, norm, rtol=0, atol=1e-12)


def test_result_arrays_are_read_only() -> None:
    pred, gt = three_frame_case()
    result = evaluate_sequence(pred, gt)
    with pytest.raises(ValueError):
        result.iou[0] = 0.0
    assert pred[0].tolist() == [5.0, 5.0, 3.0, 3.0]  # the caller's predictions are not modified
