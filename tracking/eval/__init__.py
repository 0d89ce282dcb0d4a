"""One-pass evaluation (OPE) of single-object trackers, as the LaSOT toolkit and pytracking define it.

Public API::

    from memstream.tracking.eval import evaluate_dataset, evaluate_sequence, open_dataset, read_boxes
    results = {}
    for spec in open_dataset("data/LaSOT"):
        pred = read_boxes(f"results/my_tracker/{spec.name}.txt")
        results[spec.name] = evaluate_sequence(pred, spec.gt_xywh, spec.target_visible, spec.protocol)
    report = evaluate_dataset(results)  # report.auc, report.precision, report.norm_precision (x100)

Presence-aware scoring (a frame where the target is gone counts only when the tracker reports it
absent; OxUvA's per-frame rule swept over LaSOT's thresholds) sits beside it::

    presence = evaluate_presence_dataset({spec.name: evaluate_presence(pred, spec.gt_xywh, spec.target_visible)})
"""

from memstream.tracking.eval.datasets import (
    READERS,
    DatasetError,
    SequenceSpec,
    TrackingDataset,
    open_dataset,
    read_boxes,
    read_flags,
    read_got10k_sequence,
    read_lasot_sequence,
    read_synthetic_sequence,
    sequence_kind,
    write_boxes,
)
from memstream.tracking.eval.ope import (
    NORM_PRECISION_THRESHOLDS,
    PRECISION_THRESHOLDS_PX,
    PROTOCOLS,
    SUCCESS_THRESHOLDS,
    OPEReport,
    SequenceResult,
    box_centers,
    box_iou_lasot,
    center_error_px,
    evaluate_dataset,
    evaluate_sequence,
    norm_center_error,
    prepare_predictions,
)
from memstream.tracking.eval.presence import (
    PresenceReport,
    PresenceResult,
    evaluate_presence,
    evaluate_presence_dataset,
    reported_presence,
)

__all__ = [
    "NORM_PRECISION_THRESHOLDS",
    "PRECISION_THRESHOLDS_PX",
    "PROTOCOLS",
    "READERS",
    "SUCCESS_THRESHOLDS",
    "DatasetError",
    "OPEReport",
    "PresenceReport",
    "PresenceResult",
    "SequenceResult",
    "SequenceSpec",
    "TrackingDataset",
    "box_centers",
    "box_iou_lasot",
    "center_error_px",
    "evaluate_dataset",
    "evaluate_presence",
    "evaluate_presence_dataset",
    "evaluate_sequence",
    "norm_center_error",
    "open_dataset",
    "prepare_predictions",
    "read_boxes",
    "read_flags",
    "read_got10k_sequence",
    "read_lasot_sequence",
    "read_synthetic_sequence",
    "reported_presence",
    "sequence_kind",
    "write_boxes",
]
