"""The streaming video QA service: frames over HTTP and a WebSocket, OpenAI-style answers (plain and
SSE), errors as JSON, through FastAPI's test client on a tiny random-weight LLaVA-OneVision."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
from memstream.streaming.videomem.serve import VideoQAService, create_app
from memstream.streaming.videomem.service import AccessPolicy
from tests.streaming.videomem.util import jpeg as _jpeg


@pytest.fixture()
def client(tiny_llava):
    service = VideoQAService(lambda _settings: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), model_name="tiny", max_streams=2)
    return TestClient(create_app(service, AccessPolicy(allowed_hosts=("testserver",))))  # the test client's Host



def _ask(stream_id: str, text: str = "What moved?", **extra) -> dict:
    return {"model": "tiny", "stream_id": stream_id, "messages": [{"role": "user", "content": text}], "max_tokens": 3, **extra}


def test_frames_over_http_then_a_completion_that_says_what_it_covers(client):
    stream = client.post("/v1/streams", json={"stream_id": "cam0"}).json()["stream_id"]
    for i in range(5):
        response = client.post(f"/v1/streams/{stream}/frames", params={"timestamp_s": i * 0.5}, content=_jpeg(i))
        assert response.json() == {"frames_seen": i + 1}
    body = client.post("/v1/chat/completions", json=_ask(stream)).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["memstream"]["covered_until_s"] == 2.0 and body["memstream"]["frames_seen"] == 5
    assert client.get(f"/v1/streams/{stream}").json()["frames_seen"] == 5
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"


def test_frames_over_a_websocket_and_an_sse_answer(client):
    stream = client.post("/v1/streams").json()["stream_id"]
    with client.websocket_connect(f"/v1/streams/{stream}/frames") as socket:
        for i in range(3):
            socket.send_text(json.dumps({"type": "input_video_frame.append", "image": base64.b64encode(_jpeg(i)).decode(), "timestamp_s": i}))
            assert socket.receive_json() == {"type": "input_video_frame.committed", "frames_seen": i + 1}
        socket.send_text(json.dumps({"type": "input_video_frame.append", "image": base64.b64encode(b"not an image").decode()}))
        assert "not a decodable image" in socket.receive_json()["message"]  # the socket stays open
        socket.send_text(json.dumps({"type": "input_video_frame.append", "image": base64.b64encode(_jpeg(9)).decode(), "timestamp_s": 3}))
        assert socket.receive_json()["frames_seen"] == 4
    with client.stream("POST", "/v1/chat/completions", json=_ask(stream, stream=True, content=None)) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["memstream"]["frames_seen"] == 4
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    plain = client.post("/v1/chat/completions", json=_ask(stream)).json()["choices"][0]["message"]["content"]
    assert text == plain  # greedy: the streamed pieces add up to the plain answer


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        (_ask("nowhere"), 404, "no stream 'nowhere'"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, "names no stream_id"),
        (_ask("cam1", text="   "), 400, "the question is empty"),
        (_ask("cam1"), 400, "no frame has been seen yet"),
        (_ask("cam1", stream=True), 400, "no frame has been seen yet"),
        ({"stream_id": "cam1", "messages": []}, 400, "no user message"),
    ],
)
def test_bad_requests_are_one_json_error(client, request_body, status, message):
    client.post("/v1/streams", json={"stream_id": "cam1"})
    response = client.post("/v1/chat/completions", json=request_body)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_stream_lifecycle_errors(client):
    assert client.post("/v1/streams", json={"stream_id": "a"}).status_code == 200
    assert client.post("/v1/streams", json={"stream_id": "a"}).status_code == 409
    assert client.post("/v1/streams", json={"stream_id": "b"}).status_code == 200
    assert client.post("/v1/streams", json={"stream_id": "c"}).status_code == 429  # max_streams=2
    assert client.post("/v1/streams/a/frames", content=b"garbage").status_code == 400
    assert client.delete("/v1/streams/a").json() == {"stream_id": "a", "deleted": True}
    assert client.get("/v1/streams/a").status_code == 404
