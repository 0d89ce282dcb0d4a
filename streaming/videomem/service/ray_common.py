"""What both sides of the service on Ray Serve share (:mod:`.ray_serve` is the map): the
:class:`RayServeSpec` every replica is built from, the deployments' Ray options, joining the
cluster, deploying an application with the replica's own error, and refusals sent back as values.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.videomem.service.limits import ServiceLimits

#: How often a replica looks for streams another replica asked for, and for idle ones.
HANDOFF_CHECK_S = 0.25

#: Replicas log warnings and errors, not a line per request (Serve's access log costs each
#: request a formatted line, a file write and a copy to the driver).
QUIET_REPLICAS = {"enable_access_log": False, "log_level": "WARNING"}

#: Ray starts every worker process at ``nice`` +15 (``RAY_worker_niceness``: its driver and raylet
#: come first), so on a node that runs anything else a replica's model work waits behind it (and
#: behind Ray's own GCS and raylet on that node): on a shared 2-core machine, replicas at +15 answered
#: in 98-104 ms at p50 where replicas at 0 took 74-82, and frames' p95 went from 44-47 ms to 68-110
#: (``bench_ray.py --ray-default-nice``, two runs). A replica is the request path, not background
#: work: its workers keep the priority the cluster was started with (read by the worker itself at
#: start, so this holds on a cluster joined by address too).
REPLICA_NICENESS = 0


#: How the process reaches the replicas (``RayServeSpec.transport``). ``"grpc"``: Serve's
#: inter-deployment gRPC (``_by_reference=False``), the request pickled into one unary call to the
#: replica's own gRPC server; ``"actor"``: Serve's default, a Ray actor task whose first message is
#: the replica's queue length and whose result comes back through Ray's object store. Serve's router
#: picks the replica the same way in both (multiplexed stream ids included); only the wire differs.
#: Measured on the shared 2-core machine (load average 11-15, so every number is inflated):
#: ``bench_ray_hop.py``, a 15 ms call's added time 5.5 -> 3.2 ms p50 and an empty call's 4.1 -> 2.0;
#: ``bench_ray.py --variants actor``, the tiny model's frame 28.5 -> 24.6 and 29.2 -> 25.6 ms p50 in
#: two runs. gRPC needs the replicas' internal gRPC port (random, per replica) reachable from this
#: process; ``actor`` uses Ray's own ports only.
TRANSPORTS = ("grpc", "actor")

#: Streams whose handles (and existence in the store) the HTTP process keeps; past it, it starts over.
HANDLES_KEPT = 4096

#: How often an awaited answer checks whether its client left.
CANCEL_CHECK_S = 0.1

#: Requests with more payload than this go by reference over gRPC too (a frame's bytes through
#: Ray's object store): a replica's gRPC server refuses messages over 4 MiB
#: (``RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH``), below the service's 8 MiB body limit.
GRPC_MAX_PAYLOAD_BYTES = 2 << 20


def _actor_options(spec: RayServeSpec, cpus: float, gpus: float = 0.0) -> dict[str, Any]:
    """``ray_actor_options`` of a deployment of the service: its resources, and its workers'
    environment: their niceness (``spec.niceness``; None leaves Ray's) and where Serve runs the
    replica's code (``spec.user_code_thread``)."""
    options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus}
    env = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1" if spec.user_code_thread else "0"}
    if spec.niceness is not None:
        env["RAY_worker_niceness"] = str(spec.niceness)
    options["runtime_env"] = {"env_vars": env}
    return options


