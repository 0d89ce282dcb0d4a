"""benchmarks/make_game_footage.py: a ViZDoom sequence in the LaSOT layout that open_dataset reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memstream.streaming import open_source
from memstream.tracking.eval import open_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "make_game_footage.py"


def test_one_sequence_reads_back_with_its_flags_and_video(tmp_path) -> None:
    pytest.importorskip("vizdoom")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--sequences", "1", "--frames", "20",
         "--crf", "28", "--scenarios", "basic", "--min-absent", "0", "--max-absent", "1"],
        check=True, env=env, timeout=60, capture_output=True, cwd=tmp_path,  # ViZDoom writes _vizdoom.ini there
    )
    dataset = open_dataset(tmp_path)
    assert dataset.kind == "lasot" and len(dataset) == 1
    spec = next(iter(dataset))
    assert spec.num_frames == 20 and spec.name.startswith("basic-")
    assert min(spec.gt_xywh[0, 2:]) >= 14  # --min-side at frame 0
    # a frame is visible exactly when its box is non-empty; the flags and the boxes agree
    np.testing.assert_array_equal(spec.target_visible, spec.gt_xywh[:, 2:].all(axis=1))
    boxes = spec.gt_xywh[spec.target_visible]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 320).all()
    assert (boxes[:, 1] + boxes[:, 3] <= 240).all()
    with open_source(str(spec.source_path.parent / "video_crf28.mp4")) as source:
        frames = list(source)
    assert len(frames) == 20 and frames[0].rgb.shape == (240, 320, 3)
