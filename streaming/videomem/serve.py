"""A streaming video QA service: frames in over HTTP or a WebSocket, OpenAI-style answers out.

One process holds one Video-LLM and one video memory per stream. Frames and questions for a stream
may arrive concurrently; a question sees the frames stored when it was asked and its answer says
which stream time that is. ``memstream serve --model ...`` runs it with uvicorn.

Endpoints (OpenAI's chat-completions shape, with the ``stream_id`` extension the video realtime
proposals for vLLM use; frame events named as in vLLM's ``input_video_frame.append``):

* ``POST /v1/streams`` ``{"stream_id": "cam0", "max_blocks": 600}`` (all optional; ids
  ``[A-Za-z0-9._-]{1,128}``; ``max_blocks`` and ``ram_budget_mb`` at most the server's) ->
  ``{"stream_id": ...}``; ``GET /v1/streams`` lists each stream's frames, covered time and bytes.
  With API keys, a stream belongs to the key that opened it: other keys get 404 for it
* ``POST /v1/streams/{id}/frames?timestamp_s=12.5`` with a JPEG/PNG body -> ``{"frames_seen": n}``
* ``WS /v1/streams/{id}/frames``: send ``{"type": "input_video_frame.append", "image": <base64>,
  "timestamp_s": 12.5}``, receive ``{"type": "input_video_frame.committed", "frames_seen": n}``
  or, for any bad message (a binary one, JSON that is not an object, a bad frame),
  ``{"type": "error", "message", "param", "code", "status"}``; the socket stays open either way
* ``POST /v1/chat/completions`` ``{"stream_id": "cam0", "messages": [{"role": "user", "content":
  "What happened?"}], "stream": true, "max_tokens": 64}`` -> a ``chat.completion`` (or SSE
  ``chat.completion.chunk`` events ending with ``data: [DONE]``) with ``finish_reason`` ``stop`` or
  ``length``, ``usage``, and ``memstream: {covered_until_s, frames_seen, retrieved_frames}``
* ``GET /v1/streams/{id}`` (memory summary), ``DELETE /v1/streams/{id}``, ``GET /v1/models``,
  ``GET /health``
* ``GET /v1/tools`` (OpenAI function-calling schemas) and ``POST /v1/tools/{name}``
  ``{"arguments": {...}, "scene": "lab"}`` -> ``{"name", "result"}``: with ``--scene RUN_DIR`` (or
  several ``--scene NAME=RUN_DIR``), the scene memory's queries (``where``, ``last_moved``, ...) for
  any LLM client's agent to call, as ReMEmbR's agent calls its retrieval tools
* grounded answers: a stream opened with ``"scene": "lab"`` (or on a server with one scene) gets
  that scene memory's facts before each question and lists them in ``memstream.facts``; clients
  name scenes, never folders (:mod:`~memstream.streaming.videomem.service.scenes`)

With ``--store DIR`` every stream's memory lives in ``DIR`` (:mod:`~memstream.streaming.videomem.service.persist`):
after a crash or a restart the streams are listed again and answer from what they stored.

Who may connect is :mod:`~memstream.streaming.videomem.service.access`'s (API keys, Host and Origin
allow-lists); what a request may ask is :mod:`~memstream.streaming.videomem.service.limits`'s.
Every error is OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status.

Scaling past one process: run one service per GPU and route every request of a stream to the same
replica (its KV lives there), e.g. Ray Serve with session-affinity routing on ``stream_id``.

(No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
definition time, and ``Request``/``WebSocket`` are imported inside :func:`create_app`.)
"""


import asyncio
import base64
import binascii
import contextlib
import json
import logging
import threading

from memstream.streaming.errors import MemstreamError
from memstream.streaming.videomem.service.access import KEY_ID_STATE, AccessMiddleware, AccessPolicy
from memstream.streaming.videomem.service.chat import parse_chat_request
from memstream.streaming.videomem.service.errors import ServiceError, error_body, error_status
from memstream.streaming.videomem.service.images import decode_frame
from memstream.streaming.videomem.service.limits import BodyLimitMiddleware, check_stream_id, parse_timestamp
from memstream.streaming.videomem.service.openapi import document
from memstream.streaming.videomem.service.scenes import UNSET
from memstream.streaming.videomem.service.streams import StreamSession, VideoQAService

