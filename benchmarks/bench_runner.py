"""Runner overhead: frames/s of `memstream run` with no stages vs iterating the same source directly.

Target: the runner keeps >= 0.95x of raw decode. Two sources: the synthetic scene (decode = render,
CPU-bound numpy) and a 720p H.264 file (decoded by the video source). Runs are interleaved
(raw, runner, runner+cli, raw, ...) and the median of each is compared.

    python benchmarks/bench_runner.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import print_table, save
from bench_decode import make_video
from memstream.streaming import open_source
from memstream.streaming.config import load_config
from memstream.streaming.pipeline.run import run_pipeline
from memstream.streaming.pipeline.runner import Runner


def raw(uri: str) -> int:
    with open_source(uri) as source:
        return sum(1 for _ in source)


def runner(uri: str) -> int:
    with open_source(uri) as source:
        return Runner(source, []).run().frames_processed


def full_run(uri: str) -> int:
    """What `memstream run URI --config decode_only` does: config, summary.json, config.yaml."""
    with tempfile.TemporaryDirectory() as out:
        return run_pipeline(uri, load_config("decode_only"), Path(out))["frames_processed"]


MODES = {"raw decode": raw, "runner, no stages": runner, "memstream run, no stages": full_run}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    inputs = {"synthetic demo 320x240 x600": "synthetic://demo?frames=600", "H.264 720p x300": make_video("720p", 300)}
    results, rows = [], []
    for label, uri in inputs.items():
        times: dict[str, list[float]] = {m: [] for m in MODES}
        counts = {}
        for _ in range(args.repeats):
            for mode, fn in MODES.items():
                started = time.perf_counter()
                counts[mode] = fn(uri)
                times[mode].append(time.perf_counter() - started)
        assert len(set(counts.values())) == 1, counts
        fps = {mode: counts[mode] / statistics.median(t) for mode, t in times.items()}
        for mode, value in fps.items():
            ratio = value / fps["raw decode"]
            results.append({"input": label, "mode": mode, "fps": round(value, 1), "ratio_to_raw": round(ratio, 3)})
            rows.append([label, mode, value, ratio])
    worst = min(r["ratio_to_raw"] for r in results if r["mode"] != "raw decode")
    print_table(f"runner overhead (median of {args.repeats}); target >= 0.95x raw", ["input", "mode", "fps", "x raw"], rows)
    payload = {"repeats": args.repeats, "target_ratio": 0.95, "worst_ratio": worst, "claim_holds": worst >= 0.95, "results": results}
    print(f"worst ratio {worst:.3f}; wrote {save('runner', payload)}")


if __name__ == "__main__":
    main()
