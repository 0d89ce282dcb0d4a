"""Bounds on connections, the input the request-level limits cannot see.

A hostile client need not send a big body or a long question to hold a server: it can open
connections and send nothing, or a request head a byte at a time (slowloris), or a body slowly.
uvicorn bounds none of this by itself: its keep-alive timeout starts only after a first response,
and any byte received cancels it. This module bounds it where it happens, in uvicorn's HTTP protocol:

* ``header_timeout_s``: a connection must deliver a complete request head this long after it opened
  or after its previous response ended (uvicorn's keep-alive closes an idle one sooner); else it is
  closed. Requests being answered are never cut: the clock stops once the head is in.
* ``max_connections_per_client``: connections open at once from one client address (HTTP and
  WebSocket alike); one more is answered 429 and closed at once.
* ``max_connections``: uvicorn's ``limit_concurrency`` (connections or requests at once past it get
  503).
* ``max_head_bytes``: the bytes of one request head (request line and headers); past it, 431 and
  closed. uvicorn's httptools parser has no such bound, and it joins a long header value piece by
  piece: one 48 MB header held the event loop for seconds.

A body that arrives too slowly is the body limit's (:class:`~memstream.streaming.videomem.service.limits.BodyLimitMiddleware`,
``body_timeout_s``). With ``--ray-ingress serve`` Ray Serve's proxy serves HTTP, not this process:
put a reverse proxy with these bounds in front of it.
"""

from __future__ import annotations

import json
from typing import Any

from memstream.streaming.videomem.service.limits import ServiceLimits


def uvicorn_options(limits: ServiceLimits) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that enforce ``limits``' connection bounds."""
    return {"http": guarded_http_protocol(limits.header_timeout_s, limits.max_connections_per_client, limits.max_head_bytes),
            "limit_concurrency": limits.max_connections, "ws_max_size": limits.max_message_chars,
            "h11_max_incomplete_event_size": limits.max_head_bytes}  # h11 bounds the head itself


def guarded_http_protocol(header_timeout_s: float, max_per_client: int, max_head_bytes: int = 64 << 10):
    """uvicorn's HTTP protocol class (httptools where installed, else h11) with the head timeout, the
    per-client cap and (httptools; h11 has its own) the head size bound."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    refusal = _too_many_connections(max_per_client)
    head_refusal = _refusal(431, "Request Header Fields Too Large", f"the request head is over the server's limit of "
                            f"{max_head_bytes:,} bytes. Send fewer or shorter headers and a shorter URL",
                            "request_head_too_large")

    class GuardedHTTPProtocol(AutoHTTPProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None and sum(1 for c in self.connections if getattr(c, "client", None) and c.client[0] == host) > max_per_client:
                transport.write(refusal)
                transport.close()
                return
            self._arm_head_timer()

        # httptools calls these at a request head's first byte and once it is complete; the bytes of
        # every read that ends with the head still incomplete count against max_head_bytes (so a head
        # that completes within one read of at most 256 KiB, asyncio's read size, is not counted)
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0

        def on_headers_complete(self) -> None:
            self._head_bytes = None
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if getattr(self, "_head_bytes", None) is None or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > max_head_bytes:
                self._head_bytes = None
                self.transport.write(head_refusal)
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()

        def connection_lost(self, exc) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_late, self.cycle)

        def _head_late(self, cycle_at_arm) -> None:
            """No new request head since the timer was armed (uvicorn makes a cycle per head): close,
            unless the connection was upgraded to a WebSocket meanwhile (its transport moved on)."""
            idle = cycle_at_arm is None or cycle_at_arm.response_complete  # a pipelined request may be running
            if self.cycle is cycle_at_arm and idle and not self.transport.is_closing() and self.transport.get_protocol() is self:
                self.transport.close()

    return GuardedHTTPProtocol


def _too_many_connections(max_per_client: int) -> bytes:
    return _refusal(429, "Too Many Requests", f"this client has {max_per_client} connections open, the server's limit. "
                    "Reuse or close them (or start the server with a larger --max-connections-per-client)",
                    "too_many_connections", "retry-after: 1\r\n")


def _refusal(status: int, reason: str, message: str, code: str, extra_headers: str = "") -> bytes:
    """A whole HTTP response (OpenAI's error shape, then close), written straight to the transport."""
    kind = "rate_limit_error" if status == 429 else "invalid_request_error"
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra_headers}connection: close\r\n\r\n")
    return head.encode() + body
