"""What each part of one Ray Serve handle call costs, without the model (``bench_ray.py`` measures
the service itself).

A local Ray cluster serves two one-replica deployments shaped like StreamReplica (multiplexed by a
stream id; a method that runs ``--work-ms`` of sleep in ``asyncio.to_thread``, one that runs it
inline, one that returns at once), one with Serve's default of running the handlers on a separate
user-code loop and one with ``RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0``, in the replica's
environment from its start. This process calls them in every way it can, alternating one call of
each per round, and the same work run locally (``asyncio.to_thread``) is the baseline:

* ``thread+result``: from a worker thread, ``handle.remote(...).result()`` (how ``RayStreams`` calls,
  from Starlette's thread pool), Serve's router on its own loop thread;
* ``await sep-loop`` / ``await same-loop``: awaited on this event loop, the router on its own loop
  or on this one (``_run_router_in_separate_loop=False``);
* ``grpc``: any of these with ``_by_reference=False`` (Serve's gRPC between deployments) instead of
  a Ray actor call.

Reported: p50 / p90 per variant and the milliseconds added to the local baseline (p50).

    python benchmarks/bench_ray_hop.py [--calls 200] [--work-ms 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import numpy as np
from _common import local_serve, print_table, save


def _deployment(name: str, env: dict[str, str], work_s: float):
    from ray import serve

    def work(payload: bytes) -> int:
        time.sleep(work_s)
        return len(payload)

    @serve.deployment(name=name, num_replicas=1, max_ongoing_requests=256,
                      ray_actor_options={"num_cpus": 0.1, "runtime_env": {"env_vars": env}},
                      logging_config={"enable_access_log": False, "log_level": "WARNING"})
    class Hop:
        @serve.multiplexed(max_num_models_per_replica=8)
        async def _stream(self, stream_id: str) -> str:
            return stream_id

        async def thread(self, payload: bytes) -> int:
            await self._stream(serve.get_multiplexed_model_id())
            return await asyncio.to_thread(work, payload)

        async def inline(self, payload: bytes) -> int:
            await self._stream(serve.get_multiplexed_model_id())
            return work(payload)

        async def empty(self, payload: bytes) -> int:
            return 0

    return Hop.bind()


async def measure(calls: int, work_s: float) -> dict[str, dict[str, float]]:
    from ray import serve
    from ray.serve.handle import DeploymentHandle

    apps = {"user_thread": {}, "main_loop": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}
    for app, env in apps.items():
        serve.run(_deployment(f"Hop_{app}", env, work_s), name=app, route_prefix=None)
    payload = os.urandom(3000)  # a small JPEG frame's bytes

    def handle(app: str, separate_loop: bool) -> DeploymentHandle:
        h = DeploymentHandle(f"Hop_{app}", app)
        h._init(_run_router_in_separate_loop=separate_loop)
        return h

    def blocking(h: DeploymentHandle, method: str, grpc: bool) -> int:
        return getattr(h.options(multiplexed_model_id="cam", _by_reference=not grpc), method).remote(payload).result()

    variants = {"local to_thread": lambda: asyncio.to_thread(time.sleep, work_s)}
    for app in apps:
        separate, same = handle(app, True), handle(app, False)
        for method in ("thread", "inline", "empty"):
            for grpc in (False, True):
                wire = " grpc" if grpc else ""
                variants[f"{app}/{method} thread+result{wire}"] = (
                    lambda h=separate, m=method, g=grpc: asyncio.to_thread(blocking, h, m, g))
                variants[f"{app}/{method} await sep-loop{wire}"] = (
                    lambda h=separate, m=method, g=grpc: getattr(h.options(multiplexed_model_id="cam", _by_reference=not g), m).remote(payload))
                variants[f"{app}/{method} await same-loop{wire}"] = (
                    lambda h=same, m=method, g=grpc: getattr(h.options(multiplexed_model_id="cam", _by_reference=not g), m).remote(payload))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(calls + 10):  # one call of each per round: the machine's load falls on all alike
        for name, call in variants.items():
            start = time.perf_counter()
            await call()
            if i >= 10:
                times[name].append(time.perf_counter() - start)
    base = float(np.median(times["local to_thread"]))
    return {name: {"p50_ms": 1e3 * float(np.median(v)), "p90_ms": 1e3 * float(np.percentile(v, 90)),
                   "added_p50_ms": 1e3 * (float(np.median(v)) - base)} for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--work-ms", type=float, default=15.0, help="the work a call does in the replica (a tiny model's frame: 15 ms)")
    args = parser.parse_args()
    with local_serve() as load:
        result = asyncio.run(measure(args.calls, args.work_ms / 1e3))
    path = save("ray_hop", {"config": dict(vars(args)), "variants": result, "load_average_1min": load})
    print_table(f"one Serve handle call, {args.work_ms:g} ms of work, {args.calls} calls each, alternating",
                ["variant", "p50 ms", "p90 ms", "added p50 ms"],
                [[name, r["p50_ms"], r["p90_ms"], r["added_p50_ms"]] for name, r in result.items()])
    print(f"load average {load['start']} -> {load['end']} on {os.cpu_count()} CPUs; wrote {path}")


if __name__ == "__main__":
    main()
