"""Connection bounds of the service against a real uvicorn server on loopback (the bounds live in
uvicorn's protocol, which Starlette's test client never reaches): a request head sent a byte at a
time, a body that trickles in, a client holding many connections. Each refusal is tested, and so
is what must not be cut (a request whose body is arriving, a WebSocket)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient
from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
from memstream.streaming.videomem.serve import create_app
from memstream.streaming.videomem.service import ServiceLimits, VideoQAService
from memstream.streaming.videomem.service.connections import uvicorn_options
from tests.streaming.videomem.util import jpeg

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]



@contextlib.contextmanager
def serving(tiny_llava, **bounds):
    """A real uvicorn server on a free loopback port with ``bounds``; yields the port."""
    import uvicorn

    limits = ServiceLimits(**bounds)
    service = VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)),
                             model_name="tiny", limits=limits)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", **uvicorn_options(limits)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a timeout fails the test: the server kept it open)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def get(port: int, path: str = "/health") -> tuple[int, bytes]:
    with connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        reply = read_all(sock)
    return int(reply.split(b" ", 2)[1]), reply


def test_a_request_head_that_never_ends_is_closed_after_the_header_timeout(tiny_llava):
    with serving(tiny_llava, header_timeout_s=0.5) as port, connect(port) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        for _ in range(3):
            time.sleep(0.1)
            sock.sendall(b"X-Slow: 1\r\n")  # bytes keep coming, the head never completes
        assert read_all(sock) == b""  # closed, nothing answered
        assert time.monotonic() - start < 5
        assert get(port)[0] == 200  # the server serves others as before


def test_a_second_request_head_left_unfinished_is_closed_too(tiny_llava):
    """Any byte cancels uvicorn's keep-alive timer; the head timer is armed again after each response."""
    with serving(tiny_llava, header_timeout_s=0.5) as port, connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b'{"status":"ok"}' in sock.recv(65536)
        start = time.monotonic()
        sock.sendall(b"GET /hea")
        assert read_all(sock) == b""
        assert time.monotonic() - start < 4  # before uvicorn's own keep-alive (5 s) could have, had it been armed


def test_a_body_that_trickles_in_is_refused_with_408_and_one_that_arrives_in_time_is_not_cut(tiny_llava):
    client_limits = {"header_timeout_s": 0.3, "body_timeout_s": 1.5}
    with serving(tiny_llava, **client_limits) as port:
        with connect(port) as sock:
            body = json.dumps({"stream_id": "cam"}).encode()
            sock.sendall(b"POST /v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            for byte in body:  # over 1 s: longer than the head timeout, within the body's
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
            assert read_all(sock).split(b" ", 2)[1] == b"200"
        with connect(port) as sock:
            frame = jpeg(0)
            start = time.monotonic()
            sock.sendall(b"POST /v1/streams/cam/frames HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(frame)
                         + frame[:100])
            reply = read_all(sock)
            assert reply.split(b" ", 2)[1] == b"408" and 1.4 < time.monotonic() - start < 6
            error = json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]
            assert error["code"] == "request_timeout" and "--body-timeout-s" in error["message"]
        assert b'"frames_seen":0' in get(port, "/v1/streams/cam")[1]  # the refused frame was not stored


def test_connections_past_the_per_client_cap_are_refused_with_429_and_the_slots_come_back(tiny_llava):
    with serving(tiny_llava, header_timeout_s=30, max_connections_per_client=3) as port:
        held = [connect(port) for _ in range(3)]
        for sock in held:
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # held open: the head timeout is long
        time.sleep(0.2)
        with connect(port) as extra:
            reply = read_all(extra)
        assert reply.startswith(b"HTTP/1.1 429 ")
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "too_many_connections"
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10
        while (status := get(port)[0]) != 200 and time.monotonic() < deadline:  # the server sees the closes
            time.sleep(0.1)
        assert status == 200


def test_a_request_head_past_max_head_bytes_is_refused_with_431_and_closed(tiny_llava):
    """uvicorn's httptools parser bounds no head: a 48 MB header held the event loop for seconds."""
    with serving(tiny_llava, max_head_bytes=16 << 10) as port:
        assert get(port, "/health?" + "a" * (8 << 10))[0] == 200  # under the bound
        for head in (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (20 << 10),  # one long header
                     b"GET /health?" + b"a" * (20 << 10)):  # a long URL, never finished
            with connect(port) as sock:
                sock.sendall(head)
                reply = read_all(sock)  # closed by the server, the head still unfinished
            assert reply.startswith(b"HTTP/1.1 431 ") and b'"code": "request_head_too_large"' in reply, reply[:200]
        assert get(port)[0] == 200


def test_a_websocket_outlives_the_header_timeout(tiny_llava):
    from websockets.sync.client import connect as ws_connect

    with serving(tiny_llava, header_timeout_s=0.3) as port:
        assert get(port)[0] == 200
        with socket.create_connection(("127.0.0.1", port)) as sock:
            body = json.dumps({"stream_id": "cam"}).encode()
            sock.sendall(b"POST /v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % len(body) + body)
            assert read_all(sock).split(b" ", 2)[1] == b"200"
        with ws_connect(f"ws://127.0.0.1:{port}/v1/streams/cam/frames", open_timeout=10) as ws:
            time.sleep(1.0)  # three head timeouts
            ws.send(json.dumps({"type": "input_video_frame.append", "image": base64.b64encode(jpeg(1)).decode(), "timestamp_s": 1}))
            assert json.loads(ws.recv(timeout=10)) == {"type": "input_video_frame.committed", "frames_seen": 1}


def test_a_wrong_method_names_the_allowed_ones(tiny_llava):
    service = VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny")
    client = TestClient(create_app(service), base_url="http://127.0.0.1")
    reply = client.request("TRACE", "/v1/models")
    assert reply.status_code == 405 and reply.headers["allow"] == "GET"
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert client.put("/v1/streams/cam").headers["allow"] == "DELETE, GET"  # every route of the path, not the first


@pytest.mark.parametrize("bound", ["header_timeout_s", "body_timeout_s", "max_connections", "max_connections_per_client",
                                   "max_head_bytes"])
def test_connection_bounds_must_be_positive(bound):
    with pytest.raises(ValueError, match=bound):
        ServiceLimits(**{bound: 0})
