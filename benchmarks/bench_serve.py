"""The QA service under load: N streams ingesting while questions arrive, against one idle stream.

A real ``memstream serve`` process (uvicorn, loopback) on a random-weight LLaVA-OneVision of
``_videoqa.CPU_SHAPE`` (16 tokens a frame), each stream bounded by ``--max-blocks``:

* **idle**: one stream holding ``--warm-frames`` frames, questions one after another
  (``--questions`` of them): the latency floor.
* **load**: ``--streams`` streams, each sending ``--frames`` JPEG frames at ``--fps`` per stream
  from its own client, while one client asks a question every second on the streams in turn.

Reported: frames/s accepted per stream and in all, question latency p50/p95 (whole answers of
``--max-tokens`` tokens, through HTTP), errors (any non-200), and the server's resident memory
(VmRSS) over the run: once every stream holds ``--max-blocks`` frames it must stay flat.
Targets (issue 15): load p95 <= 2x idle p95, RSS growth after the budget is reached < 10 %, 0 errors.

The server runs with ``--torch-threads 1`` (``--torch-threads 0`` for torch's default): on a CPU,
concurrent encode and answer passes that each spread over every core oversubscribe it.

    python benchmarks/bench_serve.py [--streams 4] [--frames 2000] [--fps 10] [--max-blocks 256]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from _common import print_table, save
from _videoqa import CPU_SHAPE

os.environ.setdefault("COLUMNS", "120")
TARGET_P95_RATIO, TARGET_RSS_GROWTH = 2.0, 0.10


def frame_jpeg(i: int, size: int) -> bytes:
    """A moving square on a gradient (compresses as camera frames do, unlike noise)."""
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([(x * 255 // size), (y * 255 // size), np.full_like(x, 96)], axis=-1).astype(np.uint8)
    c = int(size / 2 + size / 3 * np.sin(i / 15))
    image[max(0, c - 8) : c + 8, max(0, c - 8) : c + 8] = (255, 40, 40)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_process(model: Path, port: int, flags: list[str], timeout_s: float = 300.0, python: str | None = None) -> subprocess.Popen:
    """``memstream serve --model MODEL --port PORT FLAGS`` in its own process group, returned once
    ``/v1/models`` answers (``python``: the interpreter, and so the memstream, it runs with; this one's by default)."""
    import httpx

    command = [python or sys.executable, "-m", "memstream.streaming.cli", "serve", "--model", str(model), "--device", "cpu",
               "--dtype", "float32", "--port", str(port), *flags]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit(f"the server did not come up in {timeout_s:g} s")


def stop_process(server: subprocess.Popen) -> None:
    """Stop a :func:`serve_process` and whatever it started (a local Ray cluster)."""
    os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)