__all__ = ["ServiceError", "StreamSession", "VideoQAService", "create_app", "decode_frame"]

log = logging.getLogger(__name__)


def create_app(service: VideoQAService, access: AccessPolicy | None = None, docs: bool = False, tools=None):
    """The FastAPI application around ``service`` (needs the ``serve`` extra).

    Args:
        service: the streams and their memories.
        access: API keys and Host/Origin allow-lists; loopback only and no key by default.
        docs: serve ``/docs``, ``/redoc`` and ``/openapi.json`` (behind the same access checks).
        tools: a tool set (``tools`` schemas, ``names``, ``call(name, arguments)``) served at
            ``/v1/tools`` for LLM clients to call, e.g. the scene memory's queries; None: the
            service's scenes' (``service.scenes``, a call names one with ``"scene"`` when there are
            several), else none.
    """
    try:
        from fastapi import FastAPI, Request, WebSocket
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, StreamingResponse
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.requests import ClientDisconnect
        from starlette.routing import Match
    except ImportError as exc:
        raise MemstreamError("the service needs fastapi and uvicorn", 'Install them with: pip install "memstream[serve]"') from exc

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        sweeper = asyncio.ensure_future(_sweep_idle_streams(service, run_in_threadpool))
        try:
            yield
        finally:
            sweeper.cancel()
            await run_in_threadpool(service.close)  # memories flushed; a --store keeps the streams

    app = FastAPI(title="memstream video QA", version="1", docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None, openapi_url="/openapi.json" if docs else None, lifespan=lifespan)
    limits = service.limits

    def openapi() -> dict:  # FastAPI's document, with the bodies and refusals the handlers check themselves
        if app.openapi_schema is None:
            app.openapi_schema = document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi

    def refuse(exc: BaseException):
        if error_status(exc) >= 500 and not isinstance(exc, ServiceError):
            log.error("request failed", exc_info=exc)
        headers = exc.headers() if isinstance(exc, ServiceError) else None
        return JSONResponse(error_body(exc), status_code=error_status(exc), headers=headers)

    @app.exception_handler(MemstreamError)
    async def refuse_ours(_request, exc: MemstreamError):
        return refuse(exc)

    @app.exception_handler(HTTPException)
    async def refuse_route(request, exc: HTTPException):  # unknown route, wrong method
        refusal = refuse(ServiceError(f"{exc.detail} ({exc.status_code})", "See GET /v1/models and the routes under /v1/streams",
                                      exc.status_code))
        if exc.status_code == 405:  # Allow (RFC 9110) over every route of the path: Starlette's names only the first
            allowed = {method for route in app.router.routes if getattr(route, "methods", None)
                       and route.matches(request.scope)[0] is Match.PARTIAL for method in route.methods}
            refusal.headers["Allow"] = ", ".join(sorted(allowed))
        return refusal

    @app.exception_handler(RequestValidationError)
    async def refuse_parameters(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return refuse(ServiceError(f"invalid request: {first.get('msg', exc)}", "Fix the named parameter", 400, param=param))

    @app.exception_handler(ClientDisconnect)
    async def client_left(_request, _exc: ClientDisconnect):  # nobody reads this: no 500, no traceback logged
        return refuse(ServiceError("the client disconnected before its request body arrived", "Send the whole body",
                                   400, code="client_disconnected"))

    @app.exception_handler(Exception)
    async def refuse_unexpected(_request, exc: Exception):
        return refuse(exc)

    async def body_json(request: Request) -> dict:
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            raise ServiceError("the request body is not JSON (or is nested too deeply)", "Send a JSON object") from None
        if not isinstance(data, dict):
            raise ServiceError("the request body is not a JSON object", "Send a JSON object")
        return data

    # Probes and the model list run on the event loop itself, never queued behind frames and
    # answers in the thread pool, so they stay fast under load.
    @app.get("/health")
    async def health() -> dict:  # for load balancers and probes (behind the same access checks)
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": service.model_name, "object": "model", "owned_by": "memstream"}]}

    scenes = service.scenes
    schemas = tools if tools is not None else (next(iter(scenes.providers.values())) if scenes and scenes.providers else None)

    @app.get("/v1/tools")
    async def list_tools() -> dict:
        return {"object": "list", "data": schemas.tools if schemas is not None else []}

    @app.post("/v1/tools/{name}")
    async def call_tool(name: str, request: Request) -> dict:
        if schemas is None or name not in schemas.names:
            served = ", ".join(schemas.names) if schemas is not None else "none (start the server with --scene RUN_DIR)"
            raise ServiceError(f"no tool {name[:60]!r}", f"Call one of GET /v1/tools: {served}", 404, code="tool_not_found")
        body = await body_json(request)
        arguments = body.get("arguments", {})
        if not isinstance(arguments, dict):
            raise ServiceError("arguments is not a JSON object", 'Send {"arguments": {...}} as the tool\'s schema says',
                               param="arguments")
        provider = tools if tools is not None else scenes.provider(body.get("scene"))
        result = await run_in_threadpool(provider.call, name, arguments)
        if isinstance(result, dict) and set(result) == {"error"}:
            raise ServiceError(f"{name}: {result['error']}"[:300], "Fix the arguments (GET /v1/tools has the schema)",
                               param="arguments", code="tool_error")
        return {"name": name, "result": result}

    @app.get("/v1/streams")
    def list_streams(request: Request) -> dict:
        return {"object": "list", "data": service.list_streams(_key(request))}

    @app.post("/v1/streams")
    async def open_stream(request: Request) -> dict:
        data = await body_json(request) if await request.body() else {}
        unknown = sorted(set(data) - {"stream_id", "max_blocks", "ram_budget_mb", "scene"})
        if unknown:
            raise ServiceError(f"unknown field {unknown[0]!r:.60}", "Send stream_id, max_blocks, ram_budget_mb and scene only",
                               param=unknown[0][:60])
        opened = await run_in_threadpool(service.open_stream, data.get("stream_id"), _key(request),
                                         data.get("max_blocks"), data.get("ram_budget_mb"), data.get("scene", UNSET))
        return {"stream_id": opened}

    @app.get("/v1/streams/{stream_id}")
    def describe(stream_id: str, request: Request) -> dict:
        return {"stream_id": stream_id, **service.describe(stream_id, _key(request))}

    @app.delete("/v1/streams/{stream_id}")
    def close(stream_id: str, request: Request) -> dict:
        service.close_stream(stream_id, _key(request))
        return {"stream_id": stream_id, "deleted": True}

    @app.post("/v1/streams/{stream_id}/frames")
    async def add_frame(stream_id: str, request: Request, timestamp_s: str | None = None) -> dict:
        check_stream_id(stream_id)
        seconds = parse_timestamp(timestamp_s)
        image, owner = await request.body(), _key(request)
        if hasattr(service, "add_frame_async"):  # a service that awaits remote work (Ray) saves the thread hop
            return {"frames_seen": await service.add_frame_async(stream_id, image, seconds, owner)}
        return {"frames_seen": await run_in_threadpool(service.add_frame, stream_id, image, seconds, owner)}

    @app.websocket("/v1/streams/{stream_id}/frames")
    async def frames_socket(socket: WebSocket, stream_id: str) -> None:
        await socket.accept()
        while (message := await socket.receive())["type"] != "websocket.disconnect":
            try:
                seen = await run_in_threadpool(_socket_frame, service, stream_id, message, limits.max_message_chars,
                                               _key(socket))
                await socket.send_json({"type": "input_video_frame.committed", "frames_seen": seen})
            except MemstreamError as exc:
                error = error_body(exc)["error"]
                await socket.send_json({"type": "error", "message": error["message"], "param": error["param"],
                                        "code": error["code"], "status": error_status(exc)})

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        chat_request = parse_chat_request(await body_json(request), service.model_name, limits, service.default_max_tokens)
        cancel, owner = threading.Event(), _key(request)
        if chat_request.stream:
            events = await run_in_threadpool(service.complete_stream, chat_request, cancel, owner)
            return StreamingResponse(_cancelled_on_exit(events, cancel), media_type="text/event-stream")
        if hasattr(service, "complete_async"):  # remote work (Ray), awaited here: no thread hop
            answer = asyncio.ensure_future(service.complete_async(chat_request, cancel, owner))
        else:
            answer = asyncio.ensure_future(run_in_threadpool(service.complete, chat_request, cancel, owner))
        watcher = asyncio.ensure_future(_cancel_when_client_leaves(request, cancel, answer))
        try:
            return await answer
        finally:
            watcher.cancel()

    app.add_middleware(BodyLimitMiddleware, limit=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.add_middleware(AccessMiddleware, policy=access or AccessPolicy())  # outermost: refused before anything else
    return app


async def _sweep_idle_streams(service: VideoQAService, run_in_threadpool) -> None:
    """Close idle streams (``limits.idle_timeout_s``) while the server runs, checking ten times per
    timeout (at least every second, at most every minute), so an idle stream's memory is released
    even when nobody opens or lists streams."""
    timeout = service.limits.idle_timeout_s
    if timeout is None:
        return
    period_s = min(60.0, max(1.0, timeout / 10))
    while True:
        await asyncio.sleep(period_s)
        try:
            await run_in_threadpool(service.expire_idle)
        except Exception:  # noqa: BLE001 (a failing close is logged; the sweep goes on)
            log.exception("closing idle streams failed")


async def _cancel_when_client_leaves(request, cancel: threading.Event, answer, poll_s: float = 0.05) -> None:
    """Set ``cancel`` once the client of a plain completion disconnects, so its generation stops
    before the next token instead of running to ``max_tokens`` for nobody."""
    while not answer.done():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(poll_s)


async def _cancelled_on_exit(lines, cancel: threading.Event):
    """``lines`` sent from a worker thread; ``cancel`` is set however the response ends. When the
    client disconnects, Starlette cancels the response as soon as the next line is ready, and the
    answer's generation stops before its following token."""
    from starlette.concurrency import iterate_in_threadpool

    try:
        async for line in iterate_in_threadpool(lines):
            yield line
    finally:
        cancel.set()


def _key(connection) -> str | None:
    """The API key id the access middleware accepted the request as (None without keys)."""
    return connection.scope.get("state", {}).get(KEY_ID_STATE)


def _socket_frame(service: VideoQAService, stream_id: str, message: dict, max_chars: int, owner: str | None = None) -> int:
    """Store the frame of one WebSocket message; a :class:`ServiceError` says what is wrong with it."""
    text = message.get("text")
    if text is None:
        raise ServiceError("binary WebSocket messages are not accepted", "Send input_video_frame.append events as JSON text",
                           param="message", code="binary_message")
    if len(text) > max_chars:
        raise ServiceError(f"the message is {len(text):,} characters, over the server's limit of {max_chars:,}",
                           "Send smaller frames or start the server with a larger --max-body-bytes", 413, code="message_too_large")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict):
        raise ServiceError("the message is not a JSON object", 'Send {"type": "input_video_frame.append", "image": ...}',
                           param="message", code="invalid_event")
    if event.get("type") != "input_video_frame.append":
        raise ServiceError(f"unknown event type {event.get('type')!r:.60}", "Send input_video_frame.append events", param="type")
    if not isinstance(event.get("image"), str):
        raise ServiceError("the event has no base64 image string", "Put the JPEG/PNG bytes, base64-encoded, in \"image\"", param="image")
    try:
        image = base64.b64decode(event["image"], validate=True)
    except binascii.Error:
        raise ServiceError("the image is not valid base64", "Encode the JPEG/PNG bytes with standard base64", param="image") from None
    return service.add_frame(check_stream_id(stream_id), image, parse_timestamp(event.get("timestamp_s")), owner)
