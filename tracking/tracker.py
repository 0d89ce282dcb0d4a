"""The streaming tracker: SAMURAI's selection and memory gate over any candidate backend.

One :class:`Tracker` follows any number of objects through a stream, one frame per
:meth:`Tracker.update` call; nothing is preloaded and nothing about the stream's length is assumed.
Each object has its own Kalman filter and warm-up counter (:class:`~memstream.tracking.selection.MotionState`)
and its own memory bank inside the backend.

Selection modes:

* ``samurai``: motion-aware choice among the backend's candidates, and a frame enters the object's
  memory only if SAMURAI's gate passes (affinity, object score and motion score thresholds);
* ``affinity``: plain SAM 2: the highest-affinity candidate, and every frame enters memory (the
  backend keeps a fixed window of the most recent ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np

from memstream.streaming.errors import MemstreamError
from memstream.streaming.types import Frame
from memstream.tracking.protocol import CandidateBackend
from memstream.tracking.selection import MotionAwareSelector, MotionState, SamuraiConfig
from memstream.tracking.types import Candidates, Decision, Prompt, TrackOutput, TrackState

SelectionMode = Literal["samurai", "affinity"]
SELECTION_MODES: tuple[str, ...] = get_args(SelectionMode)
STATE_VERSION = 1
MIN_PROMPT_SIDE_PX = 3  # a prompt box must cover at least this many pixels per side inside the frame


class TrackingInputError(MemstreamError):
    """A prompt or an object id the tracker cannot use (a box outside the frame, an unknown id)."""


class Tracker:
    """Tracks prompted objects frame by frame with a :class:`~memstream.tracking.protocol.CandidateBackend`.

    Args:
        backend: proposes candidates and keeps the memory banks (SAM 2 or classical).
        selection: ``samurai`` or ``affinity`` (see the module docstring).
        samurai: SAMURAI's constants (``SamuraiConfig()``: its SAM 2.1 T/S/B+ values).

    Example:
        >>> from memstream.streaming import open_source
        >>> from memstream.tracking.classical import ClassicalBackend
        >>> tracker = Tracker(ClassicalBackend())
        >>> with open_source("synthetic://distractors?frames=4") as source:
        ...     for frame in source:
        ...         prompts = [Prompt(1, frame.gt.boxes_xywh[0])] if frame.index == 0 else []
        ...         output = tracker.update(frame, prompts)
        >>> output.get(1).box_xywh.shape
        (4,)
    """

    def __init__(
        self, backend: CandidateBackend, selection: SelectionMode = "samurai", samurai: SamuraiConfig | None = None
    ) -> None:
        if selection not in SELECTION_MODES:
            raise TrackingInputError(f"unknown selection {selection!r}", f"Use one of {', '.join(SELECTION_MODES)}")
        self.backend = backend
        self.selection: SelectionMode = selection
        self.selector = MotionAwareSelector(samurai)
        self._motion: dict[int, MotionState] = {}  # insertion order = the order objects were added
        self._frame_hw: tuple[int, int] | None = None  # the size of the frames the objects live on

    @property
    def object_ids(self) -> list[int]:
        """Ids of the tracked objects, in the order they were added."""
        return list(self._motion)

    def update(self, frame: Frame, prompts: Sequence[Prompt] = ()) -> TrackOutput:
        """Track every object on ``frame``; objects in ``prompts`` are (re)started from their prompt.

        Returns:
            One :class:`TrackState` per tracked object, in the order objects were added.

        Raises:
            TrackingInputError: a prompt box or point lies outside the frame, has no area or covers
                fewer than ``MIN_PROMPT_SIDE_PX`` pixels per side of it, an object is prompted twice
                on the same frame, or the frame's size differs from the frames the tracked objects
                were seen on (a video whose size changes mid-stream: boxes of one size mean nothing
                on the other; call :meth:`reset` and prompt again).
        """
        self._check_frame_size(frame)
        self._check_prompts(frame, prompts)
        states: dict[int, TrackState] = {}
        if prompts:
            for prompt in prompts:
                self._motion.setdefault(prompt.object_id, MotionState()).reset()
            for object_id, (mask, cands) in self.backend.add_prompts(frame, prompts).items():
                states[object_id] = _state(object_id, cands, 0, mask, float("nan"), True, is_prompt=True)
        tracked = [i for i in self._motion if i not in states]
        if tracked:
            states.update(self._track(frame, tracked))
        return TrackOutput(frame.index, tuple(states[i] for i in self._motion))

    def remove_object(self, object_id: int) -> None:
        """Stop tracking ``object_id`` and drop its memory."""
        if object_id not in self._motion:
            raise TrackingInputError(f"unknown object id {object_id}", f"Tracked ids: {self.object_ids or 'none'}")
        del self._motion[object_id]
        self.backend.remove_object(object_id)

    def reset(self) -> None:
        """Forget every object (the backend keeps its model loaded)."""
        self._motion.clear()
        self._frame_hw = None
        self.backend.reset()

    def state_dict(self) -> dict[str, Any]:
        """The tracker's whole state: each object's motion model and the backend's memories.

        Save it with ``torch.save(tracker.state_dict(), path)``; restore into a tracker with the same
        backend kind and selection with ``tracker.load_state_dict(torch.load(path, weights_only=True))``.
        """
        import torch

        def tensor(array: np.ndarray | None) -> torch.Tensor | None:
            return None if array is None else torch.from_numpy(np.array(array, np.float64))

        return {
            "version": STATE_VERSION, "selection": self.selection, "backend": self.backend.name,
            "motion": [
                {"object_id": i, "mean": tensor(m.mean), "covariance": tensor(m.covariance), "stable_frames": m.stable_frames}
                for i, m in self._motion.items()
            ],
            "memory": self.backend.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the backend kind and the selection mode must match."""
        for key, mine in (("version", STATE_VERSION), ("backend", self.backend.name), ("selection", self.selection)):
            if state.get(key) != mine:
                raise TrackingInputError(
                    f"the saved tracker state has {key} {state.get(key)!r}, this tracker {mine!r}",
                    "Restore it into a tracker built the same way",
                )

        def array(value: Any) -> np.ndarray | None:
            return None if value is None else value.numpy().copy()

        self.backend.load_state_dict(state["memory"])
        self._motion = {
            int(m["object_id"]): MotionState(array(m["mean"]), array(m["covariance"]), int(m["stable_frames"]))
            for m in state["motion"]
        }

    def memory_summary(self) -> dict[str, Any]:
        """The backend's memory report plus each object's motion-model phase."""
        return {
            **self.backend.memory_summary(),
            "stable_frames": {i: s.stable_frames for i, s in self._motion.items()},
        }

    def _track(self, frame: Frame, object_ids: list[int]) -> dict[int, TrackState]:
        proposals = self.backend.propose(frame, object_ids)
        decisions: dict[int, Decision] = {}
        motion_scores: dict[int, float] = {}
        for object_id in object_ids:
            decisions[object_id], motion_scores[object_id] = self._decide(object_id, proposals[object_id])
        masks = self.backend.commit(decisions)
        return {
            i: _state(i, proposals[i], decisions[i].index, masks[i], motion_scores[i], decisions[i].enters_memory)
            for i in object_ids
        }

    def _decide(self, object_id: int, cands: Candidates) -> tuple[Decision, float]:
        if self.selection == "affinity":
            return Decision(int(np.argmax(cands.affinity)), True), float("nan")
        present = cands.object_score_logit > 0
        chosen = self.selector.select(self._motion[object_id], cands.boxes_xywh, cands.affinity, present)
        gate = self.selector.enters_memory(chosen, cands.object_score_logit)
        motion = float("nan") if chosen.motion_score is None else chosen.motion_score
        return Decision(chosen.index, gate), motion

    def _check_frame_size(self, frame: Frame) -> None:
        size = (frame.height, frame.width)
        if not self._motion or self._frame_hw is None:  # no object yet, or just restored by load_state_dict
            self._frame_hw = size
        elif self._frame_hw is not None and size != self._frame_hw:
            height, width = self._frame_hw
            raise TrackingInputError(
                f"frame {frame.index} is {frame.width}x{frame.height} but objects {self.object_ids} were tracked on "
                f"{width}x{height} frames",
                "Give frames of one size (resize them before the tracker), or call reset() and prompt again",
            )

    def _check_prompts(self, frame: Frame, prompts: Sequence[Prompt]) -> None:
        ids = [p.object_id for p in prompts]
        if len(set(ids)) != len(ids):
            raise TrackingInputError(f"object ids prompted twice on frame {frame.index}: {ids}", "Give one prompt per object")
        for prompt in prompts:
            check_prompt_inside(prompt, frame.width, frame.height)


