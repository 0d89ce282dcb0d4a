"""When an object moves: a rest/moving state machine with hysteresis, O(1) per observation.

At rest, an object has a resting point. It starts moving when its (smoothed) position is farther
than ``motion_start_m`` from that point; the motion is back-dated to the last observation that was
still within ``motion_rest_m`` of it. It rests again once it stays within ``motion_rest_m`` of one
point for ``motion_settle_s``; the motion ends at the first observation of that stay. The gap
between the two radii is the hysteresis: noise smaller than it neither starts nor ends a motion.
While at rest the resting point follows the position slowly (``rest_follow``), so a slow drift of
the estimate (the visible side of an object changes as the camera moves) is never taken for motion.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from memstream.embodied.scene.config import SceneConfig

# one motion: start_s, start_frame, end_s or None, end_frame or None, distance
MotionRow = tuple[float, int, float | None, int | None, float]


class MotionDetector:
    """The motion state of one object; ``scale`` divides distances (1 for metres, px per metre for
    image positions)."""

    def __init__(self, config: SceneConfig, scale: float = 1.0) -> None:
        self.config = config
        self.scale = scale
        self._recent: deque[np.ndarray] = deque(maxlen=config.smoothing_frames)
        self.rest: np.ndarray | None = None  # resting point, or None while moving / before any
        self.near: tuple[float, int] = (0.0, 0)  # last observation within the rest radius
        self.start_point: np.ndarray | None = None
        self.candidate: np.ndarray | None = None  # where it may be coming to rest
        self.candidate_at: tuple[float, int] = (0.0, 0)
        self.motions: deque[MotionRow] = deque(maxlen=config.max_motions)

    @property
    def moving(self) -> bool:
        return self.rest is None and self.start_point is not None

    def observe(self, position: np.ndarray, t_s: float, frame: int, after_gap: bool = False) -> None:
        """Feed one observed position (metres or pixels) at ``t_s`` / ``frame``; ``after_gap``: the
        object was out of view since its previous observation. What happened unseen is not known:
        a resting object found elsewhere started moving at its last sighting where it rested, and a
        moving one only comes to rest once it is seen staying put (never across the gap)."""
        if after_gap:
            self._recent.clear()
            if self.candidate is not None and self.rest is None:
                self.candidate = None
        self._recent.append(np.asarray(position, np.float64))
        p = np.median(np.stack(self._recent), axis=0) if len(self._recent) > 1 else self._recent[-1]
        c = self.config
        if self.rest is None and self.start_point is None:  # the first observation: at rest here
            self.rest, self.near = p.copy(), (t_s, frame)
            return
        if self.rest is not None:
            d = float(np.linalg.norm(p - self.rest)) / self.scale
            if d <= c.motion_rest_m:
                self.near = (t_s, frame)
                self.rest += c.rest_follow * (p - self.rest)
            elif d > c.motion_start_m:
                self.start_point, self.rest = self.rest, None
                self.candidate, self.candidate_at = p.copy(), (t_s, frame)
                self.motions.append((*self.near, None, None, d))
            return
        assert self.start_point is not None
        if self.candidate is None or float(np.linalg.norm(p - self.candidate)) / self.scale > c.motion_rest_m:
            self.candidate, self.candidate_at = p.copy(), (t_s, frame)
        distance = float(np.linalg.norm(self.candidate - self.start_point)) / self.scale
        start_s, start_frame = self.motions[-1][:2]
        if t_s - self.candidate_at[0] >= c.motion_settle_s:
            self.motions[-1] = (start_s, start_frame, *self.candidate_at, distance)
            self.rest, self.start_point, self.near = self.candidate.copy(), None, (t_s, frame)
        else:
            self.motions[-1] = (start_s, start_frame, None, None, distance)

    def state_dict(self) -> dict[str, Any]:
        def listed(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [float(v) for v in a]

        return {
            "recent": [listed(p) for p in self._recent],
            "rest": listed(self.rest),
            "near": list(self.near),
            "start_point": listed(self.start_point),
            "candidate": listed(self.candidate),
            "candidate_at": list(self.candidate_at),
            "motions": [list(m) for m in self.motions],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def array(v: list[float] | None) -> np.ndarray | None:
            return None if v is None else np.asarray(v, np.float64)

        self._recent = deque(
            (np.asarray(p, np.float64) for p in state["recent"]), maxlen=self.config.smoothing_frames
        )
        self.rest, self.start_point, self.candidate = (
            array(state["rest"]),
            array(state["start_point"]),
            array(state["candidate"]),
        )
        self.near = (float(state["near"][0]), int(state["near"][1]))
        self.candidate_at = (float(state["candidate_at"][0]), int(state["candidate_at"][1]))
        self.motions = deque((tuple(m) for m in state["motions"]), maxlen=self.config.max_motions)  # type: ignore[misc]
