"""What Ray Serve costs per request, and how many streams a GPU node and a cluster hold.

1. **Overhead**: the same requests, one after another, against ``memstream serve`` (uvicorn, one
   process) and ``memstream serve --ray 1`` (a frontend deployment and one StreamReplica, Serve's
   proxy in front), both with ``--store`` and the same random-weight LLaVA-OneVision
   (``_videoqa.CPU_SHAPE``): ``--frames`` frame posts and ``--questions`` answers of 8 tokens on
   one stream. Reported: p50 / p95 latency of each kind and the Ray / plain ratio (target <= 1.2x).
2. **Capacity on paper**: streams per GPU from the KV bytes a frame costs, the RAM and disk budget
   per stream and the frame rate, for LLaVA-OneVision-0.5B and -7B, on an 8-GPU node and a 64-GPU
   cluster (formulas and assumptions in the JSON; no GPU is measured here).

    python benchmarks/bench_ray.py [--frames 200] [--questions 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import print_table, save
from _videoqa import CPU_SHAPE
from bench_serve import frame_jpeg, free_port, serve_process, stop_process

os.environ.setdefault("COLUMNS", "120")
TARGET_OVERHEAD = 1.2


def start(model: Path, store: Path, port: int, ray: bool):
    flags = ["--window-frames", "16", "--topk", "16", "--max-blocks", "256", "--store", str(store),
             "--torch-threads", "1", "--max-frames-per-s", "1000"]
    return serve_process(model, port, flags + (["--ray", "1", "--replica-cpus", "1"] if ray else []))


def measure(base: str, model: Path, frames: int, questions: int) -> dict:
    import httpx

    jpegs = [frame_jpeg(i, CPU_SHAPE["image_size"] * 2) for i in range(32)]
    question = {"model": str(model), "stream_id": "cam", "messages": [{"role": "user", "content": "What moved?"}],
                "max_tokens": 8}
    with httpx.Client(timeout=120) as client:
        client.post(f"{base}/v1/streams", json={"stream_id": "cam"}).raise_for_status()
        frame_s, answer_s = [], []
        for i in range(frames):
            start = time.perf_counter()
            client.post(f"{base}/v1/streams/cam/frames", params={"timestamp_s": i}, content=jpegs[i % 32]).raise_for_status()
            frame_s.append(time.perf_counter() - start)
        client.post(f"{base}/v1/chat/completions", json=question).raise_for_status()  # warm-up
        for _ in range(questions):
            start = time.perf_counter()
            client.post(f"{base}/v1/chat/completions", json=question).raise_for_status()
            answer_s.append(time.perf_counter() - start)
        client.delete(f"{base}/v1/streams/cam").raise_for_status()
    pct = lambda v, q: float(np.percentile(v, q))  # noqa: E731
    return {"frame_p50_s": pct(frame_s[10:], 50), "frame_p95_s": pct(frame_s[10:], 95),
            "answer_p50_s": pct(answer_s, 50), "answer_p95_s": pct(answer_s, 95)}


def capacity() -> dict:
    """Streams per GPU, node and cluster from KV bytes per frame (on paper)."""
    models = {  # decoder layers, KV heads, head dim, tokens a frame (LLaVA-OneVision: 196 after pooling)
        "llava-onevision-0.5b": {"layers": 24, "kv_heads": 2, "head_dim": 64, "tokens": 196, "gpu_model_gib": 1.0},
        "llava-onevision-7b": {"layers": 28, "kv_heads": 4, "head_dim": 128, "tokens": 196, "gpu_model_gib": 15.0},
    }
    assumptions = {
        "dtype_bytes": 2, "fps_per_stream": 1.0, "hours_kept_on_disk": 1.0, "gpu_gib": 80,
        "device_cache_blocks_per_stream": 128, "ram_budget_gib_per_stream": 1.0, "host_ram_gib_per_gpu": 200,
        "disk_tib_per_node": 30, "gpus_per_node": 8, "cluster_gpus": 64,
        "encode_frames_per_gpu_s": {"llava-onevision-0.5b": 400, "llava-onevision-7b": 60},
    }
    rows = {}
    for name, m in models.items():
        kv_frame = m["layers"] * 2 * m["kv_heads"] * m["head_dim"] * m["tokens"] * assumptions["dtype_bytes"]
        gib = 2**30
        device_per_stream = assumptions["device_cache_blocks_per_stream"] * kv_frame / gib
        by_gpu_memory = int((assumptions["gpu_gib"] - m["gpu_model_gib"] - 4) / device_per_stream)  # 4 GiB activations
        by_host_ram = int(assumptions["host_ram_gib_per_gpu"] / assumptions["ram_budget_gib_per_stream"])
        by_compute = int(assumptions["encode_frames_per_gpu_s"][name] / assumptions["fps_per_stream"])
        disk_per_stream = kv_frame * assumptions["fps_per_stream"] * 3600 * assumptions["hours_kept_on_disk"] / gib
        by_disk = int(assumptions["disk_tib_per_node"] * 1024 / disk_per_stream / assumptions["gpus_per_node"])
        per_gpu = min(by_gpu_memory, by_host_ram, by_compute, by_disk)
        rows[name] = {
            "kv_mib_per_frame": kv_frame / 2**20, "device_cache_gib_per_stream": device_per_stream,
            "disk_gib_per_stream_hour": disk_per_stream, "streams_per_gpu_by": {
                "gpu_memory": by_gpu_memory, "host_ram": by_host_ram, "encode_compute": by_compute, "disk": by_disk},
            "streams_per_gpu": per_gpu, "streams_per_node": per_gpu * assumptions["gpus_per_node"],
            "streams_per_cluster": per_gpu * assumptions["cluster_gpus"],
        }
    return {"assumptions": assumptions, "models": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--questions", type=int, default=30)
    args = parser.parse_args()
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    work = Path(tempfile.mkdtemp(prefix="memstream-bench-ray-"))
    model = build_tiny_llava_onevision(work / "model", **CPU_SHAPE, max_positions=1 << 22)
    results = {}
    for kind in ("plain", "ray"):
        port = free_port()
        server = start(model, work / f"store-{kind}", port, ray=kind == "ray")
        try:
            results[kind] = measure(f"http://127.0.0.1:{port}", model, args.frames, args.questions)
        finally:
            stop_process(server)
    ratios = {k: results["ray"][k] / results["plain"][k] for k in results["plain"]}
    plan = capacity()
    path = save("ray", {"config": dict(vars(args)), "model_shape": CPU_SHAPE, "overhead": results, "ratios": ratios,
                        "target_overhead": TARGET_OVERHEAD, "capacity": plan})
    print_table("memstream serve vs serve --ray 1 (sequential requests, one stream)", ["", "plain", "ray", "ratio"], [
        [key.replace("_", " "), results["plain"][key], results["ray"][key], ratios[key]] for key in results["plain"]])
    print_table("capacity on paper (LLaVA-OneVision, 1 frame/s a stream)", ["model", "KV MiB/frame", "streams/GPU", "8-GPU node", "64 GPUs"], [
        [name, row["kv_mib_per_frame"], row["streams_per_gpu"], row["streams_per_node"], row["streams_per_cluster"]]
        for name, row in plan["models"].items()])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
