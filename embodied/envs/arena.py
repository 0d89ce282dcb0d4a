"""Planar geometry shared by the tasks: the unit-square arena, rectangles, sliding moves, waypoints.

Coordinates are *arena units*: the arena is the unit square, ``x`` to the right and ``y`` up; a
rectangle is ``[x0, y0, x1, y1]``. The agent is a disc of radius :data:`AGENT_RADIUS`; it moves inside
the union of the layout's free rectangles shrunk by that radius, sliding along walls.

Example:
    >>> free = shrink(np.array([[0.4, 0.0, 0.6, 1.0]]), AGENT_RADIUS)
    >>> slide(np.array([[0.5, 0.5]]), np.array([[0.5, 0.0]]), free).round(3).tolist()
    [[0.565, 0.5]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AGENT_RADIUS = 0.035  # arena units: 2.2 px at 64x64

# RGB colours, uint8. Chosen far apart so a small CNN separates them at 32-64 px.
WALL = (20, 20, 20)
FLOOR = (150, 150, 150)
AGENT = (255, 255, 255)
RED = (230, 30, 30)
BLUE = (30, 70, 240)
LAMP_OFF = (70, 70, 70)
PAD_UNLIT = (90, 60, 130)
PAD_LIT = (255, 220, 0)
PAD_VISITED = (30, 190, 60)


@dataclass(frozen=True)
class Layout:
    """The static arena of a task.

    Attributes:
        free_rects: float64 (R, 4), arena units; the floor is their union, everything else is wall.
            Rectangles that meet must overlap by more than ``2 * AGENT_RADIUS`` so that the agent's
            shrunk free space stays connected.
        painted: static coloured rectangles drawn on the floor, in order: ((rect, rgb), ...).
        start_x: arena units, the agent's start abscissa (the corridor's centre line).
        start_y_min: arena units, the lowest start ordinate; the highest depends on the episode.
        decision_y: arena units; no hidden information can matter before the agent's centre reaches
            this height (it cannot leave the corridor / touch a goal or pad below it).
        junction: float64 (2,), arena units; the experts walk up the corridor to it, then turn.
    """

    free_rects: np.ndarray
    painted: tuple[tuple[tuple[float, float, float, float], tuple[int, int, int]], ...]
    start_x: float
    start_y_min: float
    decision_y: float
    junction: np.ndarray = field(default_factory=lambda: np.zeros(2))


def shrink(rects: np.ndarray, margin: float) -> np.ndarray:
    """float64 (R, 4): ``rects`` with each side moved inwards by ``margin`` arena units."""
    return np.asarray(rects, dtype=np.float64) + np.array([margin, margin, -margin, -margin])


def contains(rects: np.ndarray, points: np.ndarray) -> np.ndarray:
    """bool (B, R): whether point ``b`` lies in closed rectangle ``r``; ``points`` float (B, 2)."""
    x, y = points[:, 0:1], points[:, 1:2]
    return (x >= rects[:, 0]) & (x <= rects[:, 2]) & (y >= rects[:, 1]) & (y <= rects[:, 3])


def _clip_axis(points: np.ndarray, step: np.ndarray, free: np.ndarray, axis: int) -> np.ndarray:
    """Coordinate ``axis`` after moving by ``step`` (B,), clipped to the free rectangles holding the point."""
    inside = contains(free, points)  # (B, R); every point lies in at least one rectangle
    low = np.where(inside, free[:, axis], np.inf).min(axis=1)
    high = np.where(inside, free[:, axis + 2], -np.inf).max(axis=1)
    return np.clip(points[:, axis] + step, low, high)


def slide(points: np.ndarray, delta: np.ndarray, free: np.ndarray) -> np.ndarray:
    """float64 (B, 2): ``points`` moved by ``delta`` (B, 2), first along x then along y, each clipped.

    The free rectangles ``free`` (R, 4) must already be shrunk by the agent radius and overlap where
    they meet; a point inside their union stays inside it, stopping flush against walls.
    """
    moved = np.array(points, dtype=np.float64, copy=True)
    moved[:, 0] = _clip_axis(moved, delta[:, 0], free, 0)
    moved[:, 1] = _clip_axis(moved, delta[:, 1], free, 1)
    return moved


def toward(points: np.ndarray, targets: np.ndarray, max_step: float) -> np.ndarray:
    """float32 (B, 2): actions that move ``points`` straight at ``targets`` at full speed.

    The action is ``(target - point) / max_step`` scaled down to norm 1 when longer, so a point within
    one step of its target lands on it exactly.
    """
    actions = (np.asarray(targets, dtype=np.float64) - points) / max_step
    norms = np.linalg.norm(actions, axis=1, keepdims=True)
    return (actions / np.maximum(norms, 1.0)).astype(np.float32)
