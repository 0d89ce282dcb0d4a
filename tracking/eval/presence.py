"""Presence-aware scoring: a frame where the target is gone is correct only when the tracker says so.

LaSOT and GOT-10k (:mod:`memstream.tracking.eval.ope`) never reward a tracker for reporting that the
target is absent. Both replace an empty output by the previous box; LaSOT then counts every frame
where the target is fully occluded or out of view as a failure for every tracker (the toolkit's
``err_coverage = -1``, divided by all frames), and GOT-10k leaves those frames out. A tracker that
keeps a box on a look-alike while the target is gone scores the same as one that reports it absent.
For targets that leave and come back, this module scores the absence report too. It follows OxUvA's
long-term protocol (Valmadre et al., ECCV 2018, ``oxuva/assess.py``), where a frame with the target
absent is a true negative only if the prediction is "absent". The IoU threshold is swept like
LaSOT's success curve, so the numbers sit on the same scale as LaSOT's AUC.

Definition, for one sequence of ``N`` frames (boxes ``x,y,w,h``, pixel-inclusive IoU as in
:func:`~memstream.tracking.eval.ope.box_iou_lasot`):

* ``A``: the annotated frames, those whose GT row is finite (GOT-10k test rows that are not published
  are NaN and are left out). Frame 0 must be annotated with a valid box.
* ``g_t``: the target is present, meaning ``target_visible[t]`` and the GT box has ``w, h > 0``.
* ``r_t``: the tracker reports it present, meaning its box is finite with ``w, h > 0`` and, when
  ``pred_present`` is given, ``pred_present[t]``. An empty or zero box, or ``pred_present[t] ==
  False``, is the report "absent", never "hold the last box". On frame 0 the box is the GT box
  (OPE initialisation), so ``r_0 = 1``.
* per-frame score ``s_t``: ``IoU(b_t, G_t)`` if ``g_t and r_t``, ``0`` if ``g_t and not r_t``,
  ``1`` if ``not g_t and not r_t``, ``0`` if ``not g_t and r_t``.
* success curve ``S(tau) = |{t in A : s_t > tau}| / |A|`` for the 21 LaSOT thresholds
  ``tau = 0, 0.05, ..., 1`` (strict ``>``), and ``AUC = mean_tau S(tau)``.

So ``S(tau) = (TP_tau + TN) / |A|``, with OxUvA's per-frame assessment at IoU threshold ``tau``.
A perfect tracker scores 20/21, as on LaSOT. When the target is present on every frame and the
tracker never gives an empty box, the AUC equals LaSOT's AUC exactly.

Presence as a binary decision, counted over ``A`` without frame 0 (OxUvA leaves out the exemplar
frame), with "present" as the positive class: ``TP = g and r``, ``FP = not g and r``,
``FN = g and not r``, ``TN = not g and not r``. From those: presence precision ``TP / (TP + FP)``,
presence recall ``TP / (TP + FN)``, ``F1 = 2 TP / (2 TP + FP + FN)``, and absence recall
``TN / (TN + FP)`` (OxUvA's TNR, the share of absent frames reported absent). A ratio whose
denominator is 0 is NaN for a sequence. A dataset pools the counts over all its sequences, as
OxUvA's ``statistics`` does. Unlike VOT-LT's tracking precision and recall, these counts take the
tracker's binary decision as given; they neither weight by IoU nor sweep a confidence threshold.

Example:
    >>> import numpy as np
    >>> gt = np.array([[0, 0, 10, 10]] * 4, float)
    >>> visible = np.array([True, True, False, False])
    >>> pred = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 0, 0], [0, 0, 10, 10]], float)
    >>> r = evaluate_presence(pred, gt, visible)
    >>> r.score.tolist(), (r.true_positives, r.false_positives, r.true_negatives)
    ([1.0, 0.5, 1.0, 0.0], (1, 1, 1))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from memstream.streaming.types import read_only
from memstream.tracking.eval.ope import SUCCESS_THRESHOLDS, _as_boxes, _valid_boxes, box_iou_lasot


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


@dataclass(frozen=True)
class PresenceResult:
    """Per-frame presence-aware scores of one sequence (see the module docstring for the formula).

    Attributes:
        score: float64 ``(N,)`` in [0, 1], ``s_t``; 0 on frames that are not annotated.
        annotated: bool ``(N,)``, the frames in ``A`` (GT row finite).
        gt_present: bool ``(N,)``, ``g_t``.
        reported_present: bool ``(N,)``, ``r_t`` (True on frame 0).
        success_curve: float64 ``(21,)``, ``S(tau)`` at :data:`SUCCESS_THRESHOLDS`.
        true_positives, false_positives, false_negatives, true_negatives: the presence counts over
            the annotated frames after frame 0.
    """

    score: np.ndarray
    annotated: np.ndarray
    gt_present: np.ndarray
    reported_present: np.ndarray
    success_curve: np.ndarray
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    def __post_init__(self) -> None:
        for name in ("score", "annotated", "gt_present", "reported_present", "success_curve"):
            read_only(getattr(self, name))

    @property
    def num_frames(self) -> int:
        return len(self.score)

    @property
    def auc(self) -> float:
        """Presence-aware success score in [0, 1], the mean of the 21-point curve."""
        return float(self.success_curve.mean())

    @property
    def presence_precision(self) -> float:
        """``TP / (TP + FP)``, or NaN when the tracker never reports the target after frame 0."""
        return _ratio(self.true_positives, self.true_positives + self.false_positives)

    @property
    def presence_recall(self) -> float:
        """``TP / (TP + FN)``, or NaN when the target is never present after frame 0."""
        return _ratio(self.true_positives, self.true_positives + self.false_negatives)

    @property
    def presence_f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)``, or NaN when there is neither a positive nor a report."""
        return _ratio(2 * self.true_positives, 2 * self.true_positives + self.false_positives + self.false_negatives)

    @property
    def absence_recall(self) -> float:
        """``TN / (TN + FP)`` (OxUvA's TNR), or NaN when the target is never absent."""
        return _ratio(self.true_negatives, self.true_negatives + self.false_positives)


