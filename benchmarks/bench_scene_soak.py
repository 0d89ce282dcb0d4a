"""Soak: the four memories together (``configs/scene.yaml``) on one long synthetic stream.

Claims (issue 18): on >= 100,000 frames at 160x120 (the ``navqa`` scene at 30 fps, 55 minutes of
stream: four movers that rest and move on a clock, two pieces of furniture, a swaying camera that
glances aside), the whole preset (tracking -> video memory -> 3D memory -> bank -> scene) holds its
resident memory flat (growth <= 5 % from frame 10,000 to the end), its per-stage p95 latency flat
(per 10,000-frame window), and its disk use bounded by the configured retention.

Measured as it goes, and written to ``benchmarks/results/scene_soak.json`` every ``--rss-every``
frames (so a run stopped early still leaves its trend): the process's RSS (``VmRSS``) and anonymous
RSS (``RssAnon``) every 1,000 frames; each stage's ``update`` time per frame, as p50/p95/max per
window; the bytes under the run folder by file kind (memory files: ``scene.json``, the video
memory's disk tier; result logs: the tracker's per-frame box files, which grow with the stream by
design); frames per second of the whole pipeline (stages run in their own threads, as in
``memstream run``).

Retention used (added to the preset with ``--set``, listed in the JSON): the video memory keeps at
most ``--kv-blocks`` frames (ReKV ``max_blocks``, oldest deleted), its disk tier under the run
folder. The scene memory's caps are its defaults (``SceneConfig``).

    nice -n 10 python benchmarks/bench_scene_soak.py [--frames 100000] [--size 160x120] [--out DIR]
        [--set stages.map3d.options.fuse_every=4] [--stop-after-s SECONDS]

The soak's configuration on this 2-core machine is the preset plus ``fuse_every=4``: the 3D memory
fuses (TSDF integration, the geometry check's ray cast, the dynamics memory, the trajectory) every
4th frame, 7.5 Hz of a 30 fps stream, and passes the others through; the tracker, video memory,
bank and scene memory see every frame, and the scene memory places the objects of unfused frames
with the frame's own depth and pose. What it trades: the static map sees a quarter of the views and
``objects.jsonl`` / ``trajectory.txt`` get a line every 4th frame. The full preset costs about
2.7x more CPU per frame (203.6 against 76.3 ms in ``results/scene_stages.json``, from
``bench_scene_stages.py``, which runs both side by side).

Stopping: ``kill PID`` (SIGTERM), Ctrl-C or ``--stop-after-s`` stop decoding; frames already queued
go through every stage, the stages close, and the record is written with ``finished: false``, its
``stop_reason``, the last partial latency window (``partial: true``) and a final RSS sample taken
after the stages closed (``after_close: true``, left out of the growth figures). A run killed hard
(SIGKILL) keeps what the last ``--rss-every`` flush wrote.

Per-stage costs of the preset and of its stride options, side by side, are in
``bench_scene_stages.py`` (minutes, not hours): run it first to know how long the soak will take.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import DATA, RESULTS, machine, print_table
from memstream.embodied.scene import SceneQueryError
from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.config import load_config
from memstream.streaming.configtypes import dump
from memstream.streaming.pipeline.run import resolved
from memstream.streaming.pipeline.runner import Runner
from memstream.streaming.pipeline.stages import build_stage
from memstream.streaming.sources import open_source

os.environ.setdefault("COLUMNS", "200")


class TimedStage:
    """A stage as it is, plus the wall time of each ``update`` kept per window of frames."""

    def __init__(self, stage: Any) -> None:
        self.stage = stage
        self.name = stage.name
        self.current: list[float] = []

    def open(self, context) -> None:
        self.stage.open(context)

    def update(self, frame, upstream):
        started = time.perf_counter()
        result = self.stage.update(frame, upstream)
        self.current.append(time.perf_counter() - started)
        return result

    def close(self) -> None:
        self.stage.close()

    def summary(self) -> dict[str, Any]:
        summary = getattr(self.stage, "summary", None)
        return summary() if callable(summary) else {}

    def take_window(self) -> dict[str, float]:
        values, self.current = self.current, []  # list swap: the stage thread appends to the new one
        if not values:
            return {}
        ms = np.asarray(values) * 1e3
        return {
            "frames": len(values),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "max_ms": round(float(ms.max()), 3),
        }


def query_latency_us(memory, rng: np.random.Generator, n: int = 50) -> dict[str, dict[str, float]]:
    """Each scene-memory query, ``n`` times at random times and objects: p50/p99 microseconds."""
    objects = [o.object_id for o in memory.objects()]
    if not objects or memory.latest_s is None:
        return {}
    first_s, latest_s = memory.first_s, memory.latest_s
    calls = {
        "where": lambda o, t: memory.where(o, t),
        "last_moved": lambda o, t: memory.last_moved(o),
        "last_seen": lambda o, t: memory.last_seen(o),
        "visible_at": lambda o, t: memory.visible_at(t),
        "objects_near": lambda o, t: memory.objects_near((0.0, 1.2, 5.0), 1.5, t),
        "trajectory": lambda o, t: memory.trajectory(o, t, t + 10.0),
    }
    out = {}
    for name, call in calls.items():
        times = []
        for _ in range(n):
            o, t = int(rng.choice(objects)), float(rng.uniform(first_s, latest_s))
            started = time.perf_counter()
            try:
                call(o, t)
            except SceneQueryError:  # e.g. a time before the object was first placed: still an answer
                pass
            times.append((time.perf_counter() - started) * 1e6)
        out[name] = {"p50": round(float(np.percentile(times, 50)), 1), "p99": round(float(np.percentile(times, 99)), 1)}
    return out


def rss_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1])
    return out


def disk_bytes(root: Path) -> dict[str, int]:
    """Bytes under ``root`` by kind: ``kv`` (the video memory's disk tier), ``scene`` (scene.json),
    ``logs`` (per-frame result files), ``other``."""
    kinds = {"kv": 0, "scene": 0, "logs": 0, "other": 0}
    for path in root.rglob("*"):
        try:
            if not path.is_file():
                continue
            size = path.stat().st_size
        except OSError:  # a file renamed away (atomic saves) between listing and stat
            continue
        rel = path.relative_to(root)
        if rel.parts[0] == "kv":
            kinds["kv"] += size
        elif rel.name.startswith("scene.json"):
            kinds["scene"] += size
        elif rel.suffix in (".txt", ".jsonl", ".csv"):
            kinds["logs"] += size
        else:
            kinds["other"] += size
    return kinds


def growth(samples: list[dict], key: str, start_frame: int) -> float | None:
    base = [s for s in samples if s["frame"] >= start_frame and not s.get("after_close")]
    if len(base) < 2:
        return None
    return round(100.0 * (base[-1][key] - base[0][key]) / base[0][key], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--window", type=int, default=10_000, help="frames per latency window")
    parser.add_argument("--rss-every", type=int, default=1_000)
    parser.add_argument("--kv-blocks", type=int, default=300, help="the video memory's retention (frames)")
    parser.add_argument("--out", type=Path, default=DATA / "scene_soak")
    parser.add_argument("--json", type=Path, default=RESULTS / "scene_soak.json")
    parser.add_argument("--torch-threads", type=int, default=1, help="a shared 2-core machine: 1")
    parser.add_argument("--stop-after-s", type=float, default=None,
                        help="stop decoding after this many seconds (a deadline); what was measured is kept")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="more preset overrides, e.g. stages.map3d.options.fuse_every=2 (listed in the JSON)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.torch_threads)
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = [
        f"stages.video_memory.options.rekv.max_blocks={args.kv_blocks}",
        f"stages.video_memory.options.rekv.store_dir={args.out / 'kv'}",
        "stages.scene.options.save_every_frames=1000",
        *args.extra,
    ]
    config = load_config("scene", overrides)
    stages = [TimedStage(build_stage(s.name, s.options)) for s in config.enabled_stages]
    config = resolved(config, [s.stage for s in stages])
    uri = f"synthetic://navqa?frames={args.frames}&size={args.size}&fps={args.fps:g}"
    record: dict[str, Any] = {
        "benchmark": "scene_soak", "date": time.strftime("%Y-%m-%d"), "machine": machine(),
        "uri": uri, "preset": "scene", "overrides": overrides, "torch_threads": args.torch_threads,
        "nice": os.nice(0), "frames_target": args.frames, "frames_done": 0, "rss": [], "windows": [], "disk": [],
        "finished": False,
    }
    scene = next(s.stage for s in stages if s.name == "scene")
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    lock = threading.Lock()

    def on_frame(frame) -> None:  # the last stage's thread, after the frame left every stage
        done = frame.index + 1
        record["frames_done"] = done
        if done % args.window == 0:
            record["windows"].append({
                "until_frame": done,
                "stages": {s.name: s.take_window() for s in stages},
                "scene_query_us": query_latency_us(scene.memory, rng),
                "scene_entries": scene.memory.memory_summary().get("entries"),
            })
        if done % args.rss_every == 0:
            elapsed = time.perf_counter() - started
            with lock:
                record["rss"].append({"frame": done, "wall_s": round(elapsed, 1), **rss_kib()})
                if done % (args.rss_every * 5) == 0:
                    record["disk"].append({"frame": done, **disk_bytes(args.out)})
                record["fps"] = round(done / elapsed, 2)
                write_json_atomic(args.json, record)

    with open_source(uri) as source:
        runner = Runner(source, stages, queue_size=config.runner.queue_size, backpressure="block",
                        out_dir=args.out, config=dump(config), on_frame=on_frame)
        # SIGTERM (kill PID) or the deadline stops decoding; frames already queued go through every
        # stage, the stages close, and the partial record below keeps everything measured so far.
        # Ctrl-C does the same through the runner's KeyboardInterrupt handling.
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
        timer = threading.Timer(args.stop_after_s, runner.stop) if args.stop_after_s else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        summary = runner.run()
        if timer is not None:
            timer.cancel()
    done = record["frames_done"]
    record["finished"] = done >= args.frames
    record["stop_reason"] = summary.stop_reason
    if done % args.window:  # the last, partial latency window (a run stopped between two windows)
        record["windows"].append({
            "until_frame": done, "partial": True,
            "stages": {s.name: s.take_window() for s in stages},
            "scene_query_us": query_latency_us(scene.memory, rng),
            "scene_entries": scene.memory.memory_summary().get("entries"),
        })
    record["rss"].append({"frame": done, "wall_s": round(time.perf_counter() - started, 1), "after_close": True,
                          **rss_kib()})
    record["wall_s"] = round(summary.wall_s, 1)
    record["fps"] = round(done / summary.wall_s, 2) if summary.wall_s > 0 else None
    record["disk"].append({"frame": done, **disk_bytes(args.out)})
    record["files_bytes"] = {
        str(p.relative_to(args.out)): p.stat().st_size for p in sorted(args.out.glob("*")) if p.is_file()
    }
    report(record)
    write_json_atomic(args.json, record)
    print(f"wrote {args.json}")


def report(record: dict) -> None:
    """Summarise the record (also for a partial one: ``python -c 'report(json.load(...))'``)."""
    samples = record["rss"]
    record["rss_growth_pct"] = {
        "VmRSS_from_10k": growth(samples, "VmRSS", 10_000),
        "RssAnon_from_10k": growth(samples, "RssAnon", 10_000),
    }
    names = sorted({n for w in record["windows"] for n in w["stages"]})
    print_table(
        f"scene soak: per-stage update latency per window, p50/p95 ms ({record['uri']})",
        ["until frame", *names, "RSS MiB", "where p50/p99 us", "scene entries"],
        [
            [
                w["until_frame"],
                *[f"{w['stages'][n].get('p50_ms')}/{w['stages'][n].get('p95_ms')}" for n in names],
                next((round(s["VmRSS"] / 1024, 1) for s in samples if s["frame"] == w["until_frame"]), "-"),
                "{p50}/{p99}".format(**w["scene_query_us"]["where"]) if w.get("scene_query_us") else "-",
                w.get("scene_entries"),
            ]
            for w in record["windows"]
        ],
    )
    full = [w for w in record["windows"] if not w.get("partial")]  # a stopped run's last window is shorter
    p95 = {n: [w["stages"][n]["p95_ms"] for w in full if w["stages"].get(n)] for n in names}
    record["p95_last_over_first_window"] = {
        n: round(v[-1] / v[0], 2) for n, v in p95.items() if len(v) >= 2 and v[0] > 0
    }
    record["p95_median_ms"] = {n: round(statistics.median(v), 3) for n, v in p95.items() if v}
    print(
        f"frames {record['frames_done']}, fps {record.get('fps')}, RSS growth from 10k: "
        f"{record['rss_growth_pct']}, p95 last/first window: {record['p95_last_over_first_window']}, "
        f"disk: {record['disk'][-1] if record['disk'] else None}"
    )


if __name__ == "__main__":
    main()
