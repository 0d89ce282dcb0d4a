"""The video QA service on Ray Serve: N replicas, each holding some streams, one API.

``memstream serve --ray N --store DIR ...`` deploys N StreamReplica replicas and serves the API from
its own process (uvicorn, calling the replicas through deployment handles); ``serve run`` on
:func:`build_app` (or ``--ray-ingress serve``) puts Serve's HTTP proxies in front instead, with two
deployments:

* **StreamReplica** (N replicas, each with the model): the streams' memories. Each request names
  its stream as Ray Serve's *multiplexed model id*, so Serve's own router sends it to a replica
  that already holds the stream: the stream id plays the model id, and a replica's LRU of loaded
  "models" (``max_num_models_per_replica`` = ``--max-streams-per-replica``) is its set of live
  streams. A stream the LRU evicts, or whose replica died, is reopened from the store by the next
  replica that gets one of its requests, so nothing is lost.
* **Frontend** (one replica, no model): the same FastAPI app as ``memstream serve`` (keys, limits,
  OpenAI shapes, SSE, the WebSocket), whose handlers call the replicas through deployment
  handles with ``multiplexed_model_id=stream_id``: clients send nothing Ray-specific.

Serve routes by stream only as long as the replica holding it is not saturated (after about a
second it falls back to another replica). A stream's memory is therefore open in one replica at a
time by a lease (:class:`~memstream.streaming.videomem.service.persist.Lease`, an exclusive flock
on the store). A replica that gets a request for a stream another one holds asks for it (a flag in
the store) and waits for the lease (``lease_wait_s``); the holder hands it over between two
operations (within ``HANDOFF_CHECK_S``: its memory is closed into the store and reopened by the
new holder) and takes the stream out of its multiplexing LRU, so Serve routes it to the new holder
from then on. A holder also lets go of streams idle for ``release_idle_s``. If the lease does not
come in time, the request is answered 503 with ``Retry-After``.

**What "reach the store" means on a cluster**: every replica opens ``DIR`` at the same path on a
POSIX filesystem whose ``flock`` is honoured across nodes (a local disk on a one-node cluster;
NFSv4, CephFS, Lustre or GPFS mounted on every node). An object store (S3, GCS) cannot hold a live
store: its memory maps and locks need a filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.videomem.generation import GenerationCancelled
from memstream.streaming.videomem.service.errors import ServiceError
from memstream.streaming.videomem.service.limits import ServiceLimits, check_stream_id
from memstream.streaming.videomem.service.persist import Lease, StreamSettings, StreamStore
from memstream.streaming.videomem.service.scenes import UNSET
from memstream.streaming.videomem.service.streams import stream_not_found

log = logging.getLogger(__name__)

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


def serve_in_process(spec: RayServeSpec, access, host: str, port: int, docs: bool = False) -> None:
    """``memstream serve --ray N``, after :func:`connect_ray` (with no port: Serve starts no proxy):
    deploy the StreamReplica replicas on Ray Serve and serve the API from this process with
    uvicorn, calling the replicas through deployment handles keyed by stream id, as the Frontend
    deployment of :func:`build_app` does, one hop less than Serve's proxy and a frontend replica
    (``bench_ray.py`` measures both). Blocks until interrupted, then deletes the application."""
    import uvicorn

    from memstream.streaming.videomem.serve import create_app
    from memstream.streaming.videomem.service.connections import uvicorn_options

    serve = _import_ray()
    try:
        deploy(replica_deployment(spec), spec.app_name, route_prefix=None)
        uvicorn.run(create_app(RayStreams(spec), access, docs=docs), host=host, port=port, log_level="warning",
                    **uvicorn_options(spec.limits))
    finally:
        serve.delete(spec.app_name)


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


class _Held:
    """One stream held by this replica: its lease, taken when an operation starts (:meth:`enter`),
    and let go (with the memory, kept in the store) when no operation is running on it and it
    idles, the multiplexing LRU evicts it, or it is deleted (:meth:`release`)."""

    def __init__(self, replica: StreamReplicaCore, stream_id: str) -> None:
        self.replica, self.stream_id = replica, stream_id
        self.lease: Lease | None = None
        self.last_used = time.monotonic()
        self.busy = 0  # operations running on the stream
        self.state = threading.Condition()
        self.acquiring = threading.Lock()

    def enter(self) -> None:
        """Start an operation: hold the lease (waiting up to ``lease_wait_s`` for another replica)."""
        with self.acquiring:  # one lease attempt at a time per stream (flock would block on our own lock)
            with self.state:
                self.last_used = time.monotonic()
                if self.lease is not None and not self.lease.valid() and self.busy == 0:  # its lock file was replaced
                    self.replica.service.detach(self.stream_id)
                    self.lease.release()
                    self.lease = None
                need = self.lease is None
            if need:  # waiting for another replica, without blocking this stream's bookkeeping
                store = self.replica.store
                lease = store.lease(self.stream_id)
                if lease is None:  # held elsewhere: ask the holder to hand it over, then wait
                    flag = store.want(self.stream_id)
                    try:
                        lease = store.lease(self.stream_id, self.replica.spec.lease_wait_s)
                    finally:
                        store.unwant(flag)
                if lease is None:
                    raise ServiceError(
                        f"stream {self.stream_id!r} is held by another replica",
                        "Retry shortly: the retry is routed to the replica that holds it",
                        503, param="stream_id", code="stream_busy", retry_after_s=1.0,
                    )
                with self.state:
                    self.lease = lease
            with self.state:
                self.busy += 1

    def exit(self) -> None:
        with self.state:
            self.busy -= 1
            self.last_used = time.monotonic()
            self.state.notify_all()

    def release(self, remove: bool = False, only_if_idle: bool = False) -> bool:
        """Close the memory here and give the lease up once no operation runs on the stream
        (``remove``: the stream is gone, so is its lock file). Returns whether it was let go."""
        with self.state:
            if only_if_idle and self.busy:
                return False
            self.state.wait_for(lambda: self.busy == 0)
            if self.lease is not None:
                self.replica.service.detach(self.stream_id)
                if remove:
                    self.lease.remove()
                    self.replica.store.unwant(stream_id=self.stream_id)
                self.lease.release()
                self.lease = None
            return True


class _Resident:
    """What Serve's multiplexing LRU holds for a stream on this replica; evicting it lets the
    stream go (Serve calls ``__del__``; the garbage collector may call it again, harmlessly)."""

    def __init__(self, core: StreamReplicaCore, stream_id: str) -> None:
        self.core, self.stream_id = core, stream_id
        self.dropped = False  # taken out of the LRU after the stream was let go: nothing left to release

    def __del__(self) -> None:
        if self.dropped:
            return
        try:
            self.core.forget(self.stream_id)
        except Exception:  # noqa: BLE001 -- logged; a finaliser must not raise
            log.exception("releasing stream %s failed", self.stream_id)


class StreamReplicaCore:
    """One replica's service over the shared store (the Ray-free part of StreamReplica)."""

    def __init__(self, spec: RayServeSpec) -> None:
        from memstream.streaming.videomem.factory import load_model, memory_for
        from memstream.streaming.videomem.service.streams import VideoQAService

        if spec.store_id is not None:  # before the model loads: a node without the shared store fails fast
            StreamStore.check_identity(spec.store, spec.store_id)
        if spec.torch_threads is not None:
            import torch

            torch.set_num_threads(spec.torch_threads)
        self.spec, options = spec, spec.options
        self.llm = load_model(options)
        self.store = StreamStore(spec.store, options.model, self.llm.spec.fingerprint, expect_id=spec.store_id)

        def make_memory(settings: StreamSettings):
            return memory_for(self.llm, replace(options, rekv=settings.rekv(options.rekv)))

        self.service = VideoQAService(make_memory, options.model, max_streams=spec.max_streams,
                                      default_max_tokens=spec.default_max_tokens, limits=spec.limits,
                                      store=self.store, reopen_stored=False)
        self.held: dict[str, _Held] = {}
        self._held_lock = threading.Lock()

    @contextlib.contextmanager
    def using(self, stream_id: str, must_exist: bool = True, attach: bool = True) -> Iterator[None]:
        """Run an operation on the stream in this replica: its lease held, its memory attached, and
        no release until the operation ends. 404 first when the store has no such stream, so
        unknown ids leave nothing behind (a stream this replica holds a live lease on exists: its
        lock file goes with it, so its record is not read again on every frame)."""
        if must_exist and not self._holds(stream_id) and self.store.record(stream_id) is None:
            raise stream_not_found(stream_id)
        while True:
            with self._held_lock:
                held = self.held.get(stream_id)
                if held is None:
                    held = self.held[stream_id] = _Held(self, stream_id)
            held.enter()
            with self._held_lock:
                if self.held.get(stream_id) is held:
                    break
            held.exit()  # let go meanwhile (idle sweep, eviction): start over with its successor
        try:
            if attach:
                self.service.attach(stream_id)
            yield
        finally:
            held.exit()

    def _holds(self, stream_id: str) -> bool:
        with self._held_lock:
            held = self.held.get(stream_id)
        lease = None if held is None else held.lease
        return lease is not None and lease.valid()

    def forget(self, stream_id: str, remove: bool = False) -> None:
        with self._held_lock:
            held = self.held.pop(stream_id, None)
        if held is not None:
            held.release(remove)

    def release_idle(self) -> list[str]:
        """Let go of the streams another replica asked for (a handoff) or idle for ``release_idle_s``,
        when no operation runs on them; they stay in the store. Returns their ids."""
        now = time.monotonic()
        released = []
        with self._held_lock:
            for held in list(self.held.values()):
                wanted = self.store.wanted(held.stream_id)
                if (wanted or now - held.last_used > self.spec.release_idle_s) and held.release(only_if_idle=True):
                    del self.held[held.stream_id]
                    released.append(held.stream_id)
        return released

    # the operations the frontend calls, each on the replica that holds the stream ---------------
    def open_stream(self, stream_id: str, owner, max_blocks, ram_budget_mb) -> str:
        try:
            with self.using(stream_id, must_exist=False, attach=False):  # the lease first: nobody else makes it meanwhile
                return self.service.open_stream(stream_id, owner, max_blocks, ram_budget_mb)
        except BaseException:
            if self.store.record(stream_id) is None:  # refused: no stream, no lock file
                self.forget(stream_id, remove=True)
            raise

    def add_frame(self, stream_id: str, image: bytes, seconds, owner) -> int:
        with self.using(stream_id):
            return self.service.add_frame(stream_id, image, seconds, owner)

    def describe(self, stream_id: str, owner) -> dict:
        with self.using(stream_id):
            return self.service.describe(stream_id, owner)

    def close_stream(self, stream_id: str, owner) -> None:
        with self.using(stream_id):
            self.service.close_stream(stream_id, owner)
        self.forget(stream_id, remove=True)

    def check_answer(self, stream_id: str, owner, question: str) -> None:
        with self.using(stream_id):
            self.service.session(stream_id, owner).memory.check_question(question)