def check_prompt_inside(prompt: Prompt, width: int, height: int) -> None:
    """Raise :class:`TrackingInputError` unless the prompt's box has area and overlaps the frame and
    its points lie inside it."""
    if prompt.box_xywh is not None:
        x, y, w, h = (float(v) for v in prompt.box_xywh)
        if not np.all(np.isfinite(prompt.box_xywh)) or w <= 0 or h <= 0:
            raise TrackingInputError(
                f"object {prompt.object_id}: box {x:g},{y:g},{w:g},{h:g} has no area", "Give x,y,w,h with w > 0 and h > 0"
            )
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise TrackingInputError(
                f"object {prompt.object_id}: box {x:g},{y:g},{w:g},{h:g} lies outside the {width}x{height} frame",
                "Give x,y (top-left corner) and w,h in pixels of the frame as decoded",
            )
        inside_w, inside_h = min(x + w, width) - max(x, 0.0), min(y + h, height) - max(y, 0.0)
        if min(inside_w, inside_h) < MIN_PROMPT_SIDE_PX:
            raise TrackingInputError(
                f"object {prompt.object_id}: box {x:g},{y:g},{w:g},{h:g} covers only {inside_w:g}x{inside_h:g} "
                f"pixels of the {width}x{height} frame (at least {MIN_PROMPT_SIDE_PX} per side)",
                "Give the box in pixels of the frame as decoded (after any resize); a box scaled down with the "
                "frame may shrink below a few pixels",
            )
    if prompt.points_xy is not None:
        points = prompt.points_xy
        if np.any(points < 0) or np.any(points[:, 0] >= width) or np.any(points[:, 1] >= height):
            raise TrackingInputError(
                f"object {prompt.object_id}: a point lies outside the {width}x{height} frame", "Give points in pixels"
            )


def _state(
    object_id: int, cands: Candidates, index: int, mask: np.ndarray, motion: float, in_memory: bool, is_prompt: bool = False
) -> TrackState:
    return TrackState(
        object_id=object_id, box_xywh=np.array(cands.boxes_xywh[index], np.float64), mask=mask, affinity=float(cands.affinity[index]),
        object_score=float(cands.object_score_logit), motion_score=motion, in_memory=in_memory, is_prompt=is_prompt,
    )
