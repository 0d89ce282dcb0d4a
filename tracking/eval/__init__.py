"""One-pass evaluation (OPE) of single-object trackers, as the LaSOT toolkit and pytracking define it.

Public API::

    from memstream.tracking.eval import evaluate_dataset, evaluate_sequence, open_dataset, read_boxes
    results = {}
    for spec in open_dataset("data/LaSOT"):
        pred = read_boxes(f"results/my_tracker/{spec.name}.txt")
        results[spec.name] = evaluate_sequence(pred, spec.gt_xywh, spec.target_visible, spec.protocol)
    report = evaluate_dataset(results)  # report.auc, report.precision, report.norm_precision (x100)
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

__all__ = [
    "NORM_PRECISION_THRESHOLDS",
    "PRECISION_THRESHOLDS_PX",
    "PROTOCOLS",
    "READERS",
    "SUCCESS_THRESHOLDS",
    "DatasetError",
    "OPEReport",
    "SequenceResult",
    "SequenceSpec",
    "TrackingDataset",
    "box_centers",
    "box_iou_lasot",
    "center_error_px",
    "evaluate_dataset",
    "evaluate_sequence",
    "norm_center_error",
    "open_dataset",
    "prepare_predictions",
    "read_boxes",
    "read_flags",
    "read_got10k_sequence",
    "read_lasot_sequence",
    "read_synthetic_sequence",
    "sequence_kind",
    "write_boxes",
]
