"""Presence-aware scores against values worked out by hand.

Boxes are ``[x, y, w, h]``, pixel-inclusive; thresholds ``tau = 0, 0.05, ..., 1`` with strict ``>``.
A frame scored 1 succeeds at 20 of the 21 thresholds, a frame scored 0.5 at 10 (tau = 0 .. 0.45),
a frame scored 0 at none.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from memstream.tracking.eval import (
    evaluate_presence,
    evaluate_presence_dataset,
    evaluate_sequence,
    reported_presence,
)

BOX = [0.0, 0.0, 10.0, 10.0]
HALF = [0.0, 0.0, 10.0, 5.0]  # IoU with BOX: I = 50, U = 100 -> 0.5
FAR = [50.0, 50.0, 10.0, 10.0]  # IoU with BOX: 0
EMPTY = [0.0, 0.0, 0.0, 0.0]


def curve_of(frame_hits: list[int], frames: int) -> list[float]:
    """The success curve of frames that each succeed at their first ``hits`` thresholds."""
    return [sum(hits > i for hits in frame_hits) / frames for i in range(21)]


def test_all_present_matches_lasot_when_the_tracker_always_gives_a_box() -> None:
    gt = np.array([BOX] * 3)
    pred = np.array([FAR, HALF, FAR])  # frame 0 is replaced by the GT box
    result = evaluate_presence(pred, gt)
    assert result.score.tolist() == [1.0, 0.5, 0.0]
    assert np.allclose(result.success_curve, curve_of([20, 10, 0], 3))
    assert result.auc == pytest.approx(30 / 63)  # (20 + 10 + 0) / (3 * 21)
    assert result.auc == pytest.approx(evaluate_sequence(pred, gt).auc)
    # frames 1 and 2 are counted: both present, both reported.
    assert (result.true_positives, result.false_positives, result.false_negatives, result.true_negatives) == (2, 0, 0, 0)
    assert result.presence_precision == 1.0 and result.presence_recall == 1.0 and result.presence_f1 == 1.0
    assert math.isnan(result.absence_recall)  # the target is never absent


def test_an_empty_box_on_a_present_frame_scores_zero_instead_of_holding() -> None:
    gt = np.array([BOX] * 3)
    pred = np.array([BOX, EMPTY, BOX])
    result = evaluate_presence(pred, gt)
    assert result.score.tolist() == [1.0, 0.0, 1.0]  # LaSOT would hold BOX on frame 1: 1.0
    assert result.auc == pytest.approx(40 / 63)
    assert evaluate_sequence(pred, gt).auc == pytest.approx(20 / 21)
    assert (result.true_positives, result.false_negatives) == (1, 1)
    assert result.presence_precision == 1.0 and result.presence_recall == 0.5
    assert result.presence_f1 == pytest.approx(2 / 3)  # 2 * 1 / (2 * 1 + 0 + 1)


def test_absent_frames_reported_absent_are_correct() -> None:
    gt = np.array([BOX, EMPTY, EMPTY, EMPTY])  # LaSOT writes 0,0,0,0 where the target is gone
    visible = np.array([True, False, False, False])
    pred = np.array([BOX, EMPTY, [np.nan] * 4, [5.0, 5.0, 0.0, 3.0]])  # zero, NaN, zero-width: all "absent"
    result = evaluate_presence(pred, gt, visible)
    assert result.score.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert result.auc == pytest.approx(20 / 21)  # a perfect tracker, as on LaSOT
    assert (result.true_positives, result.false_positives, result.false_negatives, result.true_negatives) == (0, 0, 0, 3)
    assert result.absence_recall == 1.0
    assert math.isnan(result.presence_precision) and math.isnan(result.presence_recall)
    assert math.isnan(result.presence_f1)
    # LaSOT's protocol counts the same 3 frames as failures whatever the tracker reports: AUC 20 / 84.
    assert evaluate_sequence(pred, gt, visible).auc == pytest.approx(20 / 84)


def test_absent_frames_with_a_box_are_wrong() -> None:
    gt = np.array([BOX] * 4)  # the GT keeps the last box, only the flags say it is gone
    visible = np.array([True, False, False, False])
    pred = np.array([BOX, BOX, HALF, FAR])  # the tracker keeps reporting a box
    result = evaluate_presence(pred, gt, visible)
    assert result.score.tolist() == [1.0, 0.0, 0.0, 0.0]  # even the box right on the old GT
    assert result.auc == pytest.approx(20 / 84)
    assert (result.false_positives, result.true_negatives) == (3, 0)
    assert result.absence_recall == 0.0 and result.presence_precision == 0.0
    assert math.isnan(result.presence_recall)
    assert result.presence_f1 == 0.0  # 0 / (0 + 3 + 0)


def test_mixed_sequence_by_hand() -> None:
    # frame: 0     1     2       3       4      5       6
    # gt:    BOX   BOX   absent  absent  BOX    BOX     absent
    # pred:  -     HALF  EMPTY   FAR     EMPTY  BOX     BOX
    # s_t:   1     0.5   1       0       0      1       0      -> hits 20, 10, 20, 0, 0, 20, 0
    gt = np.array([BOX, BOX, EMPTY, EMPTY, BOX, BOX, BOX])
    visible = np.array([True, True, False, False, True, True, False])
    pred = np.array([FAR, HALF, EMPTY, FAR, EMPTY, BOX, BOX])
    result = evaluate_presence(pred, gt, visible)
    assert result.score.tolist() == [1.0, 0.5, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert result.gt_present.tolist() == [True, True, False, False, True, True, False]
    assert result.reported_present.tolist() == [True, True, False, True, False, True, True]
    assert np.allclose(result.success_curve, curve_of([20, 10, 20, 0, 0, 20, 0], 7))
    assert result.auc == pytest.approx(70 / 147)
    # frames 1-6: TP = {1, 5}, FN = {4}, FP = {3, 6}, TN = {2}
    assert (result.true_positives, result.false_negatives, result.false_positives, result.true_negatives) == (2, 1, 2, 1)
    assert result.presence_precision == 0.5 and result.presence_recall == pytest.approx(2 / 3)
    assert result.presence_f1 == pytest.approx(4 / 7)  # 2 * 2 / (4 + 2 + 1)
    assert result.absence_recall == pytest.approx(1 / 3)


def test_explicit_presence_flag_reports_absence_with_a_box() -> None:
    gt = np.array([BOX] * 3)
    visible = np.array([True, False, True])
    pred = np.array([BOX, BOX, BOX])
    flag = np.array([True, False, False])  # absent on frame 1 (right) and on frame 2 (wrong)
    result = evaluate_presence(pred, gt, visible, pred_present=flag)
    assert result.score.tolist() == [1.0, 1.0, 0.0]
    assert (result.true_negatives, result.false_negatives) == (1, 1)
    assert reported_presence(pred, flag).tolist() == [True, False, False]
    flag_ignored_on_frame_0 = evaluate_presence(pred, gt, visible, pred_present=np.zeros(3, bool))
    assert flag_ignored_on_frame_0.score[0] == 1.0 and flag_ignored_on_frame_0.reported_present[0]


def test_empty_predictions_everywhere() -> None:
    gt = np.array([BOX, BOX, EMPTY])
    visible = np.array([True, True, False])
    result = evaluate_presence(np.zeros((3, 4)), gt, visible)
    assert result.score.tolist() == [1.0, 0.0, 1.0]  # frame 0 is the GT box
    assert result.auc == pytest.approx(40 / 63)
    assert (result.true_positives, result.false_positives) == (0, 0)
    assert math.isnan(result.presence_precision) and result.presence_recall == 0.0
    assert result.presence_f1 == 0.0 and result.absence_recall == 1.0


def test_unannotated_frames_are_left_out() -> None:
    gt = np.array([BOX, [np.nan] * 4, BOX])  # GOT-10k test: a box that is not published
    pred = np.array([BOX, EMPTY, HALF])
    result = evaluate_presence(pred, gt, np.array([True, False, True]))
    assert result.annotated.tolist() == [True, False, True]
    assert np.allclose(result.success_curve, curve_of([20, 10], 2))
    assert (result.true_positives, result.false_negatives, result.true_negatives) == (1, 0, 0)


def test_dataset_averages_auc_per_sequence_and_pools_counts() -> None:
    gt = np.array([BOX, BOX, EMPTY, EMPTY, BOX, BOX, BOX])
    visible = np.array([True, True, False, False, True, True, False])
    mixed = evaluate_presence(np.array([FAR, HALF, EMPTY, FAR, EMPTY, BOX, BOX]), gt, visible)
    perfect = evaluate_presence(np.array([BOX] * 3), np.array([BOX] * 3))
    report = evaluate_presence_dataset({"mixed": mixed, "perfect": perfect})
    assert report.auc == pytest.approx(100 * (70 / 147 + 20 / 21) / 2)
    assert np.allclose(report.success_curve, (mixed.success_curve + perfect.success_curve) / 2)
    # pooled: TP 2 + 2, FP 2, FN 1, TN 1
    assert (report.true_positives, report.false_positives, report.false_negatives, report.true_negatives) == (4, 2, 1, 1)
    assert report.presence_precision == pytest.approx(100 * 4 / 6)
    assert report.presence_recall == pytest.approx(100 * 4 / 5)
    assert report.presence_f1 == pytest.approx(100 * 8 / 11)
    assert report.absence_recall == pytest.approx(100 / 3)
    assert np.allclose(report.sequence_auc, [100 * 70 / 147, 100 * 20 / 21])
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["num_sequences"] == 2 and as_dict["sequence_auc"]["perfect"] == pytest.approx(2000 / 21)
    only_present = evaluate_presence_dataset({"perfect": perfect}).to_dict()
    assert only_present["absence_recall"] is None and only_present["presence_f1"] == 100.0


def test_bad_arguments_raise() -> None:
    gt = np.array([BOX] * 3)
    with pytest.raises(ValueError, match="2 predicted boxes for 3"):
        evaluate_presence(np.array([BOX] * 2), gt)
    with pytest.raises(ValueError, match="pred_present has 2 flags for 3 boxes"):
        evaluate_presence(gt, gt, pred_present=np.ones(2, bool))
    with pytest.raises(ValueError, match="target_visible has 2 flags"):
        evaluate_presence(gt, gt, np.ones(2, bool))
    with pytest.raises(ValueError, match="frame 0"):
        evaluate_presence(gt, np.array([EMPTY, BOX, BOX]))
    with pytest.raises(ValueError, match="no sequence results"):
        evaluate_presence_dataset({})
    assert not evaluate_presence(gt, gt).score.flags.writeable
