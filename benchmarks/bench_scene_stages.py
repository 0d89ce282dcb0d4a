"""Per-stage cost of the ``scene`` preset (tracking -> video memory -> 3D memory -> bank -> scene) at
160x120, for variants of its settings side by side.

What the soak (``bench_scene_soak.py``) needs to know before it is started: how many milliseconds
each stage takes per frame, and so how long 100,000 frames take. Each variant is a list of
``--set``-style overrides on the preset; all variants run in this one process on the same frames of
the ``navqa`` scene at 30 fps, interleaved in chunks of ``--chunk`` frames (variant A frames 0-49,
variant B frames 0-49, A 50-99, ...), so a shared machine's load falls on all of them alike. Stages
run one after another in this thread (``memstream run`` runs each in its own thread, so on two idle
cores a frame costs about the slowest stage, not the sum); the first ``--warmup`` frames of each
variant are not counted.

    nice -n 10 python benchmarks/bench_scene_stages.py [--frames 300] \\
        [--variant preset=] [--variant fuse4=stages.map3d.options.fuse_every=4]

Before and after a change, side by side in one run: ``--baseline DIR`` runs the same variants on
another checkout's code (``git archive BASE | tar -x -C DIR``) in a worker process, in lockstep
with this one (worker chunk, then this process's chunk, alternating which goes first), and adds
its rows as ``NAME (before)`` plus a per-stage before/after table.

    git archive 5c7306b | tar -x -C /tmp/before
    nice -n 10 python benchmarks/bench_scene_stages.py --baseline /tmp/before --baseline-label 5c7306b
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import print_table, save
from memstream.streaming.config import load_config
from memstream.streaming.configtypes import dump
from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.pipeline.run import resolved
from memstream.streaming.pipeline.stages import build_stage
from memstream.streaming.sources import open_source

os.environ.setdefault("COLUMNS", "200")
DEFAULT_VARIANTS = ("preset=", "fuse2=stages.map3d.options.fuse_every=2", "fuse4=stages.map3d.options.fuse_every=4")


class Variant:
    """One setting of the preset: its stages, opened on their own run folder, fed frame by frame."""

    def __init__(self, name: str, overrides: list[str], source_info, out: Path) -> None:
        self.name, self.overrides = name, overrides
        config = load_config("scene", ["stages.scene.options.save_every_frames=0", *overrides])
        self.stages = [build_stage(s.name, s.options) for s in config.enabled_stages]
        config = resolved(config, self.stages)
        out.mkdir(parents=True, exist_ok=True)
        context = RunContext(source_info, out, dump(config))
        for stage in self.stages:
            stage.open(context)
        self.ms: dict[str, list[float]] = {s.name: [] for s in self.stages}
        self.frames = 0

    def feed(self, frame, count: bool) -> None:
        upstream = Upstream()
        for stage in self.stages:
            started = time.perf_counter()
            result = stage.update(frame, upstream)
            if count:
                self.ms[stage.name].append((time.perf_counter() - started) * 1e3)
            upstream = upstream.with_result(stage.name, result)
        self.frames += 1

    def close(self) -> None:
        for stage in self.stages:
            stage.close()

    def row(self) -> dict:
        p50 = {name: round(float(np.percentile(v, 50)), 2) for name, v in self.ms.items()}
        mean = {name: round(float(np.mean(v)), 2) for name, v in self.ms.items()}
        total = float(np.sum([np.mean(v) for v in self.ms.values()]))
        slowest = max(mean.values())
        return {
            "variant": self.name, "overrides": self.overrides, "frames_counted": len(next(iter(self.ms.values()))),
            "p50_ms": p50, "mean_ms": mean, "sum_mean_ms": round(total, 1),
            "fps_one_core": round(1e3 / total, 2),  # every stage in turn on one core
            "fps_pipelined": round(1e3 / slowest, 2),  # stages in their own threads, a core each: the slowest bounds
            "hours_per_100k_one_core": round(100_000 * total / 1e3 / 3600, 2),
        }


class Worker:
    """The same variants on a baseline checkout's code, in a child process driven chunk by chunk."""

    def __init__(self, baseline: Path, argv: list[str]) -> None:
        if not (baseline / "streaming" / "__init__.py").is_file():
            raise SystemExit(f"--baseline {baseline}: not a memstream checkout (no streaming/__init__.py); "
                             "export one with: git archive COMMIT | tar -x -C DIR")
        self.links = Path(tempfile.mkdtemp(prefix="scene_stages_baseline_"))
        (self.links / "memstream").symlink_to(baseline.resolve())  # found before the editable install
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.links), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([sys.executable, __file__, *argv, "--worker"], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        imported = Path(self._expect("ready")).resolve()
        if baseline.resolve() not in imported.parents:
            raise SystemExit(f"the baseline worker imported memstream from {imported}, not from {baseline}")

    def _expect(self, word: str) -> str:
        for line in self.process.stdout:  # the worker's other output (tables, progress) goes to stderr
            if line.startswith(word):
                return line[len(word):].strip()
        raise SystemExit(f"the baseline worker stopped (exit {self.process.wait()}); its messages are above")

    def chunk(self, start: int) -> None:
        self.process.stdin.write(f"chunk {start}\n")
        self.process.stdin.flush()
        self._expect("ok")

    def rows(self) -> list[dict]:
        self.process.stdin.write("close\n")
        self.process.stdin.flush()
        rows = json.loads(self._expect("rows"))
        self.process.wait()
        return rows


def serve_worker(variants: list[Variant], frames: list, args) -> None:
    """The ``--worker`` side of :class:`Worker`: one chunk per line read, then the rows."""
    import memstream.streaming

    out, sys.stdout = sys.stdout, sys.stderr
    print("ready", memstream.streaming.__file__, file=out, flush=True)
    for line in sys.stdin:
        word, *rest = line.split()
        if word == "chunk":
            start = int(rest[0])
            for variant in variants:
                for frame in frames[start:start + args.chunk]:
                    variant.feed(frame, count=frame.index >= args.warmup)
            print("ok", file=out, flush=True)
        elif word == "close":
            for variant in variants:
                variant.close()
            print("rows " + json.dumps([v.row() for v in variants]), file=out, flush=True)
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30, help="frames per variant not counted (the maps fill)")
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--variant", action="append", default=None,
                        help="NAME=OVERRIDE[;OVERRIDE...] (empty: the preset as it is); repeatable")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of the code before a change: its rows side by side (module docstring)")
    parser.add_argument("--baseline-label", default="", help="what the baseline is (a commit), for the JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine
    uri = f"synthetic://navqa?frames=100000&size={args.size}&fps=30"
    specs = [v.split("=", 1) for v in (args.variant or DEFAULT_VARIANTS)]
    root = Path(tempfile.mkdtemp(prefix="scene_stages_"))
    with open_source(uri) as source:
        frames = [frame for _, frame in zip(range(args.frames), source, strict=False)]
        info = source.info
    variants = [Variant(name, [o for o in text.split(";") if o], info, root / name) for name, text in specs]
    if args.worker:
        serve_worker(variants, frames, args)
        return
    worker = None
    if args.baseline is not None:
        argv = [a for a in sys.argv[1:]]
        worker = Worker(args.baseline, argv)
    for k, start in enumerate(range(0, len(frames), args.chunk)):
        if worker is not None and k % 2 == 0:
            worker.chunk(start)
        for variant in variants:
            for frame in frames[start:start + args.chunk]:
                variant.feed(frame, count=frame.index >= args.warmup)
        if worker is not None and k % 2 == 1:
            worker.chunk(start)
    for variant in variants:
        variant.close()
    rows = [v.row() for v in variants]
    before = []
    if worker is not None:
        before = [{**r, "variant": f"{r['variant']} (before)", "code": "before"} for r in worker.rows()]
        rows = [{**r, "code": "after"} for r in rows]
    table_rows = [row for pair in zip(before, rows, strict=True) for row in pair] if before else rows
    names = list(rows[0]["p50_ms"])
    base = table_rows[0]["sum_mean_ms"]
    print_table(
        f"scene preset per stage, {args.size}, navqa at 30 fps, frames {args.warmup}-{args.frames - 1} "
        "(variants interleaved; shared machine: compare ratios)",
        ["variant", *[f"{n} p50 ms" for n in names], "sum of means ms", "fps one core", "fps pipelined",
         "h per 100k (one core)", "speed-up"],
        [[r["variant"], *[r["p50_ms"][n] for n in names], r["sum_mean_ms"], r["fps_one_core"], r["fps_pipelined"],
          r["hours_per_100k_one_core"], f"{base / r['sum_mean_ms']:.2f}x"] for r in table_rows],
    )
    if before:
        print_table(
            f"per stage, mean ms per frame: before ({args.baseline_label or args.baseline}) and after, same frames, "
            "lockstep",
            ["variant", *[f"{n} before/after" for n in names], "sum before/after", "after speed-up"],
            [[a["variant"], *[f"{b['mean_ms'][n]}/{a['mean_ms'][n]}" for n in names],
              f"{b['sum_mean_ms']}/{a['sum_mean_ms']}", f"{b['sum_mean_ms'] / a['sum_mean_ms']:.2f}x"]
             for b, a in zip(before, rows, strict=True)],
        )
    record = {"uri": uri, "frames": args.frames, "warmup": args.warmup, "variants": table_rows}
    if before:
        record["baseline"] = args.baseline_label or str(args.baseline)
    path = save(f"scene_stages{args.tag}", record)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
