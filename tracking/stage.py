"""The ``tracking`` stage of ``memstream run``: SAMURAI over the stream, masks and ids for later stages.

Registered through the ``memstream.stages`` entry point (see ``pyproject.toml``). Each frame's
result is a :class:`~memstream.tracking.types.TrackOutput` that later stages read as ``upstream["tracking"]``
(the 3D memory uses the masks to tell moving objects from the static scene).

Example config::

    stages:
      - name: tracking
        options:
          backend: sam2
          sam2: {model_config: configs/sam2.1/sam2.1_hiera_l.yaml, checkpoint: sam2.1_hiera_large.pt}
          samurai: {kf_score_weight: 0.15}   # SamuraiConfig's fields; classical: ClassicalConfig's
          prompts: [{object_id: 1, frame: 0, box: [120, 80, 60, 90]}]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from memstream.streaming.paths import check_local_path
from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.pipeline.stages import parse_options
from memstream.streaming.types import Frame
from memstream.tracking.backends import BACKENDS
from memstream.tracking.options import PromptOptions, TrackingOptions
from memstream.tracking.outputs import TrackWriter
from memstream.tracking.protocol import CandidateBackend
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt, TrackOutput

log = logging.getLogger(__name__)

HOW_TO_PROMPT = (
    "Give a box with `memstream track SOURCE --box X,Y,W,H`, or with "
    "--set 'stages.tracking.options.prompts=[{object_id: 1, box: [X, Y, W, H]}]'"
)


def check_checkpoint(checkpoint: str | None) -> None:
    """A SAM 2 checkpoint that looks like a local path and names nothing fails at once, before
    torch loads and without a hub lookup (``--checkpoint``, ``stages.tracking.options.sam2.checkpoint``)."""
    check_local_path(checkpoint, what="checkpoint file", kind="file", suffixes=(".pt", ".pth", ".ckpt", ".safetensors"),
                     fix="Pass the path of a SAM 2.1 .pt file or a hub id such as facebook/sam2.1-hiera-tiny")


def build_backend(options: TrackingOptions) -> CandidateBackend:
    """The configured candidate backend (:data:`~memstream.tracking.backends.BACKENDS`; ``sam2`` loads weights)."""
    return BACKENDS.get(options.backend)(options)


class TrackingStage:
    """Runs a :class:`~memstream.tracking.tracker.Tracker` on every frame; see the module docstring."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = parse_options(TrackingOptions, name, options)
        if self.options.backend == "sam2":
            check_checkpoint(self.options.sam2.checkpoint)
        self.tracker: Tracker | None = None
        self._writer: TrackWriter | None = None
        self._pending = {(p.object_id, p.frame): p for p in self.options.prompts}
        self._gt_waiting = list(self.options.gt_objects)
        self._names: dict[int, str] = self.options.names()  # ids -> names; gt_objects add the scene's
        self._lock = threading.Lock()
        self._latest: TrackOutput | None = None
        self._frames = 0
        self._context: RunContext | None = None

    def open(self, context: RunContext) -> None:
        self._context = context
        if not self.options.prompts and not self.options.gt_objects:
            context.notice(self.name, f"no prompt and no gt_objects, so nothing is tracked. {HOW_TO_PROMPT}")
        self.tracker = Tracker(build_backend(self.options), self.options.selection, self.options.samurai)
        if context.out_dir is not None:
            self._writer = TrackWriter(context.out_dir, self.options.outputs, context.source.fps or 30.0)

    def update(self, frame: Frame, upstream: Upstream) -> TrackOutput:
        assert self.tracker is not None, "open() was not called"
        if self._frames == 0 and frame.gt is None and self._gt_waiting and not self.options.prompts:
            self._say(f"the source has no ground truth to prompt gt_objects {self._gt_waiting} from (synthetic:// "
                      f"scenes have it), so nothing is tracked. {HOW_TO_PROMPT}")
        output = self.tracker.update(frame, self._prompts_for(frame))
        if self._names:
            output = replace(output, names=tuple(sorted(self._names.items())))
        if self._writer is not None:
            self._writer.write(frame, output)
        with self._lock:
            self._latest = output
        self._frames += 1
        return output

    def latest(self) -> TrackOutput | None:
        """The most recent frame's result (safe to call from another thread while the run goes on)."""
        with self._lock:
            return self._latest

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        missed = sorted({p.object_id for p in self._pending.values()})
        if missed:
            frames = sorted({p.frame for p in self._pending.values()})
            message = (f"prompts for objects {missed} on frames {frames} were never used: the stream ended after "
                       f"{self._frames} frames, before them; nothing was tracked for those objects")
            if self._context is not None:
                self._say(message)  # a note on the console and in summary.json's notices
            else:
                log.warning("tracking: %s", message)

    def summary(self) -> dict[str, Any]:
        memory = self.tracker.memory_summary() if self.tracker else {}
        return {
            "backend": self.options.backend,
            "selection": self.options.selection,
            "objects": self.tracker.object_ids if self.tracker else [],
            "names": {str(k): v for k, v in sorted(self._names.items())},
            "frames": self._frames,
            "memory_bytes": memory.get("bytes"),
            "files": self._writer.files() if self._writer else [],
            **({"preview": self._writer.preview()} if self._writer and self._writer.preview() else {}),
        }

    def _say(self, message: str) -> None:
        if self._context is not None:
            self._context.notice(self.name, message)

    def _prompts_for(self, frame: Frame) -> list[Prompt]:
        # a prompt applies on its frame, or on the first later one when a live source's backpressure
        # dropped that frame before it reached this stage
        due = sorted(key for key in self._pending if key[1] <= frame.index)
        latest = {object_id: self._pending.pop((object_id, at)) for object_id, at in due}  # newest per object
        prompts = [_prompt(p) for p in latest.values()]
        if self._gt_waiting and frame.gt is not None:
            for object_id in list(self._gt_waiting):
                row = _gt_row(frame, object_id)
                if row is not None and frame.gt.visible[row]:
                    prompts.append(Prompt(object_id, frame.gt.boxes_xywh[row]))
                    self._gt_waiting.remove(object_id)
                    if frame.gt.names and object_id not in self._names:
                        self._names[object_id] = frame.gt.names[row]
        return prompts


def _prompt(options: PromptOptions) -> Prompt:
    return Prompt(options.object_id, options.box, options.points, options.labels)


def _gt_row(frame: Frame, object_id: int) -> int | None:
    assert frame.gt is not None
    try:
        return frame.gt.index_of(object_id)
    except KeyError:
        return None


def make_stage(name: str, options: Mapping[str, Any]) -> TrackingStage:
    """Entry point of the ``memstream.stages`` group."""
    return TrackingStage(name, options)
