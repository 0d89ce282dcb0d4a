"""The service as something exposed: every hostile or malformed request of issue 15 replayed against
the app (through Starlette's test client, on the tiny random-weight LLaVA-OneVision), each refused
with its 4xx status in OpenAI's error shape, the server still answering and another stream's frames
untouched afterwards."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from memstream.streaming.cli import main
from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
from memstream.streaming.videomem.serve import create_app
from memstream.streaming.videomem.service import (
    AccessPolicy,
    ServiceError,
    ServiceLimits,
    VideoQAService,
    check_bind,
    images,
    load_api_keys,
)
from starlette.testclient import WebSocketDenialResponse
from tests.streaming.videomem.util import jpeg

KEY = "sk-test-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
WS = "ws://127.0.0.1/v1/streams/{}/frames"



def zero_png(width: int, height: int) -> bytes:
    """A valid all-black RGB PNG, compressed row by row (20000 x 20000 is about 1 MB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(9), b"\0" * (width * 3 + 1)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height``."""
    data = bytearray(jpeg(0))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    return zero_png(20000, 20000)


@pytest.fixture()
def service(tiny_llava):
    return VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny",
                          max_streams=4, limits=ServiceLimits(max_body_bytes=2 << 20, max_tokens_cap=16))


@pytest.fixture()
def client(service):
    """A keyed server with a stream "good" of two frames, the bystander every probe must not disturb."""
    client = TestClient(create_app(service, AccessPolicy(api_keys=(KEY,))), base_url="http://127.0.0.1", headers=AUTH)
    assert client.post("/v1/streams", json={"stream_id": "good"}).status_code == 200
    for i in range(2):
        assert client.post("/v1/streams/good/frames", params={"timestamp_s": i}, content=jpeg(i)).status_code == 200
    assert client.post("/v1/streams", json={"stream_id": "s"}).status_code == 200
    return client


def assert_openai_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"] and "\n" not in body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]


def assert_survives(client) -> None:
    """The server still answers, and the bystander stream kept exactly its two frames."""
    assert client.get("/v1/models").status_code == 200
    listed = {s["stream_id"]: s for s in client.get("/v1/streams").json()["data"]}
    assert listed["good"]["frames_seen"] == 2 and listed["good"]["covered_until_s"] == 1.0


def ask(stream_id: str = "good", **extra) -> dict:
    return {"model": "tiny", "stream_id": stream_id, "messages": [{"role": "user", "content": "What moved?"}], "max_tokens": 2, **extra}


# ---- access ------------------------------------------------------------------------------------
ROUTES = [
    ("GET", "/health", None),
    ("GET", "/v1/models", None),
    ("GET", "/v1/streams", None),
    ("POST", "/v1/streams", {"stream_id": "new"}),
    ("GET", "/v1/streams/good", None),
    ("DELETE", "/v1/streams/good", None),
    ("POST", "/v1/streams/good/frames", None),
    ("POST", "/v1/chat/completions", ask()),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", f"Basic {KEY}", f"Bearer {KEY}x", "Bearer"])
def test_every_route_wants_the_key(client, method, path, body, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    fresh = TestClient(client.app, base_url="http://127.0.0.1", headers=headers)
    response = fresh.request(method, path, json=body)
    error = assert_openai_error(response, 401)
    assert error["code"] == "invalid_api_key" and response.headers["www-authenticate"] == "Bearer"
    assert_survives(client)


def test_the_key_opens_every_route(client):
    assert client.get("/v1/streams/good").json()["frames_seen"] == 2
    assert client.post("/v1/chat/completions", json=ask()).status_code == 200
    assert client.delete("/v1/streams/s").json()["deleted"] is True


def test_the_websocket_wants_the_key(client):
    with pytest.raises(WebSocketDenialResponse) as refused, TestClient(client.app).websocket_connect(WS.format("good")):
        pass
    assert refused.value.status_code == 401 and refused.value.json()["error"]["code"] == "invalid_api_key"
    with client.websocket_connect(WS.format("s"), headers=AUTH) as socket:
        socket.send_text(json.dumps({"type": "input_video_frame.append", "image": base64.b64encode(jpeg(3)).decode(), "timestamp_s": 0}))
        assert socket.receive_json() == {"type": "input_video_frame.committed", "frames_seen": 1}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Origin": "http://evil.example"}, "origin_not_allowed"),
        ({"Origin": "null"}, "origin_not_allowed"),
        ({"Origin": "http://localhost.evil.example"}, "origin_not_allowed"),
        ({"Host": "evil.example"}, "host_not_allowed"),  # DNS rebinding: the page's own name
        ({"Host": "evil.example:8000"}, "host_not_allowed"),
        ({"Host": "127.0.0.1.evil.example"}, "host_not_allowed"),
    ],
)
def test_foreign_origins_and_hosts_are_refused_even_with_the_key(client, headers, code):
    assert assert_openai_error(client.get("/v1/models", headers=headers), 403)["code"] == code
    assert assert_openai_error(client.post("/v1/chat/completions", json=ask(), headers=headers), 403)["code"] == code
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect(WS.format("good"), headers={**AUTH, **headers}):
        pass
    assert refused.value.status_code == 403
    assert_survives(client)


@pytest.mark.parametrize("origin", ["http://localhost:5173", "http://127.0.0.1:8000", "https://[::1]:3000"])
def test_loopback_origins_pass_by_default(client, origin):
    assert client.get("/v1/models", headers={"Origin": origin}).status_code == 200


def test_allow_lists_extend_to_named_hosts_and_origins(service):
    policy = AccessPolicy(api_keys=(KEY,), allowed_hosts=("qa.example",), allowed_origins=("https://dash.example",))
    client = TestClient(create_app(service, policy), base_url="http://qa.example:8000", headers=AUTH)
    assert client.get("/v1/models", headers={"Origin": "https://dash.example"}).status_code == 200
    assert client.get("/v1/models", headers={"Origin": "https://dash.example:444"}).status_code == 403
    assert client.get("/v1/models", headers={"Host": "other.example"}).status_code == 403


def test_docs_are_off_by_default_and_behind_the_key_when_on(client, service):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert_openai_error(client.get(path), 404)
    documented = create_app(service, AccessPolicy(api_keys=(KEY,)), docs=True)
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert_openai_error(TestClient(documented, base_url="http://127.0.0.1").get(path), 401)
        assert TestClient(documented, base_url="http://127.0.0.1", headers=AUTH).get(path).status_code == 200


def test_keys_compare_in_constant_time_against_every_key(monkeypatch):
    from memstream.streaming.videomem.service import access

    calls = []
    monkeypatch.setattr(access.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or a == b)
    policy = AccessPolicy(api_keys=("first-key", "second-key"))
    assert policy.refusal({b"host": b"127.0.0.1", b"authorization": b"Bearer first-key"}) is None
    assert len(calls) == 2  # no early exit on the first match


def test_keys_come_from_flags_environment_and_file(tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# team keys\nkey-from-file\n\nsecond-from-file\n")
    assert load_api_keys(["key-a"], str(keys_file), {"MEMSTREAM_API_KEY": "key-env"}) == (
        "key-a", "key-env", "key-from-file", "second-from-file")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(Exception, match="holds no key"):
        load_api_keys([], str(tmp_path / "empty.txt"), {})
    with pytest.raises(Exception, match="does not exist"):
        load_api_keys([], str(tmp_path / "missing.txt"), {})
    with pytest.raises(Exception, match="spaces"):
        AccessPolicy(api_keys=("has space",))
    assert "key-a" not in repr(AccessPolicy(api_keys=("key-a",)))


def test_no_key_means_loopback_only(capsys, monkeypatch):
    monkeypatch.delenv("MEMSTREAM_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--model", "tiny-random"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: refusing to serve on 0.0.0.0 without an API key")
    for host in ("0.0.0.0", "::", "192.168.1.20"):
        with pytest.raises(Exception, match="without an API key"):
            check_bind(host, AccessPolicy())
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, AccessPolicy())
    check_bind("0.0.0.0", AccessPolicy(api_keys=(KEY,)))


# ---- frames ------------------------------------------------------------------------------------
def test_a_huge_png_is_refused_from_its_header_without_decoding(client, huge_png, monkeypatch):
    assert len(huge_png) < 2 << 20  # about 1 MB on the wire, 1.2 GB decoded

    def never(*_args):
        raise AssertionError("the frame was decoded")

    monkeypatch.setattr(images.cv2, "imdecode", never)
    for data in (huge_png, jpeg_claiming(20000, 20000)):
        error = assert_openai_error(client.post("/v1/streams/s/frames", content=data), 413)
        assert error["code"] == "image_too_large" and "20000x20000" in error["message"]
    assert_survives(client)


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), 415, "unsupported_media_type"),
        (cv2.imencode(".tiff", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), 415, "unsupported_media_type"),
        (b"GIF89a" + b"\0" * 32, 415, "unsupported_media_type"),
        (b"", 400, "invalid_image"),
        (b"garbage", 400, "invalid_image"),
        (b"\x89PNG\r\n\x1a\n", 400, "invalid_image"),  # signature, no IHDR
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\0", 400, "invalid_image"),  # no frame header
        (zero_png(0, 5), 400, "invalid_image"),
        (jpeg(0)[:200], 400, "invalid_image"),  # truncated: the decoder rejects it
    ],
)
def test_only_jpeg_and_png_frames(client, data, status, code):
    assert assert_openai_error(client.post("/v1/streams/s/frames", content=data), status)["code"] == code
    assert_survives(client)


def test_a_png_under_the_pixel_limit_is_taken(client):
    assert client.post("/v1/streams/s/frames", content=zero_png(64, 48)).json() == {"frames_seen": 1}


def test_bodies_over_the_limit_are_refused_by_length_or_by_count(client):
    too_big = b"\xff\xd8\xff" + b"\0" * (3 << 20)
    error = assert_openai_error(client.post("/v1/streams/s/frames", content=too_big), 413)
    assert error["code"] == "request_too_large"

    def chunks():  # no Content-Length: refused while counting
        for _ in range(48):
            yield b"\0" * (64 << 10)

    assert assert_openai_error(client.post("/v1/streams/s/frames", content=chunks()), 413)["code"] == "request_too_large"
    big_question = {**ask(), "messages": [{"role": "user", "content": "x" * (3 << 20)}]}
    assert_openai_error(client.post("/v1/chat/completions", json=big_question), 413)
    assert_survives(client)


@pytest.mark.parametrize("timestamp", ["nan", "inf", "-inf", "-5", "abc", ""])
def test_timestamps_are_finite_and_not_negative(client, timestamp):
    response = client.post("/v1/streams/s/frames", params={"timestamp_s": timestamp}, content=jpeg(1))
    assert assert_openai_error(response, 400, "timestamp_s")["code"] == "invalid_timestamp"
    assert_survives(client)


def test_timestamps_never_go_backwards(client):
    assert client.post("/v1/streams/s/frames", params={"timestamp_s": 10}, content=jpeg(1)).status_code == 200
    assert client.post("/v1/streams/s/frames", params={"timestamp_s": 10}, content=jpeg(2)).status_code == 200  # equal is fine
    error = assert_openai_error(client.post("/v1/streams/s/frames", params={"timestamp_s": 5}, content=jpeg(3)), 400, "timestamp_s")
    assert error["code"] == "timestamp_out_of_order"
    assert client.get("/v1/streams/s").json()["frames_seen"] == 2
    assert_survives(client)


# ---- stream ids --------------------------------------------------------------------------------
@pytest.mark.parametrize("stream_id", [0, True, 1.5, ["a"], {"a": 1}, "", "a/b", "../../etc", "..", "a b", "é", "x" * 129])
def test_stream_ids_are_short_plain_strings(client, stream_id):
    assert_openai_error(client.post("/v1/streams", json={"stream_id": stream_id}), 400, "stream_id")
    assert_openai_error(client.post("/v1/chat/completions", json=ask(stream_id)), 400, "stream_id")
    assert_survives(client)


def test_every_listed_stream_can_be_deleted(client):
    for stream_id in ("cam.0", "A-b_c", "x" * 128):
        client.delete("/v1/streams/s")
        assert client.post("/v1/streams", json={"stream_id": stream_id}).status_code == 200
        listed = [s["stream_id"] for s in client.get("/v1/streams").json()["data"]]
        assert stream_id in listed
        assert client.delete(f"/v1/streams/{stream_id}").json() == {"stream_id": stream_id, "deleted": True}
    good = client.get("/v1/streams").json()["data"]
    assert good == [{"stream_id": "good", "frames_seen": 2, "covered_from_s": 0.0, "covered_until_s": 1.0,
                     "bytes_received": len(jpeg(0)) + len(jpeg(1)), "max_blocks": None, "persistent": False,
                     "scene": None}]


# ---- chat requests -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": [1]}, "messages[0]"),
        ({"messages": [{"content": "hi"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "system", "content": "be brief"}]}, "messages"),
        ({"stream_id": ["a"]}, "stream_id"),
        ({"seed": "x"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": "1"}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 17}, "max_tokens"),  # over --max-tokens-cap
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"max_tokens": "3"}, "max_tokens"),
        ({"max_completion_tokens": 10**9}, "max_completion_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"n": 2}, "n"),
        ({"stop": ["\n"]}, "stop"),
        ({"model": 5}, "model"),
        ({"messages": [{"role": "user", "content": "why " * 2001}]}, "messages"),  # 8,004 characters
    ],
)
def test_malformed_chat_requests_name_the_parameter(client, change, param):
    assert_openai_error(client.post("/v1/chat/completions", json={**ask(), **change}), 400, param)
    assert_survives(client)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"hi"', b"null", b"[" * 200_000, b'{"a":' * 200_000])
def test_bodies_that_are_not_json_objects(client, body):
    assert_openai_error(client.post("/v1/chat/completions", content=body), 400)
    assert_openai_error(client.post("/v1/streams", content=body), 400)
    assert_survives(client)


def test_the_question_length_is_checked_before_tokenizing(client, tiny_llava, monkeypatch):
    monkeypatch.setattr(tiny_llava, "tokenize", lambda *_: pytest.fail("tokenized"))
    long = {**ask(), "messages": [{"role": "user", "content": "x" * 8001}]}
    assert assert_openai_error(client.post("/v1/chat/completions", json=long), 400, "messages")["code"] == "question_too_long"


def test_an_unknown_model_is_a_404(client):
    error = assert_openai_error(client.post("/v1/chat/completions", json=ask(model="gpt-9")), 404, "model")
    assert error["code"] == "model_not_found"


def test_unknown_routes_and_methods_answer_in_openai_shape(client):
    assert_openai_error(client.get("/v1/nothing"), 404)
    assert_openai_error(client.put("/v1/streams"), 405)


def test_finish_reason_and_usage(client):
    cut = client.post("/v1/chat/completions", json=ask(max_tokens=1)).json()  # the tiny model ends after one token
    ended = client.post("/v1/chat/completions", json=ask(max_tokens=4)).json()
    assert cut["choices"][0]["finish_reason"] == "length" and cut["usage"]["completion_tokens"] == 1
    assert ended["choices"][0]["finish_reason"] == "stop" and ended["usage"]["completion_tokens"] < 4
    for body in (cut, ended):
        usage = body["usage"]
        assert usage["prompt_tokens"] > 2 * 9 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    with client.stream("POST", "/v1/chat/completions", json=ask(max_tokens=1, stream=True, stream_options={"include_usage": True})) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == cut["usage"]


# ---- the WebSocket ----------------------------------------------------------------------------
def test_bad_websocket_messages_get_an_error_event_and_the_socket_stays_usable(client):
    frame = {"type": "input_video_frame.append", "image": base64.b64encode(jpeg(5)).decode(), "timestamp_s": 1}
    probes = [
        (b"\x00\x01binary", "binary_message"),
        ("[1, 2]", "invalid_event"),
        ("not json", "invalid_event"),
        ('"a string"', "invalid_event"),
        (json.dumps({"type": "session.update"}), None),
        (json.dumps({**frame, "image": 5}), None),
        (json.dumps({**frame, "image": "***"}), None),
        (json.dumps({**frame, "timestamp_s": "nan"}), "invalid_timestamp"),
        (json.dumps({**frame, "timestamp_s": -1}), "invalid_timestamp"),
        (json.dumps({**frame, "image": base64.b64encode(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1]).decode()}), "unsupported_media_type"),
        (json.dumps({**frame, "image": base64.b64encode(zero_png(5000, 5000)).decode()}), "image_too_large"),
        (json.dumps({**frame, "image": "A" * (3 << 20)}), "message_too_large"),
        ("[" * 200_000, "invalid_event"),
    ]
    with client.websocket_connect(WS.format("s"), headers=AUTH) as socket:
        for message, code in probes:
            socket.send_bytes(message) if isinstance(message, bytes) else socket.send_text(message)
            event = socket.receive_json()
            assert event["type"] == "error" and event["message"] and "\n" not in event["message"] and 400 <= event["status"] < 500, event
            assert code is None or event["code"] == code, event
        socket.send_text(json.dumps(frame))
        assert socket.receive_json() == {"type": "input_video_frame.committed", "frames_seen": 1}
        socket.send_text(json.dumps({**frame, "timestamp_s": 0.5}))  # before the last frame
        assert socket.receive_json()["code"] == "timestamp_out_of_order"
    assert_survives(client)


def test_a_deleted_stream_reports_on_its_open_socket(client):
    with client.websocket_connect(WS.format("s"), headers=AUTH) as socket:
        client.delete("/v1/streams/s")
        socket.send_text(json.dumps({"type": "input_video_frame.append", "image": base64.b64encode(jpeg(1)).decode()}))
        assert socket.receive_json()["status"] == 404
    assert_survives(client)


def test_header_parsing_agrees_with_the_decoder():
    for width, height in ((64, 48), (1, 1), (333, 17)):
        assert images.image_size(zero_png(width, height)) == ("png", width, height)
        assert images.image_size(jpeg(0, (height, width))) == ("jpeg", width, height)
        assert images.decode_frame(jpeg(0, (height, width)), 10**6).shape == (height, width, 3)
    with pytest.raises(ServiceError) as refused:
        images.decode_frame(jpeg(0, (48, 64)), 64 * 48 - 1)
    assert refused.value.status == 413


def test_generation_stops_at_the_step_after_cancel(service, tiny_llava, monkeypatch):
    import threading

    from memstream.streaming.videomem.generation import GenerationCancelled
    from memstream.streaming.videomem.service import parse_chat_request

    monkeypatch.setattr(type(tiny_llava), "eos_token_ids", property(lambda self: set()))  # never ends by itself
    cancel, steps = threading.Event(), []
    logits = tiny_llava.logits

    def counted(hidden):
        steps.append(1)
        if len(steps) == 3:
            cancel.set()
        return logits(hidden)

    monkeypatch.setattr(tiny_llava, "logits", counted)
    service.open_stream("cam")
    service.session("cam").add_frame(jpeg(0), 0.0)
    request = parse_chat_request(ask("cam", max_tokens=16), "tiny", service.limits, 16)
    with pytest.raises(GenerationCancelled, match="after 3 tokens"):
        service.complete(request, cancel)
    assert len(steps) == 3


def test_serve_flags_reach_the_app(tiny_llava_dir, monkeypatch):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    monkeypatch.delenv("MEMSTREAM_API_KEY", raising=False)
    assert main(["serve", "--model", str(tiny_llava_dir), "--device", "cpu", "--host", "0.0.0.0", "--api-key", KEY,
                 "--allowed-host", "qa.example", "--max-tokens-cap", "4", "--max-body-bytes", "100000",
                 "--max-connections", "99", "--max-head-bytes", "4096"]) == 0
    assert served["host"] == "0.0.0.0" and served["ws_max_size"] == ServiceLimits(max_body_bytes=100000).max_message_chars
    assert served["h11_max_incomplete_event_size"] == 4096  # h11 bounds the head itself; httptools through the class
    assert served["limit_concurrency"] == 99 and served["http"].__name__ == "GuardedHTTPProtocol"
    client = TestClient(served["app"], base_url="http://qa.example:8000")
    assert_openai_error(client.get("/v1/models"), 401)
    client.headers.update(AUTH)
    assert client.get("/v1/models").status_code == 200
    assert_openai_error(client.get("/v1/models", headers={"Host": "evil.example"}), 403)
    client.post("/v1/streams", json={"stream_id": "cam"})
    assert_openai_error(client.post("/v1/chat/completions", json=ask("cam", max_tokens=5, model=str(tiny_llava_dir))), 400, "max_tokens")
    assert_openai_error(client.post("/v1/streams/cam/frames", content=b"\xff\xd8\xff" + b"\0" * 100001), 413)
    assert_openai_error(client.get("/docs"), 404)


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _keyed_client(service: VideoQAService) -> TestClient:
    return TestClient(create_app(service, AccessPolicy(api_keys=(KEY,))), base_url="http://127.0.0.1", headers=AUTH)


def test_a_stream_flooding_frames_gets_429_with_retry_after_before_decoding(tiny_llava, monkeypatch):
    clock = Clock()
    service = VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny",
                             limits=ServiceLimits(max_frames_per_s=2.0), clock=clock)
    client = _keyed_client(service)
    assert client.post("/v1/streams", json={"stream_id": "fast"}).status_code == 200
    assert client.post("/v1/streams", json={"stream_id": "calm"}).status_code == 200
    for i in range(2):  # the one-second burst
        assert client.post("/v1/streams/fast/frames", params={"timestamp_s": i}, content=jpeg(i)).status_code == 200
    decoded = []
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: decoded.append(1))  # a refused frame is never decoded
    refused = client.post("/v1/streams/fast/frames", params={"timestamp_s": 2}, content=jpeg(2))
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1" and not decoded
    assert refused.json()["error"]["code"] == "frame_rate_exceeded" and refused.json()["error"]["type"] == "rate_limit_error"
    monkeypatch.undo()
    assert client.post("/v1/streams/calm/frames", params={"timestamp_s": 0}, content=jpeg(0)).status_code == 200  # per stream
    clock.now += 0.5  # half a second refills one frame
    assert client.post("/v1/streams/fast/frames", params={"timestamp_s": 2}, content=jpeg(2)).status_code == 200
    assert client.post("/v1/streams/fast/frames", params={"timestamp_s": 3}, content=jpeg(3)).status_code == 429


def test_answers_past_the_concurrency_cap_get_429_and_the_slot_comes_back(tiny_llava):
    service = VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny",
                             limits=ServiceLimits(max_concurrent_answers=1, max_tokens_cap=4))
    client = _keyed_client(service)
    assert client.post("/v1/streams", json={"stream_id": "cam"}).status_code == 200
    assert client.post("/v1/streams/cam/frames", params={"timestamp_s": 0}, content=jpeg(0)).status_code == 200
    request = {"model": "tiny", "stream_id": "cam", "max_tokens": 2, "messages": [{"role": "user", "content": "What?"}]}
    assert service._answer_slots.acquire(blocking=False)  # an answer in progress holds the only slot
    for stream in (False, True):
        busy = client.post("/v1/chat/completions", json={**request, "stream": stream})
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        assert busy.json()["error"]["code"] == "too_many_answers"
    assert client.get("/v1/models").status_code == 200  # listing is not an answer: never refused
    service._answer_slots.release()
    assert client.post("/v1/chat/completions", json=request).status_code == 200
    streamed = client.post("/v1/chat/completions", json={**request, "stream": True})
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    assert client.post("/v1/chat/completions", json=request).status_code == 200  # both answers gave their slot back


def test_idle_streams_are_closed_and_give_their_slot_up(tiny_llava):
    clock, closed = Clock(), []

    class Memory(ReKVMemory):
        def close(self) -> None:
            closed.append(self)
            super().close()

    service = VideoQAService(lambda _settings: Memory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny", max_streams=2,
                             limits=ServiceLimits(idle_timeout_s=60.0), clock=clock)
    client = _keyed_client(service)
    for name in ("old", "busy"):
        assert client.post("/v1/streams", json={"stream_id": name}).status_code == 200
    assert client.post("/v1/streams", json={"stream_id": "new"}).status_code == 429  # full
    clock.now += 50
    assert client.post("/v1/streams/busy/frames", params={"timestamp_s": 0}, content=jpeg(0)).status_code == 200
    clock.now += 20  # "old": 70 s idle; "busy": 20 s since its frame
    assert [s["stream_id"] for s in client.get("/v1/streams").json()["data"]] == ["busy"]
    assert len(closed) == 1  # the idle stream's memory was released
    assert client.post("/v1/streams", json={"stream_id": "new"}).status_code == 200
    assert client.get("/v1/streams/old").status_code == 404


def test_the_new_bounds_refuse_nonsense(tiny_llava):
    for bad in ({"max_frames_per_s": 0}, {"max_frames_per_s": float("nan")}, {"max_concurrent_answers": 0},
                {"idle_timeout_s": -1}):
        with pytest.raises(ValueError, match="must be a positive"):
            ServiceLimits(**bad)
    assert ServiceLimits(idle_timeout_s=None).idle_timeout_s is None


def test_a_running_server_sweeps_idle_streams_without_being_asked(tiny_llava):
    import time

    service = VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny",
                             limits=ServiceLimits(idle_timeout_s=0.5))  # swept every second
    with _keyed_client(service) as client:  # the context runs the app's lifespan, and so its sweeper
        assert client.post("/v1/streams", json={"stream_id": "left"}).status_code == 200
        deadline = time.monotonic() + 5
        while "left" in service.sessions:  # nobody opens or lists streams meanwhile
            assert time.monotonic() < deadline, "the idle stream was not closed by the sweeper"
            time.sleep(0.1)


def test_the_openapi_document_says_what_the_service_answers(service):
    """With --docs: the stream id's pattern, the request bodies the handlers read themselves, and
    the refusals (OpenAI's error body) instead of FastAPI's 422, which the service never sends."""
    from jsonschema import Draft202012Validator

    client = TestClient(create_app(service, AccessPolicy(api_keys=(KEY,)), docs=True), base_url="http://127.0.0.1", headers=AUTH)
    document = client.get("/openapi.json").json()
    frames = document["paths"]["/v1/streams/{stream_id}/frames"]["post"]
    assert set(frames["requestBody"]["content"]) == {"image/jpeg", "image/png"}
    assert {"400", "401", "404", "413", "415", "429"} <= set(frames["responses"]) and "422" not in frames["responses"]
    stream_id = next(p for p in frames["parameters"] if p["name"] == "stream_id")["schema"]
    assert Draft202012Validator(stream_id).is_valid("cam-0.a_b") and not Draft202012Validator(stream_id).is_valid("a/b")
    assert not Draft202012Validator(stream_id).is_valid("..")
    refusal = client.post("/v1/streams/nope/frames", content=jpeg(0))
    error_schema = frames["responses"]["404"]["content"]["application/json"]["schema"]
    assert refusal.status_code == 404 and Draft202012Validator(error_schema).is_valid(refusal.json())
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["required"] == ["stream_id", "messages"]
    assert "504" in chat["responses"] and "HTTPValidationError" not in document.get("components", {}).get("schemas", {})


# ---- the adversarial audit: numbers past float range, invalid Unicode, repeated headers, a client
# leaving mid-body; each was a 500 (or a WebSocket closed by a traceback) before --------------------
HUGE = "1" + "0" * 400  # a JSON integer float() cannot hold: OverflowError, which no check caught


def _with_raw(fields: dict, raw: str) -> str:
    """``fields`` as a JSON object with ``raw`` (``"name": <literal>``) added last."""
    return json.dumps(fields)[:-1] + ", " + raw + "}"


@pytest.mark.parametrize(("raw", "param"), [
    (f'"temperature": {HUGE}', "temperature"),
    (f'"top_p": {HUGE}', "top_p"),
    (f'"seed": {2**64}', "seed"),  # past torch.Generator.manual_seed's range: a ValueError once sampling began
    (f'"seed": {-(2**63) - 1}', "seed"),
], ids=["temperature", "top_p", "seed-2**64", "seed-under-2**63"])
def test_numbers_past_float_or_seed_range_are_400s(client, raw, param):
    body = _with_raw(ask(temperature=0.5), raw)
    for stream in (False, True):
        response = client.post("/v1/chat/completions", content=body.replace('"stream_id"', f'"stream": {json.dumps(stream)}, "stream_id"'))
        assert_openai_error(response, 400, param)
    assert client.post("/v1/chat/completions", json=ask(temperature=0.5, seed=2**64 - 1)).status_code == 200
    assert_survives(client)


def test_budgets_past_float_range_are_400s(tiny_llava):
    service = VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny",
                             limits=ServiceLimits(stream_max_blocks=8))
    client = _keyed_client(service)
    for raw, param in ((f'"ram_budget_mb": {HUGE}', "ram_budget_mb"), (f'"max_blocks": {HUGE}', "max_blocks")):
        error = assert_openai_error(client.post("/v1/streams", content=_with_raw({"stream_id": "cam"}, raw)), 400, param)
        assert error["code"] == "invalid_budget"
    assert not service.sessions


def test_a_websocket_timestamp_past_float_range_is_an_error_event_and_the_socket_stays_open(client):
    image = base64.b64encode(jpeg(5)).decode()
    with client.websocket_connect(WS.format("s"), headers=AUTH) as socket:
        socket.send_text(_with_raw({"type": "input_video_frame.append", "image": image}, f'"timestamp_s": {HUGE}'))
        event = socket.receive_json()
        assert event["type"] == "error" and event["code"] == "invalid_timestamp" and event["status"] == 400, event
        socket.send_text(json.dumps({"type": "input_video_frame.append", "image": image, "timestamp_s": 1}))
        assert socket.receive_json() == {"type": "input_video_frame.committed", "frames_seen": 1}
    assert_survives(client)


@pytest.mark.parametrize(("content", "param"), [
    ("\ud800 what moved?", "messages[0].content"),
    ([{"type": "text", "text": "what \udfff"}], "messages[0].content[0].text"),
], ids=["string", "text-part"])
def test_a_question_with_a_lone_surrogate_is_a_400_before_the_tokenizer(client, content, param):
    body = json.dumps(ask(messages=[{"role": "user", "content": content}]))  # ASCII JSON: "\ud800" escaped
    for stream in (False, True):
        error = assert_openai_error(client.post("/v1/chat/completions", content=body.replace("{", f'{{"stream": {json.dumps(stream)}, ', 1)),
                                    400, param)
        assert error["code"] == "invalid_text"
    assert_survives(client)


def test_a_refusal_quoting_a_lone_surrogate_escapes_it(client):
    response = client.post("/v1/streams", content=json.dumps({"\ud800": 1}))  # the unknown field is named in the refusal
    assert assert_openai_error(response, 400)["param"] == "\\ud800"
    assert_survives(client)


def test_a_content_length_of_thousands_of_digits_is_read_without_int_overflow(client):
    frame = jpeg(1)
    padded = client.post("/v1/streams/s/frames", content=frame, headers={"Content-Length": "0" * 5000 + str(len(frame))})
    assert padded.json() == {"frames_seen": 1}  # leading zeros are a valid Content-Length
    error = assert_openai_error(client.post("/v1/streams/s/frames", content=frame, headers={"Content-Length": "9" * 5000}), 413)
    assert error["code"] == "request_too_large"
    assert_survives(client)


@pytest.mark.parametrize("name", ["Host", "Authorization", "Origin"])
def test_a_repeated_host_origin_or_authorization_header_is_a_400(client, name):
    """The check read the last of two, a proxy in front may route on the first (RFC 9112: 400)."""
    values = {"Host": ["evil.example", "127.0.0.1"], "Authorization": ["Bearer wrong", f"Bearer {KEY}"],
              "Origin": ["http://evil.example", "http://127.0.0.1"]}[name]
    headers = [(k, v) for k, v in AUTH.items() if k != name] + [(name, value) for value in values]
    error = assert_openai_error(client.get("/v1/models", headers=headers), 400, name)
    assert error["code"] == "duplicate_header"
    from starlette.testclient import httpx  # the test client's own: its Headers keep both values

    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect(WS.format("s"), headers=httpx.Headers(headers)):
        pass
    assert refused.value.status_code == 400 and refused.value.json()["error"]["code"] == "duplicate_header"
    assert_survives(client)


def test_a_client_leaving_mid_body_is_no_server_error(client, caplog):
    import asyncio

    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/streams/s/frames", "raw_path": b"/v1/streams/s/frames", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"authorization", AUTH["Authorization"].encode()), (b"content-length", b"1000")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    with caplog.at_level("ERROR"):
        asyncio.run(client.app(scope, receive, send))  # raised ClientDisconnect out of the app, logged as a 500
    assert sent[0]["status"] == 400 and b"client_disconnected" in sent[1]["body"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert_survives(client)
