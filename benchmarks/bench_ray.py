"""What Ray Serve costs per request, and how many streams a GPU node and a cluster hold.

1. **Overhead**: the same requests against ``memstream serve`` (uvicorn, one process) and
   ``memstream serve --ray 1`` side by side (both servers up at once, requests alternating between
   them, so the machine's load falls on both alike), both with ``--store`` and the same
   random-weight LLaVA-OneVision (``_videoqa.CPU_SHAPE``): ``--frames`` frame posts, ``--questions``
   answers of 8 tokens on one stream, and ``/health`` (transport alone). Two pairs: Ray with this
   process as the HTTP ingress (``--ray-ingress process``, the default) and with Serve's proxy and
   a frontend deployment (``--ray-ingress serve``). Reported: p50 / p95 of each kind, the Ray /
   plain ratio (target <= 1.2x) and the added milliseconds, which a real model's request time
   divides into a ratio (``--request-ms``: the ratio for requests that take that long).
   ``--ray-default-nice`` adds a third server, alternating with the two others, whose replicas keep
   Ray's worker niceness (+15, ``--replica-niceness 15``): what the replicas' priority is worth.
2. **Capacity on paper**: streams per GPU from the KV bytes a frame costs, the RAM and disk budget
   per stream and the frame rate, for LLaVA-OneVision-0.5B and -7B, on an 8-GPU node and a 64-GPU
   cluster (formulas and assumptions in the JSON; no GPU is measured here).

    python benchmarks/bench_ray.py [--frames 200] [--questions 30] [--ingress process serve] [--ray-default-nice]
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


def start(model: Path, store: Path, port: int, ingress: str | None, niceness: int = 0):
    flags = ["--window-frames", "16", "--topk", "16", "--max-blocks", "256", "--store", str(store),
             "--torch-threads", "1", "--max-frames-per-s", "1000"]
    ray = ["--ray", "1", "--replica-cpus", "1", "--ray-ingress", ingress, "--replica-niceness", str(niceness)] if ingress else []
    return serve_process(model, port, flags + ray)


def measure(bases: dict[str, str], model: Path, frames: int, questions: int) -> dict:
    """Alternate every request between the servers in ``bases``; p50 / p95 per server and kind."""
    import httpx

    jpegs = [frame_jpeg(i, CPU_SHAPE["image_size"] * 2) for i in range(32)]
    question = {"model": str(model), "stream_id": "cam", "messages": [{"role": "user", "content": "What moved?"}],
                "max_tokens": 8}
    times = {name: {"health": [], "frame": [], "answer": []} for name in bases}

    def timed(name: str, kind: str, method: str, url: str, **kwargs) -> None:
        start = time.perf_counter()
        client.request(method, url, **kwargs).raise_for_status()
        times[name][kind].append(time.perf_counter() - start)

    with httpx.Client(timeout=120) as client:
        for base in bases.values():
            client.post(f"{base}/v1/streams", json={"stream_id": "cam"}).raise_for_status()
        for i in range(frames):
            for name, base in bases.items():
                timed(name, "health", "GET", f"{base}/health")
                timed(name, "frame", "POST", f"{base}/v1/streams/cam/frames", params={"timestamp_s": i}, content=jpegs[i % 32])
        for base in bases.values():
            client.post(f"{base}/v1/chat/completions", json=question).raise_for_status()  # warm-up
        for _ in range(questions):
            for name, base in bases.items():
                timed(name, "answer", "POST", f"{base}/v1/chat/completions", json=question)
        for base in bases.values():
            client.delete(f"{base}/v1/streams/cam").raise_for_status()
    pct = lambda v, q: float(np.percentile(v, q))  # noqa: E731
    return {name: {f"{kind}_{stat}_s": pct(v[10:] if kind != "answer" else v, q)
                   for kind, v in kinds.items() for stat, q in (("p50", 50), ("p95", 95))}
            for name, kinds in times.items()}


def pair(model: Path, work: Path, ingress: str, frames: int, questions: int, ray_default_nice: bool = False) -> dict:
    """Plain vs Ray (replicas at nice 0), and with ``ray_default_nice`` a third server whose
    replicas keep Ray's worker niceness (+15), all three alternating."""
    ports = {"plain": free_port(), "ray": free_port()}
    if ray_default_nice:
        ports["ray_nice15"] = free_port()
    servers = {}
    try:
        for name, port in ports.items():
            servers[name] = start(model, work / f"store-{ingress}-{name}", port, ingress if name != "plain" else None,
                                  15 if name == "ray_nice15" else 0)
        result = measure({name: f"http://127.0.0.1:{port}" for name, port in ports.items()}, model, frames, questions)
    finally:
        for server in servers.values():
            stop_process(server)
    result["ratio"] = {k: result["ray"][k] / result["plain"][k] for k in result["plain"]}
    result["added_ms"] = {k: 1e3 * (result["ray"][k] - result["plain"][k]) for k in result["plain"]}
    if ray_default_nice:
        result["ratio_nice15"] = {k: result["ray_nice15"][k] / result["plain"][k] for k in result["plain"]}
        result["added_ms_nice15"] = {k: 1e3 * (result["ray_nice15"][k] - result["plain"][k]) for k in result["plain"]}
    return result


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
    parser.add_argument("--ingress", nargs="+", choices=("process", "serve"), default=["process", "serve"],
                        help="which Ray ingress pairs to measure (default both)")
    parser.add_argument("--ray-default-nice", action="store_true",
                        help="also run a Ray server whose replicas keep Ray's worker niceness (+15), alternating with the two others")
    parser.add_argument("--request-ms", type=float, nargs="*", default=[50.0, 100.0, 300.0],
                        help="request times (a real model's frame or answer) to turn the added milliseconds into ratios")
    args = parser.parse_args()
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    work = Path(tempfile.mkdtemp(prefix="memstream-bench-ray-"))
    model = build_tiny_llava_onevision(work / "model", **CPU_SHAPE, max_positions=1 << 22)
    pairs = {ingress: pair(model, work, ingress, args.frames, args.questions, args.ray_default_nice)
             for ingress in args.ingress}
    added = {ingress: max(r["added_ms"]["frame_p50_s"], r["added_ms"]["answer_p50_s"]) for ingress, r in pairs.items()}
    at_request_ms = {ingress: {f"{ms:g}": (ms + extra) / ms for ms in args.request_ms} for ingress, extra in added.items()}
    plan = capacity()
    path = save("ray", {"config": dict(vars(args)), "model_shape": CPU_SHAPE, "overhead": pairs,
                        "ratio_at_request_ms": at_request_ms, "target_overhead": TARGET_OVERHEAD, "capacity": plan})
    for ingress, r in pairs.items():
        print_table(f"memstream serve vs serve --ray 1 --ray-ingress {ingress} (alternating requests, one stream)",
                    ["", "plain", "ray", "ratio", "added ms", *(["ray nice 15", "ratio nice 15"] if "ray_nice15" in r else [])],
                    [[key.replace("_", " "), r["plain"][key], r["ray"][key], r["ratio"][key], r["added_ms"][key],
                      *([r["ray_nice15"][key], r["ratio_nice15"][key]] if "ray_nice15" in r else [])]
                     for key in r["plain"]])
    print_table("Ray / plain for requests that take longer (a real model): (t + added) / t, added = the larger p50 of frames and answers",
                ["ingress", "added ms", *(f"t = {ms:g} ms" for ms in args.request_ms)],
                [[ingress, added[ingress], *at_request_ms[ingress].values()] for ingress in pairs])
    print_table("capacity on paper (LLaVA-OneVision, 1 frame/s a stream)", ["model", "KV MiB/frame", "streams/GPU", "8-GPU node", "64 GPUs"], [
        [name, row["kv_mib_per_frame"], row["streams_per_gpu"], row["streams_per_node"], row["streams_per_cluster"]]
        for name, row in plan["models"].items()])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
