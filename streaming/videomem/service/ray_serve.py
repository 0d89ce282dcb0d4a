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

The code is in three modules: :mod:`.ray_common` (the spec, joining the cluster, deploying),
:mod:`.ray_replica` (StreamReplica) and this one (the HTTP side: :class:`RayStreams`,
:func:`serve_in_process`, :func:`build_app`).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

from memstream.streaming.videomem.generation import GenerationCancelled
from memstream.streaming.videomem.service.errors import ServiceError
from memstream.streaming.videomem.service.limits import check_stream_id
from memstream.streaming.videomem.service.persist import StreamStore
from memstream.streaming.videomem.service.ray_common import (  # noqa: F401 (the service's Ray names stay importable from here)
    CANCEL_CHECK_S,
    GRPC_MAX_PAYLOAD_BYTES,
    HANDLES_KEPT,
    HANDOFF_CHECK_S,
    QUIET_REPLICAS,
    REPLICA_NICENESS,
    TRANSPORTS,
    RayServeSpec,
    _actor_options,
    _import_ray,
    _Refused,
    _unwrap,
    connect_ray,
    deploy,
)
from memstream.streaming.videomem.service.ray_replica import StreamReplicaCore, replica_deployment  # noqa: F401
from memstream.streaming.videomem.service.scenes import UNSET
from memstream.streaming.videomem.service.streams import stream_not_found


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
