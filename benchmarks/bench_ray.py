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
   ``--variants`` adds more Ray servers, alternating with the two others, each changed in one way
   (what that one thing is worth): ``actor`` reaches the replicas by Ray actor calls (``--ray-transport
   actor``, Serve's default) instead of Serve's gRPC; ``user_thread`` runs the replicas' handlers on
   Serve's separate user-code loop (``--ray-user-code-thread``, Serve's default); ``nice15`` keeps
   Ray's worker niceness (+15, ``--replica-niceness 15``). Replicas otherwise keep the niceness of
   the server that started them (``--replica-niceness 0`` is relative to it), as the plain server's
   model does. ``--baseline PYTHON`` adds the same Ray server run by another interpreter (another
   checkout's virtual environment: the code before a change), alternating with the others, so a
   change is measured side by side under the same load (``ratio_baseline``).
2. **Capacity on paper**: streams per GPU from the KV bytes a frame costs, the RAM and disk budget
   per stream and the frame rate, for LLaVA-OneVision-0.5B and -7B, on an 8-GPU node and a 64-GPU
   cluster (formulas and assumptions in the JSON; no GPU is measured here).

    python benchmarks/bench_ray.py [--frames 200] [--questions 30] [--ingress process serve] [--variants actor user_thread nice15]
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


#: What each ``--variants`` server changes against the default Ray server (its extra flags).
VARIANTS = {
    "actor": ["--ray-transport", "actor"],
    "user_thread": ["--ray-user-code-thread"],
    "nice15": ["--replica-niceness", "15"],
}


def start(model: Path, store: Path, port: int, ingress: str | None, variant: str | None = None, python: str | None = None):
    flags = ["--window-frames", "16", "--topk", "16", "--max-blocks", "256", "--store", str(store),
             "--torch-threads", "1", "--max-frames-per-s", "1000"]
    ray = ["--ray", "1", "--replica-cpus", "1", "--ray-ingress", ingress,
           "--replica-niceness", "0"] if ingress else []
    return serve_process(model, port, flags + ray + VARIANTS.get(variant, []), python=python)


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


def pair(model: Path, work: Path, ingress: str, frames: int, questions: int, variants: list[str], baseline: str | None = None) -> dict:
    """Plain vs Ray, a Ray server per variant (``ray_<variant>``) and one run by ``baseline``
    (``ray_baseline``), all alternating."""
    names = [*variants, *(["baseline"] if baseline else [])]
    ports = {"plain": free_port(), "ray": free_port(), **{f"ray_{v}": free_port() for v in names}}
    servers = {}
    try:
        for name, port in ports.items():
            variant = name.removeprefix("ray_") if name.startswith("ray_") else None
            servers[name] = start(model, work / f"store-{ingress}-{name}", port, ingress if name != "plain" else None,
                                  variant, python=baseline if variant == "baseline" else None)
        result = measure({name: f"http://127.0.0.1:{port}" for name, port in ports.items()}, model, frames, questions)
    finally:
        for server in servers.values():
            stop_process(server)
    for name in ports:
        if name != "plain":
            suffix = name.removeprefix("ray")
            result[f"ratio{suffix}"] = {k: result[name][k] / result["plain"][k] for k in result["plain"]}
            result[f"added_ms{suffix}"] = {k: 1e3 * (result[name][k] - result["plain"][k]) for k in result["plain"]}
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
    parser.add_argument("--variants", nargs="*", choices=tuple(VARIANTS), default=[],
                        help="also run a Ray server changed in one way per variant, alternating with the others")
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="also run the Ray server with this interpreter (another checkout's venv), alternating with the others")
    parser.add_argument("--request-ms", type=float, nargs="*", default=[50.0, 100.0, 300.0],
                        help="request times (a real model's frame or answer) to turn the added milliseconds into ratios")
    args = parser.parse_args()
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    load_start = os.getloadavg()[0]  # the ratios are side by side, but a loaded machine still skews them
    work = Path(tempfile.mkdtemp(prefix="memstream-bench-ray-"))
    model = build_tiny_llava_onevision(work / "model", **CPU_SHAPE, max_positions=1 << 22)
    pairs = {ingress: pair(model, work, ingress, args.frames, args.questions, args.variants, args.baseline)
             for ingress in args.ingress}
    added = {ingress: max(r["added_ms"]["frame_p50_s"], r["added_ms"]["answer_p50_s"]) for ingress, r in pairs.items()}
    at_request_ms = {ingress: {f"{ms:g}": (ms + extra) / ms for ms in args.request_ms} for ingress, extra in added.items()}
    plan = capacity()
    path = save("ray", {"config": dict(vars(args)), "model_shape": CPU_SHAPE, "overhead": pairs,
                        "ratio_at_request_ms": at_request_ms, "target_overhead": TARGET_OVERHEAD, "capacity": plan,
                        "load_average_1min": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}})
    for ingress, r in pairs.items():
        extra = [*args.variants, *(["baseline"] if args.baseline else [])]
        print_table(f"memstream serve vs serve --ray 1 --ray-ingress {ingress} (alternating requests, one stream)",
                    ["", "plain ms", "ray ms", "ratio", "added ms", *(f"ratio {v}" for v in extra)],
                    [[key.removesuffix("_s").replace("_", " "), 1e3 * r["plain"][key], 1e3 * r["ray"][key], r["ratio"][key],
                      r["added_ms"][key], *(r[f"ratio_{v}"][key] for v in extra)]
                     for key in r["plain"]])
    print_table("Ray / plain for requests that take longer (a real model): (t + added) / t, added = the larger p50 of frames and answers",
                ["ingress", "added ms", *(f"t = {ms:g} ms" for ms in args.request_ms)],
                [[ingress, added[ingress], *at_request_ms[ingress].values()] for ingress in pairs])
    print_table("capacity on paper (LLaVA-OneVision, 1 frame/s a stream)", ["model", "KV MiB/frame", "streams/GPU", "8-GPU node", "64 GPUs"], [
        [name, row["kv_mib_per_frame"], row["streams_per_gpu"], row["streams_per_node"], row["streams_per_cluster"]]
        for name, row in plan["models"].items()])
    print(f"load average {load_start:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; wrote {path}")


if __name__ == "__main__":
    main()
