"""Input bounds of the service: body size, frame pixels, question length, answer length, stream ids,
timestamps. Each is checked before the work it bounds (reading, decoding, tokenizing, generating).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from memstream.streaming.videomem.service.errors import ServiceError, send_error

STREAM_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may ask of the server.

    Attributes:
        max_body_bytes: request bodies (a frame, a chat request) and WebSocket messages (their
            base64 frame decoded), bytes; checked on ``Content-Length`` and while reading.
        max_frame_pixels: width x height of one frame, read from its header before decoding.
            The default, 3840 x 2160, admits a 4K frame.
        max_question_chars: characters of the question, checked before tokenizing.
        max_tokens_cap: the most ``max_tokens`` a request may ask for.
        max_frames_per_s: frames one stream may send per second, in a bucket that holds one second's
            worth (a burst); past it, 429 with ``Retry-After``.
        max_concurrent_answers: answers generated at once over all streams (the model runs one
            decoder pass at a time, so more only queue up); past it, 429 with ``Retry-After``.
        idle_timeout_s: a stream that received no frame and no question for this long is closed
            and deleted (its memory released, its store removed); None keeps it.
        answer_timeout_s: an answer still generating this long after it was asked is stopped
            before its next token (504); None lets it run to ``max_tokens``.
        max_streams_per_key: streams one API key may hold open; None bounds only the total.
        stream_max_blocks: frames a stream's memory keeps (the oldest deleted first), the server's
            default and the most a client may ask for when it opens a stream; None keeps all.
        stream_ram_budget_mb: a stream's RAM tier with ``--store`` (older blocks on disk only),
            the default and the most a client may ask for; None: no bound beyond the blocks kept.
        header_timeout_s: a connection's request head must be complete this long after it opened
            or after its previous response (slowloris); else it is closed
            (:mod:`~memstream.streaming.videomem.service.connections`).
        body_timeout_s: a request body must have arrived this long after the app began reading it;
            else 408.
        max_connections: connections (or requests) at once; past it, 503 (uvicorn's ``limit_concurrency``).
        max_connections_per_client: connections at once from one client address; past it, 429 and closed.
        max_head_bytes: bytes of one request head (request line and headers), counted per read
            while the head is incomplete; past it, 431 and closed. uvicorn's httptools parser has no
            bound (a 48 MB header stalled the event loop for seconds while it was concatenated).
    """

    max_body_bytes: int = 8 << 20
    max_frame_pixels: int = 3840 * 2160
    max_question_chars: int = 8000
    max_tokens_cap: int = 1024
    max_frames_per_s: float = 60.0
    max_concurrent_answers: int = 4
    idle_timeout_s: float | None = 3600.0
    answer_timeout_s: float | None = 300.0
    max_streams_per_key: int | None = None
    stream_max_blocks: int | None = None
    stream_ram_budget_mb: float | None = None
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 1024
    max_connections_per_client: int = 64
    max_head_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_frame_pixels", "max_question_chars", "max_tokens_cap", "max_concurrent_answers",
                     "max_streams_per_key", "stream_max_blocks", "max_connections", "max_connections_per_client",
                     "max_head_bytes"):
            value = getattr(self, name)
            optional = name in ("max_streams_per_key", "stream_max_blocks")
            if (value is None and not optional) or (value is not None and (not isinstance(value, int) or value < 1)):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_frames_per_s", "idle_timeout_s", "answer_timeout_s", "stream_ram_budget_mb", "header_timeout_s",
                     "body_timeout_s"):
            value = getattr(self, name)
            if value is None and name in ("header_timeout_s", "body_timeout_s"):
                raise ValueError(f"{name} must be a positive number, got None")
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.max_frames_per_s is None:
            raise ValueError("max_frames_per_s must be a positive number, got None")

    @property
    def max_message_chars(self) -> int:
        """Longest WebSocket text message: a base64 frame of ``max_body_bytes`` plus the event's JSON."""
        return (self.max_body_bytes + 2) // 3 * 4 + 4096


def check_stream_id(value: Any, param: str = "stream_id") -> str:
    """``value`` if it is a stream id (``[A-Za-z0-9._-]{1,128}``), else a 400 naming ``param``."""
    if isinstance(value, str) and STREAM_ID_PATTERN.fullmatch(value) and value not in (".", ".."):
        return value
    raise ServiceError(
        f"{param} {_shown(value)} is not a stream id",
        "Use 1-128 characters from A-Z a-z 0-9 . _ - (a string)",
        param=param,
        code="invalid_stream_id",
    )


def parse_timestamp(value: Any, param: str = "timestamp_s") -> float | None:
    """Seconds of stream time from a query string or JSON number: finite and non-negative; None
    when not given."""
    if value is None:
        return None
    seconds = finite_number(value, strings=True)
    if seconds is None or seconds < 0:
        raise ServiceError(
            f"{param} {_shown(value)} is not a finite, non-negative number of seconds",
            "Send the frame's stream time in seconds, e.g. 12.5",
            param=param,
            code="invalid_timestamp",
        )
    return seconds


def finite_number(value: Any, strings: bool = False) -> float | None:
    """``value`` as a finite float, or None: for a boolean, a non-number (a string too, unless
    ``strings``), NaN, an infinity, or an integer too large for a float (JSON allows ``1e400``'s
    digits written out, which ``float()`` refuses with an OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str) or (isinstance(value, str) and not strings):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    for kind, name in ((bool, "boolean"), (int | float, "number"), (str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _shown(value: Any) -> str:
    """``value`` as JSON (its repr when it is not JSON), at most 60 characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class BodyLimitMiddleware:
    """ASGI middleware refusing HTTP bodies over ``limit`` bytes: at once when ``Content-Length``
    says so (413, before the app runs), else when the streamed count passes it (the read raises a
    413 :class:`ServiceError`, answered by the app's error handler). A body still incomplete
    ``timeout_s`` after the app began reading it is refused with 408 the same way (a client sending
    a byte a minute holds no connection for long); once it is in, nothing is timed (the app waits
    on ``receive`` for the client's disconnect while it answers)."""

    def __init__(self, app, limit: int, timeout_s: float | None = None) -> None:
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await send_error(send, ServiceError("the Content-Length header is not a number", "Send a valid HTTP request"))
        digits = None if declared is None else declared.lstrip(b"0") or b"0"
        if digits is not None and (len(digits) > len(str(self.limit)) or int(digits) > self.limit):
            # counted in digits first: int() refuses numbers past 4,300 digits (leading zeros too)
            shown = f"{int(digits):,}" if len(digits) <= 30 else f"a {len(digits):,}-digit number of"
            return await send_error(send, self.too_large(shown))
        received, complete, deadline = 0, False, None

        async def counted():
            nonlocal received, complete, deadline
            if complete or self.timeout_s is None:
                message = await receive()
            else:
                loop = asyncio.get_running_loop()
                deadline = deadline or loop.time() + self.timeout_s
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise ServiceError(
                        f"the request body did not arrive within {self.timeout_s:g} s ({received:,} bytes came)",
                        "Send the whole body at once (or start the server with a larger --body-timeout-s)",
                        408, code="request_timeout") from None
            complete = complete or message.get("type") != "http.request" or not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > self.limit:
                raise self.too_large(f"more than {received:,}")
            return message

        await self.app(scope, counted, send)

    def too_large(self, size: str) -> ServiceError:
        return ServiceError(
            f"the request body is {size} bytes, over the server's limit of {self.limit:,}",
            "Send less (smaller frames) or start the server with a larger --max-body-bytes",
            413,
            code="request_too_large",
        )

