"""The scene memory on an endless stream: every part of an object's record stays within its cap,
old times still answer (coarser), and the first sighting stays exact."""

from __future__ import annotations

import json
import time

import numpy as np

from memstream.embodied.scene import ObjectObservation, SceneConfig, SceneMemory

FPS = 30.0


def _observation(frame: int, object_id: int = 1) -> ObjectObservation:
    t = frame / FPS
    # a circle of 2 m radius every 20 s: always moving, so every frame or two is a new sample
    position = (2 * np.cos(t * np.pi / 10), 0.0, 5 + 2 * np.sin(t * np.pi / 10))
    return ObjectObservation(
        object_id, frame, t, position, "world", 0.5 + 0.5 * np.sin(frame), (0, 0, 10, 10), "walker", area=1.0
    )


def _feed(memory: SceneMemory, start: int, stop: int) -> None:
    for frame in range(start, stop):
        hidden = (frame // 50) % 3 == 2  # out of view one third of the time: a new visit every 150 frames
        memory.observe(frame, frame / FPS, () if hidden else (_observation(frame),))


def test_a_long_stream_stays_within_the_caps_and_queries_stay_fast() -> None:
    config = SceneConfig(max_samples=256, max_visits=32, top_frames=4, max_motions=4)
    memory = SceneMemory(config)
    sizes, latencies = [], []
    for chunk in range(10):  # 60,000 frames: 33 minutes at 30 fps
        _feed(memory, chunk * 6000, (chunk + 1) * 6000)
        record = memory.resolve("walker")
        sizes.append((len(record.times), len(record.visits), len(record.best), len(record.motion.motions)))
        start = time.perf_counter()
        for at in np.linspace(0, memory.latest_s, 50):
            memory.where("walker", at_s=float(at))
        latencies.append((time.perf_counter() - start) / 50)
    assert all(s <= 256 and v <= 32 and b <= 4 and m <= 4 for s, v, b, m in sizes)
    assert sizes[-1][0] > 128 and sizes[-1][1] == 32  # full, not empty
    assert len(json.dumps(memory.state_dict())) < 200_000  # the whole saved state
    assert max(latencies) < 1e-3  # a where() on 33 minutes of stream: bisection over bounded lists
    # the first sighting is exact; an old time is answered from the thinned samples
    first = memory.first_seen("walker")
    assert (first.seen_frame, first.position) == (0, _observation(0).position)
    old = memory.where("walker", at_s=100.0)
    assert (
        old.seen_frame <= 3000
        and np.linalg.norm(np.subtract(old.position, _observation(old.seen_frame).position)) < 2.5
    )
    # the recent half of the samples (about 4 s of this fast walk) stays exact to min_step_m
    for back_s in (1.0, 2.5):  # hidden then (last seen 0.67 s before), and in view
        recent = memory.where("walker", at_s=memory.latest_s - back_s)
        truth = _observation(recent.seen_frame).position
        assert np.linalg.norm(np.subtract(recent.position, truth)) <= config.min_step_m
