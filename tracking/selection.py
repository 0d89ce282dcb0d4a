"""SAMURAI's motion-aware choice among SAM 2's candidate masks, and its memory-bank gate.

Model-agnostic: a candidate is a box (from a mask) with the decoder's predicted IoU; the tracker
(SAM 2 or the classical backend) supplies them. Per object, a small state machine as in SAMURAI:

1. *(re)initialise* (no filter or ``stable_frames == 0``): take the highest predicted IoU, start the
   filter on its box, ``stable_frames = 1``;
2. *warm-up* (``0 < stable_frames < stable_frames_threshold``): predict; take the highest predicted
   IoU; if it exceeds ``stable_ious_threshold`` update the filter and count the frame, else reset;
3. *stable*: predict; score each candidate ``alpha * IoU(predicted box, box) + (1 - alpha) * iou``;
   take the best; update the filter unless its predicted IoU is below the threshold (then reset).

Defect of the reference fixed here: SAMURAI updates the filter even when the object is absent (its
empty mask gives the box [0, 0, 0, 0], which pulls the filter to the image corner). Here an absent
object (``object_present`` False) or an empty box leaves the filter coasting on its prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from memstream.streaming.configtypes import strict_config
from memstream.tracking.kalman import KalmanBoxFilter, box_iou_xywh, xyah_to_xywh, xywh_to_xyah


Fraction = Annotated[float, Field(ge=0, le=1)]


@strict_config
@dataclass(frozen=True)
class SamuraiConfig:
    """SAMURAI's constants (its published configs ``configs/samurai/sam2.1_hiera_*.yaml``; the
    defaults are the T/S/B+ ones, ``kf_score_weight`` is 0.15 for SAM 2.1-L).

    Attributes:
        kf_score_weight: alpha, the weight of the motion IoU in the candidate score.
        stable_frames_threshold: frames of warm-up before motion scores are used.
        stable_ious_threshold: minimum predicted IoU to trust a mask for the filter.
        memory_bank_iou_threshold: a frame enters memory only if its predicted IoU (affinity) is above.
        memory_bank_obj_score_threshold: ... and its object score logit is above.
        memory_bank_kf_score_threshold: ... and its motion IoU is above (when one exists).
        min_obj_score_logit: the SAM 2 backend blanks masks whose object score logit is at or below
            this (SAM 2's own threshold is 0; SAMURAI lowers it). Read when the backend is built;
            the selector does not use it.
    """

    kf_score_weight: Fraction = 0.25
    stable_frames_threshold: Annotated[int, Field(ge=1)] = 15
    stable_ious_threshold: Fraction = 0.3
    memory_bank_iou_threshold: Fraction = 0.5
    memory_bank_obj_score_threshold: float = 0.0
    memory_bank_kf_score_threshold: Fraction = 0.0
    min_obj_score_logit: float = -1.0


@dataclass
class MotionState:
    """One object's filter and warm-up counter. ``mean``/``covariance`` are (8,) / (8, 8) or None."""

    mean: np.ndarray | None = None
    covariance: np.ndarray | None = None
    stable_frames: int = 0

    def reset(self) -> None:
        self.mean, self.covariance, self.stable_frames = None, None, 0


@dataclass(frozen=True)
class Selection:
    """The chosen candidate of one frame.

    Attributes:
        index: row of the chosen candidate.
        affinity: its predicted IoU.
        motion_score: IoU between the filter's predicted box and the chosen box, or None outside
            the stable phase (no motion evidence yet).
        predicted_box_xywh: the filter's prediction for this frame (pixels), or None.
    """

    index: int
    affinity: float
    motion_score: float | None
    predicted_box_xywh: np.ndarray | None


class MotionAwareSelector:
    """Applies the state machine of the module docstring to one object's candidates per frame.

    Example:
        >>> selector, state = MotionAwareSelector(), MotionState()
        >>> boxes, ious = np.array([[10, 10, 20, 20], [50, 50, 5, 5]]), np.array([0.9, 0.4])
        >>> selector.select(state, boxes, ious).index, state.stable_frames
        (0, 1)
    """

    def __init__(self, config: SamuraiConfig | None = None) -> None:
        self.config = config or SamuraiConfig()
        self.filter = KalmanBoxFilter()

    def select(
        self, state: MotionState, boxes_xywh: np.ndarray, predicted_ious: np.ndarray, object_present: bool = True
    ) -> Selection:
        """Choose among ``boxes_xywh`` (k, 4) with ``predicted_ious`` (k,); updates ``state`` in place."""
        boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
        ious = np.asarray(predicted_ious, np.float64).reshape(-1)
        if len(boxes) == 0 or len(boxes) != len(ious):
            raise ValueError(f"need one predicted IoU per candidate, got {len(boxes)} boxes, {len(ious)} IoUs")
        cfg = self.config
        if state.mean is None or state.stable_frames == 0:
            best = int(np.argmax(ious))
            if object_present and _non_empty(boxes[best]):
                mean, cov = self.filter.initiate(xywh_to_xyah(boxes[best]))
                state.mean, state.covariance, state.stable_frames = mean[0], cov[0], 1
            return Selection(best, float(ious[best]), None, None)
        mean, cov = self.filter.predict(state.mean[None], state.covariance[None])
        predicted = xyah_to_xywh(mean[:, :4])[0]
        state.mean, state.covariance = mean[0], cov[0]  # coasts on the prediction unless updated below
        if state.stable_frames < cfg.stable_frames_threshold:
            best = int(np.argmax(ious))
            motion = None
            trusted = ious[best] > cfg.stable_ious_threshold
        else:
            motion_ious = box_iou_xywh(predicted[None], boxes)[0]
            best = int(np.argmax(cfg.kf_score_weight * motion_ious + (1 - cfg.kf_score_weight) * ious))
            motion = float(motion_ious[best])
            trusted = ious[best] >= cfg.stable_ious_threshold
        if not object_present or not _non_empty(boxes[best]):
            return Selection(best, float(ious[best]), motion, predicted)
        if not trusted:
            state.stable_frames = 0
        else:
            mean, cov = self.filter.update(mean, cov, xywh_to_xyah(boxes[best]))
            state.mean, state.covariance = mean[0], cov[0]
            state.stable_frames = min(state.stable_frames + 1, cfg.stable_frames_threshold)
        return Selection(best, float(ious[best]), motion, predicted)

    def enters_memory(self, selection: Selection, object_score_logit: float) -> bool:
        """SAMURAI's memory gate: affinity, object score and (when known) motion score above their thresholds."""
        cfg = self.config
        motion_ok = selection.motion_score is None or selection.motion_score > cfg.memory_bank_kf_score_threshold
        return (
            selection.affinity > cfg.memory_bank_iou_threshold
            and object_score_logit > cfg.memory_bank_obj_score_threshold
            and motion_ok
        )


def _non_empty(box_xywh: np.ndarray) -> bool:
    return bool(box_xywh[2] > 0 and box_xywh[3] > 0)
