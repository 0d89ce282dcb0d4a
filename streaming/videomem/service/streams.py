"""Streams and their memories, independent of the web framework (tested directly and through
:func:`memstream.streaming.videomem.serve.create_app`)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from memstream.streaming.errors import MemstreamError
from memstream.streaming.types import Frame
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
from memstream.streaming.videomem.service.limits import ServiceLimits, check_stream_id

log = logging.getLogger(__name__)


class StreamSession:
    """One stream's memory, its frame counter and clock.

    Frame times must be finite, non-negative and non-decreasing; a frame sent without one is
    stamped with the seconds since the stream was opened. Frames arriving faster than
    ``max_frames_per_s`` (beyond a one-second burst) are refused with 429 before they are decoded.

    Args:
        clock: monotonic seconds (``time.monotonic``; tests pass their own).
    """

    def __init__(self, stream_id: str, memory, max_frame_pixels: int, max_frames_per_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream_id, self.memory, self.max_frame_pixels = stream_id, memory, max_frame_pixels
        self.max_frames_per_s, self.clock = max_frames_per_s, clock
        self.lock = threading.Lock()  # frames of one stream are stored in arrival order
        self.next_index = 0
        self.started_s = self.last_active_s = clock()
        self.first_s: float | None = None
        self.last_s: float | None = None
        self.bytes_received = 0
        self._allowance, self._allowance_at = max_frames_per_s, self.started_s  # token bucket, one second deep

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
        with self.lock:
            self.touch()
            t = self.clock() - self.started_s if timestamp_s is None else timestamp_s
            if self.last_s is not None and t < self.last_s:
                raise ServiceError(
                    f"timestamp_s {t:g} is before the stream's previous frame at {self.last_s:g} s",
                    "Send frames in stream-time order with non-decreasing timestamp_s",
                    param="timestamp_s",
                    code="timestamp_out_of_order",
                )
            self.memory.update(Frame(index=self.next_index, timestamp_s=t, rgb=rgb, source_id=self.stream_id))
            self.first_s = t if self.first_s is None else self.first_s
            self.last_s, self.bytes_received = t, self.bytes_received + len(image)
            self.next_index += 1
            return self.next_index

    def listing(self) -> dict[str, Any]:
        """Frames stored, the stream time they cover (seconds) and the frame bytes received."""
        with self.lock:
            return {"stream_id": self.stream_id, "frames_seen": self.next_index, "covered_from_s": self.first_s,
                    "covered_until_s": self.last_s, "bytes_received": self.bytes_received}


class VideoQAService:
    """Streams and their memories; answers chat requests on them.

    Args:
        make_memory: builds a fresh video memory for a new stream (all share one loaded model).
        model_name: reported by ``/v1/models`` and in completions; requests naming another model
            are refused (404).
        max_streams: refuse new streams past this many.
        default_max_tokens: answer length when a request gives no ``max_tokens``.
        limits: input bounds (body bytes, frame pixels, question characters, ``max_tokens`` cap).
    """

    def __init__(self, make_memory: Callable[[], Any], model_name: str, max_streams: int = 16,
                 default_max_tokens: int = 128, limits: ServiceLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.make_memory, self.model_name, self.max_streams = make_memory, model_name, max_streams
        self.default_max_tokens = default_max_tokens
        self.limits = limits or ServiceLimits()
        self.clock = clock
        self.sessions: dict[str, StreamSession] = {}
        self._lock = threading.Lock()
        self._answer_slots = threading.BoundedSemaphore(self.limits.max_concurrent_answers)

    def expire_idle(self) -> list[str]:
        """Close the streams idle for longer than ``limits.idle_timeout_s``; return their ids."""
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
            session.memory.close()
        return [session.stream_id for session in idle]

    def open_stream(self, stream_id: Any = None) -> str:
        """Open a stream under ``stream_id`` (checked) or a fresh random id; return the id."""
        stream_id = uuid.uuid4().hex[:12] if stream_id is None else check_stream_id(stream_id)
        self.expire_idle()  # an idle stream gives its slot up to a new one
        with self._lock:
            if stream_id in self.sessions:
                raise ServiceError(f"stream {stream_id!r} already exists", "Use another stream_id or DELETE it first", 409,
                                   param="stream_id", code="stream_exists")
            if len(self.sessions) >= self.max_streams:
                raise ServiceError(f"{self.max_streams} streams are open", "Close one (DELETE /v1/streams/ID) first", 429,
                                   code="too_many_streams")
            self.sessions[stream_id] = StreamSession(stream_id, self.make_memory(), self.limits.max_frame_pixels,
                                                     self.limits.max_frames_per_s, self.clock)
            return stream_id

    def session(self, stream_id: Any) -> StreamSession:
        try:
            return self.sessions[check_stream_id(stream_id)]
        except KeyError:
            raise ServiceError(f"no stream {stream_id!r}", "Create it with POST /v1/streams", 404,
                               param="stream_id", code="stream_not_found") from None

    def list_streams(self) -> list[dict[str, Any]]:
        self.expire_idle()
        with self._lock:
            sessions = list(self.sessions.values())
        return [session.listing() for session in sessions]

    def close_stream(self, stream_id: str) -> None:
        session = self.session(stream_id)
        with self._lock:
            self.sessions.pop(session.stream_id, None)
        session.memory.close()

    def _answer_slot(self) -> None:
        """Take one of ``limits.max_concurrent_answers`` slots (release with ``_answer_slots.release``)."""
        if not self._answer_slots.acquire(blocking=False):
            raise ServiceError(
                f"{self.limits.max_concurrent_answers} answers are being generated",
                "Retry shortly, or start the server with a higher --max-concurrent-answers",
                429, code="too_many_answers", retry_after_s=1.0,
            )

    def complete(self, request: ChatRequest, cancel: threading.Event | None = None) -> dict[str, Any]:
        """A ``chat.completion`` for a non-streaming request; setting ``cancel`` abandons it."""
        session = self.session(request.stream_id)
        session.touch()
        self._answer_slot()
        try:
            answer = session.memory.ask(request.question, request.sampling, cancel=cancel)
        finally:
            self._answer_slots.release()
        return completion(answer, self.model_name)

    def complete_stream(self, request: ChatRequest, cancel: threading.Event | None = None) -> Iterator[str]:
        """SSE lines (``data: {...}\\n\\n``) of a streaming request, ending with ``data: [DONE]``.

        Bad requests raise before the first line, so the caller can still answer with an error status.
        Setting ``cancel`` (the client left) stops generation before its next token.
        """
        session = self.session(request.stream_id)
        session.touch()
        session.memory.check_question(request.question)  # bad input fails before the first event
        self._answer_slot()
        pieces: queue.Queue = queue.Queue()
        done = object()
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["answer"] = session.memory.ask(request.question, request.sampling, on_text=pieces.put, cancel=cancel)
            except BaseException as exc:  # reported as the last event
                result["error"] = exc
            finally:
                self._answer_slots.release()
                pieces.put(done)

        threading.Thread(target=work, name=f"memstream-answer-{session.stream_id}", daemon=True).start()
        return self._events(pieces, done, result, request.include_usage)

    def _events(self, pieces: queue.Queue, done: object, result: dict, include_usage: bool) -> Iterator[str]:
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
            yield chunk(choice({}, finish_reason(answer)), memstream=provenance(answer))
            if include_usage:
                yield chunk([], usage=usage(answer))
        yield "data: [DONE]\n\n"
