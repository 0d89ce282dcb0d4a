"""Where the milliseconds of one Ray Serve handle call go: a timeline across both processes.

``bench_ray_hop.py`` says what each way of calling costs in total; this one splits the call
``memstream serve --ray`` makes for a frame (awaited on the caller's loop, Serve's router on that
loop, gRPC between deployments, a multiplexed stream id, the replica's handlers on Serve's main
loop, the work in ``asyncio.to_thread``) into its steps. Both sides stamp ``time.perf_counter()``
(CLOCK_MONOTONIC, one clock for every process of the machine) at fixed points by wrapping Serve's
own functions in this process and in the replica (measurement only: Serve's private functions, as
Ray 2.60 names them; the wrappers add about 1 us a step):

* caller: the call starts; the router's routing task starts; the gRPC call is created; the answer
  is back from gRPC; the caller has the result;
* replica: its gRPC handler starts (the request's metadata unpickled); Serve's request wrapper
  starts; the user method is called; inside it (this benchmark's method) the multiplexed stream is
  looked up, the work starts and ends in a thread; the result is serialized.

Reported: the median time of each step (successive stamps, ordered by their median) over
``--calls`` calls of ``--work-ms`` of sleep with a ``--payload-bytes`` argument (a JPEG frame), and
the total added to the work.

    python benchmarks/bench_ray_timeline.py [--calls 300] [--work-ms 12] [--payload-bytes 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import numpy as np
from _common import local_serve, print_table, save

STAMPS: dict[str, float] = {}
HISTORY: list[dict[str, float]] = []

#: The steps in the order a call passes them (the caller's and the replica's interleaved).
ORDER = ["start", "routing", "grpc_sent", "replica_grpc_in", "replica_request", "replica_user_call", "handler_in",
         "stream_found", "work_done", "user_call_out", "result_serialized", "caller_grpc_answer", "caller_result"]


def stamp(name: str) -> None:
    global STAMPS
    if name == "replica_grpc_in":  # a request starts: the replica's stamps of this call
        STAMPS = {}
        HISTORY.append(STAMPS)
        del HISTORY[:-4]
    STAMPS[name] = time.perf_counter()


def _wrap_async(owner, name: str, before: str | None = None, after: str | None = None) -> None:
    original = getattr(owner, name)

    async def wrapped(self, *args, **kwargs):
        if before:
            stamp(before)
        result = await original(self, *args, **kwargs)
        if after:
            stamp(after)
        return result

    setattr(owner, name, wrapped)


def instrument_replica() -> None:
    """Stamps in the replica process (called from the deployment's constructor)."""
    import pickle

    import ray.serve._private.replica as replica
    from ray.serve._private.serialization import RPCSerializer

    class StampingPickle:  # the gRPC handler's first act is pickle.loads of the request's metadata
        def loads(self, data, *args, **kwargs):
            stamp("replica_grpc_in")
            return pickle.loads(data, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(pickle, name)

    replica.pickle = StampingPickle()
    original = replica.Replica.handle_request_with_rejection

    async def with_rejection(self, *args, **kwargs):
        stamp("replica_request")
        async for message in original(self, *args, **kwargs):
            yield message

    replica.Replica.handle_request_with_rejection = with_rejection
    _wrap_async(replica.UserCallableWrapper, "call_user_method", "replica_user_call", "user_call_out")
    dumps = RPCSerializer.dumps_response

    def dumps_response(self, value):
        data = dumps(self, value)
        stamp("result_serialized")
        return data

    RPCSerializer.dumps_response = dumps_response


def instrument_caller() -> None:
    from ray.serve._private.replica_result import gRPCReplicaResult
    from ray.serve._private.router import AsyncioRouter

    _wrap_async(AsyncioRouter, "_route_and_send_request_once", "routing")
    _wrap_async(gRPCReplicaResult, "_get_internal", None, "caller_grpc_answer")
    created = gRPCReplicaResult.__init__

    def init(self, *args, **kwargs):
        stamp("grpc_sent")
        created(self, *args, **kwargs)

    gRPCReplicaResult.__init__ = init


def _deployment(work_s: float):
    from ray import serve

    def work(payload: bytes) -> int:
        time.sleep(work_s)
        return len(payload)

    env = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_worker_niceness": "0"}

    @serve.deployment(name="Timeline", num_replicas=1, max_ongoing_requests=256,
                      ray_actor_options={"num_cpus": 1, "runtime_env": {"env_vars": env}},
                      logging_config={"enable_access_log": False, "log_level": "WARNING"})
    class Timeline:
        def __init__(self) -> None:
            instrument_replica()

        @serve.multiplexed(max_num_models_per_replica=8)
        async def _stream(self, stream_id: str) -> str:
            return stream_id

        async def call(self, method: str, payload: bytes, seconds: float, owner) -> int:  # add_frame's shape
            stamp("handler_in")
            await self._stream(serve.get_multiplexed_model_id())
            stamp("stream_found")
            seen = await asyncio.to_thread(work, payload)
            stamp("work_done")
            return seen

        async def stamps(self) -> dict[str, float]:
            return dict(HISTORY[-2])  # the call before this one

    return Timeline.bind()


async def measure(calls: int, work_s: float, payload_bytes: int) -> dict:
    from ray import serve
    from ray.serve.handle import DeploymentHandle

    serve.run(_deployment(work_s), name="timeline", route_prefix=None)
    instrument_caller()
    handle = DeploymentHandle("Timeline", "timeline")
    handle._init(_run_router_in_separate_loop=False)
    handle = handle.options(multiplexed_model_id="cam", _by_reference=False)
    payload = os.urandom(payload_bytes)
    rows = []
    for i in range(calls + 20):
        STAMPS.clear()
        stamp("start")
        await handle.call.remote("add_frame", payload, 1.0, None)
        stamp("caller_result")
        caller = dict(STAMPS)
        replica = await handle.stamps.remote()
        if i >= 20:
            rows.append({**caller, **replica})
        await asyncio.sleep(0.002)
    at = {k: float(np.median([row[k] - row["start"] for row in rows])) for k in ORDER}
    steps, previous = {}, None
    for name in sorted(ORDER, key=at.get):
        if previous is not None:
            gap = [row[name] - row[previous] for row in rows]
            steps[f"{previous} -> {name}"] = {"p50_ms": 1e3 * float(np.median(gap)), "p90_ms": 1e3 * float(np.percentile(gap, 90))}
        previous = name
    total = [row["caller_result"] - row["start"] - work_s for row in rows]
    return {"steps": steps, "added_p50_ms": 1e3 * float(np.median(total)), "added_p90_ms": 1e3 * float(np.percentile(total, 90))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--work-ms", type=float, default=12.0, help="the work a call does in the replica (the tiny model's frame: ~12 ms)")
    parser.add_argument("--payload-bytes", type=int, default=3000, help="the frame's bytes sent with each call")
    args = parser.parse_args()
    with local_serve() as load:
        result = asyncio.run(measure(args.calls, args.work_ms / 1e3, args.payload_bytes))
    path = save("ray_timeline", {"config": dict(vars(args)), **result, "load_average_1min": load})
    print_table(f"one awaited Serve handle call over gRPC, {args.work_ms:g} ms of work: its steps (p50 of {args.calls})",
                ["step", "p50 ms", "p90 ms"], [[name, s["p50_ms"], s["p90_ms"]] for name, s in result["steps"].items()])
    print(f"added to the work: {result['added_p50_ms']:.2f} ms p50 ({result['added_p90_ms']:.2f} p90); "
          f"load average {load['start']} -> {load['end']} on {os.cpu_count()} CPUs; wrote {path}")


if __name__ == "__main__":
    main()
