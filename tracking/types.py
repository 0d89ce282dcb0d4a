"""The objects the tracking memory produces and consumes.

Coordinates follow ``memstream.streaming.types``: boxes are ``xywh`` in pixels of the frame as decoded
(top-left corner, width, height), masks are ``bool (H, W)`` at the frame's resolution. An empty
mask has the box ``[0, 0, 0, 0]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memstream.streaming.types import read_only


@dataclass(frozen=True)
class Prompt:
    """What a user gives to start (or correct) one object on one frame.

    Attributes:
        object_id: the object's id, >= 1 (``memstream track`` numbers ``--box`` options 1, 2, ...).
        box_xywh: float64 ``(4,)`` pixels, or None when only points are given.
        points_xy: float64 ``(p, 2)`` pixels, or None.
        point_labels: int32 ``(p,)``: 1 = on the object, 0 = background.
    """

    object_id: int
    box_xywh: np.ndarray | None = None
    points_xy: np.ndarray | None = None
    point_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.object_id < 1:
            raise ValueError(f"object ids start at 1, got {self.object_id}")
        if self.box_xywh is None and self.points_xy is None:
            raise ValueError(f"object {self.object_id}: a prompt needs a box or points")
        if self.box_xywh is not None:
            object.__setattr__(self, "box_xywh", np.asarray(self.box_xywh, np.float64).reshape(4))
        if self.points_xy is not None:
            points = np.asarray(self.points_xy, np.float64).reshape(-1, 2)
            labels = np.ones(len(points), np.int32) if self.point_labels is None else np.asarray(self.point_labels)
            if labels.shape != (len(points),):
                raise ValueError(f"object {self.object_id}: {len(points)} points but {labels.shape} labels")
            object.__setattr__(self, "points_xy", points)
            object.__setattr__(self, "point_labels", labels.astype(np.int32))
        for name in ("box_xywh", "points_xy", "point_labels"):
            read_only(getattr(self, name))


@dataclass(frozen=True)
class Candidates:
    """One object's candidate masks on one frame, as a backend proposes them (SAM 2: the 3 outputs
    of the multimask decoder; the classical backend: its best appearance matches).

    Attributes:
        boxes_xywh: float64 ``(k, 4)`` pixels; ``[0, 0, 0, 0]`` for an empty candidate.
        affinity: float64 ``(k,)`` in [0, 1]: the backend's own estimate of each candidate's quality
            (SAM 2's predicted IoU).
        object_score_logit: the backend's logit that the object is visible at all (> 0: present).
    """

    boxes_xywh: np.ndarray
    affinity: np.ndarray
    object_score_logit: float

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xywh, np.float64).reshape(-1, 4)
        affinity = np.asarray(self.affinity, np.float64).reshape(-1)
        if len(boxes) == 0 or len(boxes) != len(affinity):
            raise ValueError(f"need k >= 1 candidates with one affinity each, got {len(boxes)} and {len(affinity)}")
        object.__setattr__(self, "boxes_xywh", read_only(boxes))
        object.__setattr__(self, "affinity", read_only(affinity))


@dataclass(frozen=True)
class Decision:
    """What the tracker decided for one object on one frame; the backend commits it.

    Attributes:
        index: the chosen candidate (row of :class:`Candidates`).
        enters_memory: whether this frame joins the object's memory bank (SAMURAI's gate).
    """

    index: int
    enters_memory: bool


@dataclass(frozen=True)
class TrackState:
    """One object on one frame.

    Attributes:
        object_id: the object's id.
        box_xywh: float64 ``(4,)`` pixels, the tight box of ``mask`` (zeros when it is empty).
        mask: bool ``(H, W)``, or None when the caller asked for boxes only.
        affinity: the chosen candidate's affinity (predicted IoU), in [0, 1].
        object_score: the backend's object-presence logit (> 0: present).
        motion_score: IoU between the Kalman prediction and the chosen box, or NaN outside SAMURAI's
            stable phase (and in ``affinity`` selection).
        in_memory: whether this frame entered the object's memory bank.
        is_prompt: whether the user prompted the object on this frame.
    """

    object_id: int
    box_xywh: np.ndarray
    mask: np.ndarray | None
    affinity: float
    object_score: float
    motion_score: float
    in_memory: bool
    is_prompt: bool = False

    def __post_init__(self) -> None:
        read_only(self.box_xywh)
        read_only(self.mask)

    @property
    def present(self) -> bool:
        """Whether the object is reported on this frame (its mask, hence its box, is not empty)."""
        return bool(self.box_xywh[2] > 0 and self.box_xywh[3] > 0)


@dataclass(frozen=True)
class TrackOutput:
    """Every tracked object on one frame: what the ``tracking`` stage hands to later stages.

    Attributes:
        frame_index: the frame's ``Frame.index``.
        states: one :class:`TrackState` per object, in the order objects were added.
        names: ``(object_id, name)`` pairs of the named objects (``--box cup:...``, or a synthetic
            scene's names for ``gt_objects``); an object without a name is absent.
    """

    frame_index: int
    states: tuple[TrackState, ...] = field(default_factory=tuple)
    names: tuple[tuple[int, str], ...] = ()

    def name_of(self, object_id: int) -> str | None:
        """The name of ``object_id``, or None when it has none."""
        return dict(self.names).get(object_id)

    @property
    def object_ids(self) -> np.ndarray:
        """int32 ``(n,)``."""
        return np.array([s.object_id for s in self.states], np.int32)

    @property
    def boxes_xywh(self) -> np.ndarray:
        """float64 ``(n, 4)`` pixels."""
        return np.array([s.box_xywh for s in self.states], np.float64).reshape(-1, 4)

    def instance_mask(self, height: int, width: int) -> np.ndarray:
        """int32 ``(H, W)``: each pixel holds the id of the object whose mask covers it, 0 for none
        (later objects win where masks overlap)."""
        out = np.zeros((height, width), np.int32)
        for state in self.states:
            if state.mask is not None:
                out[state.mask] = state.object_id
        return out

    def get(self, object_id: int) -> TrackState | None:
        """The state of ``object_id`` on this frame, or None when it is not tracked."""
        return next((s for s in self.states if s.object_id == object_id), None)
