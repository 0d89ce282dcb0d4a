"""The service's one error type and OpenAI's error shape.

Every refusal, whatever raised it (a route, the access check, a body limit, FastAPI's own routing),
reaches the client as ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status, the
shape OpenAI's API and clients use; never FastAPI's ``{"detail": ...}``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from memstream.streaming.errors import MemstreamError

#: OpenAI's error ``type`` for each status the service answers with.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "server_error",
}


class ServiceError(MemstreamError):
    """A request the service refuses.

    Args:
        what: the problem, naming the offending value.
        fix: what the client should do about it.
        status: the HTTP status (400 bad input, 401 no/wrong key, 403 refused origin or host,
            404 unknown stream or model, 409 id taken, 413 too large, 415 not JPEG/PNG, 429 full,
            504 an answer past its deadline).
        param: the request field at fault (``"messages[0].content"``, ``"stream_id"``), or None.
        code: a machine-readable reason (``"invalid_api_key"``, ``"model_not_found"``), or None.
        retry_after_s: for a 429, when to try again (sent as ``Retry-After``, whole seconds), or None.
    """

    def __init__(self, what: str, fix: str | None = None, status: int = 400, param: str | None = None,
                 code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(what, fix)
        self.status, self.param, self.code, self.retry_after_s = status, param, code, retry_after_s

    def headers(self) -> dict[str, str]:
        """HTTP headers of the refusal: ``Retry-After`` (whole seconds, at least 1) when known."""
        return {} if self.retry_after_s is None else {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


def error_status(exc: BaseException) -> int:
    """The HTTP status of ``exc``: its own for a :class:`ServiceError`, 400 for any other
    :class:`MemstreamError` (a question the memory refuses), 500 for everything else."""
    if isinstance(exc, ServiceError):
        return exc.status
    return 400 if isinstance(exc, MemstreamError) else 500


def error_body(exc: BaseException) -> dict[str, Any]:
    """``{"error": {...}}`` in OpenAI's shape for any exception (an unexpected one says only its class,
    so no internals leak)."""
    status = error_status(exc)
    if isinstance(exc, MemstreamError):
        message = exc.one_line()
    else:
        message = f"internal error ({type(exc).__name__}). The server log has the details; retry or report it"
    param = getattr(exc, "param", None)
    return {
        "error": {
            "message": _encodable(message),
            "type": ERROR_TYPES.get(status, "invalid_request_error"),
            "param": None if param is None else _encodable(param),
            "code": getattr(exc, "code", None),
        }
    }


def _encodable(text: str) -> str:
    """``text`` with lone surrogates escaped (``\\ud800``): a refusal may quote what the client sent
    (an unknown field's name), and a JSON ``"\\ud800"`` escape decodes to a string that UTF-8, and so
    the response, cannot carry."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def send_error(send, error: ServiceError, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer an HTTP request from ASGI middleware (before any route runs) with ``error``."""
    body = json.dumps(error_body(error)).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": error.status, "headers": head})
    await send({"type": "http.response.body", "body": body})