def start_server(model: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    return serve_process(model, port, [
        "--window-frames", "16", "--topk", "16", "--max-blocks", str(args.max_blocks),
        "--max-streams", str(args.streams + 1), "--max-frames-per-s", str(max(60.0, args.fps * 2)),
        "--max-new-tokens", str(args.max_tokens), *(["--torch-threads", str(args.torch_threads)] if args.torch_threads else [])])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(args: argparse.Namespace) -> dict:
    import httpx

    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    model = build_tiny_llava_onevision(Path(tempfile.mkdtemp(prefix="memstream-bench-serve-")), **CPU_SHAPE,
                                       max_positions=1 << 22)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(model, port, args)
    jpegs = [frame_jpeg(i, CPU_SHAPE["image_size"] * 2) for i in range(64)]
    question = {"model": str(model), "messages": [{"role": "user", "content": "What moved, and where did it go?"}],
                "max_tokens": args.max_tokens}
    errors: list[str] = []

    def ask(client: httpx.Client, stream_id: str) -> float:
        start = time.perf_counter()
        r = client.post(f"{base}/v1/chat/completions", json={**question, "stream_id": stream_id}, timeout=120)
        if r.status_code != 200:
            errors.append(f"answer {r.status_code}: {r.text[:200]}")
        return time.perf_counter() - start

    try:
        with httpx.Client() as client:
            # ---- idle: one stream, questions back to back
            client.post(f"{base}/v1/streams", json={"stream_id": "idle"}).raise_for_status()
            for i in range(args.warm_frames):
                client.post(f"{base}/v1/streams/idle/frames", params={"timestamp_s": i / args.fps},
                            content=jpegs[i % len(jpegs)]).raise_for_status()
            ask(client, "idle")  # warm-up
            idle = [ask(client, "idle") for _ in range(args.questions)]
            client.delete(f"{base}/v1/streams/idle").raise_for_status()

            # ---- load: N streams ingesting at --fps while a question a second arrives
            names = [f"cam{k}" for k in range(args.streams)]
            for name in names:
                client.post(f"{base}/v1/streams", json={"stream_id": name}).raise_for_status()
            accepted = dict.fromkeys(names, 0)
            done = threading.Event()
            rss: list[tuple[float, int, int]] = []  # (seconds, frames per stream (min), RSS KiB)

            def ingest(name: str) -> None:
                with httpx.Client() as own:
                    start = time.perf_counter()
                    for i in range(args.frames):
                        wait = start + i / args.fps - time.perf_counter()
                        if wait > 0:
                            time.sleep(wait)
                        r = own.post(f"{base}/v1/streams/{name}/frames", params={"timestamp_s": i / args.fps},
                                     content=jpegs[i % len(jpegs)], timeout=60)
                        if r.status_code == 200:
                            accepted[name] += 1
                        else:
                            errors.append(f"frame {r.status_code}: {r.text[:200]}")

            def questions(latencies: list[float]) -> None:
                with httpx.Client() as own:
                    k = 0
                    while not done.is_set():
                        tick = time.perf_counter()
                        if min(accepted.values()) >= args.window:  # every stream has frames to answer from
                            latencies.append(ask(own, names[k % len(names)]))
                            k += 1
                        done.wait(max(0.0, 1.0 - (time.perf_counter() - tick)))

            def watch() -> None:
                start = time.perf_counter()
                while not done.is_set():
                    rss.append((time.perf_counter() - start, min(accepted.values()), rss_kib(server.pid)))
                    done.wait(1.0)

            latencies: list[float] = []
            feeders = [threading.Thread(target=ingest, args=(n,)) for n in names]
            helpers = [threading.Thread(target=questions, args=(latencies,)), threading.Thread(target=watch)]
            start = time.perf_counter()
            for t in feeders + helpers:
                t.start()
            for t in feeders:
                t.join()
            wall = time.perf_counter() - start
            done.set()
            for t in helpers:
                t.join()
            rss.append((wall, min(accepted.values()), rss_kib(server.pid)))
            streams = client.get(f"{base}/v1/streams").json()["data"]
    finally:
        stop_process(server)

    past_budget = [kib for _, frames, kib in rss if frames >= args.max_blocks]
    growth = (past_budget[-1] - past_budget[0]) / past_budget[0] if len(past_budget) >= 2 else float("nan")
    result = {
        "config": dict(vars(args)),
        "model_shape": CPU_SHAPE,
        "idle": {"questions": len(idle), "p50_s": percentile(idle, 50), "p95_s": percentile(idle, 95)},
        "load": {
            "streams": args.streams, "frames_per_stream": args.frames, "wall_s": wall,
            "accepted_frames": sum(accepted.values()), "accepted_fps_total": sum(accepted.values()) / wall,
            "accepted_fps_per_stream": sum(accepted.values()) / wall / args.streams,
            "questions": len(latencies), "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
            "errors": len(errors), "first_errors": errors[:5],
            "listed": streams,
        },
        "rss": {
            "samples": [{"t_s": round(t, 1), "frames_per_stream": f, "rss_mib": round(k / 1024, 1)} for t, f, k in rss],
            "at_budget_mib": past_budget[0] / 1024 if past_budget else None,
            "end_mib": rss[-1][2] / 1024,
            "growth_after_budget": growth,
        },
    }
    ratio = result["load"]["p95_s"] / result["idle"]["p95_s"]
    result["targets"] = {
        "p95_ratio": ratio, "p95_ratio_ok": ratio <= TARGET_P95_RATIO,
        "rss_flat_ok": bool(growth == growth and growth < TARGET_RSS_GROWTH), "no_errors": not errors,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--frames", type=int, default=2000, help="frames each stream sends")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second each stream sends")
    parser.add_argument("--max-blocks", type=int, default=256, help="frames a stream's memory keeps")
    parser.add_argument("--window", type=int, default=16, help="frames before questions start")
    parser.add_argument("--warm-frames", type=int, default=256, help="frames of the idle stream")
    parser.add_argument("--questions", type=int, default=20, help="questions on the idle stream")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="the server's --torch-threads (1: what a CPU server of concurrent streams runs with; 0: torch's default)")
    args = parser.parse_args()
    result = run(args)
    path = save("serve", result)
    idle, load, rss, targets = result["idle"], result["load"], result["rss"], result["targets"]
    print_table("memstream serve: idle stream vs N streams ingesting + 1 question/s", ["", "idle", "load"], [
        ["streams", 1, load["streams"]],
        ["frames/s accepted (all streams)", "-", load["accepted_fps_total"]],
        ["questions", idle["questions"], load["questions"]],
        ["answer p50 (s)", idle["p50_s"], load["p50_s"]],
        ["answer p95 (s)", idle["p95_s"], load["p95_s"]],
        ["errors", 0, load["errors"]],
    ])
    print_table("server RSS", ["", "MiB"], [
        ["when every stream held --max-blocks frames", rss["at_budget_mib"] or float("nan")],
        ["at the end", rss["end_mib"]],
        ["growth after the budget", f"{100 * rss['growth_after_budget']:.1f} %"],
    ])
    print(f"targets: p95 ratio {targets['p95_ratio']:.2f} (<= {TARGET_P95_RATIO}) {'ok' if targets['p95_ratio_ok'] else 'MISSED'}; "
          f"RSS flat {'ok' if targets['rss_flat_ok'] else 'MISSED'}; errors {'none' if targets['no_errors'] else load['errors']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
