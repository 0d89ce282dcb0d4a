"""A streaming video QA service: frames in over HTTP or a WebSocket, OpenAI-style answers out.

One process holds one Video-LLM and one video memory per stream. Frames and questions for a stream
may arrive concurrently; a question sees the frames stored when it was asked and its answer says
which stream time that is. ``memstream serve --model ...`` runs it with uvicorn.

Endpoints (OpenAI's chat-completions shape, with the ``stream_id`` extension the video realtime
proposals for vLLM use; frame events named as in vLLM's ``input_video_frame.append``):

* ``POST /v1/streams`` ``{"stream_id": "cam0"}`` (id optional) -> ``{"stream_id": ...}``
* ``POST /v1/streams/{id}/frames?timestamp_s=12.5`` with a JPEG/PNG body -> ``{"frames_seen": n}``
* ``WS /v1/streams/{id}/frames``: send ``{"type": "input_video_frame.append", "image": <base64>,
  "timestamp_s": 12.5}``, receive ``{"type": "input_video_frame.committed", "frames_seen": n}``
  (or ``{"type": "error", "message": ...}``; the socket stays open)
* ``POST /v1/chat/completions`` ``{"stream_id": "cam0", "messages": [{"role": "user", "content":
  "What happened?"}], "stream": true, "max_tokens": 64}`` -> a ``chat.completion`` (or SSE
  ``chat.completion.chunk`` events ending with ``data: [DONE]``); the completion carries
  ``memstream: {covered_until_s, frames_seen, retrieved_frames}``
* ``GET /v1/streams/{id}`` (memory summary), ``DELETE /v1/streams/{id}``, ``GET /v1/models``

Errors are ``{"error": {"message": "<what>. <fix>", "type": ...}}`` with status 400 (bad input),
404 (unknown stream) or 409 (stream id taken).

Scaling past one process: run one service per GPU and route every request of a stream to the same
replica (its KV lives there), e.g. Ray Serve with session-affinity routing on ``stream_id``.

(No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
definition time, and ``Request``/``WebSocket`` are imported inside :func:`create_app`.)
"""


import base64
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from memstream.streaming.errors import MemstreamError
from memstream.streaming.types import Frame
from memstream.streaming.videomem.generation import SamplingConfig
from memstream.streaming.videomem.stage import answer_record


class ServiceError(MemstreamError):
    """A request the service refuses; ``status`` is the HTTP status."""

    def __init__(self, what: str, fix: str | None = None, status: int = 400) -> None:
        super().__init__(what, fix)
        self.status = status


class StreamSession:
    """One stream's memory and its frame counter."""

    def __init__(self, stream_id: str, memory) -> None:
        self.stream_id, self.memory = stream_id, memory
        self.lock = threading.Lock()  # frames of one stream are stored in arrival order
        self.next_index = 0
        self.started_s = time.monotonic()

    def add_frame(self, image: bytes, timestamp_s: float | None) -> int:
        rgb = decode_image(image)
        with self.lock:
            t = time.monotonic() - self.started_s if timestamp_s is None else float(timestamp_s)
            self.memory.update(Frame(index=self.next_index, timestamp_s=t, rgb=rgb, source_id=self.stream_id))
            self.next_index += 1
            return self.next_index


def decode_image(data: bytes) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of JPEG/PNG bytes; ServiceError when they are not an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ServiceError("the frame is not a decodable image", "Send JPEG or PNG bytes")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class VideoQAService:
    """Streams and their memories, independent of the web framework (tested directly and through
    :func:`create_app`).

    Args:
        make_memory: builds a fresh video memory for a new stream (all share one loaded model).
        model_name: reported by ``/v1/models`` and in completions.
        max_streams: refuse new streams past this many.
        default_max_tokens: answer length when a request gives no ``max_tokens``.
    """

    def __init__(self, make_memory: Callable[[], Any], model_name: str, max_streams: int = 16, default_max_tokens: int = 128) -> None:
        self.make_memory, self.model_name, self.max_streams = make_memory, model_name, max_streams
        self.default_max_tokens = default_max_tokens
        self.sessions: dict[str, StreamSession] = {}
        self._lock = threading.Lock()

    def open_stream(self, stream_id: str | None = None) -> str:
        with self._lock:
            stream_id = stream_id or uuid.uuid4().hex[:12]
            if stream_id in self.sessions:
                raise ServiceError(f"stream {stream_id!r} already exists", "Use another stream_id or DELETE it first", 409)
            if len(self.sessions) >= self.max_streams:
                raise ServiceError(f"{self.max_streams} streams are open", "Close one (DELETE /v1/streams/ID) first", 429)
            self.sessions[stream_id] = StreamSession(stream_id, self.make_memory())
            return stream_id

    def session(self, stream_id: str) -> StreamSession:
        try:
            return self.sessions[stream_id]
        except KeyError:
            raise ServiceError(f"no stream {stream_id!r}", "Create it with POST /v1/streams", 404) from None

    def close_stream(self, stream_id: str) -> None:
        session = self.session(stream_id)
        with self._lock:
            self.sessions.pop(stream_id, None)
        session.memory.close()

    @staticmethod
    def question_of(request: dict) -> str:
        """The last user message's text (string content or OpenAI content parts)."""
        for message in reversed(request.get("messages") or []):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    content = " ".join(part.get("text", "") for part in content if part.get("type") == "text")
                return content if isinstance(content, str) else ""
        raise ServiceError("the request has no user message", 'Send messages: [{"role": "user", "content": "..."}]')

    def sampling_of(self, request: dict) -> SamplingConfig:
        try:
            temperature = request.get("temperature")
            return SamplingConfig(
                max_new_tokens=int(request.get("max_tokens") or request.get("max_completion_tokens") or self.default_max_tokens),
                do_sample=bool(temperature),
                temperature=float(temperature or 1.0),
                top_p=request.get("top_p"),
                seed=request.get("seed"),
            )
        except (TypeError, ValueError) as exc:
            raise ServiceError(f"invalid sampling parameters: {exc}", "See the OpenAI chat-completions parameters") from None

    def _stream_of(self, request: dict) -> StreamSession:
        stream_id = request.get("stream_id")
        if not stream_id:
            raise ServiceError("the request names no stream_id", "Add \"stream_id\" (from POST /v1/streams) to the request")
        return self.session(stream_id)

    def complete(self, request: dict) -> dict:
        """A ``chat.completion`` for a non-streaming request."""
        session = self._stream_of(request)
        answer = session.memory.ask(self.question_of(request), self.sampling_of(request))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}],
            "usage": {"completion_tokens": int(answer.token_ids.numel())},
            "memstream": _provenance(answer),
        }

    def complete_stream(self, request: dict) -> Iterator[str]:
        """SSE lines (``data: {...}\\n\\n``) of a streaming request, ending with ``data: [DONE]``.

        Bad requests raise before the first line, so the caller can still answer with an error status.
        """
        session = self._stream_of(request)
        question, sampling = self.question_of(request), self.sampling_of(request)
        session.memory.check_question(question)  # bad input fails before the first event
        pieces: queue.Queue = queue.Queue()
        done = object()
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["answer"] = session.memory.ask(question, sampling, on_text=pieces.put)
            except BaseException as exc:  # reported as the last event
                result["error"] = exc
            finally:
                pieces.put(done)

        threading.Thread(target=work, name=f"memstream-answer-{session.stream_id}", daemon=True).start()
        return self._events(pieces, done, result)

    def _events(self, pieces: queue.Queue, done: object, result: dict) -> Iterator[str]:
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex[:16]}", int(time.time())

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": self.model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(body)}\n\n"

        yield chunk({"role": "assistant"})
        while (piece := pieces.get()) is not done:
            yield chunk({"content": piece})
        if "error" in result:
            error = result["error"]
            message = error.one_line() if isinstance(error, MemstreamError) else f"{type(error).__name__}: {error}"
            yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
        else:
            yield chunk({}, "stop", memstream=_provenance(result["answer"]))
        yield "data: [DONE]\n\n"


