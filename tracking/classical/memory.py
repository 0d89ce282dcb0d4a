"""One object's memory in the classical backend, with SAMURAI's counts.

A conditioning memory (the prompt frame, always kept), a bank of up to ``bank_size`` frames the
tracker let in (a ``deque(maxlen=bank_size)``: the oldest leaves first) and the most recent frame
(always attended, as SAMURAI adds frame t-1 whether or not it passed the gate). Every memory is one
grey template of a fixed shape, so the bytes held are constant once the bank is full.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from memstream.tracking.classical.config import ClassicalConfig
from memstream.tracking.classical.matching import crop_template
from memstream.tracking.classical.segmentation import ColourModel
from memstream.tracking.tracker import TrackingInputError

MIN_TEMPLATE_SIDE_PX = 6
SPEED_SMOOTHING = 0.5  # weight of the newest step in the speed average


@dataclass(frozen=True)
class MemoryEntry:
    """One remembered frame.

    Attributes:
        frame_index: the frame's ``Frame.index``.
        template: uint8 ``(th, tw)``: the object's reference box on that frame, resized.
    """

    frame_index: int
    template: np.ndarray


class ObjectMemory:
    """Memory and position of one object (see the module docstring).

    Attributes:
        object_id: the object's id.
        colour: the colour model learnt on the prompt frame.
        center_xy: float64 ``(2,)`` pixels, where the object was last seen (the search centre).
        size_wh: float64 ``(2,)`` pixels, the object's reference size (scale 1 of the matcher).
        absent_frames: frames since the object was last found (0 when found on the last frame).
        speed_px: how far its centre moved per frame recently, pixels (exponential average over
            consecutive frames where it was found).
        mask_threshold: P(object | colour) above which a pixel is this object's (fitted on the prompt
            frame, see ``ClassicalConfig.mask_threshold_fit``).
    """

    def __init__(
        self,
        object_id: int,
        prompt: MemoryEntry,
        colour: ColourModel,
        box_xywh: np.ndarray,
        config: ClassicalConfig,
    ) -> None:
        self.object_id = object_id
        self.colour = colour
        self.prompt = prompt
        self.bank: deque[MemoryEntry] = deque(maxlen=config.bank_size)
        self.recent: MemoryEntry | None = None
        self.center_xy = box_xywh[:2] + box_xywh[2:] / 2
        self.size_wh = np.array(box_xywh[2:], np.float64)
        self.absent_frames = 0
        self.speed_px = 0.0
        self.mask_threshold = config.mask_threshold
        self._steps = 0
        self._config = config

    @classmethod
    def start(
        cls,
        object_id: int,
        frame_index: int,
        grey: np.ndarray,
        box_xywh: np.ndarray,
        colour: ColourModel,
        config: ClassicalConfig,
    ) -> ObjectMemory:
        """A fresh memory from the prompt box on ``grey`` uint8 (H, W)."""
        w, h = float(box_xywh[2]), float(box_xywh[3])
        factor = config.template_size_px / max(w, h)
        shape = (max(round(h * factor), MIN_TEMPLATE_SIDE_PX), max(round(w * factor), MIN_TEMPLATE_SIDE_PX))
        template = crop_template(grey, box_xywh, shape)
        if template is None:
            raise TrackingInputError(
                f"object {object_id}: the prompt box {np.round(box_xywh, 1).tolist()} has under 2x2 pixels",
                "Give a box of at least 2x2 pixels inside the frame",
            )
        return cls(
            object_id, MemoryEntry(frame_index, template), colour, np.asarray(box_xywh, np.float64), config
        )

    @property
    def reach_px(self) -> float:
        """How far the object may be from ``center_xy`` now: ``motion_reach`` times its speed times
        the frames since it was last found (pixels)."""
        return self._config.motion_reach * self.speed_px * (self.absent_frames + 1)

    @property
    def template_shape(self) -> tuple[int, int]:
        """``(th, tw)`` of every template of this object."""
        return self.prompt.template.shape

    def templates(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The templates to match (prompt, bank oldest first, recent frame unless already in the
        bank) and their weights in the response mean."""
        entries = [self.prompt, *self.bank]
        weights = [self._config.prompt_weight] + [1.0] * len(self.bank)
        if self.recent is not None:
            if self.bank and self.recent is self.bank[-1]:  # the bank's newest: weigh it as the recent frame
                entries.pop()
                weights.pop()
            entries.append(self.recent)
            weights.append(self._config.recent_weight)
        return [e.template for e in entries], np.array(weights)

    def observe(
        self, frame_index: int, grey: np.ndarray, box_xywh: np.ndarray, enters_memory: bool, remember: bool = True
    ) -> None:
        """The object was found at ``box_xywh`` (frame pixels): move there and remember the frame
        (``remember=False``: move only; the most recent template stays as it was).

        The reference size follows the box (at ``size_rate``; at once when the object was lost) only on
        frames that enter memory: the
        size is part of what the object is remembered as, so the gate also keeps a partly hidden or
        wrongly chosen view from resizing it. The template is cut at the updated reference box.
        """
        center = box_xywh[:2] + box_xywh[2:] / 2
        if self.absent_frames == 0:
            step = float(np.hypot(*(center - self.center_xy)))
            rate = SPEED_SMOOTHING if self._steps else 1.0  # the first step is the first estimate
            self.speed_px = rate * step + (1 - rate) * self.speed_px
            self._steps += 1
        self.center_xy = center
        if enters_memory:
            # Re-found after being lost (at any of ``redetect_scales``): its size now is the found one.
            lost = self.absent_frames >= self._config.lost_after_frames
            rate = 1.0 if lost else self._config.size_rate
            self.size_wh = (1 - rate) * self.size_wh + rate * np.asarray(box_xywh[2:], np.float64)
        self.absent_frames = 0
        reference = np.concatenate([self.center_xy - self.size_wh / 2, self.size_wh])
        template = crop_template(grey, reference, self.template_shape) if remember else None
        if template is None:
            return
        entry = MemoryEntry(frame_index, template)
        self.recent = entry
        if enters_memory:
            self.bank.append(entry)

    def mark_absent(self) -> None:
        """The object was not found on this frame: count it; an absent frame adds no template (it
        holds nothing to match), and the stale most-recent template is dropped."""
        self.absent_frames += 1
        self.recent = None

    def summary(self) -> dict[str, Any]:
        """``frames``: every frame index in memory, sorted; ``prompt_frame``; ``bank_frames`` (oldest
        first, at most ``bank_capacity``); ``recent_frame`` (None after an absent frame); ``bytes``: the
        templates and the colour model held."""
        entries = [self.prompt, *self.bank] + ([self.recent] if self.recent is not None else [])
        return {
            "frames": sorted({e.frame_index for e in entries}),
            "bank_capacity": self.bank.maxlen,
            "prompt_frame": self.prompt.frame_index,
            "bank_frames": [e.frame_index for e in self.bank],
            "recent_frame": None if self.recent is None else self.recent.frame_index,
            "bytes": int(
                sum(e.template.nbytes for e in {id(e): e for e in entries}.values())
                + self.colour.ratio.nbytes
            ),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything this memory holds, as tensors and plain values (``torch.save``-able, loadable
        with ``weights_only=True``); the bank's newest entry and ``recent`` stay one entry."""
        import torch

        def entry(e: MemoryEntry | None) -> dict[str, Any] | None:
            return None if e is None else {"frame_index": e.frame_index, "template": torch.from_numpy(e.template.copy())}

        return {
            "object_id": self.object_id, "colour_ratio": torch.from_numpy(self.colour.ratio.copy()),
            "prompt": entry(self.prompt), "bank": [entry(e) for e in self.bank], "recent": entry(self.recent),
            "recent_in_bank": bool(self.bank) and self.recent is self.bank[-1],
            "center_xy": self.center_xy.tolist(), "size_wh": self.size_wh.tolist(),
            "absent_frames": self.absent_frames, "speed_px": self.speed_px, "steps": self._steps,
            "mask_threshold": self.mask_threshold,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], config: ClassicalConfig) -> ObjectMemory:
        """The inverse of :meth:`state_dict`."""

        def entry(e: dict[str, Any] | None) -> MemoryEntry | None:
            return None if e is None else MemoryEntry(int(e["frame_index"]), e["template"].numpy().copy())

        x, y = state["center_xy"]
        w, h = state["size_wh"]
        prompt = entry(state["prompt"])
        assert prompt is not None
        memory = cls(int(state["object_id"]), prompt, ColourModel(state["colour_ratio"].numpy().copy()),
                     np.array([x - w / 2, y - h / 2, w, h]), config)
        memory.bank.extend(entry(e) for e in state["bank"])
        memory.recent = memory.bank[-1] if state["recent_in_bank"] else entry(state["recent"])
        memory.center_xy, memory.size_wh = np.array([x, y], np.float64), np.array([w, h], np.float64)
        memory.absent_frames, memory.speed_px, memory._steps = state["absent_frames"], state["speed_px"], state["steps"]
        memory.mask_threshold = float(state.get("mask_threshold", config.mask_threshold))  # older states: the fixed one
        return memory
