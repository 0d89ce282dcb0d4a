"""``navqa``: a room whose named objects rest and move on a clock, for questions with exact answers.

Unlike the other presets, whose script is stretched over the stream (fewer frames, faster motion),
``navqa`` is scripted in absolute stream time, so one minute and one hour of it look alike: four
movers (``cup``, ``ball``, ``bottle``, ``toy``) each rest for 6-40 s and then move 0.6-1.6 m at
0.3-0.6 m/s to another point of its own lane (lanes are wedges apart as seen from the camera, so
movers never hide each other), two pieces of furniture (``table``, ``shelf``) stand still at the sides, and the camera
sways slowly and glances aside (first within 15-40 s, then every 50-110 s) for 4-8 s, so some objects leave the view and come
back (questions about when an object was last seen then have answers other than "now").

The exact script is public: :func:`motion_intervals` gives every motion of an object (start, end,
seconds) and ``ObjectSpec.position.at(t)`` its centre at any time, which is what the NaVQA-style
benchmark (``benchmarks/bench_scene_qa.py``) scores against.

    memstream run "synthetic://navqa?frames=1800&size=160x120&fps=30" --config scene --out runs/navqa
"""

from __future__ import annotations

import numpy as np

from memstream.streaming.synthetic.build import SCENE_PRESETS, SceneParams
from memstream.streaming.synthetic.scene import (
    Appearance,
    CameraSpec,
    Keyframes,
    Lighting,
    ObjectSpec,
    RoomSpec,
    constant,
)

FLOOR_Y = RoomSpec().max_m[1]
MOVERS = ("cup", "ball", "bottle", "toy")
REST_S = (6.0, 40.0)
SPEED_M_S = (0.3, 0.6)
STEP_M = (0.6, 1.6)
CAMERA_Z_M = 1.2  # where the camera sways around (world z, metres)
# each mover's lane, a wedge seen from the camera: (tan of the bearing), (distance along z, metres);
# the wedges are apart by more than an object's width, so movers never hide one another
_LANES = (((-0.50, -0.37), (3.0, 5.0)), ((-0.21, -0.08), (3.0, 5.0)), ((0.08, 0.21), (3.0, 5.0)), ((0.35, 0.46), (3.0, 5.0)))
_HALF = ((0.17, 0.17, 0.17), (0.18, 0.18, 0.18), (0.1, 0.24, 0.1), (0.16, 0.13, 0.16))
_COLOURS = ((0.85, 0.2, 0.15), (0.2, 0.4, 0.9), (0.2, 0.75, 0.3), (0.9, 0.75, 0.1))


def _look(rng: np.random.Generator, base: tuple[float, float, float], pattern: str) -> Appearance:
    b = tuple(float(c * 0.45) for c in base)
    return Appearance(base, b, pattern, float(rng.uniform(5, 9)), int(rng.integers(1 << 30)), 0.2)


def _floor(x: float, z: float, half_y: float) -> tuple[float, float, float]:
    return (float(x), FLOOR_Y - half_y, float(z))


def _mover_path(rng: np.random.Generator, lane, half_y: float, end_s: float) -> Keyframes:
    (a0, a1), (d0, d1) = lane

    def point() -> np.ndarray:
        bearing, distance = rng.uniform(a0, a1), rng.uniform(d0, d1)
        return np.array([bearing * distance, CAMERA_Z_M + distance])

    here = point()
    times, values, now = [0.0], [_floor(*here, half_y)], 0.0
    while now < end_s:
        now += rng.uniform(*REST_S)
        for _ in range(100):  # a target far enough to be a motion (well past the 0.2 m threshold)
            target = point()
            if STEP_M[0] <= np.linalg.norm(target - here) <= STEP_M[1]:
                break
        duration = float(np.linalg.norm(target - here) / rng.uniform(*SPEED_M_S))
        times += [now, now + duration]
        values += [_floor(*here, half_y), _floor(*target, half_y)]
        here, now = target, now + duration
    return Keyframes(tuple(times), tuple(values))


def _camera_path(p: SceneParams, rng: np.random.Generator, end_s: float) -> CameraSpec:
    # a slow sway (position and pan every 20 s) with glances aside (yaw +-0.55 rad for 4-8 s)
    times, positions = [], []
    for k, t in enumerate(np.arange(0.0, end_s + 20.0, 20.0)):
        times.append(float(t))
        positions.append((float(0.15 * np.sin(k * 1.3)), float(-0.05 * np.cos(k)), float(CAMERA_Z_M + 0.25 * np.sin(k * 0.7))))
    yaw_t, yaw_v, now = [0.0], [(0.0,)], 0.0
    while now < end_s:
        now += rng.uniform(15, 40) if len(yaw_t) == 1 else rng.uniform(50, 110)  # a first one within a minute
        turn = float(rng.choice([-0.55, 0.55]))
        hold = rng.uniform(4, 8)
        yaw_t += [now, now + 1.5, now + 1.5 + hold, now + 3.0 + hold]
        yaw_v += [(0.0,), (turn,), (turn,), (0.0,)]
        now += 3.0 + hold
    return CameraSpec(
        width_px=p.width, height_px=p.height,
        position=Keyframes(tuple(times), tuple(positions)), yaw=Keyframes(tuple(yaw_t), tuple(yaw_v)),
        pitch=constant(-0.25),
    )


@SCENE_PRESETS.register("navqa")
def _navqa(p: SceneParams, rng: np.random.Generator):
    end_s = max(p.frames - 1, 1) / p.fps
    objects = []
    for i, name in enumerate(MOVERS):
        shape = "sphere" if name == "ball" else "box"
        pattern = "plain"  # saturated single colours: the weight-free tracker follows them through scale change
        objects.append(ObjectSpec(
            i + 1, name, "target" if i == 0 else "mover", shape, _HALF[i], _look(rng, _COLOURS[i], pattern),
            _mover_path(rng, _LANES[i], _HALF[i][1], end_s),
        ))
    objects.append(ObjectSpec(5, "table", "furniture", "box", (0.4, 0.35, 0.4),
                              _look(rng, (0.55, 0.4, 0.25), "checker"), constant(*_floor(-3.5, 7.2, 0.35))))
    objects.append(ObjectSpec(6, "shelf", "furniture", "box", (0.3, 0.6, 0.3),
                              _look(rng, (0.5, 0.3, 0.6), "stripes"), constant(*_floor(3.6, 7.4, 0.6))))
    return _camera_path(p, rng, end_s), Lighting(), tuple(objects)


def motion_intervals(obj: ObjectSpec) -> list[tuple[float, float]]:
    """Every motion of ``obj`` as (start, end) seconds: the key intervals over which it changes position."""
    keys = obj.position
    return [
        (a, b)
        for a, b, va, vb in zip(keys.times_s, keys.times_s[1:], keys.values, keys.values[1:], strict=False)
        if va != vb
    ]