def reported_presence(pred_xywh: np.ndarray, pred_present: np.ndarray | None = None) -> np.ndarray:
    """bool ``(M,)``: the box is finite with ``w, h > 0`` and, when given, ``pred_present`` is True."""
    pred = _as_boxes(pred_xywh, "pred_xywh")
    reported = _valid_boxes(pred)
    if pred_present is not None:
        flags = np.asarray(pred_present).astype(bool).reshape(-1)
        if flags.shape != (len(pred),):
            raise ValueError(f"pred_present has {flags.size} flags for {len(pred)} boxes")
        reported &= flags
    return reported


def evaluate_presence(
    pred_xywh: np.ndarray,
    gt_xywh: np.ndarray,
    target_visible: np.ndarray | None = None,
    pred_present: np.ndarray | None = None,
) -> PresenceResult:
    """Score one tracker output with absent frames counted (see the module docstring).

    Args:
        pred_xywh: float ``(M, 4)`` pixels, ``M >= N``; an empty, zero or NaN box reports "absent".
        gt_xywh: float ``(N, 4)`` pixels; row 0 must be a valid box.
        target_visible: bool ``(N,)`` or None (all visible).
        pred_present: bool ``(M,)`` or None, the tracker's explicit presence flag.

    Returns:
        The per-frame scores, the success curve and the presence counts.

    Raises:
        ValueError: fewer predictions than frames, mismatched flags, or an invalid GT box on frame 0.
    """
    gt = _as_boxes(gt_xywh, "gt_xywh")
    n = len(gt)
    if n == 0:
        raise ValueError("the ground truth has no frames")
    reported = reported_presence(pred_xywh, pred_present)
    if len(reported) < n:
        raise ValueError(f"{len(reported)} predicted boxes for {n} ground-truth frames: need one box per frame")
    if not _valid_boxes(gt[:1])[0]:
        raise ValueError(f"the ground-truth box of frame 0 is not a valid box: {gt[0].tolist()}")
    pred = _as_boxes(pred_xywh, "pred_xywh")[:n].copy()
    reported = reported[:n].copy()
    pred[0], reported[0] = gt[0], True
    annotated = np.isfinite(gt).all(axis=1)
    present = _valid_boxes(gt)
    if target_visible is not None:
        visible = np.asarray(target_visible).astype(bool).reshape(-1)
        if visible.shape != (n,):
            raise ValueError(f"target_visible has {visible.size} flags for {n} frames")
        present &= visible
    both = present & reported
    iou = np.zeros(n)
    iou[both] = box_iou_lasot(pred[both], gt[both])
    score = np.where(present, iou, np.where(reported, 0.0, 1.0))
    score[~annotated] = 0.0
    counted = annotated.copy()
    counted[0] = False
    success = (score[annotated][:, None] > SUCCESS_THRESHOLDS[None]).sum(axis=0) / int(annotated.sum())
    return PresenceResult(
        score=score,
        annotated=annotated,
        gt_present=present,
        reported_present=reported,
        success_curve=success.astype(np.float64),
        true_positives=int((counted & present & reported).sum()),
        false_positives=int((counted & ~present & reported).sum()),
        false_negatives=int((counted & present & ~reported).sum()),
        true_negatives=int((counted & ~present & ~reported).sum()),
    )


