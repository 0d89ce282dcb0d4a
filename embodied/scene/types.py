"""What the scene memory takes in (one :class:`ObjectObservation` per tracked object and frame) and
what its queries give back. Every result is a frozen dataclass of plain values whose ``as_dict()``
is JSON (lists, floats, strings), so a query can be printed, written, or returned from a tool call.

Units: positions are ``space == "world"``: metres in the world frame (``Frame.pose``'s), or
``space == "image"``: pixels ``(u, v)`` when no depth and pose were known; times are stream seconds
(``Frame.timestamp_s``), frames are ``Frame.index``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from memstream.streaming.errors import MemstreamError

Space = Literal["world", "image"]


class SceneQueryError(MemstreamError):
    """A query the scene memory cannot answer as asked: an unknown object, a time outside the
    stream, a malformed question, or a saved state of another format. The message says which."""


def _round(values: Any) -> Any:
    if isinstance(values, float):
        return round(values, 6)
    if isinstance(values, (list, tuple)):
        return [_round(v) for v in values]
    if isinstance(values, dict):
        return {k: _round(v) for k, v in values.items()}
    return values


@dataclass(frozen=True)
class ObjectObservation:
    """One tracked object on one frame, as the scene memory records it.

    Attributes:
        object_id: the tracker's id, >= 1.
        frame_index, timestamp_s: the frame.
        position: ``(x, y, z)`` metres (world) or ``(u, v)`` pixels (image), or None when the
            object was seen but could not be placed (too little valid depth under its mask).
        space: which of the two ``position`` is in.
        score: the tracker's confidence in [0, 1]: ``affinity x sigmoid(object_score)``.
        box_xywh: ``(x, y, w, h)`` pixels.
        name: the object's name, when it has one.
        area: how much of the object is seen: square metres of its visible surface facing the camera
            (each mask pixel with depth counts ``z^2 / (fx fy)``), or pixels of its mask in image
            space. Unlike pixels, square metres do not shrink when the object moves away.
        at_border: whether the mask touches the image border (the object may be cut off, so its
            position is biased towards the inside).
        occluded: whether another object tracked on the same frame, nearer the camera, overlaps its
            box (its mask may then take in the occluder's pixels, which pull the position towards
            the camera along the viewing ray, or lose the hidden part).
    """

    object_id: int
    frame_index: int
    timestamp_s: float
    position: tuple[float, ...] | None
    space: Space
    score: float
    box_xywh: tuple[float, float, float, float]
    name: str | None = None
    area: float = 0.0
    at_border: bool = False
    occluded: bool = False


@dataclass(frozen=True)
class Sighting:
    """Where an object was, as of a time.

    Attributes:
        object_id, name: the object (``name`` is None for an unnamed one).
        position: ``[x, y, z]`` metres or ``[u, v]`` pixels (see ``space``): its last known
            position at or before the time asked (within ``SceneConfig.min_step_m`` of the observed one).
        space: ``world`` or ``image``.
        seen_at_s, seen_frame: the last observation at or before the time asked.
        at_s: the time asked about.
        visible: whether the object was in view at ``at_s`` (a visit covers it).
        distance_m: for :meth:`objects_near`, the distance to the query point (same unit as the
            position); None otherwise.
    """

    object_id: int
    name: str | None
    position: tuple[float, ...] | None
    space: Space
    seen_at_s: float
    seen_frame: int
    at_s: float
    visible: bool
    distance_m: float | None = None

    @property
    def label(self) -> str:
        """``cup (#1)`` or ``object #1``."""
        return f"{self.name} (#{self.object_id})" if self.name else f"object #{self.object_id}"

    def as_dict(self) -> dict[str, Any]:
        return _round(
            {**asdict(self), "position": list(self.position) if self.position is not None else None}
        )


@dataclass(frozen=True)
class Trajectory:
    """An object's kept positions over a time range (samples at least ``min_step_m`` apart, plus
    its latest observation).

    Attributes:
        object_id, name, space: the object and the unit of ``positions``.
        times_s: ``(n,)`` stream seconds, increasing.
        frames: ``(n,)`` frame indices.
        positions: ``(n, 3)`` metres or ``(n, 2)`` pixels, as tuples.
    """

    object_id: int
    name: str | None
    space: Space
    times_s: tuple[float, ...]
    frames: tuple[int, ...]
    positions: tuple[tuple[float, ...], ...]

    def __len__(self) -> int:
        return len(self.times_s)

    def as_dict(self) -> dict[str, Any]:
        return _round(
            {
                "object_id": self.object_id,
                "name": self.name,
                "space": self.space,
                "times_s": list(self.times_s),
                "frames": list(self.frames),
                "positions": [list(p) for p in self.positions],
            }
        )


@dataclass(frozen=True)
class Motion:
    """One motion of an object: from when it left where it rested to when it came to rest again.

    Attributes:
        object_id, name: the object.
        start_s, start_frame: its last observation still within ``motion_rest_m`` of its resting point.
        end_s, end_frame: its first observation within ``motion_rest_m`` of where it came to rest
            (it then stayed there ``motion_settle_s``); None while it still moves.
        distance_m: straight-line distance from where it rested to where it came to rest (or is
            now); same unit as positions (pixels in image space, despite the name).
        space: ``world`` or ``image``.
    """

    object_id: int
    name: str | None
    start_s: float
    start_frame: int
    end_s: float | None
    end_frame: int | None
    distance_m: float
    space: Space

    @property
    def moving(self) -> bool:
        """True while the motion has not ended."""
        return self.end_s is None

    def as_dict(self) -> dict[str, Any]:
        return _round({**asdict(self), "moving": self.moving})


@dataclass(frozen=True)
class FrameScore:
    """A frame that shows an object well.

    Attributes:
        object_id: the object.
        frame: the frame index; ``timestamp_s`` its time.
        score: the tracker's confidence on that frame, in [0, 1].
        box_xywh: the object's box there, pixels.
    """

    object_id: int
    frame: int
    timestamp_s: float
    score: float
    box_xywh: tuple[float, float, float, float]

    def as_dict(self) -> dict[str, Any]:
        return _round({**asdict(self), "box_xywh": list(self.box_xywh)})


@dataclass(frozen=True)
class ObjectSummary:
    """What the memory holds about one object.

    Attributes:
        object_id, name, space: the object.
        first_seen_s, last_seen_s: its first and latest observations, stream seconds.
        samples, visits, motions: what is kept of it (each bounded by :class:`SceneConfig`).
    """

    object_id: int
    name: str | None
    space: Space
    first_seen_s: float
    last_seen_s: float
    samples: int
    visits: int
    motions: int

    def as_dict(self) -> dict[str, Any]:
        return _round(asdict(self))


@dataclass(frozen=True)
class SceneUpdate:
    """What one frame did to the scene memory (the ``scene`` stage's per-frame result).

    Attributes:
        frame_index, timestamp_s: the frame.
        space: where this frame's positions are (``world`` or ``image``), None when nothing was tracked.
        observations: one per tracked object present on the frame.
    """

    frame_index: int
    timestamp_s: float
    space: Space | None
    observations: tuple[ObjectObservation, ...] = ()
