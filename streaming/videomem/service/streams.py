"""Streams and their memories, independent of the web framework (tested directly and through
:func:`memstream.streaming.videomem.serve.create_app`)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.types import Frame
from memstream.streaming.videomem.generation import GenerationCancelled
from memstream.streaming.videomem.service.chat import (
    ChatRequest,
    completion,
    finish_reason,
    new_completion_id,
    provenance,
    usage,
)
from memstream.streaming.videomem.service.errors import ServiceError, error_body
from memstream.streaming.videomem.service.images import decode_frame
from memstream.streaming.videomem.service.limits import ServiceLimits, check_stream_id, finite_number
from memstream.streaming.videomem.service.persist import StreamRecord, StreamSettings, StreamStore
from memstream.streaming.videomem.service.scenes import UNSET, SceneSet

log = logging.getLogger(__name__)


def stream_not_found(stream_id: Any) -> ServiceError:
    """The 404 for a stream that does not exist (or belongs to another key: the same answer)."""
    return ServiceError(f"no stream {stream_id!r}", "Create it with POST /v1/streams", 404,
                        param="stream_id", code="stream_not_found")


class AnswersFirst:
    """Answers before frames: while any answer is generating, frames wait to be encoded (their
    decoding does not wait), for at most ``max_wait_s`` each.

    Frames and answers share one model and, on a CPU, the same cores and interpreter lock; a frame
    encoded between two decoding steps delays every token of the answer. Holding frames back
    while answers run keeps question latency near the idle stream's (``benchmarks/bench_serve.py``)
    at the cost of a frame's commit arriving up to one answer later. ``max_wait_s`` bounds that
    delay, so a steady flow of questions cannot starve ingestion.
    """

    def __init__(self, max_wait_s: float = 2.0) -> None:
        self.max_wait_s = max_wait_s
        self._active = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                if self._active == 0:
                    self._idle.notify_all()

    def wait_for_answers(self) -> None:
        """Return when no answer is generating, or after ``max_wait_s``."""
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=self.max_wait_s)


class StreamSession:
    """One stream's memory, its frame counter and clock.

    Frame times must be finite, non-negative and non-decreasing; a frame sent without one is
    stamped with the seconds since the stream was opened. One stream has one clock, chosen by its
    first frame: all its frames carry ``timestamp_s`` or none does (400 otherwise). Frames arriving faster than
    ``max_frames_per_s`` (beyond a one-second burst) are refused with 429 before they are decoded.

    A stream reopened from a ``--store`` (``record`` given) continues its frame count and clock
    from what its memory committed: a frame the server stamps follows the last stored one.

    Args:
        clock: monotonic seconds (``time.monotonic``; tests pass their own).
        record: the stream's owner, budgets and counters (a new one when None).
        store: where ``record`` is saved after each frame, or None.
    """

    def __init__(self, stream_id: str, memory, max_frame_pixels: int, max_frames_per_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, record: StreamRecord | None = None,
                 store: StreamStore | None = None, gate: AnswersFirst | None = None) -> None:
        self.stream_id, self.memory, self.max_frame_pixels = stream_id, memory, max_frame_pixels
        self.gate = gate
        self.max_frames_per_s, self.clock = max_frames_per_s, clock
        self.record, self.store = record or StreamRecord(stream_id), store
        self.lock = threading.Lock()  # frames of one stream are stored in arrival order
        self.last_active_s = clock()
        stored_s = memory.covered_until_s if math.isfinite(memory.covered_until_s) else None
        if stored_s is not None and (self.record.last_s is None or stored_s > self.record.last_s):
            self.record.last_s = stored_s  # committed by the memory after the record was last saved
        self.record.frames_seen = max(self.record.frames_seen, memory.frames_seen)
        self.started_s = self.last_active_s - (self.record.last_s or 0.0)  # the server's clock goes on
        self._allowance, self._allowance_at = max_frames_per_s, self.last_active_s  # token bucket, one second deep

    @property
    def owner(self) -> str | None:
        return self.record.owner

    def touch(self) -> None:
        """Note activity (a frame or a question): idle expiry counts from the last one."""
        self.last_active_s = self.clock()

    def _take_rate_token(self) -> None:
        now = self.clock()
        self._allowance = min(self.max_frames_per_s, self._allowance + (now - self._allowance_at) * self.max_frames_per_s)
        self._allowance_at = now
        if self._allowance < 1.0:
            raise ServiceError(
                f"stream {self.stream_id!r} sends frames faster than {self.max_frames_per_s:g} per second",
                "Send fewer frames per second (sample the video), or start the server with a higher --max-frames-per-s",
                429, code="frame_rate_exceeded", retry_after_s=(1.0 - self._allowance) / self.max_frames_per_s,
            )
        self._allowance -= 1.0

    def add_frame(self, image: bytes, timestamp_s: float | None) -> int:
        """Decode and store one JPEG/PNG frame; return the frames stored so far."""
        with self.lock:
            self._take_rate_token()  # before decoding: a flood costs no decode
        rgb = decode_frame(image, self.max_frame_pixels)
        if self.gate is not None:
            self.gate.wait_for_answers()
        with self.lock:
            self.touch()
            record = self.record
            clock = "server" if timestamp_s is None else "client"
            if record.clock is not None and clock != record.clock:
                raise ServiceError(
                    f"this stream's frames are timed by the {record.clock} (its first frame "
                    f"{'had' if record.clock == 'client' else 'had no'} timestamp_s), this one by the {clock}",
                    "Send timestamp_s with every frame of the stream or with none; one stream has one clock",
                    param="timestamp_s",
                    code="clock_mismatch",
                )
            t = self.clock() - self.started_s if timestamp_s is None else timestamp_s
            if record.last_s is not None and t < record.last_s:
                raise ServiceError(
                    f"timestamp_s {t:g} is before the stream's previous frame at {record.last_s:g} s",
                    "Send frames in stream-time order with non-decreasing timestamp_s",
                    param="timestamp_s",
                    code="timestamp_out_of_order",
                )
            self.memory.update(Frame(index=record.frames_seen, timestamp_s=t, rgb=rgb, source_id=self.stream_id))
            if record.first_s is None:
                record.first_s, record.clock = t, clock
            record.last_s, record.bytes_received = t, record.bytes_received + len(image)
            record.frames_seen += 1
            if self.store is not None:
                self.store.save(record)
            return record.frames_seen

    def listing(self) -> dict[str, Any]:
        """Frames stored, the stream time they cover (seconds), the frame bytes received, the
        frames its memory keeps and whether it outlives the server."""
        with self.lock:
            return self.record.listing(persistent=self.store is not None)


class VideoQAService:
    """Streams and their memories; answers chat requests on them.

    Args:
        make_memory: builds a stream's video memory from its :class:`StreamSettings` (all share one
            loaded model); with a store, the memory resumes from ``settings.store_dir``.
        model_name: reported by ``/v1/models`` and in completions; requests naming another model
            are refused (404).
        max_streams: refuse new streams past this many.
        default_max_tokens: answer length when a request gives no ``max_tokens``.
        limits: input bounds (body bytes, frame pixels, question characters, ``max_tokens`` cap),
            per-key stream counts, answer deadline and the streams' memory budgets.
        store: keeps streams across restarts (``--store``); the streams it holds are reopened here.
        reopen_stored: reopen every stored stream now (one server), or only when a request needs
            it (:meth:`attach`; replicas sharing a store, each holding some of its streams).
        scenes: the scene memories streams may be bound to (``--scene NAME=RUN_DIR``); a bound
            stream's answers are grounded on its scene's facts (:mod:`.scenes`). None: no scene.

    Raises:
        ConfigError: a stored stream cannot be reopened (another model's KV, a damaged store), or
            the store holds more streams than ``max_streams``.
    """

    def __init__(self, make_memory: Callable[[StreamSettings], Any], model_name: str, max_streams: int = 16,
                 default_max_tokens: int = 128, limits: ServiceLimits | None = None,
                 clock: Callable[[], float] = time.monotonic, store: StreamStore | None = None,
                 reopen_stored: bool = True, scenes: SceneSet | None = None) -> None:
        self.make_memory, self.model_name, self.max_streams = make_memory, model_name, max_streams
        self.default_max_tokens = default_max_tokens
        self.limits = limits or ServiceLimits()
        self.clock, self.store, self.scenes = clock, store, scenes
        self.sessions: dict[str, StreamSession] = {}
        self._lock = threading.Lock()
        self._answer_slots = threading.BoundedSemaphore(self.limits.max_concurrent_answers)
        self.answers_first = AnswersFirst()
        self.holds_all = store is None or reopen_stored  # every stream is in `sessions`
        if store is not None and reopen_stored:
            self._reopen_stored()

    def _settings(self, record: StreamRecord) -> StreamSettings:
        kv = None if self.store is None else self.store.kv_dir(record.stream_id)
        return StreamSettings(record.stream_id, kv, record.max_blocks, record.ram_budget_mb)

    def _session(self, record: StreamRecord, memory) -> StreamSession:
        return StreamSession(record.stream_id, memory, self.limits.max_frame_pixels, self.limits.max_frames_per_s,
                             self.clock, record, self.store, self.answers_first)

    def _reopen_stored(self) -> None:
        records = self.store.records()
        if len(records) > self.max_streams:
            raise ConfigError(f"--store {self.store.root} holds {len(records)} streams, more than --max-streams {self.max_streams}",
                              f"Start the server with --max-streams {len(records)} or more")
        for record in records:
            self.sessions[record.stream_id] = self._reopen(record)

    def _reopen(self, record: StreamRecord) -> StreamSession:
        """The session of a stored stream, its memory resumed from the store."""
        try:
            memory = self.make_memory(self._settings(record))
        except MemstreamError as exc:
            raise ConfigError(f"stream {record.stream_id!r} in {self.store.stream_dir(record.stream_id)} cannot be "
                              f"reopened: {exc.what}", exc.fix) from exc
        log.info("stream %s reopened from %s: %d frames", record.stream_id, self.store.root, record.frames_seen)
        return self._session(record, memory)

    def attach(self, stream_id: str) -> StreamSession:
        """The stream's session, its memory reopened from the store when this server does not hold
        it yet (404 when the store has no such stream)."""
        with self._lock:
            session = self.sessions.get(check_stream_id(stream_id))
            if session is not None:
                return session
            record = None if self.store is None else self.store.record(stream_id)
            if record is None:
                raise stream_not_found(stream_id)
            session = self.sessions[stream_id] = self._reopen(record)
            return session

    def detach(self, stream_id: str) -> None:
        """Close the stream's memory here, keeping it in the store (another server may attach it)."""
        with self._lock:
            session = self.sessions.pop(stream_id, None)
        if session is not None:
            with session.lock:  # after the frame being stored, if any
                session.memory.close()

    def _counted(self, owner: str | None) -> tuple[int, int]:
        """Streams open, and those of ``owner``: over the whole store when servers share it."""
        if self.holds_all:
            owners = [s.owner for s in self.sessions.values()]
        else:
            owners = [r.owner for r in self.store.records()]
        return len(owners), sum(o == owner for o in owners)

    def _discard(self, session: StreamSession) -> None:
        """Release a stream that has left ``sessions``: close its memory, delete its store."""
        try:
            session.memory.close()
        finally:
            if self.store is not None:
                self.store.delete(session.stream_id)

    def expire_idle(self) -> list[str]:
        """Close and delete the streams idle for longer than ``limits.idle_timeout_s``; return their ids."""
        timeout = self.limits.idle_timeout_s
        if timeout is None:
            return []
        now = self.clock()
        with self._lock:
            idle = [s for s in self.sessions.values() if now - s.last_active_s > timeout]
            for session in idle:
                del self.sessions[session.stream_id]
        for session in idle:
            log.info("stream %s idle for over %g s: closed", session.stream_id, timeout)
            self._discard(session)
        return [session.stream_id for session in idle]

    def open_stream(self, stream_id: Any = None, owner: str | None = None, max_blocks: Any = None,
                    ram_budget_mb: Any = None, scene: Any = UNSET) -> str:
        """Open a stream under ``stream_id`` (checked) or a fresh random id; return the id.

        Args:
            owner: the API key id it belongs to (None on a server without keys).
            max_blocks, ram_budget_mb: the client's budgets for its memory, at most the server's
                (``limits.stream_max_blocks`` / ``stream_ram_budget_mb``, also the defaults).
            scene: the name of the scene memory to ground its answers on; unset: the server's only
                scene, if it has exactly one; None: none.
        """
        stream_id = uuid.uuid4().hex[:12] if stream_id is None else check_stream_id(stream_id)
        limits = self.limits
        max_blocks = _budget(max_blocks, limits.stream_max_blocks, "max_blocks", integer=True)
        ram_budget_mb = _budget(ram_budget_mb, limits.stream_ram_budget_mb, "ram_budget_mb", integer=False)
        scene = self._scene_binding(scene)
        if ram_budget_mb is not None and self.store is None:
            raise ServiceError("ram_budget_mb needs a disk tier, and this server keeps streams in RAM only",
                               "Drop ram_budget_mb (bound the stream with max_blocks), or start the server with --store DIR",
                               param="ram_budget_mb", code="invalid_budget")
        self.expire_idle()  # an idle stream gives its slot up to a new one
        with self._lock:
            if stream_id in self.sessions:
                raise ServiceError(f"stream {stream_id!r} already exists", "Use another stream_id or DELETE it first", 409,
                                   param="stream_id", code="stream_exists")
            total, owned = self._counted(owner)
            if total >= self.max_streams:
                raise ServiceError(f"{self.max_streams} streams are open", "Close one (DELETE /v1/streams/ID) first", 429,
                                   code="too_many_streams")
            per_key = limits.max_streams_per_key
            if owner is not None and per_key is not None and owned >= per_key:
                raise ServiceError(f"this API key holds {per_key} streams, the most one key may",
                                   "Close one of them (DELETE /v1/streams/ID) first", 429, code="too_many_streams_for_key")
            record = StreamRecord(stream_id, owner, max_blocks, ram_budget_mb, scene=scene)
            if self.store is not None:
                try:
                    self.store.create(record)
                except FileExistsError:
                    raise ServiceError(f"stream {stream_id!r} is being deleted, or its folder is in the store already",
                                       "Use another stream_id, or retry shortly", 409, param="stream_id",
                                       code="stream_exists") from None
            try:
                memory = self.make_memory(self._settings(record))
            except ValueError as exc:  # the budgets against the memory's own config (max_blocks >= window)
                self._drop_stored(stream_id)
                raise ServiceError(f"the stream's memory cannot be made: {exc}", "Ask for a larger max_blocks, or none",
                                   param="max_blocks", code="invalid_budget") from exc
            except BaseException:
                self._drop_stored(stream_id)
                raise
            self.sessions[stream_id] = self._session(record, memory)
            return stream_id

    def _drop_stored(self, stream_id: str) -> None:
        if self.store is not None:
            self.store.delete(stream_id)

    def session(self, stream_id: Any, owner: str | None = None) -> StreamSession:
        """The stream ``stream_id`` of ``owner``; another key's stream is "not found" (404), as a
        stream that does not exist, so ids reveal nothing across keys."""
        session = self.sessions.get(check_stream_id(stream_id))
        if session is None or session.owner != owner:
            raise stream_not_found(stream_id)
        return session

    def add_frame(self, stream_id: str, image: bytes, timestamp_s: float | None, owner: str | None = None) -> int:
        """Store one JPEG/PNG frame on the stream; return its frames stored so far."""
        return self.session(stream_id, owner).add_frame(image, timestamp_s)

    def describe(self, stream_id: str, owner: str | None = None) -> dict[str, Any]:
        """The stream's memory summary (frames, window, bytes per tier) and the scene it is bound to."""
        session = self.session(stream_id, owner)
        return {**session.memory.memory_summary(), "scene": session.record.scene}

    def _scene_binding(self, value: Any) -> str | None:
        """The scene a new stream is bound to (see :meth:`open_stream`); a 400 for one not served."""
        if value is UNSET:
            return None if self.scenes is None else self.scenes.default()
        if value is None:
            return None
        if self.scenes is None:
            raise ServiceError("this server serves no scene memory", 'Drop "scene", or start the server with '
                               "memstream serve --scene NAME=RUN_DIR", param="scene", code="scene_not_found")
        return self.scenes.check(value)

    def _grounded(self, session: StreamSession, question: str) -> tuple[str, dict[str, Any]]:
        """The question the model is asked (after its scene's facts, for a bound stream) and what the
        response lists of them (``{"scene", "facts"}``, empty for an unbound stream)."""
        name = session.record.scene
        if name is None:
            return question, {}
        if self.scenes is None:
            raise ServiceError(f"the stream is bound to the scene {name!r}, and this server serves no scene",
                               f"Start the server with --scene {name}=RUN_DIR, or open a new stream", 409,
                               param="scene", code="scene_not_served")
        from memstream.streaming.videomem.grounding import grounded_question

        facts = self.scenes.facts(name, question)
        return grounded_question(question, facts), {"scene": name, "facts": facts}

    def list_streams(self, owner: str | None = None) -> list[dict[str, Any]]:
        """The streams of ``owner`` (every stream on a server without keys)."""
        if not self.holds_all:  # the store lists every server's streams
            return [r.listing(persistent=True) for r in self.store.records() if r.owner == owner]
        self.expire_idle()
        with self._lock:
            sessions = [s for s in self.sessions.values() if s.owner == owner]
        return [session.listing() for session in sessions]

    def close_stream(self, stream_id: str, owner: str | None = None) -> None:
        """Close the stream and delete what it stored."""
        session = self.session(stream_id, owner)
        with self._lock:
            if self.sessions.pop(session.stream_id, None) is None:
                return  # closed meanwhile by another request or the idle sweep
        self._discard(session)

    def close(self) -> None:
        """Close every stream's memory, keeping what the store holds (a clean shutdown)."""
        with self._lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            session.memory.close()

    def _answer_slot(self) -> None:
        """Take one of ``limits.max_concurrent_answers`` slots (release with ``_answer_slots.release``)."""
        if not self._answer_slots.acquire(blocking=False):
            raise ServiceError(
                f"{self.limits.max_concurrent_answers} answers are being generated",
                "Retry shortly, or start the server with a higher --max-concurrent-answers",
                429, code="too_many_answers", retry_after_s=1.0,
            )

    def complete(self, request: ChatRequest, cancel: threading.Event | None = None, owner: str | None = None) -> dict[str, Any]:
        """A ``chat.completion`` for a non-streaming request; setting ``cancel`` abandons it."""
        session = self.session(request.stream_id, owner)
        session.touch()
        question, grounding = self._grounded(session, request.question)
        self._answer_slot()
        deadline = _Deadline(cancel, self.limits.answer_timeout_s)
        try:
            with self.answers_first.answering():
                answer = session.memory.ask(question, request.sampling, cancel=deadline)
        except GenerationCancelled as exc:
            raise deadline.refusal(exc) from exc
        finally:
            self._answer_slots.release()
        body = completion(answer, self.model_name)
        body["memstream"].update(grounding)
        return body

    def complete_stream(self, request: ChatRequest, cancel: threading.Event | None = None,
                        owner: str | None = None) -> Iterator[str]:
        """SSE lines (``data: {...}\\n\\n``) of a streaming request, ending with ``data: [DONE]``.

        Bad requests raise before the first line, so the caller can still answer with an error status.
        Setting ``cancel`` (the client left) stops generation before its next token.
        """
        session = self.session(request.stream_id, owner)
        session.touch()
        question, grounding = self._grounded(session, request.question)
        session.memory.check_question(question)  # bad input fails before the first event
        self._answer_slot()
        pieces: queue.Queue = queue.Queue()
        done = object()
        result: dict[str, Any] = {}
        deadline = _Deadline(cancel, self.limits.answer_timeout_s)

        def work() -> None:
            try:
                with self.answers_first.answering():
                    result["answer"] = session.memory.ask(question, request.sampling, on_text=pieces.put,
                                                          cancel=deadline)
            except GenerationCancelled as exc:
                result["error"] = deadline.refusal(exc)
            except BaseException as exc:  # reported as the last event
                result["error"] = exc
            finally:
                self._answer_slots.release()
                pieces.put(done)

        threading.Thread(target=work, name=f"memstream-answer-{session.stream_id}", daemon=True).start()
        return self._events(pieces, done, result, request.include_usage, grounding)

    def _events(self, pieces: queue.Queue, done: object, result: dict, include_usage: bool,
                grounding: dict[str, Any] | None = None) -> Iterator[str]:
        chunk_id, created = new_completion_id(), int(time.time())

        def chunk(choices: list, **extra) -> str:
            body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": self.model_name,
                    "choices": choices, **extra}
            return f"data: {json.dumps(body)}\n\n"

        def choice(delta: dict, finish: str | None = None) -> list:
            return [{"index": 0, "delta": delta, "finish_reason": finish}]

        yield chunk(choice({"role": "assistant"}))
        while (piece := pieces.get()) is not done:
            yield chunk(choice({"content": piece}))
        if "error" in result:
            error = result["error"]
            if not isinstance(error, MemstreamError):
                log.error("answer failed", exc_info=error)
            yield f"data: {json.dumps(error_body(error))}\n\n"
        else:
            answer = result["answer"]
            yield chunk(choice({}, finish_reason(answer)), memstream={**provenance(answer), **(grounding or {})})
            if include_usage:
                yield chunk([], usage=usage(answer))
        yield "data: [DONE]\n\n"


