"""Transient Dynamics Memory (TDM): recent world-frame points of each dynamic object, bounded.

Mem4D (arXiv 2508.07908) keeps static geometry in a Persistent Structure Memory and "high-frequency
motion details from recent frames" in a TDM; it publishes neither window length nor code, so this is
a classical stand-in: per object a ring of its last ``window_frames`` observations, dropped
``max_age_s`` after they were seen, at most ``max_objects`` objects, and a least-squares
constant-velocity model of the centroids. At most ``max_objects * window_frames *
max_points_per_observation`` points are held, whatever the stream's length.

Example:
    >>> tdm = TransientDynamicsMemory(TDMConfig())
    >>> tdm.update(0, 0.0, {7: np.zeros((4, 3))})
    >>> tdm.update(1, 0.5, {7: np.ones((4, 3))})
    >>> tdm.position(7, 0.25).tolist()
    [0.5, 0.5, 0.5]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field
from scipy.spatial import cKDTree

from memstream.streaming.configtypes import strict_config

STATE_FORMAT = "memstream.tdm/1"
_EMPTY = np.zeros((0, 3), dtype=np.float32)
# Age and extrapolation limits are compared with this slack, seconds, so that e.g. 24/30 - 9/30 counts
# as 0.5 s (it is 0.50000000000000004 in floating point).
_TIME_SLACK_S = 1e-9


@strict_config
@dataclass(frozen=True)
class TDMConfig:
    """Capacity and motion-model settings of the TDM.

    Attributes:
        window_frames: each object keeps its last ``window_frames`` observations.
        max_age_s: seconds; observations older than ``now - max_age_s`` are dropped (``now``: the
            newest timestamp given to ``update``), so an object unseen for longer is forgotten.
        max_points_per_observation: above it a cloud is averaged per ``voxel_m`` voxel, then, if
            still too large, a random subset (seeded by ``seed``, object id, frame index) is kept.
        voxel_m: metres, voxel edge of that downsampling.
        max_objects: when exceeded, the least recently observed object is forgotten.
        velocity_window: number of latest centroids in the least-squares velocity fit.
        max_extrapolation_s: seconds past an object's last observation that queries still answer.
        seed: base seed of the random subset.
    """

    window_frames: Annotated[int, Field(ge=1)] = 30
    max_age_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2.0
    max_points_per_observation: Annotated[int, Field(ge=1)] = 2048
    voxel_m: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.02
    max_objects: Annotated[int, Field(ge=1)] = 64
    velocity_window: Annotated[int, Field(ge=1)] = 5
    max_extrapolation_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.5
    seed: Annotated[int, Field(ge=0)] = 0


def _frozen(array: Any, dtype: type, shape: tuple[int | None, ...], name: str) -> np.ndarray:
    """A read-only copy of ``array`` as ``dtype``; ``None`` in ``shape`` matches any length."""
    out = np.array(array, dtype=dtype, copy=True)
    if out.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, out.shape)):
        expected = tuple("n" if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {expected}, got {out.shape}")
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class DynamicObservation:
    """One dynamic object seen in one frame; the arrays are read-only copies.

    Attributes:
        object_id: tracker or instance id (> 0).
        frame_index: index of the frame in the stream.
        timestamp_s: seconds, the frame's time.
        points: float32 (n, 3), world frame, metres (after downsampling).
        colors: uint8 (n, 3) RGB of each point, or None.
        centroid: float64 (3,), world frame, metres: mean of all points given, before downsampling.
    """

    object_id: int
    frame_index: int
    timestamp_s: float
    points: np.ndarray
    colors: np.ndarray | None
    centroid: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", points := _frozen(self.points, np.float32, (None, 3), "points"))
        if self.colors is not None:
            object.__setattr__(self, "colors", _frozen(self.colors, np.uint8, (len(points), 3), "colors"))
        object.__setattr__(self, "centroid", _frozen(self.centroid, np.float64, (3,), "centroid"))

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held."""
        return self.points.nbytes + self.centroid.nbytes + (0 if self.colors is None else self.colors.nbytes)


