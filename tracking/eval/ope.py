"""One-pass evaluation (OPE) of a single-object tracker, as the LaSOT toolkit and pytracking score it.

Boxes are ``[x, y, w, h]`` in pixels, top-left corner, pixel-inclusive (``x2 = x + w - 1``), one row
per frame. The tracker is initialised once with the ground-truth box of frame 0 and never again.
Sources of every rule below: pytracking ``analysis/extract_results.py``, the LaSOT toolkit's
``utils/calc_seq_err_robust.m`` and the got10k toolkit.

Example:
    >>> import numpy as np
    >>> gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    >>> pred = np.array([[5, 5, 3, 3], [0, 0, 10, 5], [50, 50, 10, 10]], float)
    >>> result = evaluate_sequence(pred, gt)
    >>> result.iou.tolist(), round(result.auc, 6)
    ([1.0, 0.5, 0.0], 0.47619)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from memstream.streaming.types import read_only

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)  # IoU, strict ``>`` (LaSOT 0:0.05:1)
PRECISION_THRESHOLDS_PX = np.arange(51, dtype=np.float64)  # centre error, ``<=``
NORM_PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0  # 0, 0.01, ..., 0.50, ``<=``
PRECISION_AT_PX = 20  # reported P = P(20 px), pytracking ``prec_curve[:, 20]``
NORM_PRECISION_AT = 20  # reported P_norm = P_norm(0.20), index 20 of the curve
PROTOCOLS = ("lasot", "got10k", "valid_only")


def _as_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{what} must have shape (N, 4) as x,y,w,h rows, got {array.shape}")
    return array


def _valid_boxes(boxes_xywh: np.ndarray) -> np.ndarray:
    """bool ``(N,)``: every coordinate finite and ``w > 0``, ``h > 0``."""
    return np.isfinite(boxes_xywh).all(axis=1) & (boxes_xywh[:, 2] > 0) & (boxes_xywh[:, 3] > 0)


def box_iou_lasot(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """Row-wise IoU with the pixel-inclusive convention of pytracking / the LaSOT toolkit.

    Args:
        pred_xywh: float ``(N, 4)`` pixels.
        gt_xywh: float ``(N, 4)`` pixels.

    Returns:
        float64 ``(N,)`` in [0, 1]: ``I / (w_p h_p + w_g h_g - I)`` with
        ``I = prod(clip(min(p2, g2) - max(p1, g1) + 1, 0))`` and ``x2 = x + w - 1``.
        Rows whose union is zero (or not finite) give NaN; callers mask them.
    """
    pred, gt = _as_boxes(pred_xywh, "pred_xywh"), _as_boxes(gt_xywh, "gt_xywh")
    top_left = np.maximum(pred[:, :2], gt[:, :2])
    bottom_right = np.minimum(pred[:, :2] + pred[:, 2:] - 1.0, gt[:, :2] + gt[:, 2:] - 1.0)
    intersection = np.clip(bottom_right - top_left + 1.0, 0.0, None).prod(axis=1)
    union = pred[:, 2:].prod(axis=1) + gt[:, 2:].prod(axis=1) - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union


def box_centers(boxes_xywh: np.ndarray) -> np.ndarray:
    """float64 ``(N, 2)``: pixel-inclusive centres ``(x + (w - 1) / 2, y + (h - 1) / 2)``."""
    boxes = _as_boxes(boxes_xywh, "boxes_xywh")
    return boxes[:, :2] + 0.5 * (boxes[:, 2:] - 1.0)


def center_error_px(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """float64 ``(N,)``: Euclidean distance between predicted and GT centres, pixels."""
    return np.linalg.norm(box_centers(pred_xywh) - box_centers(gt_xywh), axis=1)


def norm_center_error(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """float64 ``(N,)``: centre distance with x divided by the GT width and y by the GT height.

    pytracking divides both centres by the GT size before subtracting; dividing the difference
    is the same number, rounded once instead of twice (so 20 px / 100 px is exactly 0.2).
    """
    gt = _as_boxes(gt_xywh, "gt_xywh")
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = (box_centers(pred_xywh) - box_centers(gt)) / gt[:, 2:]
    return np.linalg.norm(scaled, axis=1)


def prepare_predictions(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """Apply the OPE pre-processing of pytracking / the LaSOT toolkit to a tracker's boxes.

    Longer predictions are truncated to the ground truth's length; frame 0 is overwritten by the
    GT box; then, in frame order, a box with ``w <= 0``, ``h <= 0`` or a non-finite value is
    replaced by the previous frame's (already processed) box: an empty output means "hold".

    Args:
        pred_xywh: float ``(M, 4)`` pixels, ``M >= N``.
        gt_xywh: float ``(N, 4)`` pixels; row 0 must be a valid box (OPE starts from it).

    Returns:
        float64 ``(N, 4)``, every row a valid box.

    Raises:
        ValueError: ``M < N``, an empty sequence, or an invalid GT box on frame 0.
    """
    pred, gt = _as_boxes(pred_xywh, "pred_xywh"), _as_boxes(gt_xywh, "gt_xywh")
    if len(gt) == 0:
        raise ValueError("the ground truth has no frames")
    if len(pred) < len(gt):
        raise ValueError(
            f"{len(pred)} predicted boxes for {len(gt)} ground-truth frames: OPE needs one box per frame"
        )
    if not _valid_boxes(gt[:1])[0]:
        raise ValueError(f"the ground-truth box of frame 0 is not a valid box: {gt[0].tolist()}")
    pred = pred[: len(gt)].copy()
    pred[0] = gt[0]
    for t in np.flatnonzero(~_valid_boxes(pred)):
        pred[t] = pred[t - 1]  # t >= 1, and rows before t are already valid
    return pred



@dataclass(frozen=True)
class SequenceResult:
    """Per-frame errors and OPE curves of one sequence.

    Attributes:
        iou: float64 ``(N,)`` in [0, 1]; -1 on invalid frames (never a success).
        center_error_px: float64 ``(N,)`` pixels; +inf on invalid frames (never within a threshold).
        norm_center_error: float64 ``(N,)`` in GT box sizes; +inf on invalid frames.
        valid: bool ``(N,)``: the target is visible and its GT box is finite with ``w, h > 0``.
        success_curve: float64 ``(21,)``: fraction of frames with ``iou > SUCCESS_THRESHOLDS``.
        precision_curve: float64 ``(51,)``: fraction with ``center_error_px <= 0..50 px``.
        norm_precision_curve: float64 ``(51,)``: fraction with ``norm_center_error <= 0..0.5``.
        protocol: "lasot" (fractions of all N frames) or "got10k" / "valid_only" (of valid frames).
    """

    iou: np.ndarray
    center_error_px: np.ndarray
    norm_center_error: np.ndarray
    valid: np.ndarray
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    protocol: str = "lasot"

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                read_only(value)

    @property
    def num_frames(self) -> int:
        return len(self.iou)

    @property
    def auc(self) -> float:
        """Success score in [0, 1]: the mean of the 21-point success curve."""
        return float(self.success_curve.mean())

    @property
    def precision(self) -> float:
        """Precision at 20 px, in [0, 1]."""
        return float(self.precision_curve[PRECISION_AT_PX])

    @property
    def norm_precision(self) -> float:
        """Normalised precision at 0.20, in [0, 1]."""
        return float(self.norm_precision_curve[NORM_PRECISION_AT])


def evaluate_sequence(
    pred_xywh: np.ndarray,
    gt_xywh: np.ndarray,
    target_visible: np.ndarray | None = None,
    protocol: str = "lasot",
) -> SequenceResult:
    """Score one tracker output against the ground truth of one sequence.

    Predictions go through :func:`prepare_predictions` first (truncate, frame 0 := GT, hold the
    previous box over empty / NaN outputs). A frame is *invalid* when ``target_visible`` is False
    or its GT box has ``w <= 0``, ``h <= 0`` or a NaN; it gets ``iou = -1`` and centre errors
    ``+inf``, so it is never a success. The curves divide by:

    * ``protocol="lasot"``: all N frames, so invalid frames count as failures for every tracker
      (pytracking's ``lasot``, the LaSOT MATLAB toolkit's ``len_all``);
    * ``protocol="got10k"`` or ``"valid_only"``: the number of valid frames only (invalid frames
      excluded; GOT-10k's ``cover > 0``). A sequence with no valid frame gets all-zero curves.

    Args:
        pred_xywh: float ``(M, 4)`` pixels, the tracker's box on every frame, ``M >= N``.
        gt_xywh: float ``(N, 4)`` pixels; frame 0 must hold a valid box.
        target_visible: bool ``(N,)`` or None (all visible).
        protocol: one of :data:`PROTOCOLS`.

    Returns:
        The per-frame errors and the success, precision and normalised-precision curves.

    Raises:
        ValueError: fewer predictions than frames, mismatched shapes, or an unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    gt = _as_boxes(gt_xywh, "gt_xywh")
    pred = prepare_predictions(pred_xywh, gt)
    valid = _valid_boxes(gt)
    if target_visible is not None:
        visible = np.asarray(target_visible).astype(bool).reshape(-1)
        if visible.shape != (len(gt),):
            raise ValueError(f"target_visible has {visible.size} flags for {len(gt)} frames")
        valid &= visible
    iou = np.where(valid, box_iou_lasot(pred, gt), -1.0)
    error = np.where(valid, center_error_px(pred, gt), np.inf)
    norm_error = np.where(valid, norm_center_error(pred, gt), np.inf)
    frames = len(gt) if protocol == "lasot" else max(int(valid.sum()), 1)
    return SequenceResult(
        iou=iou,
        center_error_px=error,
        norm_center_error=norm_error,
        valid=valid,
        success_curve=(iou[:, None] > SUCCESS_THRESHOLDS[None]).sum(axis=0) / frames,
        precision_curve=(error[:, None] <= PRECISION_THRESHOLDS_PX[None]).sum(axis=0) / frames,
        norm_precision_curve=(norm_error[:, None] <= NORM_PRECISION_THRESHOLDS[None]).sum(axis=0) / frames,
        protocol=protocol,
    )


@dataclass(frozen=True)
class OPEReport:
    """Dataset scores. Scalars are percentages (x100, as papers print them); curves are fractions.

    Attributes:
        names: the sequences, in the order given.
        auc, precision, norm_precision: mean over sequences (each weighted equally) of the
            per-sequence AUC, P(20 px) and P_norm(0.20), x100.
        success_curve, precision_curve, norm_precision_curve: float64 ``(21,)``, ``(51,)``,
            ``(51,)`` in [0, 1], mean over sequences.
        ao, sr50, sr75: GOT-10k style, x100: mean IoU, and fraction of IoU > 0.5 / > 0.75, pooled
            over the valid frames of all sequences with frame 0 excluded (frame-weighted).
        sequence_auc: float64 ``(S,)``, each sequence's AUC x100, in ``names`` order.
    """

    names: tuple[str, ...]
    auc: float
    precision: float
    norm_precision: float
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    ao: float
    sr50: float
    sr75: float
    sequence_auc: np.ndarray

    @property
    def num_sequences(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy: arrays become lists, ``sequence_auc`` a name -> AUC mapping."""
        out: dict[str, Any] = {"num_sequences": self.num_sequences}
        for key in ("auc", "precision", "norm_precision", "ao", "sr50", "sr75"):
            out[key] = float(getattr(self, key))
        for key in ("success_curve", "precision_curve", "norm_precision_curve"):
            out[key] = getattr(self, key).tolist()
        out["sequence_auc"] = dict(zip(self.names, self.sequence_auc.tolist()))
        return out


def evaluate_dataset(results: Mapping[str, SequenceResult]) -> OPEReport:
    """Average per-sequence results into dataset scores (see :class:`OPEReport`).

    Raises:
        ValueError: ``results`` is empty.
    """
    if not results:
        raise ValueError("no sequence results to average")
    names = tuple(results)
    seqs = [results[name] for name in names]
    pooled = np.concatenate([r.iou[1:][r.valid[1:]] for r in seqs])

    def pct(values: np.ndarray) -> float:
        return float(100.0 * values.mean()) if values.size else 0.0

    return OPEReport(
        names=names,
        auc=pct(np.array([r.auc for r in seqs])),
        precision=pct(np.array([r.precision for r in seqs])),
        norm_precision=pct(np.array([r.norm_precision for r in seqs])),
        success_curve=read_only(np.mean([r.success_curve for r in seqs], axis=0)),
        precision_curve=read_only(np.mean([r.precision_curve for r in seqs], axis=0)),
        norm_precision_curve=read_only(np.mean([r.norm_precision_curve for r in seqs], axis=0)),
        ao=pct(pooled),
        sr50=pct(pooled > 0.5),
        sr75=pct(pooled > 0.75),
        sequence_auc=read_only(np.array([100.0 * r.auc for r in seqs])),
    )
