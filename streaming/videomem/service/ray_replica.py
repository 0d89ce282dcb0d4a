"""The StreamReplica side of the service on Ray Serve (:mod:`.ray_serve` is the map): one replica's
streams over the shared store, each held under a lease while an operation runs on it
(:class:`StreamReplicaCore`, Ray-free), and the Serve deployment around it, whose multiplexing LRU
is the replica's set of live streams (:func:`replica_deployment`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

from memstream.streaming.videomem.service.errors import ServiceError
from memstream.streaming.videomem.service.persist import Lease, StreamSettings, StreamStore
from memstream.streaming.videomem.service.ray_common import (
    HANDOFF_CHECK_S,
    QUIET_REPLICAS,
    RayServeSpec,
    _actor_options,
    _import_ray,
    _refusal_as_value,
)
from memstream.streaming.videomem.service.streams import stream_not_found

log = logging.getLogger(__name__)


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
