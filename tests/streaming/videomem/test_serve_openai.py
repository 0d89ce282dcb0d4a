"""The service through the official ``openai`` client and a real WebSocket client, against uvicorn on a
free loopback port (the tiny random-weight LLaVA-OneVision answers; the server stops at the end)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
from memstream.streaming.videomem.serve import create_app
from memstream.streaming.videomem.service import AccessPolicy, ServiceLimits, VideoQAService

openai = pytest.importorskip("openai", reason="the dev extra installs the openai client")
uvicorn = pytest.importorskip("uvicorn")
websockets_sync = pytest.importorskip("websockets.sync.client")

pytestmark = pytest.mark.network
KEY = "sk-test-openai-client"


@pytest.fixture(scope="module")
def server(tiny_llava):
    """``http://127.0.0.1:PORT`` of a keyed uvicorn server with a stream "cam0" of three frames."""
    service = VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny",
                             limits=ServiceLimits(max_tokens_cap=512))
    config = uvicorn.Config(create_app(service, AccessPolicy(api_keys=(KEY,))), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {KEY}"}
    httpx.post(f"{url}/v1/streams", json={"stream_id": "cam0"}, headers=headers).raise_for_status()
    for i in range(3):
        image = cv2.imencode(".jpg", np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8))[1].tobytes()
        httpx.post(f"{url}/v1/streams/cam0/frames", params={"timestamp_s": i}, content=image, headers=headers).raise_for_status()
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_plain_completion_through_the_openai_client(client):
    completion = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What moved?"}],
                                                max_tokens=1, extra_body={"stream_id": "cam0"})
    assert completion.object == "chat.completion" and completion.model == "tiny"
    assert completion.choices[0].finish_reason == "length" and completion.choices[0].message.role == "assistant"
    assert completion.usage.completion_tokens == 1
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 1
    assert completion.model_extra["memstream"]["frames_seen"] == 3


def test_streamed_completion_through_the_openai_client(client):
    plain = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What moved?"}],
                                           max_tokens=8, extra_body={"stream_id": "cam0"})
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [{"type": "text", "text": "What moved?"}]}],
                                            max_tokens=8, stream=True, stream_options={"include_usage": True},
                                            extra_body={"stream_id": "cam0"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == plain.choices[0].message.content and finishes == [plain.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_refusals_arrive_as_the_clients_own_exceptions(client, server):
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}], extra_body={"stream_id": "cam0"})
    assert unknown_model.value.code == "model_not_found" and unknown_model.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad_seed:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], seed="x",
                                       extra_body={"stream_id": "cam0"})
    assert bad_seed.value.param == "seed"
    keyless = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        keyless.models.list()
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_websocket_on_a_real_server(server):
    ws_url = server.replace("http://", "ws://") + "/v1/streams/cam0/frames"
    for headers, status in (({}, 401), ({"Authorization": f"Bearer {KEY}", "Origin": "http://evil.example"}, 403)):
        with pytest.raises(websockets_sync.InvalidStatus) as refused:
            websockets_sync.connect(ws_url, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == status
    image = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    with websockets_sync.connect(ws_url, additional_headers={"Authorization": f"Bearer {KEY}"}, open_timeout=10) as socket:
        socket.send(b"\x00binary")
        assert json.loads(socket.recv(timeout=10))["code"] == "binary_message"
        socket.send("[1, 2]")
        assert json.loads(socket.recv(timeout=10))["code"] == "invalid_event"
        socket.send(json.dumps({"type": "input_video_frame.append", "image": base64.b64encode(image).decode(), "timestamp_s": 3}))
        assert json.loads(socket.recv(timeout=10)) == {"type": "input_video_frame.committed", "frames_seen": 4}


@pytest.fixture()
def slow_endless_model(tiny_llava, monkeypatch) -> Iterator[list[int]]:
    """The tiny model never ends an answer and takes 20 ms per token; yields the decoding steps taken."""
    steps: list[int] = []
    logits = tiny_llava.logits

    def counted(hidden):
        steps.append(1)
        time.sleep(0.02)
        return logits(hidden)

    monkeypatch.setattr(type(tiny_llava), "eos_token_ids", property(lambda self: set()))
    monkeypatch.setattr(tiny_llava, "logits", counted)
    yield steps


def test_a_disconnected_stream_stops_generating(server, slow_endless_model):
    request = {"model": "tiny", "stream_id": "cam0", "stream": True, "max_tokens": 500,
               "messages": [{"role": "user", "content": "What moved?"}]}
    http = httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    with http, http.stream("POST", f"{server}/v1/chat/completions", json=request) as response:
        for line in response.iter_lines():  # read until the first piece of answer, then hang up
            if line.startswith("data: ") and '"content"' in line:
                break
    # 500 tokens would take 10 s; the answer must stop within about one step of the disconnect
    deadline = time.monotonic() + 5
    while any(t.name == "memstream-answer-cam0" for t in threading.enumerate()):
        assert time.monotonic() < deadline, f"still generating after {len(slow_endless_model)} steps"
        time.sleep(0.02)
    assert len(slow_endless_model) < 50


def test_a_plain_completion_whose_client_left_stops_generating(server, slow_endless_model):
    request = {"model": "tiny", "stream_id": "cam0", "max_tokens": 500,
               "messages": [{"role": "user", "content": "What moved?"}]}
    http = httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5)
    with http, pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.5 s and hangs up
        http.post(f"{server}/v1/chat/completions", json=request)
    # 500 tokens would take 10 s; generation must stop within a few steps of the disconnect
    started = len(slow_endless_model)
    time.sleep(1.0)
    settled = len(slow_endless_model)
    time.sleep(0.5)
    assert len(slow_endless_model) == settled, f"still generating after {len(slow_endless_model)} steps"
    assert settled < 100 and started > 0
