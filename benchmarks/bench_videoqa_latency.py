"""Time to the first answer token vs stream length: ReKV and Flash-VStream vs re-encoding the stream.

One random-weight LLaVA-OneVision (``_videoqa.CPU_SHAPE`` here, ``GPU_SHAPE`` with ``--gpu``) watches
streams of 1x, 4x and 16x a base length. After each stream the same question is asked:

* ``rekv``: ReKV (window 16 frames, internal retrieval of the top 16 frames per layer), frames
  encoded once while the stream ran; the question pays the retrieval pass and a prefill of
  ``sinks + 16 frames + prompt``.
* ``flash``: Flash-VStream (16 CSM centroids, 8 DAM frames): a prefill of a fixed token budget.
* ``reencode``: no streaming memory: the vision tower on every frame and one prefill of the whole
  stream, at question time.

Each figure is the median of ``--repeats`` questions. Target: ReKV's 16x / 1x ratio <= 1.3 while the
re-encoding baseline grows about linearly.

    python benchmarks/bench_videoqa_latency.py [--base 32] [--repeats 3] [--gpu]
"""

from __future__ import annotations

import argparse
import os

from _common import print_table, save
from _videoqa import CPU_SHAPE, GPU_SHAPE, QUESTION, build_llm, frames, median, reencode_first_token_s

os.environ.setdefault("COLUMNS", "120")
TARGET_RATIO = 1.3


def first_token_s(memory, repeats: int) -> float:
    from memstream.streaming.videomem.generation import SamplingConfig

    memory.ask(QUESTION, SamplingConfig(max_new_tokens=1))  # warm-up: first-call allocations
    return median([memory.ask(QUESTION, SamplingConfig(max_new_tokens=1)).time_to_first_token_s for _ in range(repeats)])


def run(args: argparse.Namespace) -> dict:
    from memstream.streaming.videomem.flash import FlashMemoryConfig
    from memstream.streaming.videomem.flash.video_memory import FlashVStreamConfig, FlashVStreamMemory
    from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory

    shape = GPU_SHAPE if args.gpu else CPU_SHAPE
    device, dtype = ("cuda", "bfloat16") if args.gpu else ("cpu", "float32")
    llm = build_llm(shape, device=device, dtype=dtype)
    rows = []
    for factor in (1, 4, 16):
        stream = frames(args.base * factor, shape["image_size"], seed=factor)
        rekv = ReKVMemory(llm, ReKVConfig(window_frames=16, topk=16, device_cache_blocks=128 if args.gpu else 0))
        flash = FlashVStreamMemory(llm, FlashVStreamConfig(memory=FlashMemoryConfig(csm_clusters=16, dam_frames=8)))
        for frame in stream:
            rekv.update(frame)
            flash.update(frame)
        row = {
            "frames": len(stream),
            "tokens": len(stream) * rekv.tokens_per_frame,
            "rekv_s": first_token_s(rekv, args.repeats),
            "flash_s": first_token_s(flash, args.repeats),
            "reencode_s": median([reencode_first_token_s(llm, stream) for _ in range(args.repeats)]),
        }
        rows.append(row)
        print(f"{factor:>3}x: {row}", flush=True)
    base = rows[0]
    for row in rows:
        for key in ("rekv", "flash", "reencode"):
            row[f"{key}_vs_1x"] = row[f"{key}_s"] / base[f"{key}_s"]
        row["reencode_over_rekv"] = row["reencode_s"] / row["rekv_s"]
    ratio = rows[-1]["rekv_vs_1x"]
    return {
        "shape": shape,
        "device": device,
        "dtype": dtype,
        "repeats": args.repeats,
        "rows": rows,
        "target": f"rekv 16x/1x <= {TARGET_RATIO}",
        "rekv_16x_over_1x": ratio,
        "meets_target": ratio <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=32, help="frames of the 1x stream")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="LLaVA-OV-0.5B-shaped model on CUDA in bf16")
    args = parser.parse_args()
    result = run(args)
    name = "videoqa_latency_gpu" if args.gpu else "videoqa_latency"
    path = save(name, result)
    print_table(
        f"time to first token vs stream length ({result['device']}, {result['dtype']})",
        ["frames", "video tokens", "ReKV s", "Flash s", "re-encode s", "ReKV x1x", "re-encode x1x", "re-encode / ReKV"],
        [[r["frames"], r["tokens"], r["rekv_s"], r["flash_s"], r["reencode_s"], r["rekv_vs_1x"], r["reencode_vs_1x"], r["reencode_over_rekv"]] for r in result["rows"]],
    )
    print(f"ReKV 16x/1x = {result['rekv_16x_over_1x']:.2f} (target <= {TARGET_RATIO}); wrote {path}")


if __name__ == "__main__":
    main()
