"""Run a tracker over an annotated dataset and score it (``memstream eval-track``).

The backend (and its model) is built once; each sequence starts from a fresh tracker state,
initialised with the first ground-truth box (OPE), and the boxes of every frame are written as
``<sequence>.txt`` (LaSOT format) before scoring, so the results can be re-scored by other toolkits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.config import RunConfig
from memstream.streaming.configtypes import dump
from memstream.streaming.pipeline.run import versions
from memstream.streaming.pipeline.stages import parse_options
from memstream.streaming.progress import progress as progress_bar
from memstream.streaming.sources import open_source
from memstream.tracking.eval.datasets import SequenceSpec, open_dataset, write_boxes
from memstream.tracking.eval.ope import OPEReport, SequenceResult, evaluate_dataset, evaluate_sequence
from memstream.tracking.eval.presence import PresenceResult, evaluate_presence, evaluate_presence_dataset
from memstream.tracking.options import TrackingOptions
from memstream.tracking.outputs import reports_present
from memstream.tracking.stage import build_backend
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt


def track_sequence(
    tracker: Tracker, uri: str, first_box_xywh: np.ndarray, max_frames: int | None = None,
    on_frame: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Track object 1 from ``first_box_xywh`` on frame 0 of ``uri``. Returns float64 ``(N, 4)`` boxes
    (zeros where the object's mask is empty; OPE then holds the previous box) and bool ``(N,)``
    :func:`~memstream.tracking.outputs.reports_present` flags. ``on_frame`` is called after each
    frame (progress)."""
    tracker.reset()
    boxes, present = [], []
    with open_source(uri, max_frames=max_frames) as source:
        for frame in source:
            prompts = [Prompt(1, first_box_xywh)] if frame.index == 0 else []
            state = tracker.update(frame, prompts).states[0]
            boxes.append(state.box_xywh)
            present.append(reports_present(state))
            if on_frame is not None:
                on_frame()
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(present, bool)


def track_boxes(
    tracker: Tracker, uri: str, first_box_xywh: np.ndarray, max_frames: int | None = None,
    on_frame: Callable[[], None] | None = None,
) -> np.ndarray:
    """The boxes of :func:`track_sequence`: float64 ``(N, 4)``, zeros where the mask is empty."""
    return track_sequence(tracker, uri, first_box_xywh, max_frames, on_frame)[0]


def evaluate_tracker(
    dataset: Path, config: RunConfig, out_dir: Path, max_sequences: int | None = None, protocol: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Track every sequence of ``dataset`` with the config's tracking stage; write boxes and
    ``ope.json`` to ``out_dir``; return the report as written. ``progress`` shows a bar over all
    the dataset's frames on stderr when it is a terminal.

    Beside the OPE scores of the dataset's protocol, ``ope.json`` holds ``presence``: the
    presence-aware scores (:func:`~memstream.tracking.eval.presence.evaluate_presence`, absent frames
    correct only when the tracker reports absence through an empty box or a
    :func:`~memstream.tracking.outputs.reports_present` flag that is False)."""
    stage = next(s for s in config.enabled_stages if s.name == "tracking")
    options = parse_options(TrackingOptions, "tracking", stage.options)
    tracker = Tracker(build_backend(options), options.selection, options.samurai)
    specs: list[SequenceSpec] = list(open_dataset(dataset))[:max_sequences]
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, SequenceResult] = {}
    presence: dict[str, PresenceResult] = {}
    total = sum(spec.num_frames for spec in specs)
    with progress_bar("memstream eval-track", total, unit="frames", show=None if progress else False) as bar:
        for i, spec in enumerate(specs, start=1):
            bar.status(f"{spec.name} ({i}/{len(specs)})")
            pred, present = track_sequence(tracker, spec.source_uri, spec.first_box_xywh, max_frames=spec.num_frames,
                                           on_frame=bar.advance)
            write_boxes(out_dir / f"{spec.name}.txt", pred)
            results[spec.name] = evaluate_sequence(pred, spec.gt_xywh, spec.target_visible, protocol or spec.protocol)
            presence[spec.name] = evaluate_presence(pred, spec.gt_xywh, spec.target_visible, present)
    report = evaluate_dataset(results)
    payload = {
        "dataset": str(dataset), "backend": options.backend, "selection": options.selection,
        **report.to_dict(),
        "presence": evaluate_presence_dataset(presence).to_dict(),
        "sequences": {n: _sequence_row(r, presence[n]) for n, r in results.items()},
        "config": dump(config), "versions": versions(),
    }
    write_json_atomic(out_dir / "ope.json", payload)
    return payload


def _sequence_row(result: SequenceResult, presence: PresenceResult) -> dict[str, float]:
    return {"auc": 100 * result.auc, "precision": 100 * result.precision, "norm_precision": 100 * result.norm_precision,
            "presence_auc": 100 * presence.auc, "frames": result.num_frames}


def print_report(report: dict[str, Any]) -> None:
    """Per-sequence and overall AUC / P / Pnorm and the presence-aware AUC (``AUC-PA``) as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"OPE: {report['backend']} / {report['selection']} on {report['dataset']}")
    for column in ("sequence", "frames", "AUC", "P", "Pnorm", "AUC-PA"):
        table.add_column(column, justify="left" if column == "sequence" else "right")
    for name, row in report["sequences"].items():
        table.add_row(name, str(row["frames"]), f"{row['auc']:.1f}", f"{row['precision']:.1f}", f"{row['norm_precision']:.1f}",
                      f"{row['presence_auc']:.1f}")
    table.add_row("all", "", f"{report['auc']:.1f}", f"{report['precision']:.1f}", f"{report['norm_precision']:.1f}",
                  f"{report['presence']['auc']:.1f}", style="bold")
    Console().print(table)


__all__ = ["OPEReport", "evaluate_tracker", "print_report", "track_boxes", "track_sequence"]
