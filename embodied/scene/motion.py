"""When an object moves: a rest/moving state machine with hysteresis, O(1) per observation.

An object comes to rest once its (smoothed) position stays within ``motion_rest_m`` of one point
for ``motion_settle_s``; that point (the mean of the positions of the stay) is where it rests. At
rest, it starts moving when it is farther than ``motion_start_m`` from there; the motion is
back-dated to its last observation still within ``motion_rest_m``, and ends at the first
observation of the next stay. The gap between the two radii is the hysteresis: noise smaller than
it neither starts nor ends a motion. A new object is placed the same way (its first stay), so one
bad first mask does not become its resting point; if it had moved more than ``motion_start_m`` from
where it was first seen by then, that is its first motion. While at rest the resting point follows
the position with the time constant ``rest_follow_s``, so a slow drift of the estimate (the visible
side of an object changes as the camera moves) is not motion; the price: a motion slower than
``motion_rest_m / rest_follow_s`` (1.6 cm/s by default) is not seen, and one slower than
``motion_rest_m / motion_settle_s`` (16 cm/s) is seen as a series of short moves, each a little
over ``motion_start_m``, with short rests between them. Nothing is known of what
happens out of view: an object found elsewhere after a gap started moving at its last sighting at
rest, and one that was moving comes to rest only once it is seen staying put after the gap; when it
is found within ``motion_rest_m`` of where it was last seen, its stay (and the motion's end) goes
back to before the gap, as a tracker that loses an object just as it stops would otherwise date the
end at the object's return, seconds late.

Two rules keep a tracker's wandering estimate from becoming motion (``SceneConfig``): a big object
must move ``motion_size_ratio`` times its size (both radii grow in proportion), and a motion that
brings the object back within the start radius of where it rested before it, or before a run of
motions in quick succession (each starting within ``motion_confirm_s`` of the previous end), is
dropped with that run: there and back is an excursion of the estimate (a mask that takes in a
nearer occluder for a few frames), not a move.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from memstream.embodied.scene.config import SceneConfig

# one motion: start_s, start_frame, end_s or None, end_frame or None, distance (metres or pixels)
MotionRow = tuple[float, int, float | None, int | None, float]
_ARRAYS = ("rest", "start_point", "candidate", "first_point")


class MotionDetector:
    """The motion state of one object; ``scale`` divides distances (1 for metres, px per metre for
    image positions)."""

    def __init__(self, config: SceneConfig, scale: float = 1.0) -> None:
        self.config = config
        self.scale = scale
        self._recent: deque[np.ndarray] = deque(maxlen=config.smoothing_frames)
        self.rest: np.ndarray | None = None  # resting point; None while moving or before the first stay
        self.near: tuple[float, int] = (0.0, 0)  # last observation within the rest radius
        self.start_point: np.ndarray | None = None  # where the current motion started (None: not moving)
        self.first_point: np.ndarray | None = None  # where it was first seen, until its first stay
        self.first_at: tuple[float, int] = (0.0, 0)
        self.candidate: np.ndarray | None = None  # mean position of the stay it may be making
        self.candidate_n = 0
        self.candidate_at: tuple[float, int] = (0.0, 0)
        self.last_s = 0.0
        self.size = 0.0  # the object's size, as last told (see start_m)
        self.motions: deque[MotionRow] = deque(maxlen=config.max_motions)
        # the kept motions in quick succession (each started within motion_confirm_s of the end of the
        # one before): where each started and when it ended, to drop excursions (see _drop_excursion)
        self.chain: list[tuple[np.ndarray, float]] = []

    @property
    def start_m(self) -> float:
        """How far from its resting point the object must be to start moving: ``motion_start_m``, or
        ``motion_size_ratio`` times its size when that is more."""
        return max(self.config.motion_start_m, self.config.motion_size_ratio * self.size)

    @property
    def rest_m(self) -> float:
        """The rest radius, ``motion_rest_m``, grown in the same proportion as ``start_m``."""
        return self.config.motion_rest_m * self.start_m / self.config.motion_start_m

    @property
    def moving(self) -> bool:
        return self.start_point is not None

    def _distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b)) / self.scale

    def observe(
        self, position: np.ndarray, t_s: float, frame: int, after_gap: bool = False, size: float = 0.0
    ) -> None:
        """Feed one observed position (metres or pixels) at ``t_s`` / ``frame``; ``after_gap``: the
        object was out of view since its previous observation (see the module docstring); ``size``:
        the object's size (metres; pixels over ``scale`` in image space), which scales the thresholds
        of big objects (see ``start_m``)."""
        self.size = size
        if after_gap:  # the smoothing window does not span a gap; a stay may (see _settling)
            self._recent.clear()
        self._recent.append(np.asarray(position, np.float64))
        p = np.median(np.stack(self._recent), axis=0) if len(self._recent) > 1 else self._recent[-1].copy()
        dt, self.last_s = t_s - self.last_s, t_s
        if self.first_point is None and self.rest is None and not self.moving:
            self.first_point, self.first_at = p.copy(), (t_s, frame)
        if self.rest is not None:
            self._at_rest(p, t_s, frame, dt)
        else:
            self._settling(p, t_s, frame)

    def _at_rest(self, p: np.ndarray, t_s: float, frame: int, dt: float) -> None:
        assert self.rest is not None
        c = self.config
        d = self._distance(p, self.rest)
        if d <= self.rest_m:
            self.near = (t_s, frame)
            self.rest += min(max(dt, 0.0) / c.rest_follow_s, 1.0) * (p - self.rest)
        elif d > self.start_m:
            self.start_point, self.rest = self.rest, None
            self.candidate, self.candidate_n, self.candidate_at = p.copy(), 1, (t_s, frame)
            self.motions.append((*self.near, None, None, d * self.scale))

    def _settling(self, p: np.ndarray, t_s: float, frame: int) -> None:
        c = self.config
        if self.candidate is None or self._distance(p, self.candidate) > self.rest_m:
            self.candidate, self.candidate_n, self.candidate_at = p.copy(), 1, (t_s, frame)
        else:
            self.candidate_n += 1
            self.candidate += (p - self.candidate) / self.candidate_n
        settled = t_s - self.candidate_at[0] >= c.motion_settle_s
        if self.moving:
            assert self.start_point is not None
            start_s, start_frame = self.motions[-1][:2]
            distance = float(np.linalg.norm(self.candidate - self.start_point))  # metres or pixels
            end = self.candidate_at if settled else (None, None)
            self.motions[-1] = (start_s, start_frame, *end, distance)
            if settled:
                self._drop_excursion(start_s)
        elif settled and self.first_point is not None:  # its first stay: moved since first seen?
            distance = float(np.linalg.norm(self.candidate - self.first_point))
            if distance / self.scale > self.start_m:
                self.motions.append((*self.first_at, *self.candidate_at, distance))
        if settled:
            self.rest, self.start_point, self.first_point, self.near = self.candidate.copy(), None, None, (t_s, frame)

    def _drop_excursion(self, start_s: float) -> None:
        """The motion just ended: forget it when it brought the object back within ``start_m`` of
        where it rested before it (net, nothing moved), or of where it rested before any of the
        motions just before it, each of which started less than ``motion_confirm_s`` after the one
        before it ended (there and back, in one hop or several: all of them go). A mask that takes
        in a nearer occluder for a few frames moves the estimate along the viewing ray and back; an
        object carried somewhere and back that fast is seen the same way."""
        assert self.candidate is not None and self.start_point is not None
        c = self.config
        end_s = float(self.motions[-1][2])
        if self.chain and start_s - self.chain[-1][1] > c.motion_confirm_s:
            self.chain.clear()
        self.chain.append((self.start_point.copy(), end_s))
        del self.chain[: -self.config.max_motions]
        for i, (origin, _) in enumerate(self.chain):
            if self._distance(self.candidate, origin) <= self.start_m:
                for _ in range(min(len(self.chain) - i, len(self.motions))):
                    self.motions.pop()
                del self.chain[i:]
                return

    def state_dict(self) -> dict[str, Any]:
        def listed(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [float(v) for v in a]

        return {
            "recent": [listed(p) for p in self._recent],
            **{name: listed(getattr(self, name)) for name in _ARRAYS},
            "near": list(self.near),
            "first_at": list(self.first_at),
            "candidate_n": self.candidate_n,
            "candidate_at": list(self.candidate_at),
            "last_s": self.last_s,
            "size": self.size,
            "motions": [list(m) for m in self.motions],
            "chain": [[listed(p), t] for p, t in self.chain],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        maxlen = self.config.smoothing_frames
        self._recent = deque((np.asarray(p, np.float64) for p in state["recent"]), maxlen=maxlen)
        for name in _ARRAYS:
            setattr(self, name, None if state[name] is None else np.asarray(state[name], np.float64))
        self.near = (float(state["near"][0]), int(state["near"][1]))
        self.first_at = (float(state["first_at"][0]), int(state["first_at"][1]))
        self.candidate_n = int(state["candidate_n"])
        self.candidate_at = (float(state["candidate_at"][0]), int(state["candidate_at"][1]))
        self.last_s = float(state["last_s"])
        self.size = float(state.get("size", 0.0))  # absent in states saved before sizes
        self.motions = deque((tuple(m) for m in state["motions"]), maxlen=self.config.max_motions)  # type: ignore[misc]
        # absent in states saved before excursions were dropped
        self.chain = [(np.asarray(p, np.float64), float(t)) for p, t in state.get("chain", [])]
