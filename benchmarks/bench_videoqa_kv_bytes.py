"""Bytes of KV per frame and peak RAM, fp16 vs int8 blocks, and what int8 costs in fidelity.

1. Bytes per frame: a :class:`~memstream.streaming.videomem.store.BlockStore` with LLaVA-OneVision-0.5B's
   block shape (24 layers, 2 KV heads of 64, 196 tokens per frame), codecs ``none`` (fp16),
   ``int8-channel`` (keys per channel, values per token, as KIVI) and ``int8-token``.
2. Peak RAM: each codec in a fresh subprocess stores ``--frames`` random blocks in RAM; the growth of
   its peak anonymous RSS (``RssAnon``, sampled every 10 blocks: the process's own memory, not the
   page cache of the memory-mapped disk tier) is reported, and once more with a 64 MiB RAM budget
   and a disk tier (RAM bounded).
3. Fidelity cost on a random-weight model (``_videoqa.CPU_SHAPE``): the same stream stored both
   ways; the round-trip error of the stored keys and values and the KL divergence of the first
   answer token (full context), int8 vs exact.

Target: int8 <= 0.55x the bytes of fp16.

    python benchmarks/bench_videoqa_kv_bytes.py [--frames 600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import print_table, rss_anon_kib, save

os.environ.setdefault("COLUMNS", "120")
CODECS = ("none", "int8-channel", "int8-token")
SHAPE_05B = dict(n_layers=24, n_kv_heads=2, head_dim=64, block_tokens=196)
TARGET = 0.55
MIB = 2**20



def child(codec: str, frames: int, directory: str | None, budget_mib: float | None) -> None:
    import torch

    from memstream.streaming.videomem.store import BlockSpec, BlockStore

    spec = BlockSpec(**SHAPE_05B, dtype=torch.float16, codec=codec, model_fingerprint="bench")
    kv = torch.randn(*spec.kv_shape, generator=torch.Generator().manual_seed(0)).to(torch.float16)
    base = peak = rss_anon_kib()
    budget = None if budget_mib is None else int(budget_mib * MIB)
    store = BlockStore(spec, directory, ram_budget_bytes=budget, durable=False)
    for i in range(frames):
        store.put(kv, kv[:, 0].float().mean(2).flatten(1), i, float(i))
        if i % 10 == 0:
            peak = max(peak, rss_anon_kib())
    peak = max(peak, rss_anon_kib())
    summary = store.memory_summary()
    store.close()
    print(json.dumps({"rss_growth_mib": (peak - base) / 1024, "summary": summary, "block_nbytes": spec.block_nbytes}))


def measure(codec: str, frames: int, budget_mib: float | None = None) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        args = [sys.executable, __file__, "--child", codec, "--frames", str(frames)]
        if budget_mib is not None:
            args += ["--dir", directory, "--budget-mib", str(budget_mib)]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def fidelity(frames: int) -> list[dict]:

    from _videoqa import CPU_SHAPE, build_llm
    from _videoqa import frames as make_frames
    from memstream.kernels.quant8 import int8_error
    from memstream.streaming.videomem.eval.fidelity import first_token_distribution
    from memstream.streaming.videomem.rekv import AllRetrieval, ReKVConfig, ReKVMemory

    llm = build_llm(CPU_SHAPE)
    stream = make_frames(frames, CPU_SHAPE["image_size"])
    memories = {}
    for codec in CODECS:
        memories[codec] = ReKVMemory(llm, ReKVConfig(window_frames=16, topk=16, codec=codec, device_cache_blocks=0))
        for frame in stream:
            memories[codec].update(frame)
    exact = memories["none"]
    blocks = exact.store.get_blocks(exact.store.live_ids())  # (N, L, 2, H, T, D)
    question = "What happened first?"
    reference = first_token_distribution(exact, question, AllRetrieval())
    rows = []
    for codec in CODECS[1:]:
        dims = (-2, -1) if codec == "int8-channel" else (-1, -1)
        errors = [int8_error(blocks[:, :, i], dim) for i, dim in enumerate(dims)]
        stored = memories[codec].store.get_blocks(exact.store.live_ids())
        p = first_token_distribution(memories[codec], question, AllRetrieval())
        kl = float((reference * (reference.clamp_min(1e-300).log() - p.clamp_min(1e-300).log())).sum())
        rows.append({
            "codec": codec,
            "key_rel_rms": errors[0]["rel_rms"],
            "value_rel_rms": errors[1]["rel_rms"],
            "stored_max_abs_error": float((stored.float() - blocks.float()).abs().max()),
            "first_token_kl": kl,
            "top1_agrees": bool(reference.argmax() == p.argmax()),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--fidelity-frames", type=int, default=64)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--budget-mib", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.frames, args.dir, args.budget_mib)
        return
    rows = []
    for codec in CODECS:
        ram = measure(codec, args.frames)
        bounded = measure(codec, args.frames, budget_mib=64)
        rows.append({
            "codec": codec,
            "bytes_per_frame": ram["block_nbytes"],
            "ram_mib": ram["summary"]["ram"]["bytes"] / MIB,
            "rss_growth_mib": ram["rss_growth_mib"],
            "bounded_ram_mib": bounded["summary"]["ram"]["bytes"] / MIB,
            "bounded_rss_growth_mib": bounded["rss_growth_mib"],
            "disk_mib": bounded["summary"]["disk"]["bytes"] / MIB,
        })
    fp16 = rows[0]["bytes_per_frame"]
    for row in rows:
        row["vs_fp16"] = row["bytes_per_frame"] / fp16
    quality = fidelity(args.fidelity_frames)
    worst = max(r["vs_fp16"] for r in rows[1:])
    payload = {"shape": SHAPE_05B, "frames": args.frames, "storage": rows, "int8_fidelity": quality,
               "target": f"int8 <= {TARGET}x fp16 bytes", "int8_worst_ratio": worst, "meets_target": worst <= TARGET}
    path = save("videoqa_kv_bytes", payload)
    print_table(
        f"KV bytes per frame, LLaVA-OV-0.5B block shape, {args.frames} frames",
        ["codec", "KiB/frame", "x fp16", "RAM tier MiB", "peak anon RSS +MiB", "RAM tier MiB (64 MiB budget)", "peak anon RSS +MiB (budget)", "disk MiB"],
        [[r["codec"], r["bytes_per_frame"] / 1024, r["vs_fp16"], r["ram_mib"], r["rss_growth_mib"], r["bounded_ram_mib"],
          r["bounded_rss_growth_mib"], r["disk_mib"]] for r in rows],
    )
    print_table(
        "int8 fidelity (random-weight model, full context)",
        ["codec", "key rel. RMS", "value rel. RMS", "first-token KL", "same top-1"],
        [[q["codec"], f"{q['key_rel_rms']:.4f}", f"{q['value_rel_rms']:.4f}", f"{q['first_token_kl']:.2e}", q["top1_agrees"]] for q in quality],
    )
    print(f"int8 worst ratio {worst:.3f} (target <= {TARGET}); wrote {path}")


if __name__ == "__main__":
    main()
