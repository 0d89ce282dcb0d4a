"""The scene memory: query latency and answer error against stream length (they must stay flat).

Claims (``memstream.embodied.scene``): every query answers in microseconds however long the stream
(bisection over per-object lists whose lengths the caps bound), the memory's size stops growing at
its caps, and its answers are as exact on an hour of stream as on a minute (ReMEmbR's position error
grows from 5.1 m to 46.3 m from short to long NaVQA sequences).

Two parts:

* ``scripted``: 6 objects in a room, each resting (5-60 s) and moving (1-5 s at 0.4-1.5 m/s) to random
  points, out of view 20 % of the time, observed at 30 fps with 1 cm noise (what the tracker and
  the 3D memory hand over, without rendering), for 1k, 10k and 100k frames (33 s to 55 min).
  Measured after the whole stream: the latency of each query at random times (p50 / p99, us); the
  position error of ``where(obj, t)`` against the true position at the frame it reports; the error
  of ``last_moved`` start and end against the true last motion; the entries held and the size of
  ``scene.json``; the update cost per frame.
* ``rendered``: the ``stop_and_go`` scene rendered at 96x72 with its exact masks as the tracker's,
  for 300, 1,200 and 4,800 frames: the position error of ``where`` against the true object centres.

    python benchmarks/bench_scene.py [--frames 1000 10000 100000] [--rendered 300 1200 4800]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from _common import print_table, save
from memstream.embodied.scene import ObjectObservation, SceneMemory

os.environ.setdefault("COLUMNS", "200")
FPS = 30.0
OBJECTS = 6
QUERIES = 300


def script(frames: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[list[tuple[float, float]]]]:
    """True positions ``(frames, objects, 3)``, visibility ``(frames, objects)`` and each object's
    motion intervals (seconds)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / FPS
    positions = np.zeros((frames, OBJECTS, 3))
    visible = np.ones((frames, OBJECTS), bool)
    motions: list[list[tuple[float, float]]] = []
    for o in range(OBJECTS):
        here, now, found = rng.uniform([-3, 0.5, 2], [3, 1.2, 8]), 0.0, []
        keys_t, keys_p = [0.0], [here]
        while now < t[-1]:
            now += rng.uniform(5, 60)
            target = rng.uniform([-3, 0.5, 2], [3, 1.2, 8])
            duration = max(np.linalg.norm(target - here) / rng.uniform(0.4, 1.5), 1.0)
            keys_t += [now, now + duration]
            keys_p += [here, target]
            found.append((now, now + duration))
            here, now = target, now + duration
        keys = np.array(keys_p)
        for axis in range(3):
            positions[:, o, axis] = np.interp(t, keys_t, keys[:, axis])
        motions.append([m for m in found if m[1] <= t[-1]])
        hidden_at = 0.0
        while hidden_at < t[-1]:  # out of view about 20 % of the time
            hidden_at += rng.uniform(10, 40)
            visible[(t >= hidden_at) & (t < hidden_at + rng.uniform(2, 8)), o] = False
    return positions, visible, motions


