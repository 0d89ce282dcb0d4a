"""Who may talk to the service: API keys, and the Host and Origin allow-lists.

Checked by :class:`AccessMiddleware` on every HTTP request and every WebSocket handshake, before
any route runs, in this order:

0. ``Host``, ``Origin`` and ``Authorization`` come at most once each (400, RFC 9112 for ``Host``):
   with two, the check below would read one and a proxy in front might route or log the other.
1. ``Host`` must name this server: loopback names by default, more with ``--allowed-host`` (``*``
   for any). A web page that rebinds its own DNS name to 127.0.0.1 still sends its own name as
   ``Host``, so it is refused (403).
2. ``Origin``, when a browser sends one, must be a loopback origin (any port) or one given with
   ``--allowed-origin``; ``Origin: null`` is refused (403). Clients that are not browsers send none.
3. With API keys configured, ``Authorization: Bearer <key>`` must carry one of them (401 otherwise),
   compared in constant time. The request then acts as that key (``request.state.api_key_id``, a
   hash of it): a stream belongs to the key that opened it, and other keys neither see nor reach it. The WebSocket takes the same header, and only the header: a key in
   a query string ends up in proxy and access logs, and browsers (which cannot set the header on a
   WebSocket) are served through a same-origin proxy that adds it.

A refused WebSocket handshake is answered with the HTTP status and the JSON error where the server
supports ASGI's ``websocket.http.response`` (uvicorn and Starlette's test client do), else closed
with code 1008 (policy violation), which uvicorn sends as HTTP 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from memstream.streaming.errors import ConfigError
from memstream.streaming.videomem.service.errors import ServiceError, error_body, send_error

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SINGLE_HEADERS = (b"host", b"origin", b"authorization")  # each checked below: at most one of each
API_KEY_ENV = "MEMSTREAM_API_KEY"
KEY_ID_STATE = "api_key_id"


@dataclass(frozen=True)
class AccessPolicy:
    """Keys and allow-lists of one server.

    Attributes:
        api_keys: accepted bearer keys; empty means no key is asked for (loopback-only servers).
        allowed_hosts: host names (no port) accepted in ``Host`` besides the loopback ones; ``"*"``
            accepts any.
        allowed_origins: origins (``scheme://host[:port]``) accepted in ``Origin`` besides loopback
            ones; ``"*"`` accepts any.
    """

    api_keys: tuple[str, ...] = field(default=(), repr=False)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in self.api_keys:
            if not key or not key.isascii() or any(c.isspace() for c in key):
                raise ConfigError("an API key is empty or holds spaces or non-ASCII characters", "Use printable ASCII keys, one per line")
        object.__setattr__(self, "allowed_hosts", tuple(h.lower().rstrip(".").strip("[]") for h in self.allowed_hosts))
        object.__setattr__(self, "allowed_origins", tuple(o.lower().rstrip("/") for o in self.allowed_origins))

    def refusal(self, headers: Mapping[bytes, bytes]) -> ServiceError | None:
        """Why a request with these (lower-case) headers is refused, or None when it may pass."""
        host = headers.get(b"host", b"").decode("latin-1")
        if not self._host_allowed(host):
            return ServiceError(
                f"Host {host!r} is not an allowed name of this server",
                f"Use the server's own address, or start it with --allowed-host {_hostname(host) or 'NAME'}",
                403,
                code="host_not_allowed",
            )
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1")):
            return ServiceError(
                f"Origin {origin.decode('latin-1')!r} is not allowed",
                "Serve the page from an allowed origin, or start the server with --allowed-origin ORIGIN",
                403,
                code="origin_not_allowed",
            )
        if self.api_keys and not self._key_matches(headers.get(b"authorization", b"")):
            return ServiceError(
                "the request has no valid API key",
                "Send the header 'Authorization: Bearer <key>' with a key the server was started with",
                401,
                code="invalid_api_key",
            )
        return None

    def key_id(self, headers: Mapping[bytes, bytes]) -> str | None:
        """A short, stable name for the API key of an accepted request (a hash of it: the key itself
        is never stored or logged), or None when the server has no keys. Streams belong to the key
        that opened them."""
        if not self.api_keys:
            return None
        token = headers.get(b"authorization", b"").partition(b" ")[2].strip()
        return "key-" + hashlib.sha256(token).hexdigest()[:12]

    def _host_allowed(self, host: str) -> bool:
        name = _hostname(host)
        return "*" in self.allowed_hosts or (bool(name) and (name in LOOPBACK_NAMES or name in self.allowed_hosts))

    def _origin_allowed(self, origin: str) -> bool:
        if "*" in self.allowed_origins or origin.lower().rstrip("/") in self.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
            return parts.scheme in ("http", "https") and parts.hostname in LOOPBACK_NAMES
        except ValueError:
            return False

    def _key_matches(self, authorization: bytes) -> bool:
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token, matched = token.strip(), False
        for key in self.api_keys:  # every key compared: the time says nothing about which matched
            matched |= hmac.compare_digest(token, key.encode())
        return matched


def _hostname(host: str) -> str:
    """``example.com:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``; lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") <= 1 else host


def load_api_keys(keys: Sequence[str] = (), keys_file: str | None = None, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """Keys from ``--api-key`` (repeatable), ``$MEMSTREAM_API_KEY`` and ``--api-keys-file`` (one per
    line; blank lines and ``#`` comments skipped)."""
    found = [*keys]
    if environ.get(API_KEY_ENV):
        found.append(environ[API_KEY_ENV])
    if keys_file is not None:
        path = Path(keys_file)
        if not path.is_file():
            raise ConfigError(f"--api-keys-file {keys_file} does not exist", "Give a file with one API key per line")
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        in_file = [line for line in lines if line and not line.startswith("#")]
        if not in_file:
            raise ConfigError(f"--api-keys-file {keys_file} holds no key", "Write one API key per line")
        found.extend(in_file)
    return tuple(dict.fromkeys(k.strip() for k in found))


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, policy: AccessPolicy) -> None:
    """Refuse to serve beyond this machine without a key (raised before the model loads)."""
    if not policy.api_keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without an API key: anyone who can reach it could use the model",
            f"Pass --api-key KEY (or set {API_KEY_ENV}, or --api-keys-file FILE), or bind --host 127.0.0.1",
        )


def repeated_header(headers: Sequence[tuple[bytes, bytes]]) -> ServiceError | None:
    """A 400 for a request carrying one of :data:`SINGLE_HEADERS` more than once (lower-case ASGI
    header names), else None."""
    names = [name for name, _ in headers if name in SINGLE_HEADERS]
    for name in SINGLE_HEADERS:
        if names.count(name) > 1:
            shown = name.decode().title()
            return ServiceError(f"the request has {names.count(name)} {shown} headers", f"Send {shown} once",
                                400, param=shown, code="duplicate_header")
    return None


class AccessMiddleware:
    """ASGI middleware applying an :class:`AccessPolicy` to HTTP requests and WebSocket handshakes."""

    def __init__(self, app, policy: AccessPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        error = repeated_header(scope.get("headers") or []) or self.policy.refusal(headers)
        if error is None:
            scope.setdefault("state", {})[KEY_ID_STATE] = self.policy.key_id(headers)  # request.state.api_key_id
            return await self.app(scope, receive, send)
        extra = [(b"www-authenticate", b"Bearer")] if error.status == 401 else []
        if scope["type"] == "http":
            return await send_error(send, error, extra)
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            body = json.dumps(error_body(error)).encode()
            head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
            await send({"type": "websocket.http.response.start", "status": error.status, "headers": head})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": error.what[:120]})
