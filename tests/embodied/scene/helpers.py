"""Ground truth for the scene memory's tests: a synthetic scene's exact masks as the tracker's
output (real TrackStates), and each object's true motion intervals from its keyframes."""

from __future__ import annotations

from functools import cache

import numpy as np

from memstream.embodied.scene import SceneMemory
from memstream.streaming.synthetic import Scene, build_scene
from memstream.streaming.types import Frame
from memstream.tracking.types import TrackOutput, TrackState

SCENE = "stop_and_go"
FRAMES, SIZE, FPS = 240, (160, 120), 30.0


def gt_tracking(frame: Frame, score: float = 0.9) -> TrackOutput:
    """The frame's ground truth as a TrackOutput: every visible object, its exact mask and box."""
    gt = frame.gt
    assert gt is not None
    states = tuple(
        TrackState(
            int(oid), gt.boxes_xywh[row].astype(np.float64), gt.instance_mask == oid, score, 3.0, 1.0, True
        )
        for row, oid in enumerate(gt.object_ids)
        if gt.visible[row]
    )
    return TrackOutput(frame.index, states, names=tuple((int(o), n) for o, n in zip(gt.object_ids, gt.names)))


@cache
def scene(frames: int = FRAMES) -> Scene:
    return Scene(build_scene(SCENE, frames=frames, size=SIZE, fps=FPS))


@cache
def rendered(frames: int = FRAMES) -> tuple[Frame, ...]:
    return tuple(scene(frames).frames())


def run(frames: tuple[Frame, ...], memory: SceneMemory | None = None) -> SceneMemory:
    memory = memory or SceneMemory()
    for frame in frames:
        memory.observe_frame(frame, gt_tracking(frame))
    return memory


def motion_intervals(object_id: int, frames: int = FRAMES) -> list[tuple[float, float]]:
    """The object's true motions (start, end) in seconds: key intervals whose values differ."""
    spec = next(o for o in scene(frames).spec.objects if o.object_id == object_id)
    keys = spec.position
    return [
        (a, b)
        for a, b, va, vb in zip(keys.times_s, keys.times_s[1:], keys.values, keys.values[1:])
        if va != vb
    ]