def replica_deployment(spec: RayServeSpec):
    """The StreamReplica deployment, bound to ``spec`` (``spec.replicas`` replicas holding the
    streams' memories). It is an application of its own where this process serves HTTP
    (:func:`serve_in_process`), and the frontend's child in :func:`build_app`."""
    serve = _import_ray()

    @serve.deployment(name="StreamReplica", num_replicas=spec.replicas, max_ongoing_requests=256,
                      ray_actor_options=_actor_options(spec, spec.replica_cpus, spec.replica_gpus),
                      logging_config=QUIET_REPLICAS)
    class StreamReplica:
        def __init__(self, spec: RayServeSpec) -> None:
            self.core = StreamReplicaCore(spec)
            self._sweeper = asyncio.get_event_loop().create_task(self._sweep())

        async def _sweep(self) -> None:
            while True:
                await asyncio.sleep(HANDOFF_CHECK_S)
                try:
                    released = await asyncio.to_thread(self.core.release_idle)
                except Exception as exc:  # noqa: BLE001 -- logged; the sweep goes on
                    if isinstance(exc, RuntimeError) and "after shutdown" in str(exc):
                        return  # the replica is shutting down (its thread pool is closed): nothing to release
                    log.exception("releasing idle streams failed")
                    continue
                for stream_id in released:
                    self._drop_routing(stream_id)

        def _drop_routing(self, stream_id: str) -> None:
            """Take a stream this replica let go out of its multiplexing LRU, so Serve stops routing
            it here. (The LRU is Serve's ``_ModelMultiplexWrapper``; without these attributes in a
            future Ray the entry ages out of the LRU instead.)"""
            wrapper = getattr(self, "__serve_multiplex_wrapper", None)
            models = getattr(wrapper, "models", None)
            if models is not None and stream_id in models:
                models.pop(stream_id).dropped = True
                wrapper._push_multiplexed_replica_info = True

        @serve.multiplexed(max_num_models_per_replica=spec.streams_per_replica)
        async def _stream(self, stream_id: str) -> _Resident:
            return _Resident(self.core, stream_id)  # the lease and memory are taken by the operation itself

        async def _here(self) -> str:
            stream_id = serve.get_multiplexed_model_id()
            await self._stream(stream_id)  # marks it most recently used; Serve learns it lives here
            return stream_id

        async def call(self, method: str, *args):
            stream_id = await self._here()
            return await _refusal_as_value(asyncio.to_thread(getattr(self.core, method), stream_id, *args))

        async def complete(self, request, owner):
            await self._here()
            cancel = threading.Event()

            def answer():
                with self.core.using(request.stream_id):
                    return self.core.service.complete(request, cancel, owner)

            try:
                return await _refusal_as_value(asyncio.to_thread(answer))
            except asyncio.CancelledError:  # the frontend's client left
                cancel.set()
                raise

        async def complete_stream(self, request, owner):
            await self._here()
            cancel = threading.Event()
            using = self.core.using(request.stream_id)
            await asyncio.to_thread(using.__enter__)  # held until the last event
            try:
                lines = await asyncio.to_thread(self.core.service.complete_stream, request, cancel, owner)
                done = object()
                while (line := await asyncio.to_thread(next, lines, done)) is not done:
                    yield line
            finally:
                cancel.set()
                using.__exit__(None, None, None)

    return StreamReplica.bind(spec)


