"""The scene memory: who (track ids, names) x where (3D) x when (time) over one stream.

:class:`SceneMemory` reads, per frame, what the tracking stage and the 3D memory produced (masks and
ids; depth, camera and pose) and keeps an object-centric index (:mod:`memstream.embodied.scene.record`),
bounded per object by :class:`~memstream.embodied.scene.config.SceneConfig`'s caps and in objects
by ``max_objects``, so it holds constant memory on endless streams. Its queries answer from that
index in microseconds (bisection over bounded lists) and return the plain dataclasses of
:mod:`memstream.embodied.scene.types`. Updates and queries may come from different threads.

Example:
    >>> from memstream.streaming.synthetic import Scene, build_scene
    >>> from memstream.tracking.types import TrackOutput, TrackState
    >>> import numpy as np
    >>> scene = Scene(build_scene("dynamic_room", frames=20, size=(96, 72)))
    >>> memory = SceneMemory()
    >>> for i in range(20):  # the ground truth's mask of object 2 stands in for the tracker's
    ...     frame = scene.frame(i)
    ...     mask = frame.gt.mask_of(2)
    ...     state = TrackState(2, frame.gt.boxes_xywh[1].astype(np.float64), mask, 1.0, 5.0, 1.0, True)
    ...     _ = memory.observe_frame(frame, TrackOutput(i, (state,), names=((2, "ball"),)))
    >>> sighting = memory.where("ball")  # the ball left the view on the last frame
    >>> sighting.space, sighting.seen_frame, sighting.visible, len(sighting.position)
    ('world', 18, False, 3)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from memstream.embodied.scene.config import SceneConfig
from memstream.embodied.scene.observe import camera_of, observations
from memstream.embodied.scene.record import ObjectRecord
from memstream.embodied.scene.types import (
    FrameScore,
    Motion,
    ObjectObservation,
    ObjectSummary,
    SceneQueryError,
    SceneUpdate,
    Sighting,
    Space,
    Trajectory,
)
from memstream.streaming.configtypes import dump, parse
from memstream.streaming.types import Frame

STATE_FORMAT = "memstream.scene/1"
ObjectRef = int | str


class SceneMemory:
    """Object-centric memory of one stream (see the module docstring).

    Args:
        config: caps and thresholds; :class:`SceneConfig`'s defaults when omitted.
    """

    def __init__(self, config: SceneConfig | None = None) -> None:
        self.config = config or SceneConfig()
        self._objects: dict[int, ObjectRecord] = {}
        self._lock = threading.RLock()
        self.space: Space | None = None
        self.frames_seen = 0
        self.first_s: float | None = None
        self.latest_s: float | None = None
        self.latest_frame = -1
        self.frame_interval_s = 0.0  # the smallest gap between frames seen: half of it is the time tolerance

    # ---- updates --------------------------------------------------------------------------------
    def update(self, frame: Frame, upstream: Mapping[str, Any] | Any | None = None) -> SceneUpdate:
        """Record the frame from the pipeline's ``upstream``: ``tracking`` (a TrackOutput, needed for
        objects) and ``map3d`` (a Map3DUpdate: depth, camera and pose) when those stages ran."""
        tracking = upstream.get("tracking") if upstream is not None else None
        map3d = upstream.get("map3d") if upstream is not None else None
        if tracking is None:
            return self.observe(frame.index, frame.timestamp_s, ())
        return self.observe_frame(frame, tracking, map3d)

    def observe_frame(self, frame: Frame, tracking: Any, map3d: Any = None) -> SceneUpdate:
        """Record one frame's tracking result (a :class:`~memstream.tracking.types.TrackOutput`),
        placed with the 3D memory's result for the frame when given (else the frame's own camera)."""
        found = observations(frame, tracking, camera_of(frame, map3d), self.config)
        return self.observe(frame.index, frame.timestamp_s, found)

    def observe(
        self, frame_index: int, timestamp_s: float, found: Iterable[ObjectObservation]
    ) -> SceneUpdate:
        """Record a frame's observations (any source of them: a tracker, a simulator's ground truth).

        Raises:
            SceneQueryError: an observation of a new object past ``max_objects``.
        """
        found = tuple(found)
        with self._lock:
            if self.latest_s is not None and frame_index > self.latest_frame:
                gap = (timestamp_s - self.latest_s) / (frame_index - self.latest_frame)
                if gap > 0:
                    self.frame_interval_s = min(self.frame_interval_s or gap, gap)
            self.first_s = timestamp_s if self.first_s is None else self.first_s
            self.latest_s, self.latest_frame = timestamp_s, frame_index
            self.frames_seen += 1
            for obs in found:
                self._record(obs).observe(obs)
        return SceneUpdate(frame_index, timestamp_s, found[0].space if found else None, found)

    def _record(self, obs: ObjectObservation) -> ObjectRecord:
        record = self._objects.get(obs.object_id)
        if record is None:
            if len(self._objects) >= self.config.max_objects:
                raise SceneQueryError(
                    f"object {obs.object_id} would be object {len(self._objects) + 1} in the scene "
                    f"memory, past max_objects={self.config.max_objects}",
                    "Raise max_objects",
                )
            if self.space is None:
                self.space = obs.space
            record = self._objects[obs.object_id] = ObjectRecord(
                obs.object_id, self.space, self.config, obs.name
            )
        if obs.name and record.name != obs.name:
            self._check_name_free(obs.name, obs.object_id)
        return record

    def _check_name_free(self, name: str, object_id: int) -> None:
        other = next(
            (r.object_id for r in self._objects.values() if r.name == name and r.object_id != object_id), None
        )
        if other is not None:
            raise SceneQueryError(
                f"objects {other} and {object_id} are both named {name!r}", "Give each object its own name"
            )

    # ---- lookups --------------------------------------------------------------------------------
    def resolve(self, obj: ObjectRef) -> ObjectRecord:
        """The record of an id (``3``, ``"3"``, ``"#3"``) or a name (``"cup"``, any case).

        Raises:
            SceneQueryError: no such object, listing the known ones.
        """
        with self._lock:
            text = str(obj).strip().lstrip("#")
            if text.isdigit() and int(text) in self._objects:
                return self._objects[int(text)]
            for record in self._objects.values():
                if record.name is not None and record.name.lower() == text.lower():
                    return record
            known = ", ".join(self._label(r) for r in self._objects.values()) or "none yet"
            raise SceneQueryError(f"no object {obj!r} in the scene memory", f"Known objects: {known}")

    @staticmethod
    def _label(record: ObjectRecord) -> str:
        return f"{record.name} (#{record.object_id})" if record.name else f"#{record.object_id}"

    def _time(self, at_s: float | None) -> float:
        """``at_s`` checked against the stream (the latest time when None)."""
        if self.latest_s is None or self.first_s is None:
            raise SceneQueryError(
                "the scene memory has seen no frame yet", "Ask once the run has processed frames"
            )
        if at_s is None:
            return self.latest_s
        tolerance = self.frame_interval_s / 2
        if not self.first_s - tolerance <= at_s <= self.latest_s + tolerance:
            raise SceneQueryError(
                f"time {at_s:g} s is outside the stream, which covers {self.first_s:g} to "
                f"{self.latest_s:g} s",
                "Ask about a time inside it",
            )
        return float(at_s)

    # ---- queries --------------------------------------------------------------------------------
    def objects(self) -> list[ObjectSummary]:
        """Every object the memory holds, by id."""
        with self._lock:
            return [
                ObjectSummary(
                    r.object_id,
                    r.name,
                    r.space,
                    r.first[0],
                    r.last[0],
                    len(r.times),
                    len(r.visits),
                    len(r.motion.motions),
                )
                for r in sorted(self._objects.values(), key=lambda r: r.object_id)
                if r.first is not None and r.last is not None
            ]

    def where(self, obj: ObjectRef, at_s: float | None = None) -> Sighting:
        """Where ``obj`` was at ``at_s`` (now when None): its last known position at or before then
        and the frame it was last seen on.

        Raises:
            SceneQueryError: unknown object, a time outside the stream, or one before the object was
                first seen (or placed).
        """
        with self._lock:
            record, at = self.resolve(obj), self._time(at_s)
            return self._sighting(record, at)

    def _sighting(self, record: ObjectRecord, at: float, distance: float | None = None) -> Sighting:
        seen = record.seen_before(at)
        placed = record.position_at(at)
        if seen is None or placed is None:
            first = record.first[0] if record.first else float("nan")
            raise SceneQueryError(
                f"{self._label(record)} was not seen (placed) by {at:g} s; it was first seen at {first:g} s",
                "Ask about a later time",
            )
        visible = record.visible_at(at, self.frame_interval_s / 2)
        return Sighting(
            record.object_id, record.name, placed[2], record.space, seen[0], seen[1], at, visible, distance
        )

    def first_seen(self, obj: ObjectRef) -> Sighting:
        """The object's first observation (its position there, once placed)."""
        with self._lock:
            record = self.resolve(obj)
            assert record.first is not None
            t, frame, position = record.first
            return Sighting(record.object_id, record.name, position, record.space, t, frame, t, True)

    def last_seen(self, obj: ObjectRef) -> Sighting:
        """The object's latest observation (its latest known position)."""
        with self._lock:
            record = self.resolve(obj)
            assert record.last is not None
            t, frame, _ = record.last
            placed = record.last_position
            return Sighting(
                record.object_id, record.name, placed[2] if placed else None, record.space, t, frame, t, True
            )

    def trajectory(self, obj: ObjectRef, t0_s: float | None = None, t1_s: float | None = None) -> Trajectory:
        """The object's kept positions between ``t0_s`` and ``t1_s`` (the whole stream by default)."""
        with self._lock:
            record = self.resolve(obj)
            t0 = -np.inf if t0_s is None else float(t0_s)
            t1 = np.inf if t1_s is None else float(t1_s)
            if t1 < t0:
                raise SceneQueryError(
                    f"trajectory from {t0:g} s to {t1:g} s: the end is before the start", "Swap them"
                )
            times, frames, positions = record.samples_between(t0, t1)
            return Trajectory(
                record.object_id, record.name, record.space, tuple(times), tuple(frames), tuple(positions)
            )

    def last_moved(self, obj: ObjectRef) -> Motion | None:
        """The object's latest motion (``end_s`` None while it still moves), or None when it has not
        moved since it was first seen.

        The motion threshold: an object at rest has moved once its estimated centre is more than
        ``motion_start_m`` (0.2 m by default; for a big object ``motion_size_ratio`` (0.5) times its
        size, when more) from where it rests; the motion starts at its last observation within
        ``motion_rest_m`` (0.08 m, grown in the same proportion) of there and ends when it has stayed
        within that of one point for ``motion_settle_s`` (0.5 s); the band between the two radii is
        the hysteresis. A motion that ends back where the object rested before it, or before a run
        of motions each starting within ``motion_confirm_s`` (3 s) of the previous one's end, is
        forgotten with that run (there and back: an excursion of the estimate). Only whole views
        count: an observation whose mask touches the image border, whose box another tracked object
        nearer the camera overlaps, or whose visible area is under ``min_area_ratio`` (0.7) of the
        upper quartile of its recent ones, places the object but is not judged for motion, and the
        centre is estimated so that it does not move when only the camera turns (within 2-4 cm on
        the navqa scene, well inside the band; :func:`~memstream.embodied.scene.observe.world_position`). See
        :class:`SceneConfig` and :mod:`memstream.embodied.scene.motion`."""
        with self._lock:
            return next(iter(self.motions(obj, last=1)), None)

    def motions(self, obj: ObjectRef, last: int | None = None) -> list[Motion]:
        """The object's kept motions, the latest first (at most ``last`` of them)."""
        with self._lock:
            record = self.resolve(obj)
            rows = list(record.motion.motions)[::-1][:last]
            return [
                Motion(record.object_id, record.name, s, sf, e, ef, d, record.space)
                for s, sf, e, ef, d in rows
            ]

    def visible_at(self, at_s: float | None = None) -> list[Sighting]:
        """The objects in view at ``at_s`` (now when None), by id: those with a visit then. A visit
        ends once the object is missing from more than ``gap_frames`` consecutive frames, so one
        missing from the latest frames, but not from more than that, is still in its visit (a
        tracker that drops an object for a frame does not take it out of view, now as before)."""
        with self._lock:
            at = self._time(at_s)
            tolerance = self.frame_interval_s / 2
            return [
                self._sighting(r, at)
                for r in self._sorted()
                if (r.visible_at(at, tolerance) or self._in_open_visit(r, at)) and r.position_at(at)
            ]

    def _in_open_visit(self, record: ObjectRecord, at: float) -> bool:
        if not record.visits:
            return False
        _, end_s, _, end_frame = record.visits[-1]
        return self.latest_frame - int(end_frame) <= self.config.gap_frames and at >= end_s

    def objects_near(
        self, point: Sequence[float], radius_m: float, at_s: float | None = None
    ) -> list[Sighting]:
        """Objects whose last known position at ``at_s`` (now when None) is within ``radius_m`` of
        ``point`` (same space as the positions), nearest first; ``distance_m`` says how far."""
        with self._lock:
            at = self._time(at_s)
            target = np.asarray(point, np.float64)
            if self.space is not None and target.shape != ((3,) if self.space == "world" else (2,)):
                raise SceneQueryError(
                    f"point {list(point)} has {target.size} coordinates but positions are "
                    f"{'x, y, z metres' if self.space == 'world' else 'u, v pixels'}",
                    "Give a point in the same space",
                )
            found = []
            for record in self._sorted():
                placed = record.position_at(at)
                if placed is None or record.seen_before(at) is None:
                    continue
                distance = float(np.linalg.norm(np.asarray(placed[2]) - target))
                if distance <= radius_m:
                    found.append(self._sighting(record, at, distance))
            return sorted(found, key=lambda s: s.distance_m or 0.0)

    def frames_showing(self, obj: ObjectRef, k: int = 4) -> list[FrameScore]:
        """The ``k`` best frames of the object by tracker score (at most ``top_frames`` are kept),
        best first."""
        if k < 1:
            raise SceneQueryError(f"frames_showing needs k >= 1, got {k}")
        with self._lock:
            return self.resolve(obj).best_frames(k)

    def _sorted(self) -> list[ObjectRecord]:
        return sorted(self._objects.values(), key=lambda r: r.object_id)

    # ---- state ----------------------------------------------------------------------------------
    def memory_summary(self) -> dict[str, Any]:
        """Objects, frames and entries held (the caps bound ``entries``)."""
        with self._lock:
            return {
                "objects": len(self._objects),
                "frames_seen": self.frames_seen,
                "space": self.space,
                "entries": sum(r.size() for r in self._objects.values()),
                "max_entries_per_object": self.config.max_samples
                + self.config.max_visits
                + self.config.top_frames
                + self.config.max_motions,
            }

    def state_dict(self) -> dict[str, Any]:
        """Everything, as JSON-able plain data (``format``: ``memstream.scene/1``)."""
        with self._lock:
            return {
                "format": STATE_FORMAT,
                "config": dump(self.config),
                "space": self.space,
                "frames_seen": self.frames_seen,
                "first_s": self.first_s,
                "latest_s": self.latest_s,
                "latest_frame": self.latest_frame,
                "frame_interval_s": self.frame_interval_s,
                "objects": [r.state_dict() for r in self._sorted()],
            }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; the saved config replaces this memory's.

        Raises:
            SceneQueryError: a state of another format or version.
        """
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise SceneQueryError(
                f"the saved scene memory has format {found!r}, not {STATE_FORMAT!r}",
                "It was written by another memstream version; run the stream again",
            )
        with self._lock:
            self.config = parse(SceneConfig, state["config"], "scene.config")
            self.space = state["space"]
            self.frames_seen, self.first_s, self.latest_s = (
                state["frames_seen"],
                state["first_s"],
                state["latest_s"],
            )
            self.latest_frame, self.frame_interval_s = state["latest_frame"], state["frame_interval_s"]
            self._objects = {
                o["object_id"]: ObjectRecord.from_state(o, self.config) for o in state["objects"]
            }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SceneMemory:
        memory = cls()
        memory.load_state_dict(state)
        return memory
