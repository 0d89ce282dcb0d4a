"""Ingestion speed vs stream length: ReKV's sliding window vs full attention.

The same random-weight LLaVA-OneVision (``_videoqa.CPU_SHAPE``, or ``GPU_SHAPE`` with ``--gpu``) encodes
one stream frame by frame twice:

* ``window``: ReKV with a 16-frame window after the sinks: every frame attends to a bounded past;
* ``full``: the same memory with a window longer than the stream: every frame attends to all
  earlier frames;
* ``dynamic_cache``: no memory at all: the decoder with transformers' own growing ``DynamicCache``
  (full attention without the re-rotation of the past that the memory does per pass).

Frames per second are measured over the 32 frames that end at each checkpoint (64, 256, 1024 frames
by default), so the table shows how speed changes as the stream gets longer. Each mode runs
``--repeats`` times and keeps the best rate at each checkpoint (the machines are shared: the best of
a few runs is the least disturbed one). Target: flat for the
window (the last checkpoint within 15 % of the first), falling for full attention.

    python benchmarks/bench_videoqa_ingest.py [--checkpoints 64 256 1024] [--gpu]
"""

from __future__ import annotations

import argparse
import os
import time

from _common import print_table, save
from _videoqa import CPU_SHAPE, GPU_SHAPE, build_llm, frames, sync

os.environ.setdefault("COLUMNS", "120")
WINDOW_FRAMES = 16
SPAN = 32
FLAT_TOLERANCE = 0.15


def fps_at_checkpoints(memory, stream, checkpoints: list[int], device) -> list[float]:
    """Frames per second over the ``SPAN`` frames ending at each checkpoint."""
    rates, started = [], {}
    for i, frame in enumerate(stream, start=1):
        if i - 1 in [c - SPAN for c in checkpoints]:
            sync(device)
            started[i - 1 + SPAN] = time.perf_counter()
        memory.update(frame)
        if i in checkpoints:
            sync(device)
            rates.append(SPAN / (time.perf_counter() - started[i]))
    return rates


class DynamicCacheStream:
    """Baseline: frames appended to a plain transformers ``DynamicCache`` (full attention)."""

    def __init__(self, llm) -> None:
        import torch
        from transformers import DynamicCache

        from memstream.streaming.videomem.adapters import cache_kwargs

        self.llm, self.cache = llm, DynamicCache(config=llm.decoder.config)
        self.cache_kwargs = cache_kwargs(llm.decoder, self.cache)  # `cache=` or `past_key_values=`
        with torch.inference_mode():
            sink = llm.embed_text(llm.tokenize(llm.prompt.sink))
            llm.decoder(inputs_embeds=sink[None], use_cache=True, **self.cache_kwargs)

    def update(self, frame) -> None:
        import torch

        with torch.inference_mode():
            embeds = self.llm.embed_frames([frame.rgb])[0]
            self.llm.decoder(inputs_embeds=embeds[None], use_cache=True, **self.cache_kwargs)


def main() -> None:
    from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    shape = GPU_SHAPE if args.gpu else CPU_SHAPE
    device, dtype = ("cuda", "bfloat16") if args.gpu else ("cpu", "float32")
    llm = build_llm(shape, device=device, dtype=dtype)
    stream = frames(max(args.checkpoints), shape["image_size"])
    results = {}
    makers = {
        "window": lambda: ReKVMemory(llm, ReKVConfig(window_frames=WINDOW_FRAMES, topk=16, device_cache_blocks=0)),
        "full": lambda: ReKVMemory(llm, ReKVConfig(window_frames=max(args.checkpoints) + 1, topk=16, device_cache_blocks=0)),
        "dynamic_cache": lambda: DynamicCacheStream(llm),
    }
    for _ in range(args.repeats):  # modes alternate, so a slow spell of the machine hits all of them
        for mode, make in makers.items():
            rates = fps_at_checkpoints(make(), stream, sorted(args.checkpoints), device)
            results[mode] = [max(a, b) for a, b in zip(results.get(mode, rates), rates)]
            print(mode, [f"{r:.1f}" for r in rates], flush=True)
    rows = [
        {"frames": c, "window_fps": w, "full_fps": f, "dynamic_cache_fps": d, "window_over_full": w / f, "window_over_dynamic_cache": w / d}
        for c, w, f, d in zip(sorted(args.checkpoints), results["window"], results["full"], results["dynamic_cache"])
    ]
    drift = rows[-1]["window_fps"] / rows[0]["window_fps"]
    payload = {"shape": shape, "device": device, "dtype": dtype, "window_frames": WINDOW_FRAMES, "span_frames": SPAN, "repeats": args.repeats,
               "rows": rows, "window_last_over_first": drift, "target": f"window fps flat within {FLAT_TOLERANCE:.0%}",
               "meets_target": abs(1 - drift) <= FLAT_TOLERANCE}
    path = save("videoqa_ingest_gpu" if args.gpu else "videoqa_ingest", payload)
    print_table(f"ingestion frames/s over the {SPAN} frames ending at each length ({device}, {dtype})",
                ["frames", "sliding window fps", "full attention fps", "DynamicCache fps", "window / full", "window / DynamicCache"],
                [[r["frames"], r["window_fps"], r["full_fps"], r["dynamic_cache_fps"], r["window_over_full"], r["window_over_dynamic_cache"]] for r in rows])
    print(f"window fps at {rows[-1]['frames']} / at {rows[0]['frames']} frames = {drift:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