class TransientDynamicsMemory:
    """Bounded per-object memory of recent dynamic points with a constant-velocity motion model.

    Queries never expire anything; only ``update`` moves the clock.

    Args:
        config: capacities and motion-model settings (defaults when None).
    """

    def __init__(self, config: TDMConfig | None = None) -> None:
        self.config = config if config is not None else TDMConfig()
        self._tracks: dict[int, deque[DynamicObservation]] = {}
        self._now_s: float | None = None
        self._frame_index: int | None = None

    def update(self, frame_index: int, timestamp_s: float, points_by_object: Mapping[int, np.ndarray],
               colors_by_object: Mapping[int, np.ndarray] | None = None) -> None:
        """Add one frame's dynamic points, then expire by age and window and evict extra objects.

        Inputs are validated before anything changes. An object seen again at its last timestamp
        replaces that observation. An update with no objects still advances the clock.

        Args:
            frame_index: index of the frame; must not decrease between calls.
            timestamp_s: seconds; must not decrease between calls. Becomes the memory's ``now``.
            points_by_object: object id (> 0) -> float (n, 3) world points, metres; n = 0 is ignored.
            colors_by_object: object id -> uint8 (n, 3) RGB matching its points; optional per object.

        Raises:
            ValueError: time or frame index going backwards, bad ids, shapes, dtypes, non-finite values.
        """
        if not np.isfinite(timestamp_s):
            raise ValueError(f"timestamp_s must be finite, got {timestamp_s!r}")
        if self._now_s is not None and (timestamp_s < self._now_s or frame_index < self._frame_index):
            raise ValueError(f"time goes backwards: frame {frame_index} at {timestamp_s} s after "
                             f"frame {self._frame_index} at {self._now_s} s")
        colors_by_object = colors_by_object or {}
        new = [self._observe(i, int(frame_index), float(timestamp_s), p, colors_by_object.get(i))
               for i, p in sorted(points_by_object.items())]
        self._now_s, self._frame_index = float(timestamp_s), int(frame_index)
        for observation in filter(None, new):
            track = self._tracks.setdefault(observation.object_id, deque(maxlen=self.config.window_frames))
            if track and track[-1].timestamp_s == observation.timestamp_s:
                track.pop()
            track.append(observation)
        self._expire()

    def _observe(self, object_id: Any, frame_index: int, timestamp_s: float, points: Any,
                 colors: Any) -> DynamicObservation | None:
        if isinstance(object_id, bool) or not isinstance(object_id, (int, np.integer)) or object_id <= 0:
            raise ValueError(f"object ids must be ints > 0, got {object_id!r}")
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points of object {object_id} must have shape (n, 3), got {points.shape}")
        if len(points) == 0:
            return None
        if not np.isfinite(points).all():
            raise ValueError(f"points of object {object_id} contain NaN or inf")
        if colors is not None and (np.asarray(colors).dtype != np.uint8 or np.shape(colors) != points.shape):
            raise ValueError(f"colors of object {object_id} must be uint8 {points.shape}, "
                             f"got {np.asarray(colors).dtype} {np.shape(colors)}")
        centroid = points.mean(axis=0)
        seed = (self.config.seed, int(object_id), frame_index)
        points, colors = _downsample(points, colors, self.config, seed)
        return DynamicObservation(int(object_id), frame_index, timestamp_s, points, colors, centroid)

    def _expire(self) -> None:
        cutoff = self._now_s - self.config.max_age_s - _TIME_SLACK_S
        for object_id, track in list(self._tracks.items()):
            while track and track[0].timestamp_s < cutoff:
                track.popleft()
            if not track:
                del self._tracks[object_id]
        while len(self._tracks) > self.config.max_objects:  # least recent first; ties: frame, smaller id
            del self._tracks[min(self._tracks, key=lambda i: (self._tracks[i][-1].timestamp_s,
                                                              self._tracks[i][-1].frame_index, i))]

    def reset(self) -> None:
        """Forget every object and the clock."""
        self._tracks.clear()
        self._now_s = self._frame_index = None

    def objects(self) -> list[int]:
        """Ids of the remembered objects, sorted."""
        return sorted(self._tracks)

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._tracks

    def observations(self, object_id: int) -> list[DynamicObservation]:
        """The object's remembered observations, oldest first ([] when unknown)."""
        return list(self._tracks.get(object_id, ()))

    def trajectory(self, object_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Times float64 (m,) seconds and centroids float64 (m, 3) world metres, oldest first."""
        track = self._tracks.get(object_id, ())
        return (np.array([o.timestamp_s for o in track], dtype=np.float64),
                np.array([o.centroid for o in track], dtype=np.float64).reshape(-1, 3))

    def velocity(self, object_id: int) -> np.ndarray:
        """float64 (3,) m/s, world frame: least-squares slope of the last ``velocity_window`` centroids
        against time; zeros with fewer than two observations or for an unknown id."""
        times, centroids = (a[-self.config.velocity_window:] for a in self.trajectory(object_id))
        dt = times - (times.mean() if len(times) else 0.0)
        if float(dt @ dt) == 0.0:
            return np.zeros(3)
        return dt @ (centroids - centroids.mean(axis=0)) / float(dt @ dt)

    def position(self, object_id: int, at_s: float) -> np.ndarray | None:
        """float64 (3,) world centroid (metres) at ``at_s`` seconds, or None when not answerable.

        Linear interpolation between the observations around ``at_s``; past the last one, the last
        centroid moved by ``velocity * (at_s - t_last)`` up to ``max_extrapolation_s``. None before the
        first remembered observation, beyond the extrapolation limit, or for an unknown id.
        """
        times, centroids = self.trajectory(object_id)
        if len(times) == 0 or at_s < times[0]:
            return None
        if at_s > times[-1]:
            displacement = self._displacement(object_id, times[-1], at_s)
            return None if displacement is None else centroids[-1] + displacement
        j = int(np.searchsorted(times, at_s, side="left"))
        if times[j] == at_s:
            return centroids[j].copy()
        weight = (at_s - times[j - 1]) / (times[j] - times[j - 1])
        return centroids[j - 1] + weight * (centroids[j] - centroids[j - 1])

    def points(self, object_id: int, at_s: float | None = None) -> np.ndarray:
        """float32 (n, 3) world points (metres) of the object at ``at_s`` seconds (latest when None).

        The observation nearest in time at or before ``at_s``; past the last observation its points
        are translated by the motion model's displacement. Empty (0, 3) for an unknown id, before the
        first observation, or beyond ``max_extrapolation_s``.
        """
        track = self._tracks.get(object_id)
        if not track or (at_s is not None and at_s < track[0].timestamp_s):
            return _EMPTY.copy()
        if at_s is None or at_s == track[-1].timestamp_s:
            return track[-1].points.copy()
        if at_s > track[-1].timestamp_s:
            displacement = self._displacement(object_id, track[-1].timestamp_s, at_s)
            if displacement is None:
                return _EMPTY.copy()
            return (track[-1].points + displacement).astype(np.float32)
        times = np.array([o.timestamp_s for o in track])
        return track[int(np.searchsorted(times, at_s, side="right")) - 1].points.copy()

    def _displacement(self, object_id: int, last_s: float, at_s: float) -> np.ndarray | None:
        if at_s - last_s > self.config.max_extrapolation_s + _TIME_SLACK_S:
            return None
        return self.velocity(object_id) * (at_s - last_s)

    def snapshot(self, at_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All objects' points at ``at_s`` (as ``points``), objects in id order.

        Returns:
            points float32 (N, 3) world metres, and object_ids int32 (N,) giving each point's object.
        """
        clouds = [(i, self.points(i, at_s)) for i in self.objects()]
        points = np.concatenate([c for _, c in clouds] + [_EMPTY])
        ids = [np.full(len(c), i, np.int32) for i, c in clouds]
        return points, np.concatenate(ids + [np.zeros(0, np.int32)])

    def occupied(self, points: np.ndarray, radius_m: float = 0.05, at_s: float | None = None) -> np.ndarray:
        """bool (k,): whether a dynamic point at ``at_s`` (as ``snapshot``) lies within ``radius_m``
        (metres, inclusive) of each float (k, 3) world query point."""
        queries = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        cloud, _ = self.snapshot(at_s)
        if len(cloud) == 0 or len(queries) == 0:
            return np.zeros(len(queries), dtype=bool)
        distance, _ = cKDTree(cloud).query(queries, k=1, distance_upper_bound=np.nextafter(radius_m, np.inf))
        return distance <= radius_m

    def state_dict(self) -> dict[str, Any]:
        """Plain python/numpy state (arrays copied); ``load_state_dict`` restores it exactly."""
        observations = [{"object_id": o.object_id, "frame_index": o.frame_index, "timestamp_s": o.timestamp_s,
                         "points": o.points.copy(), "colors": None if o.colors is None else o.colors.copy(),
                         "centroid": o.centroid.copy()} for i in self.objects() for o in self._tracks[i]]
        return {"format": STATE_FORMAT, "config": asdict(self.config), "now_s": self._now_s,
                "frame_index": self._frame_index, "observations": observations}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the memory's content with ``state`` from ``state_dict``.

        Raises:
            ValueError: unknown format, or a config different from this memory's.
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a TDM state: format {state.get('format')!r}, expected {STATE_FORMAT!r}")
        if (saved := TDMConfig(**state["config"])) != self.config:
            raise ValueError(f"state was saved with {saved}, this memory has {self.config}")
        tracks: dict[int, deque[DynamicObservation]] = {}
        for o in state["observations"]:
            observation = DynamicObservation(int(o["object_id"]), int(o["frame_index"]),
                                             float(o["timestamp_s"]), o["points"], o["colors"], o["centroid"])
            track = tracks.setdefault(observation.object_id, deque(maxlen=self.config.window_frames))
            track.append(observation)
        self._tracks = tracks
        self._now_s = None if state["now_s"] is None else float(state["now_s"])
        self._frame_index = None if state["frame_index"] is None else int(state["frame_index"])

    def memory_summary(self) -> dict[str, int]:
        """Counts of objects, observations and points held, and bytes of their arrays."""
        held = [o for track in self._tracks.values() for o in track]
        return {"objects": len(self._tracks), "observations": len(held),
                "points": sum(len(o.points) for o in held), "bytes": sum(o.nbytes for o in held)}


def _downsample(points: np.ndarray, colors: np.ndarray | None, config: TDMConfig,
                seed: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """Cap float64 (n, 3) points and uint8 (n, 3) colors at ``max_points_per_observation``.

    Clouds within the cap are kept as given. Larger ones become the mean point (and rounded mean
    colour) of each occupied ``voxel_m`` voxel, in voxel-key order; if still too many, a random
    subset drawn with ``seed`` is kept in that order. Deterministic for equal inputs.
    """
    cap = config.max_points_per_observation
    if len(points) <= cap:
        return points, colors
    _, inverse, counts = np.unique(np.floor(points / config.voxel_m).astype(np.int64), axis=0,
                                   return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)

    def voxel_mean(values: np.ndarray) -> np.ndarray:
        sums = [np.bincount(inverse, weights=values[:, d], minlength=len(counts)) for d in range(3)]
        return np.stack(sums, axis=1) / counts[:, None]

    points = voxel_mean(points)
    colors = None if colors is None else np.clip(np.rint(voxel_mean(colors.astype(np.float64))), 0, 255)
    if len(points) > cap:
        keep = np.sort(np.random.default_rng(list(seed)).choice(len(points), cap, replace=False))
        points, colors = points[keep], None if colors is None else colors[keep]
    return points, None if colors is None else colors.astype(np.uint8)
