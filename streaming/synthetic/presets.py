"""Named scenes, each built to exercise one difficulty, deterministic per seed.

By convention object 1 is the tracking target in every preset (``role == "target"``).

==============  ==================================================================================
preset          what it exercises
==============  ==================================================================================
demo            a manoeuvring target, a moving ball, a pillar that partly hides the target, slow pan
distractors     two look-alikes (same shape and texture as the target) crossing it, in front and behind
occlusion       the target passes fully behind a wall panel and partly behind a pillar
fast_motion     fast zig-zag, leaves the view and comes back, approaches the camera (scale change x3)
camera_motion   the camera pans and translates; the light dims and recovers (lighting change)
dynamic_room    static furniture and several movers under a translating, panning camera (3D memory)
stop_and_go     named objects that rest, move and rest again (a cup twice, a ball once, a box never)
                under a slowly translating camera: exact motion intervals for the scene memory
navqa           (``navqa.py``) four named movers resting and moving on an absolute clock, furniture,
                a swaying camera that glances aside: a minute or an hour of exact answers
==============  ==================================================================================
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


def _keys(params: SceneParams, fractions: list[float], values: list[tuple[float, ...]]) -> Keyframes:
    duration = max(params.frames - 1, 1) / params.fps
    return Keyframes(tuple(f * duration for f in fractions), tuple(values))


def _look(rng: np.random.Generator, base: tuple[float, float, float], pattern: str = "stripes") -> Appearance:
    jitter = rng.uniform(-0.08, 0.08, 3)
    a = tuple(float(np.clip(c + j, 0, 1)) for c, j in zip(base, jitter))
    b = tuple(float(c * 0.45) for c in a)
    return Appearance(a, b, pattern, float(rng.uniform(5, 9)), int(rng.integers(1 << 30)), 0.2)


def _box(oid, name, role, half, look, position, **kw) -> ObjectSpec:
    return ObjectSpec(oid, name, role, "box", half, look, position, **kw)


def _on_floor(x: float, z: float, half_y: float) -> tuple[float, float, float]:
    return (x, FLOOR_Y - half_y, z)


def _camera(params: SceneParams, **kw) -> CameraSpec:
    return CameraSpec(width_px=params.width, height_px=params.height, **kw)


@SCENE_PRESETS.register("demo")
def _demo(p: SceneParams, rng: np.random.Generator):
    z0 = rng.uniform(4.5, 5.5)
    target = _box(
        1,
        "target",
        "target",
        (0.3, 0.3, 0.3),
        _look(rng, (0.85, 0.2, 0.15)),
        _keys(
            p,
            [0, 0.35, 0.7, 1],
            [
                _on_floor(-2.0, z0, 0.3),
                _on_floor(0.2, z0 - 1.2, 0.3),
                _on_floor(1.6, z0 + 0.5, 0.3),
                _on_floor(-0.5, z0, 0.3),
            ],
        ),
        yaw=_keys(p, [0, 1], [(0.0,), (1.5,)]),
    )
    ball = ObjectSpec(
        2,
        "ball",
        "mover",
        "sphere",
        (0.25, 0.25, 0.25),
        _look(rng, (0.2, 0.4, 0.9), "checker"),
        _keys(p, [0, 1], [_on_floor(2.2, 6.5, 0.25), _on_floor(-2.2, 6.0, 0.25)]),
    )
    pillar = _box(
        3,
        "pillar",
        "occluder",
        (0.15, 1.5, 0.15),
        _look(rng, (0.3, 0.6, 0.3)),
        constant(*_on_floor(-0.6, 3.2, 1.5)),
    )
    crate = _box(
        4,
        "crate",
        "furniture",
        (0.5, 0.4, 0.4),
        _look(rng, (0.6, 0.5, 0.2), "checker"),
        constant(*_on_floor(2.6, 7.5, 0.4)),
    )
    camera = _camera(p, yaw=_keys(p, [0, 1], [(-0.12,), (0.12,)]))
    return camera, Lighting(), (target, ball, pillar, crate)


@SCENE_PRESETS.register("distractors")
def _distractors(p: SceneParams, rng: np.random.Generator):
    look = _look(rng, (0.9, 0.55, 0.1))
    half = (0.28, 0.28, 0.28)
    z = rng.uniform(4.3, 4.8)
    target = _box(
        1,
        "target",
        "target",
        half,
        look,
        _keys(p, [0, 1], [_on_floor(-2.2, z, 0.28), _on_floor(2.2, z, 0.28)]),
    )
    front = _box(
        2,
        "distractor_front",
        "distractor",
        half,
        look,
        _keys(p, [0, 1], [_on_floor(2.0, z - 1.1, 0.28), _on_floor(-2.0, z - 1.1, 0.28)]),
    )
    behind = _box(
        3,
        "distractor_behind",
        "distractor",
        half,
        look,
        _keys(
            p,
            [0, 0.3, 1],
            [_on_floor(0.5, z + 1.6, 0.28), _on_floor(1.5, z + 1.6, 0.28), _on_floor(-2.5, z + 1.6, 0.28)],
        ),
    )
    other = ObjectSpec(
        4,
        "ball",
        "mover",
        "sphere",
        (0.2, 0.2, 0.2),
        _look(rng, (0.2, 0.3, 0.9), "checker"),
        _keys(p, [0, 1], [_on_floor(-1.5, 7.5, 0.2), _on_floor(1.5, 7.0, 0.2)]),
    )
    return _camera(p), Lighting(), (target, front, behind, other)


@SCENE_PRESETS.register("occlusion")
def _occlusion(p: SceneParams, rng: np.random.Generator):
    z = rng.uniform(5.2, 5.6)
    target = _box(
        1,
        "target",
        "target",
        (0.3, 0.3, 0.3),
        _look(rng, (0.85, 0.15, 0.5)),
        _keys(p, [0, 1], [_on_floor(-2.6, z, 0.3), _on_floor(2.8, z, 0.3)]),
    )
    panel = _box(
        2,
        "wall_panel",
        "occluder",
        (0.75, 1.2, 0.05),
        _look(rng, (0.35, 0.35, 0.6), "checker"),
        constant(*_on_floor(0.9, 3.4, 1.2)),
    )
    pillar = _box(
        3,
        "pillar",
        "occluder",
        (0.08, 1.5, 0.08),
        _look(rng, (0.3, 0.6, 0.3)),
        constant(*_on_floor(-1.0, 3.0, 1.5)),
    )
    return _camera(p), Lighting(), (target, panel, pillar)


@SCENE_PRESETS.register("fast_motion")
def _fast_motion(p: SceneParams, rng: np.random.Generator):
    jitter = rng.uniform(-0.2, 0.2)
    path = [(-1.5, 6.5), (1.2, 5.0), (-0.8, 4.2), (3.7, 3.6), (3.7, 3.0), (0.5, 2.2), (-1.0, 2.6)]
    fractions = [0, 0.15, 0.3, 0.45, 0.6, 0.8, 1]
    target = _box(
        1,
        "target",
        "target",
        (0.25, 0.25, 0.25),
        _look(rng, (0.9, 0.8, 0.1)),
        _keys(p, fractions, [_on_floor(x + jitter, zz, 0.25) for x, zz in path]),
        yaw=_keys(p, [0, 1], [(0.0,), (4.0,)]),
    )
    ball = ObjectSpec(
        2,
        "ball",
        "mover",
        "sphere",
        (0.2, 0.2, 0.2),
        _look(rng, (0.2, 0.7, 0.8), "checker"),
        _keys(p, [0, 1], [_on_floor(2.0, 7.0, 0.2), _on_floor(-2.0, 7.0, 0.2)]),
    )
    return _camera(p), Lighting(), (target, ball)


@SCENE_PRESETS.register("camera_motion")
def _camera_motion(p: SceneParams, rng: np.random.Generator):
    target = _box(
        1,
        "target",
        "target",
        (0.3, 0.3, 0.3),
        _look(rng, (0.1, 0.7, 0.3)),
        _keys(p, [0, 1], [_on_floor(-0.5, 5.0, 0.3), _on_floor(0.8, 5.5, 0.3)]),
    )
    crate = _box(
        2,
        "crate",
        "furniture",
        (0.45, 0.45, 0.45),
        _look(rng, (0.6, 0.45, 0.2), "checker"),
        constant(*_on_floor(-2.2, 6.0, 0.45)),
    )
    shelf = _box(
        3,
        "shelf",
        "furniture",
        (0.6, 0.9, 0.25),
        _look(rng, (0.4, 0.3, 0.6)),
        constant(*_on_floor(2.3, 7.2, 0.9)),
    )
    camera = _camera(
        p,
        position=_keys(p, [0, 1], [(-0.8, 0.0, 0.0), (0.8, 0.0, 1.2)]),
        yaw=_keys(p, [0, 0.5, 1], [(-0.3,), (0.25,), (0.0,)]),
    )
    lighting = Lighting(gain=_keys(p, [0, 0.4, 0.6, 1], [(1.0,), (0.55,), (0.55,), (1.1,)]))
    return camera, lighting, (target, crate, shelf)


@SCENE_PRESETS.register("dynamic_room")
def _dynamic_room(p: SceneParams, rng: np.random.Generator):
    objects = [
        _box(
            1,
            "walker",
            "target",
            (0.25, 0.6, 0.25),
            _look(rng, (0.8, 0.25, 0.2)),
            _keys(
                p,
                [0, 0.5, 1],
                [_on_floor(-2.0, 5.0, 0.6), _on_floor(0.5, 4.0, 0.6), _on_floor(2.0, 5.5, 0.6)],
            ),
        ),
        ObjectSpec(
            2,
            "ball",
            "mover",
            "sphere",
            (0.3, 0.3, 0.3),
            _look(rng, (0.2, 0.4, 0.9), "checker"),
            _keys(p, [0, 1], [_on_floor(2.0, 6.5, 0.3), _on_floor(-1.5, 3.5, 0.3)]),
        ),
        _box(
            3,
            "cart",
            "mover",
            (0.35, 0.25, 0.5),
            _look(rng, (0.9, 0.7, 0.2)),
            _keys(p, [0, 1], [_on_floor(0.0, 7.5, 0.25), _on_floor(0.0, 6.0, 0.25)]),
            yaw=_keys(p, [0, 1], [(0.0,), (1.2,)]),
        ),
        _box(
            4,
            "table",
            "furniture",
            (0.6, 0.4, 0.4),
            _look(rng, (0.55, 0.4, 0.25), "checker"),
            constant(*_on_floor(-2.4, 7.0, 0.4)),
        ),
        _box(
            5,
            "cabinet",
            "furniture",
            (0.4, 1.0, 0.3),
            _look(rng, (0.35, 0.35, 0.5)),
            constant(*_on_floor(3.0, 8.0, 1.0)),
        ),
        _box(
            6,
            "block",
            "furniture",
            (0.3, 0.3, 0.3),
            _look(rng, (0.3, 0.6, 0.35)),
            constant(*_on_floor(1.2, 3.2, 0.3)),
        ),
    ]
    camera = _camera(
        p,
        position=_keys(p, [0, 1], [(-0.6, -0.1, -0.5), (0.6, 0.1, 0.8)]),
        yaw=_keys(p, [0, 0.5, 1], [(0.2,), (-0.2,), (0.1,)]),
    )
    return camera, Lighting(), tuple(objects)


@SCENE_PRESETS.register("stop_and_go")
def _stop_and_go(p: SceneParams, rng: np.random.Generator):
    # Motion intervals, as fractions of the stream: cup 0.2-0.35 and 0.6-0.7, ball 0.45-0.6, box never.
    cup_a, cup_b, cup_c = _on_floor(-1.4, 4.5, 0.2), _on_floor(0.2, 4.0, 0.2), _on_floor(0.8, 5.2, 0.2)
    ball_a, ball_b = _on_floor(1.6, 6.0, 0.3), _on_floor(-0.6, 6.5, 0.3)
    objects = (
        _box(1, "cup", "target", (0.2, 0.2, 0.2), _look(rng, (0.85, 0.2, 0.15)),
             _keys(p, [0, 0.2, 0.35, 0.6, 0.7, 1], [cup_a, cup_a, cup_b, cup_b, cup_c, cup_c])),
        ObjectSpec(2, "ball", "mover", "sphere", (0.3, 0.3, 0.3), _look(rng, (0.2, 0.4, 0.9), "checker"),
                   _keys(p, [0, 0.45, 0.6, 1], [ball_a, ball_a, ball_b, ball_b])),
        _box(3, "box", "furniture", (0.3, 0.3, 0.3), _look(rng, (0.3, 0.6, 0.35)),
             constant(*_on_floor(-0.4, 7.5, 0.3))),
        _box(4, "table", "furniture", (0.6, 0.4, 0.4), _look(rng, (0.55, 0.4, 0.25), "checker"),
             constant(*_on_floor(2.6, 7.5, 0.4))),
    )
    camera = _camera(p, position=_keys(p, [0, 1], [(-0.3, -0.1, -0.5), (0.3, 0.0, 0.0)]),
                     yaw=_keys(p, [0, 1], [(0.05,), (-0.05,)]))
    return camera, Lighting(), objects