@dataclass(frozen=True)
class RayServeSpec:
    """Everything a replica needs to build its part of the service (pickled to each replica).

    Attributes:
        options: the video memory options (:class:`~memstream.streaming.videomem.options.VideoMemoryOptions`).
        store: the store directory every replica reaches.
        replicas: StreamReplica replicas.
        streams_per_replica: streams one replica holds at once (its multiplexing LRU).
        max_streams: streams in the whole store.
        limits: the service's input bounds and budgets.
        default_max_tokens: answer length when a request gives none.
        lease_wait_s: how long a replica waits for a stream another replica holds.
        release_idle_s: a replica closes a stream's memory (keeping it in the store) after this
            long without a request, so another replica may take it.
        replica_cpus, replica_gpus: Ray resources of one replica.
        niceness: the ``nice`` value of the replicas' worker processes (:data:`REPLICA_NICENESS`;
            None: Ray's default for workers, +15).
        torch_threads: torch's intra-op threads in a replica (None: torch's default).
        app_name: the Serve application's name (``serve.run(..., name=app_name)``).
        store_id: the store's id (:meth:`StreamStore.identify`): a replica that does not find it
            at ``store`` refuses to start (None: not checked).
        transport: how requests reach the replicas (:data:`TRANSPORTS`: ``"grpc"`` or ``"actor"``).
        user_code_thread: Serve runs the replica's methods on an event loop of their own, in a
            thread beside the replica's main loop (Serve's default, one more thread hop a request);
            False runs them on the main loop (frames 1.4-1.6 ms p50 faster on the loaded 2-core
            machine, ``bench_ray.py --variants user_thread``). The replica's work runs in worker
            threads either way (``asyncio.to_thread``; the multiplexing LRU lets streams go in
            Serve's executor), so no model step blocks the main loop once the replica is up; its
            constructor (the model's load) does, before Serve sends it requests.
    """

    options: Any
    store: str
    replicas: int = 2
    streams_per_replica: int = 8
    max_streams: int = 64
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    default_max_tokens: int = 128
    lease_wait_s: float = 10.0
    release_idle_s: float = 30.0
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    niceness: int | None = REPLICA_NICENESS
    torch_threads: int | None = None
    app_name: str = "memstream"
    store_id: str | None = None
    transport: str = "grpc"
    user_code_thread: bool = False

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"Ray transport {self.transport!r} is not one of {', '.join(TRANSPORTS)}",
                              "Give grpc (the default) or actor")


def _import_ray():
    try:
        import ray  # noqa: F401
        from ray import serve
    except ImportError as exc:
        raise ConfigError("Ray Serve is not installed", 'Install it with: pip install "memstream[ray]"') from exc
    return serve


def connect_ray(address: str | None, host: str | None = None, port: int | None = None):
    """Join the Ray cluster at ``address`` (None: start a local one) and start Serve, with its HTTP
    proxy on ``host:port`` (None: no proxy; this process reaches the replicas through handles);
    returns ``ray.serve``.

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """
    serve = _import_ray()
    import ray

    _probe(address)
    try:
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r} ({str(exc).splitlines()[0][:200]})",
                          "Check the address (ray status on the head node), or drop --ray-address to start a local cluster") from exc
    if port is None:
        serve.start(proxy_location="Disabled")
    else:
        serve.start(http_options={"host": host, "port": port})
    return serve


def _probe(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when a ``host:port`` address does not answer (``ray.init``
    retries an unreachable one for a long time)."""
    if address in (None, "auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r} is not HOST:PORT, ray://HOST:PORT or auto",
                          "Give the head node's address, e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})",
                          "Check the address and that the head node runs (ray status there), or drop --ray-address "
                          "to start a local cluster") from exc


def deploy(app, name: str, route_prefix: str | None = "/", blocking: bool = False) -> None:
    """``serve.run`` an application, turning a replica that could not start (a store it does not
    reach, a model it cannot load) into one ConfigError quoting the replica's own error line: Serve
    itself only says "Failed to update the deployments"."""
    serve = _import_ray()
    try:
        serve.run(app, name=name, route_prefix=route_prefix, blocking=blocking)
    except RuntimeError as exc:
        reasons = []
        with contextlib.suppress(Exception):  # the status is context for the error raised below
            for deployment, status in serve.status().applications[name].deployments.items():
                lines = [line for line in (status.message or "").splitlines() if line.strip()]
                if lines:
                    reasons.append(f"{deployment}: {lines[-1].strip()[:500]}")
        raise ConfigError(f"Ray Serve could not start {name!r}: {'; '.join(reasons) or exc}",
                          "Fix what the replica's error names (its full traceback is in the Ray logs), then start again") from exc


@dataclass
class _Refused:
    """A refusal (404, 409, 503...) sent back as a value: Ray Serve logs every exception a replica
    raises as a failed request, and a client's mistake is not the server's failure."""

    error: MemstreamError


async def _refusal_as_value(work):
    try:
        return await work
    except MemstreamError as exc:
        return _Refused(exc)


def _unwrap(value):
    if isinstance(value, _Refused):
        raise value.error
    return value