@dataclass(frozen=True)
class PresenceReport:
    """Dataset presence-aware scores. Scalars are percentages (x100); NaN where undefined.

    Attributes:
        names: the sequences, in the order given.
        auc: mean over sequences (each weighted equally, as LaSOT's AUC) of the presence-aware AUC.
        success_curve: float64 ``(21,)`` in [0, 1], mean over sequences.
        presence_precision, presence_recall, presence_f1, absence_recall: from the presence counts
            pooled over all sequences (frame-weighted, OxUvA's ``statistics``).
        true_positives, false_positives, false_negatives, true_negatives: the pooled counts.
        sequence_auc: float64 ``(S,)``, each sequence's presence-aware AUC x100, in ``names`` order.
    """

    names: tuple[str, ...]
    auc: float
    success_curve: np.ndarray
    presence_precision: float
    presence_recall: float
    presence_f1: float
    absence_recall: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    sequence_auc: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy: NaN becomes None, arrays lists, ``sequence_auc`` a name -> AUC mapping."""
        out: dict[str, Any] = {"num_sequences": len(self.names)}
        for key in ("auc", "presence_precision", "presence_recall", "presence_f1", "absence_recall"):
            value = float(getattr(self, key))
            out[key] = None if np.isnan(value) else value
        for key in ("true_positives", "false_positives", "false_negatives", "true_negatives"):
            out[key] = int(getattr(self, key))
        out["success_curve"] = self.success_curve.tolist()
        out["sequence_auc"] = dict(zip(self.names, self.sequence_auc.tolist()))
        return out


def evaluate_presence_dataset(results: Mapping[str, PresenceResult]) -> PresenceReport:
    """Average per-sequence AUCs and pool presence counts into dataset scores.

    Raises:
        ValueError: ``results`` is empty.
    """
    if not results:
        raise ValueError("no sequence results to average")
    names = tuple(results)
    seqs = [results[name] for name in names]
    tp, fp, fn, tn = (sum(getattr(r, key) for r in seqs) for key in (
        "true_positives", "false_positives", "false_negatives", "true_negatives"))
    return PresenceReport(
        names=names,
        auc=float(100.0 * np.mean([r.auc for r in seqs])),
        success_curve=read_only(np.mean([r.success_curve for r in seqs], axis=0)),
        presence_precision=100.0 * _ratio(tp, tp + fp),
        presence_recall=100.0 * _ratio(tp, tp + fn),
        presence_f1=100.0 * _ratio(2 * tp, 2 * tp + fp + fn),
        absence_recall=100.0 * _ratio(tn, tn + fp),
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        true_negatives=tn,
        sequence_auc=read_only(np.array([100.0 * r.auc for r in seqs])),
    )
