"""The service's OpenAPI document (``--docs``), made to say what the service really does.

FastAPI derives the document from the handlers, which read their bodies themselves (so that size,
JSON depth and fields are checked by the service's own limits, with its own errors): left alone it
documents no request bodies, 422 for bad parameters (the service answers 400) and none of the
refusals. This fills those in, so clients generated from the document, and schema-driven testers,
know the stream id's pattern, the bodies and every status a request may get, each with OpenAI's
error body.
"""

from __future__ import annotations

from typing import Any

from memstream.streaming.videomem.service.errors import ERROR_TYPES

#: OpenAI's error body, which every refusal carries.
ERROR_BODY: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string", "enum": sorted(set(ERROR_TYPES.values()))},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}

STREAM_ID: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$", "not": {"enum": [".", ".."]}}

#: Statuses any request may get: bad input, no or wrong key, refused Host/Origin, a body too slow
#: or too large, a client over its connection cap, a server at its connection cap.
COMMON = {400: "invalid request", 401: "no or wrong API key", 403: "Host or Origin not allowed",
          408: "the body did not arrive in time", 413: "the body is too large",
          429: "too many connections from this client", 503: "the server is at its connection limit"}

#: Further statuses per operation (method, path).
EXTRA: dict[tuple[str, str], dict[int, str]] = {
    ("post", "/v1/tools/{name}"): {404: "no such tool", 503: "the scene cannot be read now"},
    ("post", "/v1/streams"): {409: "the stream id is taken, or its folder is still in the store",
                              429: "too many streams (server or API key)"},
    ("get", "/v1/streams/{stream_id}"): {404: "no such stream (or another key's)"},
    ("delete", "/v1/streams/{stream_id}"): {404: "no such stream (or another key's)"},
    ("post", "/v1/streams/{stream_id}/frames"): {
        404: "no such stream (or another key's)",
        413: "the body or the frame's pixels are too large", 415: "not a JPEG or PNG image",
        429: "the stream's frame rate is exceeded (Retry-After)"},
    ("post", "/v1/chat/completions"): {
        404: "no such stream or model", 409: "the stream's scene is not served",
        429: "too many answers being generated (Retry-After)", 503: "the stream's scene cannot be read now",
        504: "the answer passed the server's deadline"},
}

_OBJECT = {"type": "object"}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/streams"): {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False,
        "properties": {"stream_id": STREAM_ID, "max_blocks": {"type": ["integer", "null"], "minimum": 1},
                       "ram_budget_mb": {"type": ["number", "null"], "exclusiveMinimum": 0},
                       "scene": {"type": ["string", "null"]}}}}}},
    ("post", "/v1/streams/{stream_id}/frames"): {"required": True, "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}}}},
    ("post", "/v1/chat/completions"): {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["stream_id", "messages"],
        "properties": {"model": {"type": "string"}, "stream_id": STREAM_ID, "stream": {"type": "boolean"},
                       "max_tokens": {"type": "integer", "minimum": 1}, "max_completion_tokens": {"type": "integer", "minimum": 1},
                       "messages": {"type": "array", "minItems": 1, "items": {
                           "type": "object", "required": ["role", "content"],
                           "properties": {"role": {"type": "string"}, "content": {"type": ["string", "array"]}}}}}}}}},
    ("post", "/v1/tools/{name}"): {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"arguments": _OBJECT, "scene": {"type": ["string", "null"]}}}}}},
}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's) with the stream id's pattern, the request bodies and every refusal
    the service answers with, in place of FastAPI's 422."""
    error = {"content": {"application/json": {"schema": ERROR_BODY}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "stream_id" and parameter.get("in") == "path":
                    parameter["schema"] = dict(STREAM_ID)
                if parameter.get("name") == "timestamp_s":  # read as text, checked as a number
                    parameter["schema"] = {"type": "number", "minimum": 0}
            if (method, path) in BODIES:
                operation["requestBody"] = BODIES[method, path]
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, what in sorted({**COMMON, **EXTRA.get((method, path), {})}.items()):
                responses[str(status)] = {"description": what, **error}
    schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
    return schema