def build_app(spec: RayServeSpec, access=None, docs: bool = False):
    """The Ray Serve application (``serve.run(build_app(spec))``) with Serve's HTTP proxies as the
    ingress: a Frontend deployment serving the API over ``spec.replicas`` StreamReplica replicas.
    Use it with ``serve run`` or a Serve config on a cluster (proxies on every node); ``memstream
    serve --ray N`` serves HTTP from its own process instead (:func:`serve_in_process`), one hop
    less per request.

    Args:
        access: API keys and Host/Origin allow-lists (:class:`~memstream.streaming.videomem.service.AccessPolicy`).
        docs: serve ``/docs`` and ``/openapi.json``.
    """
    serve = _import_ray()
    from memstream.streaming.videomem.serve import create_app

    app = create_app(RayStreams(spec), access, docs=docs)  # its handle to the replicas is looked up in the Frontend

    @serve.deployment(name="Frontend", num_replicas=1, max_ongoing_requests=1024, ray_actor_options=_actor_options(spec, 0.1),
                      logging_config=QUIET_REPLICAS)
    @serve.ingress(app)
    class Frontend:
        def __init__(self, replicas) -> None:
            self.replicas = replicas  # bound so Serve deploys them with the frontend

    return Frontend.bind(replica_deployment(spec))


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