def _provenance(answer) -> dict:
    record = answer_record(answer)
    return {key: record[key] for key in ("covered_until_s", "frames_seen", "retrieved_frames", "retrieval", "time_to_first_token_s")}


def create_app(service: VideoQAService):
    """The FastAPI application around ``service`` (needs the ``serve`` extra)."""
    try:
        from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
        from fastapi.responses import JSONResponse, StreamingResponse
        from starlette.concurrency import run_in_threadpool
    except ImportError as exc:
        raise MemstreamError("the service needs fastapi and uvicorn", 'Install them with: pip install "memstream[serve]"') from exc

    app = FastAPI(title="memstream video QA", version="1")

    @app.exception_handler(MemstreamError)
    async def refuse(_request, exc: MemstreamError):
        status = getattr(exc, "status", 400)
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return JSONResponse({"error": {"message": exc.one_line(), "type": kind}}, status_code=status)

    async def body_json(request: Request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            raise ServiceError("the request body is not JSON", "Send a JSON object") from None
        if not isinstance(data, dict):
            raise ServiceError("the request body is not a JSON object", "Send a JSON object")
        return data

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": service.model_name, "object": "model", "owned_by": "memstream"}]}

    @app.post("/v1/streams")
    async def open_stream(request: Request) -> dict:
        raw = await request.body()
        data = await body_json(request) if raw else {}
        return {"stream_id": service.open_stream(data.get("stream_id"))}

    @app.get("/v1/streams/{stream_id}")
    def describe(stream_id: str) -> dict:
        return {"stream_id": stream_id, **service.session(stream_id).memory.memory_summary()}

    @app.delete("/v1/streams/{stream_id}")
    def close(stream_id: str) -> dict:
        service.close_stream(stream_id)
        return {"stream_id": stream_id, "deleted": True}

    @app.post("/v1/streams/{stream_id}/frames")
    async def add_frame(stream_id: str, request: Request, timestamp_s: float | None = None) -> dict:
        session = service.session(stream_id)
        return {"frames_seen": await run_in_threadpool(session.add_frame, await request.body(), timestamp_s)}

    @app.websocket("/v1/streams/{stream_id}/frames")
    async def frames_socket(socket: WebSocket, stream_id: str) -> None:
        await socket.accept()
        try:
            while True:
                try:
                    event = json.loads(await socket.receive_text())
                    if event.get("type") != "input_video_frame.append":
                        raise ServiceError(f"unknown event type {event.get('type')!r}", "Send input_video_frame.append events")
                    image = base64.b64decode(event.get("image") or "", validate=True)
                    seen = await run_in_threadpool(service.session(stream_id).add_frame, image, event.get("timestamp_s"))
                    await socket.send_json({"type": "input_video_frame.committed", "frames_seen": seen})
                except (MemstreamError, ValueError) as exc:  # binascii.Error is a ValueError
                    message = exc.one_line() if isinstance(exc, MemstreamError) else f"bad event: {exc}"
                    await socket.send_json({"type": "error", "message": message})
        except WebSocketDisconnect:
            return

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        data = await body_json(request)
        if data.get("stream"):
            events = await run_in_threadpool(service.complete_stream, data)
            return StreamingResponse(events, media_type="text/event-stream")
        return await run_in_threadpool(service.complete, data)

    return app
