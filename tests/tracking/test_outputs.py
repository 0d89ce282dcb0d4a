"""The tracking stage's files: the per-frame presence flag in ``scores.jsonl`` / ``scores.json``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memstream.streaming.types import Frame
from memstream.tracking.eval.datasets import read_boxes
from memstream.tracking.options import OutputOptions
from memstream.tracking.outputs import TrackWriter, reports_present
from memstream.tracking.types import TrackOutput, TrackState

BOX = [4.0, 6.0, 10.0, 8.0]
EMPTY = [0.0, 0.0, 0.0, 0.0]


def state(object_score: float, box: list[float], object_id: int = 1) -> TrackState:
    return TrackState(object_id, np.array(box), None, affinity=0.5, object_score=object_score,
                      motion_score=float("nan"), in_memory=False)


def test_present_needs_a_positive_logit_and_a_box() -> None:
    assert reports_present(state(2.0, BOX))
    assert not reports_present(state(-0.5, BOX))  # SAMURAI keeps masks down to logit -1: not a report
    assert not reports_present(state(0.0, BOX))  # SAM 2's test is logit > 0
    assert not reports_present(state(3.0, EMPTY))  # nothing to score
    assert not reports_present(state(float("nan"), BOX))


def test_scores_json_carries_present_per_object_and_frame(tmp_path) -> None:
    writer = TrackWriter(tmp_path, OutputOptions(), fps=10.0)
    per_frame = [(5.0, BOX), (-2.0, EMPTY), (-0.5, BOX), (1.0, BOX)]
    for index, (logit, box) in enumerate(per_frame):
        frame = Frame(index=index, timestamp_s=index / 10, rgb=np.zeros((32, 32, 3), np.uint8))
        writer.write(frame, TrackOutput(index, (state(logit, box), state(4.0, BOX, object_id=2))))
    streamed = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    writer.close()
    final = json.loads((tmp_path / "scores.json").read_text())["frames"]
    assert final == streamed
    assert [f["objects"]["1"]["present"] for f in final] == [True, False, False, True]
    assert [f["objects"]["2"]["present"] for f in final] == [True] * 4
    assert [f["objects"]["1"]["object_score"] for f in final] == [5.0, -2.0, -0.5, 1.0]
    # the LaSOT box file keeps the box of frame 2; the flag is what says the tracker doubts it
    assert read_boxes(tmp_path / "1.txt").tolist() == [BOX, EMPTY, BOX, BOX]


def test_a_scores_json_that_cannot_be_written_leaves_no_temporary_file(tmp_path) -> None:
    # It once left `.scores.json.tmp` (half written on a full disk) among the run's outputs.
    writer = TrackWriter(tmp_path, OutputOptions(), fps=10.0)
    writer.write(Frame(index=0, timestamp_s=0.0, rgb=np.zeros((32, 32, 3), np.uint8)), TrackOutput(0, (state(1.0, BOX),)))
    (tmp_path / "scores.json").mkdir()  # where the file should go: the rename fails as a full disk's write would
    with pytest.raises(OSError):
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.txt", "scores.json", "scores.jsonl"]
    assert json.loads((tmp_path / "scores.jsonl").read_text())["frame"] == 0