def _client_left() -> GenerationCancelled:
    return GenerationCancelled("the client left before the answer", "Ask again if it is still wanted")


class RayStreams:
    """What :func:`~memstream.streaming.videomem.serve.create_app` calls, answered by the
    StreamReplica that holds each stream (through a deployment handle with the stream id as the
    multiplexed model id) or by the shared store (listings)."""

    def __init__(self, spec: RayServeSpec) -> None:
        self.spec, self.limits = spec, spec.limits
        self.model_name, self.default_max_tokens = spec.options.model, spec.default_max_tokens
        self._replicas = None
        self._replicas_on_loop = None
        self._handles: dict[tuple[str, bool, bool], Any] = {}  # (stream, on this loop, by reference) -> handle
        self._existing: set[str] = set()  # streams this process found in the store (or opened)
        self._store: StreamStore | None = None
        self.scenes = None  # scene grounding is served by a plain memstream serve only (for now)

    @property
    def replicas(self):
        if self._replicas is None:
            from ray import serve

            self._replicas = serve.get_deployment_handle("StreamReplica", app_name=self.spec.app_name)
        return self._replicas

    def _replicas_here(self):
        """A handle whose router runs on the calling event loop (created on it, on first use):
        awaited there, a call skips the hops to and from Serve's router thread. (Serve's own proxy
        makes its handles this way; ``_init`` is not public API yet.)"""
        if self._replicas_on_loop is None:
            from ray.serve.handle import DeploymentHandle

            handle = DeploymentHandle("StreamReplica", self.spec.app_name)
            handle._init(_run_router_in_separate_loop=False)
            self._replicas_on_loop = handle
        return self._replicas_on_loop

    @property
    def store(self) -> StreamStore:
        if self._store is None:  # the frontend loads no model: the store's model check is the replicas'
            self._store = StreamStore.reader(self.spec.store)
        return self._store

    def _on(self, stream_id: str, payload_bytes: int = 0, here: bool = False):
        """The handle for a stream's replica: by value over gRPC (``spec.transport``), unless the
        payload is too large for a replica's gRPC server (then by reference, through the object
        store); ``here``: its router runs on the calling event loop (:meth:`_replicas_here`).
        Kept per stream (``options`` builds a new handle each call); Serve still routes each call."""
        by_reference = self.spec.transport == "actor" or payload_bytes > GRPC_MAX_PAYLOAD_BYTES
        key = (stream_id, here, by_reference)
        handle = self._handles.get(key)
        if handle is None:
            if len(self._handles) >= HANDLES_KEPT:
                self._handles.clear()
            base = self._replicas_here() if here else self.replicas
            handle = self._handles[key] = base.options(multiplexed_model_id=stream_id, _by_reference=by_reference)
        return handle

    def _known(self, stream_id: str) -> str:
        """404 here for a stream the store does not hold: unknown ids never reach (and churn) the
        replicas' stream LRUs. A stream found once is not looked up again (a file read on every
        frame); one deleted meanwhile by another server is a 404 from its replica, which forgets it here."""
        check_stream_id(stream_id)
        if stream_id in self._existing:
            return stream_id
        if self.store.record(stream_id) is None:
            raise stream_not_found(stream_id)
        if len(self._existing) >= HANDLES_KEPT:
            self._existing.clear()
        self._existing.add(stream_id)
        return stream_id

    def _unwrap(self, stream_id: str, value):
        """The replica's answer, or its refusal raised; a 404 makes this process forget the stream."""
        if isinstance(value, _Refused) and getattr(value.error, "status", None) == 404:
            self._existing.discard(stream_id)
        return _unwrap(value)

    def _call(self, stream_id: str, method: str, *args, payload_bytes: int = 0):
        return self._unwrap(stream_id, self._on(stream_id, payload_bytes).call.remote(method, *args).result())

    def open_stream(self, stream_id=None, owner=None, max_blocks=None, ram_budget_mb=None, scene=UNSET) -> str:
        if scene is not UNSET and scene is not None:
            raise ServiceError("this server serves no scene memory (scenes are not served with --ray yet)",
                               'Drop "scene", or serve the scene from a plain memstream serve --scene NAME=RUN_DIR',
                               param="scene", code="scene_not_found")
        stream_id = uuid.uuid4().hex[:12] if stream_id is None else check_stream_id(stream_id)
        opened = self._call(stream_id, "open_stream", owner, max_blocks, ram_budget_mb)
        self._existing.add(opened)
        return opened

    def add_frame(self, stream_id: str, image: bytes, seconds, owner=None) -> int:
        return self._call(self._known(stream_id), "add_frame", image, seconds, owner, payload_bytes=len(image))

    async def add_frame_async(self, stream_id: str, image: bytes, seconds, owner=None) -> int:
        """:meth:`add_frame` awaited on the server's event loop (the HTTP frame path): no thread
        pool hop here and no router thread hop in Serve (``bench_ray_hop.py``: a 15 ms call added
        4.3 ms p50 from a thread with ``.result()``, 2.5 ms awaited on the loop, both over gRPC).
        The store lookup of :meth:`_known` (one small file read, the stream's first frame only)
        runs on the loop."""
        handle = self._on(self._known(stream_id), len(image), here=True)
        return self._unwrap(stream_id, await handle.call.remote("add_frame", image, seconds, owner))

    def describe(self, stream_id: str, owner=None) -> dict:
        return self._call(self._known(stream_id), "describe", owner)

    def close_stream(self, stream_id: str, owner=None) -> None:
        self._call(self._known(stream_id), "close_stream", owner)
        self._existing.discard(stream_id)
        for key in [key for key in list(self._handles) if key[0] == stream_id]:  # a snapshot: the loop adds handles too
            self._handles.pop(key, None)

    def list_streams(self, owner=None) -> list[dict]:
        return [r.listing(persistent=True) for r in self.store.records() if r.owner == owner]

    def complete(self, request, cancel: threading.Event | None = None, owner=None) -> dict:
        response = self._on(self._known(request.stream_id)).complete.remote(request, owner)
        while True:
            try:
                return self._unwrap(request.stream_id, response.result(timeout_s=0.1))
            except TimeoutError:
                if cancel is not None and cancel.is_set():
                    response.cancel()  # the replica's task is cancelled; generation stops
                    raise _client_left() from None

    async def complete_async(self, request, cancel: threading.Event | None = None, owner=None) -> dict:
        """:meth:`complete` awaited on the server's event loop (the HTTP answer path), as
        :meth:`add_frame_async`: no thread-pool hop and no router thread (``bench_ray.py``'s answers)."""
        if cancel is not None and cancel.is_set():  # the client left before it was sent
            raise _client_left()
        response = self._on(self._known(request.stream_id), here=True).complete.remote(request, owner)
        answer = asyncio.ensure_future(response)
        try:
            while not answer.done():
                await asyncio.wait({answer}, timeout=CANCEL_CHECK_S)
                if not answer.done() and cancel is not None and cancel.is_set():
                    raise _client_left()
            return self._unwrap(request.stream_id, answer.result())
        finally:
            if not answer.done():  # the client left, or this request was cancelled: so is the replica's task
                response.cancel()
                answer.cancel()

    def complete_stream(self, request, cancel: threading.Event | None = None, owner=None):
        self._call(self._known(request.stream_id), "check_answer", owner, request.question)  # bad input: an error status, not an event
        lines = self._on(request.stream_id).options(stream=True).complete_stream.remote(request, owner)
        if cancel is not None:
            threading.Thread(target=lambda: cancel.wait() and lines.cancel(), daemon=True).start()
        return iter(lines)

    def expire_idle(self) -> list[str]:
        return []  # replicas let idle streams go (release_idle_s); the store keeps them

    def close(self) -> None:
        pass
