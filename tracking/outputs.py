"""Files the tracking stage writes, one frame at a time.

* ``<object_id>.txt``: LaSOT/OTB boxes ``x,y,w,h`` (pixels), one line per frame of the stream;
  ``0,0,0,0`` where the object is not yet prompted or not found (evaluators hold the last box);
* ``scores.jsonl`` while running (one JSON object per frame), ``scores.json`` at the end: per
  object and frame the box, affinity, object score, motion score, whether the frame entered memory,
  and ``present`` (:func:`reports_present`: the tracker says the object is visible on this frame);
* ``masks/<frame>.png`` (optional): uint16 instance ids, 0 = background;
* ``tracking.mp4`` (on in ``memstream run``'s default config, ``--video`` in ``memstream track``): the
  frames with masks, boxes, ids and scores drawn; the stage names it as its ``preview``.

Every line is written whole and flushed, so a run stopped by an error leaves valid files for the
frames before it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from memstream.streaming.atomic import write_text_atomic
from memstream.streaming.types import Frame
from memstream.streaming.videoio import VideoWriter
from memstream.tracking.options import OutputOptions
from memstream.tracking.types import TrackOutput, TrackState

_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240]],
    np.uint8,
)


class TrackWriter:
    """Writes a stream's :class:`TrackOutput` to ``out_dir`` (see the module docstring)."""

    def __init__(self, out_dir: Path, options: OutputOptions, fps: float) -> None:
        self.out_dir, self.options, self.fps = out_dir, options, fps
        self._box_files: dict[int, IO[str]] = {}
        self._frames_written = 0
        self._scores: IO[str] | None = None
        self._video: VideoWriter | None = None
        if options.scores:
            self._scores = open(out_dir / "scores.jsonl", "w")  # noqa: SIM115 (closed in close())
        if options.masks:
            (out_dir / "masks").mkdir(exist_ok=True)

    def write(self, frame: Frame, output: TrackOutput) -> None:
        if self.options.boxes:
            self._write_boxes(output)
        if self._scores is not None:
            self._scores.write(json.dumps(_frame_scores(frame, output)) + "\n")
            self._scores.flush()
        if self.options.masks:
            ids = output.instance_mask(frame.height, frame.width).astype(np.uint16)
            path = self.out_dir / "masks" / f"{frame.index:06d}.png"
            if not cv2.imwrite(str(path), ids):
                raise OSError(f"OpenCV could not write {path}")
        if self.options.video:
            if self._video is None:
                self._video = VideoWriter(self.out_dir / "tracking.mp4", self.fps, crf=self.options.video_crf)
            self._video.write(draw_tracks(frame.rgb, output))
        self._frames_written += 1

    def close(self) -> None:
        for handle in self._box_files.values():
            handle.close()
        if self._video is not None:
            self._video.close()
        if self._scores is not None:
            self._scores.close()
            frames = [json.loads(line) for line in (self.out_dir / "scores.jsonl").read_text().splitlines()]
            # whole or not at all, and no temporary file left behind on a full disk
            write_text_atomic(self.out_dir / "scores.json", json.dumps({"frames": frames}))

    def preview(self) -> str | None:
        """The file to open to see the tracks (``tracking.mp4``), once a frame is in it."""
        return "tracking.mp4" if self._video is not None else None

    def files(self) -> list[str]:
        names = [f"{i}.txt" for i in self._box_files]
        names += ["scores.json"] if self.options.scores else []
        names += ["masks/"] if self.options.masks else []
        names += ["tracking.mp4"] if self.options.video else []
        return names

    def _write_boxes(self, output: TrackOutput) -> None:
        for state in output.states:
            handle = self._box_files.get(state.object_id)
            if handle is None:  # an object added later: zeros for the frames before it
                handle = self._box_files[state.object_id] = open(self.out_dir / f"{state.object_id}.txt", "w")  # noqa: SIM115
                handle.write("0,0,0,0\n" * self._frames_written)
            handle.write(",".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in state.box_xywh) + "\n")
            handle.flush()


def reports_present(state: TrackState) -> bool:
    """Whether the tracker reports the object on this frame: its object score logit is > 0 (SAM 2's
    "object appears" test) and its box is not empty.

    Both are needed: SAMURAI blanks masks only at logit <= -1, so SAM 2 under SAMURAI can keep a box
    at a logit in (-1, 0]; and a positive logit with an empty mask leaves no box to score. A NaN
    logit is not a report of presence. Presence-aware evaluation
    (:func:`memstream.tracking.eval.evaluate_presence`) takes this flag as ``pred_present``.
    """
    return bool(state.object_score > 0) and state.present


def _frame_scores(frame: Frame, output: TrackOutput) -> dict[str, Any]:
    def clean(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 5)

    return {
        "frame": frame.index,
        "timestamp_s": round(frame.timestamp_s, 6),
        "objects": {
            str(s.object_id): {
                **({"name": output.name_of(s.object_id)} if output.name_of(s.object_id) else {}),
                "box_xywh": [round(float(v), 2) for v in s.box_xywh],
                "affinity": clean(s.affinity),
                "object_score": clean(s.object_score),
                "motion_score": clean(s.motion_score),
                "in_memory": s.in_memory,
                "prompt": s.is_prompt,
                "present": reports_present(s),
            }
            for s in output.states
        },
    }


def draw_tracks(rgb: np.ndarray, output: TrackOutput, alpha: float = 0.45) -> np.ndarray:
    """The frame with each object's mask tinted, its box, name (else id) and affinity drawn (RGB uint8)."""
    canvas = rgb.copy()
    for state in output.states:
        color = _PALETTE[(state.object_id - 1) % len(_PALETTE)]
        if state.mask is not None and state.mask.any():
            canvas[state.mask] = (canvas[state.mask] * (1 - alpha) + color * alpha).astype(np.uint8)
        if state.present:
            x, y, w, h = (int(round(v)) for v in state.box_xywh)
            c = tuple(int(v) for v in color)
            cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), c, 2)
            who = output.name_of(state.object_id) or str(state.object_id)
            label = f"{who} {state.affinity:.2f}" + (" M" if state.in_memory else "")
            cv2.putText(canvas, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, c, 1, cv2.LINE_AA)
    return canvas
