"""Object identities over time: a classical colour detector proposes, the tracking memory keeps the ids.

Every frame, :func:`~memstream.embodied.agents.mapping.colour_masks` finds the saturated blobs of the
scene's object colours (training-free detection from the observation only). An object is born the
first time its blob is big and whole enough to prompt the tracking memory
(:class:`~memstream.tracking.Tracker` over the weight-free
:class:`~memstream.tracking.classical.ClassicalBackend`, SAMURAI's motion-aware selection): it gets
the next id, and its appearance label (the detector's colour class) is remembered with it.

Per frame the tracker follows every object seen in the last ``keep_frames`` frames. An object's
state is kept (with its mask: the detector's pixels of its label, within the tracker's box when the
tracker confirms it; with depth, grown to the neighbouring pixels at the object's depth, its shaded
faces) when the detector or the tracker places it on this frame with pixels of its label; a tracker
box with none of its label's pixels is no evidence. An object missing for
``keep_frames`` frames leaves the tracker (which bounds the per-frame cost to what is in view); when
its label is detected again it is re-prompted under the *same* id, so ids persist across leaving and
re-entering the view, and across the whole episode. A detection the tracker lost (no box overlap) is
re-prompted on the next frame, the correction a detector gives a tracker.

Example:
    >>> import numpy as np
    >>> from memstream.streaming.types import Frame
    >>> rgb = np.zeros((32, 32, 3), np.uint8); rgb[8:20, 10:22] = (200, 30, 30)   # a red patch
    >>> tracks = ObjectTracks(min_pixels=20)
    >>> [s.object_id for s in tracks.update(Frame(0, 0.0, rgb)).states], tracks.label_of
    ([1], {1: 'red'})
    >>> int(tracks.update(Frame(1, 1.0, rgb)).get(1).mask.sum())                     # the same id next frame
    144
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from memstream.embodied.agents.mapping import colour_masks
from memstream.streaming.types import Frame
from memstream.tracking.classical import ClassicalBackend, ClassicalConfig
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt, TrackOutput, TrackState


def box_of(mask: np.ndarray) -> np.ndarray:
    """float64 ``(4,)`` tight ``xywh`` box of a non-empty bool mask."""
    v, u = np.nonzero(mask)
    return np.array([u.min(), v.min(), u.max() - u.min() + 1, v.max() - v.min() + 1], np.float64)


def _overlap(box: np.ndarray, mask: np.ndarray) -> int:
    """Pixels of ``mask`` inside ``box`` (xywh)."""
    if box[2] <= 0 or box[3] <= 0:
        return 0
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    return int(mask[y0 : int(np.ceil(box[1] + box[3])), x0 : int(np.ceil(box[0] + box[2]))].sum())


class ObjectTracks:
    """The agent's tracking memory: persistent object ids from a colour detector and a tracker.

    Args:
        min_pixels: a label's blob smaller than this is no detection.
        min_prompt_side_px: a blob must span this many pixels per side to start (or restart) an
            object (the tracker's own minimum is 3).
        keep_frames: frames an object stays in the tracker without being confirmed.
        grow_px, depth_tol_m: with depth, an object's mask also takes the pixels up to ``grow_px``
            around its label's pixels whose depth is within ``depth_tol_m`` of theirs (its faces in
            shadow), so the whole object stays out of the static map.
        tracker_config: the classical backend's settings.
    """

    def __init__(
        self,
        min_pixels: int = 6,
        min_prompt_side_px: int = 3,
        keep_frames: int = 5,
        grow_px: int = 3,
        depth_tol_m: float = 0.4,
        tracker_config: ClassicalConfig | None = None,
    ) -> None:
        self.min_pixels, self.min_prompt_side_px, self.keep_frames = min_pixels, min_prompt_side_px, keep_frames
        self.grow_px, self.depth_tol_m = grow_px, depth_tol_m
        self.tracker = Tracker(ClassicalBackend(tracker_config or ClassicalConfig()), selection="samurai")
        self.reset()

    def reset(self) -> None:
        """Forget every object and id."""
        self.tracker.reset()
        self.label_of: dict[int, str] = {}  # id -> the detector's label (its appearance signature)
        self._id_of: dict[str, int] = {}
        self._missing: dict[int, int] = {}  # id in the tracker -> frames since it was last confirmed
        self._reprompt: set[int] = set()
        self.prompts = 0

    def id_of(self, label: str) -> int | None:
        """The id of the object with this label, or None if it was never seen."""
        return self._id_of.get(label)

    def _promptable(self, mask: np.ndarray) -> bool:
        box = box_of(mask)
        return bool(min(box[2], box[3]) >= self.min_prompt_side_px)

    def _whole(self, mask: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        """The object's silhouette: its label's pixels plus the pixels around them (``grow_px``) at
        their depth (within ``depth_tol_m`` of their median), i.e. the shaded faces the colour
        classifier misses; without depth, the label's pixels."""
        if depth is None:
            return mask
        d = depth[mask]
        d = d[d > 0]
        if len(d) == 0:
            return mask
        x, y, w, h = box_of(mask)
        g = self.grow_px
        window = np.zeros_like(mask)
        window[max(int(y) - g, 0) : int(y + h) + g, max(int(x) - g, 0) : int(x + w) + g] = True
        return mask | (window & (np.abs(depth - float(np.median(d))) <= self.depth_tol_m))

    def update(self, frame: Frame, ignore: Iterable[int] = ()) -> TrackOutput:
        """Detect, prompt new or lost objects, track, and return the objects placed on this frame.

        Args:
            frame: the RGB frame (its index must grow from call to call); with ``depth_m``, each
                object's mask also takes its shaded faces (see ``depth_tol_m``).
            ignore: ids not to report on this frame (their pixels stay where the caller wants them).

        Returns:
            One :class:`~memstream.tracking.types.TrackState` per object on this frame (mask: its
            label's pixels), in id order.
        """
        masks = colour_masks(frame.rgb)
        detections = {label: m for label, m in masks.items() if m.sum() >= self.min_pixels}
        active = set(self.tracker.object_ids)
        prompts = []
        for label, mask in detections.items():
            object_id = self._id_of.get(label)
            if (object_id is None or object_id not in active or object_id in self._reprompt) and self._promptable(mask):
                if object_id is None:
                    object_id = len(self.label_of) + 1
                    self.label_of[object_id], self._id_of[label] = label, object_id
                prompts.append(Prompt(object_id, box_of(mask)))
                self._reprompt.discard(object_id)
        self.prompts += len(prompts)
        output = self.tracker.update(frame, prompts) if prompts or active else TrackOutput(frame.index)
        ignored = set(ignore)
        states = []
        for state in output.states:
            label = self.label_of[state.object_id]
            detected = detections.get(label)
            tracked = state.present and state.object_score > 0
            mask = None
            if detected is not None:
                mask = detected
                if not state.is_prompt and _overlap(state.box_xywh, detected) == 0:
                    self._reprompt.add(state.object_id)  # the tracker lost it: correct it next frame
            elif tracked and _overlap(state.box_xywh, masks[label]) > 0:  # small or partly hidden
                x, y, w, h = state.box_xywh
                inside = np.zeros_like(masks[label])
                inside[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = True
                mask = masks[label] & inside
            if mask is None:
                self._missing[state.object_id] = self._missing.get(state.object_id, 0) + 1
                if self._missing[state.object_id] >= self.keep_frames:
                    self.tracker.remove_object(state.object_id)
                    self._missing.pop(state.object_id)
                    self._reprompt.discard(state.object_id)
                continue
            self._missing[state.object_id] = 0
            if state.object_id not in ignored:
                mask = self._whole(mask, frame.depth_m)
                states.append(
                    TrackState(
                        state.object_id, box_of(mask), mask, state.affinity, state.object_score,
                        state.motion_score, state.in_memory, state.is_prompt,
                    )
                )
        # a label detected but not promptable and not tracked: seen, but not yet an object
        return TrackOutput(frame.index, tuple(sorted(states, key=lambda s: s.object_id)),
                           names=tuple(sorted(self.label_of.items())))


__all__ = ["ObjectTracks", "box_of"]