def timed_us(fn, arguments: list) -> list[float]:
    out = []
    for args in arguments:
        start = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def scripted(frames: int, seed: int = 0) -> dict:
    positions, visible, motions = script(frames, seed)
    rng = np.random.default_rng(seed + 1)
    noisy = positions + rng.normal(0, 0.01, positions.shape)
    memory = SceneMemory()
    start = time.perf_counter()
    for i in range(frames):
        seen = [
            ObjectObservation(
                o + 1, i, i / FPS, tuple(noisy[i, o]), "world", 0.9, (0, 0, 10, 10), f"obj{o + 1}", 1.0
            )
            for o in range(OBJECTS)
            if visible[i, o]
        ]
        memory.observe(i, i / FPS, seen)
    update_us = (time.perf_counter() - start) / frames * 1e6
    end_s = (frames - 1) / FPS
    times = rng.uniform(0, end_s, QUERIES)
    ids = rng.integers(1, OBJECTS + 1, QUERIES)
    where_args = [(int(o), float(t)) for o, t in zip(ids, times) if memory.resolve(int(o)).first[0] <= t]
    latency = {
        "where": timed_us(memory.where, where_args),
        "last_moved": timed_us(memory.last_moved, [(int(o),) for o in ids]),
        "visible_at": timed_us(memory.visible_at, [(float(t),) for t in times]),
        "objects_near": timed_us(memory.objects_near, [((0.0, 1.0, 5.0), 1.5, float(t)) for t in times]),
        "trajectory": timed_us(
            memory.trajectory, [(int(o), float(t), float(t) + 10) for o, t in zip(ids, times)]
        ),
        "frames_showing": timed_us(memory.frames_showing, [(int(o), 4) for o in ids]),
    }
    errors = [
        float(np.linalg.norm(np.subtract(s.position, positions[s.seen_frame, s.object_id - 1])))
        for s in (memory.where(*a) for a in where_args)
    ]
    start_err, end_err = [], []
    for o in range(OBJECTS):
        found = memory.last_moved(o + 1)
        if motions[o] and found is not None and found.end_s is not None:
            true_start, true_end = motions[o][-1]
            start_err.append(abs(found.start_s - true_start))
            end_err.append(abs(found.end_s - true_end))
    counted = sum(len(memory.motions(o + 1)) for o in range(OBJECTS))
    return {
        "frames": frames,
        "stream_min": round(frames / FPS / 60, 2),
        "update_us": round(update_us, 1),
        "latency_us": {
            k: {"p50": round(statistics.median(v), 1), "p99": round(float(np.percentile(v, 99)), 1)}
            for k, v in latency.items()
        },
        "where_error_m": {
            "median": round(statistics.median(errors), 4),
            "p95": round(float(np.percentile(errors, 95)), 4),
        },
        "last_moved_error_s": {
            "start_median": round(statistics.median(start_err), 3) if start_err else None,
            "end_median": round(statistics.median(end_err), 3) if end_err else None,
            "objects": len(start_err),
        },
        "motions_found": counted,
        "motions_true": sum(len(m) for m in motions),
        "entries": memory.memory_summary()["entries"],
        "state_kib": round(len(json.dumps(memory.state_dict())) / 1024, 1),
    }


def rendered(frames: int) -> dict:
    from memstream.streaming.synthetic import Scene, build_scene
    from memstream.tracking.types import TrackOutput, TrackState

    scene = Scene(build_scene("stop_and_go", frames=frames, size=(96, 72)))
    truth = {o.object_id: o.position for o in scene.spec.objects}
    memory = SceneMemory()
    for frame in scene.frames():
        gt = frame.gt
        states = tuple(
            TrackState(
                int(o), gt.boxes_xywh[r].astype(np.float64), gt.instance_mask == o, 0.9, 3.0, 1.0, True
            )
            for r, o in enumerate(gt.object_ids)
            if gt.visible[r]
        )
        memory.observe_frame(frame, TrackOutput(frame.index, states))
    rng = np.random.default_rng(0)
    errors = {o: [] for o in truth}
    for t in rng.uniform(0, (frames - 1) / scene.spec.fps, QUERIES):
        for o in truth:
            s = memory.where(o, float(t))
            errors[o].append(float(np.linalg.norm(np.subtract(s.position, truth[o].at(s.seen_at_s)))))
    names = {o.object_id: o.name for o in scene.spec.objects}
    return {
        "frames": frames,
        "median_error_m": {names[o]: round(statistics.median(e), 4) for o, e in errors.items()},
        "all_median_m": round(statistics.median([x for e in errors.values() for x in e]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--rendered", type=int, nargs="+", default=[300, 1200, 4800])
    args = parser.parse_args()
    runs = [scripted(n) for n in args.frames]
    print_table(
        "scene memory, scripted observations (6 objects, 30 fps): latency after the whole stream",
        [
            "frames",
            "minutes",
            "update us",
            "where p50/p99 us",
            "last_moved p50",
            "near p50",
            "visible p50",
            "where err cm",
            "moved start/end err s",
            "motions kept/true (cap 64/obj)",
            "entries",
            "scene.json KiB",
        ],
        [
            [
                r["frames"],
                r["stream_min"],
                r["update_us"],
                f"{r['latency_us']['where']['p50']}/{r['latency_us']['where']['p99']}",
                r["latency_us"]["last_moved"]["p50"],
                r["latency_us"]["objects_near"]["p50"],
                r["latency_us"]["visible_at"]["p50"],
                round(r["where_error_m"]["median"] * 100, 2),
                f"{r['last_moved_error_s']['start_median']}/{r['last_moved_error_s']['end_median']}",
                f"{r['motions_found']}/{r['motions_true']}",
                r["entries"],
                r["state_kib"],
            ]
            for r in runs
        ],
    )
    renders = [rendered(n) for n in args.rendered]
    names = list(renders[0]["median_error_m"]) if renders else []
    print_table(
        "scene memory on rendered stop_and_go (96x72, exact masks): where() error vs true centres, m",
        ["frames", *names, "all"],
        [[r["frames"], *r["median_error_m"].values(), r["all_median_m"]] for r in renders],
    )
    path = save("scene", {"scripted": runs, "rendered": renders})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