class _Deadline(threading.Event):
    """An answer's cancel event: set when the client leaves (``client``, set from outside) or, as
    read by the decoding loop's ``is_set()``, once ``seconds`` have passed since the answer was
    asked. Reading the clock where generation checks it makes the deadline exact, with no timer
    thread that a loaded machine might run late."""

    def __init__(self, client: threading.Event | None, seconds: float | None) -> None:
        super().__init__()
        self.client, self.seconds, self.expired = client or threading.Event(), seconds, False
        self._until = None if seconds is None else time.monotonic() + seconds

    def is_set(self) -> bool:
        if self.client.is_set():
            return True
        if self._until is not None and time.monotonic() >= self._until:
            self.expired = True
        return self.expired

    def set(self) -> None:
        self.client.set()

    def refusal(self, exc: GenerationCancelled) -> MemstreamError:
        """What a cancelled answer reports: 504 past the deadline, else the cancellation itself."""
        if not self.expired:
            return exc
        return ServiceError(f"the answer was still generating after the server's limit of {self.seconds:g} s",
                            "Ask for fewer max_tokens, or start the server with a larger --answer-timeout-s",
                            504, code="deadline_exceeded")


def _budget(value: Any, cap: float | None, name: str, integer: bool) -> Any:
    """A client's memory budget: ``cap`` when not given, else a positive number no larger than ``cap``."""
    if value is None:
        return cap
    # finite_number: an integer past float range (10**400) is no number of megabytes (float() overflows)
    kind_ok = isinstance(value, int) if integer else finite_number(value) is not None
    if isinstance(value, bool) or not kind_ok or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ServiceError(f"{name} {json.dumps(value)[:60]} is not {kind}", f"Send {name} as {kind}, or leave it out",
                           param=name, code="invalid_budget")
    if cap is not None and value > cap:
        shown = f"{value:g}" if isinstance(value, float) else str(value)[:30]  # {:g} of a huge int overflows
        raise ServiceError(f"{name} {shown} is over the server's limit of {cap:g}", f"Ask for at most {cap:g}",
                           param=name, code="invalid_budget")
    return value
