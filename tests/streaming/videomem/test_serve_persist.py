"""The service's streams across restarts (``--store``), their memory budgets, their owners and the
answer deadline, on the tiny random-weight LLaVA-OneVision: in-process through the test client, and
once as a real ``memstream serve`` process killed with SIGKILL mid-ingest and started again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from memstream.streaming.cli import main
from memstream.streaming.errors import ConfigError
from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
from memstream.streaming.videomem.serve import create_app
from memstream.streaming.videomem.service import AccessPolicy, ServiceLimits, VideoQAService
from memstream.streaming.videomem.service.persist import StreamStore
from memstream.streaming.videomem.store import StoreError, check_store
from tests.streaming.videomem.util import jpeg

KEY_A, KEY_B = "sk-a-0123456789", "sk-b-0123456789"
CONFIG = ReKVConfig(window_frames=4, topk=3)



def ask(stream_id: str, max_tokens: int = 2) -> dict:
    return {"model": "tiny", "stream_id": stream_id, "messages": [{"role": "user", "content": "What moved?"}],
            "max_tokens": max_tokens}


_MADE: list[VideoQAService] = []


@pytest.fixture(autouse=True)
def _close_services():
    """Tests drop services without closing them, as a killed process would; their files are closed
    here, after the test."""
    yield
    while _MADE:
        _MADE.pop().close()


def make_service(tiny_llava, store: StreamStore | None = None, **limits) -> VideoQAService:
    service = VideoQAService(lambda settings: ReKVMemory(tiny_llava, settings.rekv(CONFIG)), model_name="tiny",
                             max_streams=4, limits=ServiceLimits(max_tokens_cap=16, **limits), store=store)
    _MADE.append(service)
    return service


def client_of(service: VideoQAService, key: str | None = None) -> TestClient:
    policy = AccessPolicy(api_keys=(KEY_A, KEY_B)) if key else AccessPolicy()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return TestClient(create_app(service, policy), base_url="http://127.0.0.1", headers=headers)


def store_of(path: Path, tiny_llava) -> StreamStore:
    return StreamStore(path, "tiny", tiny_llava.spec.fingerprint)


# ---- persistence ---------------------------------------------------------------------------------
def test_a_stored_stream_is_listed_and_answers_after_the_server_is_gone(tiny_llava, tmp_path):
    client = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    assert client.post("/v1/streams", json={"stream_id": "cam"}).status_code == 200
    for i in range(6):
        assert client.post("/v1/streams/cam/frames", params={"timestamp_s": i}, content=jpeg(i)).status_code == 200
    before = client.get("/v1/streams").json()["data"]
    # no close, no flush: the process is simply gone, as after kill -9
    again = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    assert again.get("/v1/streams").json()["data"] == before
    assert before[0]["frames_seen"] == 6 and before[0]["covered_until_s"] == 5.0 and before[0]["persistent"]
    body = again.post("/v1/chat/completions", json=ask("cam")).json()
    assert body["memstream"]["frames_seen"] == 6 and body["memstream"]["covered_until_s"] == 5.0
    assert set(body["memstream"]["retrieved_frames"]) <= set(range(6))
    # the stream goes on where it stopped: index 6, and time may not go back
    assert again.post("/v1/streams/cam/frames", params={"timestamp_s": 6}, content=jpeg(6)).json() == {"frames_seen": 7}
    assert again.post("/v1/streams/cam/frames", params={"timestamp_s": 1}, content=jpeg(7)).status_code == 400


def test_a_server_stamped_stream_keeps_its_clock_across_a_restart(tiny_llava, tmp_path):
    client = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    client.post("/v1/streams", json={"stream_id": "cam"})
    for i in range(3):
        client.post("/v1/streams/cam/frames", content=jpeg(i))
    last = client.get("/v1/streams").json()["data"][0]["covered_until_s"]
    again = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    assert again.post("/v1/streams/cam/frames", content=jpeg(3)).status_code == 200
    assert again.get("/v1/streams").json()["data"][0]["covered_until_s"] >= last


def test_delete_removes_the_stream_from_the_store_for_good(tiny_llava, tmp_path):
    client = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    for name in ("keep", "drop"):
        client.post("/v1/streams", json={"stream_id": name})
        client.post(f"/v1/streams/{name}/frames", params={"timestamp_s": 0}, content=jpeg(0))
    assert client.delete("/v1/streams/drop").status_code == 200
    assert sorted(p.name for p in (tmp_path / "streams").iterdir()) == ["keep"]
    assert list((tmp_path / "trash").iterdir()) == []
    again = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    assert [s["stream_id"] for s in again.get("/v1/streams").json()["data"]] == ["keep"]
    assert again.post("/v1/streams", json={"stream_id": "drop"}).status_code == 200  # the id is free again


def test_a_delete_interrupted_after_its_rename_is_finished_at_the_next_start(tiny_llava, tmp_path):
    client = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    client.post("/v1/streams", json={"stream_id": "cam"})
    (tmp_path / "streams" / "cam").rename(tmp_path / "trash" / "cam-dead")  # the process died here
    service = make_service(tiny_llava, store_of(tmp_path, tiny_llava))
    assert service.sessions == {} and list((tmp_path / "trash").iterdir()) == []


def test_a_store_of_another_model_is_refused_naming_both(tiny_llava, tmp_path):
    store_of(tmp_path, tiny_llava)
    with pytest.raises(ConfigError) as caught:
        StreamStore(tmp_path, "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "0123456789abcdef")
    message = caught.value.one_line()
    assert "'tiny'" in message and "llava-onevision-qwen2-0.5b" in message and "--model tiny" in message


def _open_together(root: Path, models: list[tuple[str, str]]) -> list[BaseException | None]:
    """Open one new store from several threads at once (Ray starts a deployment's replicas together)."""
    barrier, outcome = threading.Barrier(len(models)), [None] * len(models)

    def open_store(k: int) -> None:
        barrier.wait()
        try:
            StreamStore(root, *models[k])
        except BaseException as exc:  # noqa: BLE001 -- recorded for the assertion
            outcome[k] = exc

    threads = [threading.Thread(target=open_store, args=(k,)) for k in range(len(models))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcome


def test_replicas_opening_one_new_store_together_all_start(tmp_path):
    """The CI failure of stop 24: two replicas wrote the header through one temporary file name, and
    the second one's rename found it gone (FileNotFoundError in the replica's constructor)."""
    for attempt in range(40):
        root = tmp_path / f"store{attempt}"
        assert _open_together(root, [("tiny", "f" * 16)] * 6) == [None] * 6
        assert json.loads((root / "service.json").read_text())["model_fingerprint"] == "f" * 16
        assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []


def test_two_models_racing_for_one_new_store_cannot_both_have_it(tmp_path):
    for attempt in range(20):
        root = tmp_path / f"store{attempt}"
        outcome = _open_together(root, [("a", "a" * 16), ("b", "b" * 16)])
        refused = [exc for exc in outcome if exc is not None]
        assert len(refused) == 1 and isinstance(refused[0], ConfigError), outcome
        assert "holds streams written by model" in refused[0].one_line()


def test_a_stream_whose_blocks_another_model_wrote_stops_the_start_with_its_name(tiny_llava, tmp_path):
    client = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    client.post("/v1/streams", json={"stream_id": "cam"})
    client.post("/v1/streams/cam/frames", params={"timestamp_s": 0}, content=jpeg(0))
    header = tmp_path / "streams" / "cam" / "kv" / "store.json"
    data = json.loads(header.read_text())
    data["spec"]["model_fingerprint"] = "feedfacefeedface"
    header.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"stream 'cam' in .* cannot be reopened: block store .* written by model 'feedfacefeedface'"):
        make_service(tiny_llava, store_of(tmp_path, tiny_llava))
    assert json.loads(header.read_text())["spec"]["model_fingerprint"] == "feedfacefeedface"  # nothing was touched


def test_a_store_with_more_streams_than_the_server_takes_is_refused(tiny_llava, tmp_path):
    service = make_service(tiny_llava, store_of(tmp_path, tiny_llava))
    for name in ("a", "b", "c"):
        service.open_stream(name)
    with pytest.raises(ConfigError, match="holds 3 streams, more than --max-streams 2"):
        VideoQAService(lambda s: ReKVMemory(tiny_llava, s.rekv(CONFIG)), "tiny", max_streams=2,
                       store=store_of(tmp_path, tiny_llava))


# ---- budgets -------------------------------------------------------------------------------------
def test_a_stream_keeps_at_most_its_max_blocks(tiny_llava):
    client = client_of(make_service(tiny_llava, stream_max_blocks=8))
    assert client.post("/v1/streams", json={"stream_id": "short", "max_blocks": 5}).status_code == 200
    client.post("/v1/streams", json={"stream_id": "default"})
    for i in range(12):
        for name in ("short", "default"):
            client.post(f"/v1/streams/{name}/frames", params={"timestamp_s": i}, content=jpeg(i))
    listed = {s["stream_id"]: s for s in client.get("/v1/streams").json()["data"]}
    assert listed["short"]["max_blocks"] == 5 and listed["default"]["max_blocks"] == 8
    assert listed["short"]["frames_seen"] == 12
    for name, kept in (("short", 5), ("default", 8)):
        assert client.get(f"/v1/streams/{name}").json()["store"]["repr"]["blocks"] == kept  # one block a frame
        body = client.post("/v1/chat/completions", json=ask(name)).json()
        assert min(body["memstream"]["retrieved_frames"]) >= 12 - kept  # the oldest frames are gone


@pytest.mark.parametrize(("body", "param"), [
    ({"max_blocks": 9}, "max_blocks"),           # over the server's 8
    ({"max_blocks": 0}, "max_blocks"),
    ({"max_blocks": True}, "max_blocks"),
    ({"max_blocks": "5"}, "max_blocks"),
    ({"max_blocks": 2}, "max_blocks"),           # under the memory's 4-frame window
    ({"ram_budget_mb": 1}, "ram_budget_mb"),     # no --store: no disk tier to spill to
    ({"ram_budget_mb": float("nan")}, "ram_budget_mb"),  # NaN: json.loads reads it; not a budget
    ({"window_frames": 1}, "window_frames"),     # not a stream setting
])
def test_budgets_a_client_may_not_ask_for(tiny_llava, body, param):
    client = client_of(make_service(tiny_llava, stream_max_blocks=8))
    response = client.post("/v1/streams", content=json.dumps({"stream_id": "cam", **body}))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert client.get("/v1/streams").json()["data"] == []  # nothing half-made


def test_a_refused_budget_leaves_no_folder_in_the_store(tiny_llava, tmp_path):
    client = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava), stream_max_blocks=8))
    assert client.post("/v1/streams", json={"stream_id": "cam", "max_blocks": 2}).status_code == 400
    assert list((tmp_path / "streams").iterdir()) == []
    assert client.post("/v1/streams", json={"stream_id": "cam", "ram_budget_mb": 4}).status_code == 200


# ---- owners --------------------------------------------------------------------------------------
def test_a_stream_belongs_to_the_key_that_opened_it(tiny_llava):
    service = make_service(tiny_llava)
    a, b = client_of(service, KEY_A), client_of(service, KEY_B)
    a.post("/v1/streams", json={"stream_id": "cam"})
    a.post("/v1/streams/cam/frames", params={"timestamp_s": 0}, content=jpeg(0))
    assert b.get("/v1/streams").json()["data"] == []
    for response in (b.get("/v1/streams/cam"), b.post("/v1/streams/cam/frames", content=jpeg(1)),
                     b.post("/v1/chat/completions", json=ask("cam")), b.delete("/v1/streams/cam")):
        assert response.status_code == 404 and response.json()["error"]["code"] == "stream_not_found"
    with b.websocket_connect("ws://127.0.0.1/v1/streams/cam/frames") as ws:
        ws.send_text(json.dumps({"type": "input_video_frame.append", "image": "AAAA"}))
        assert ws.receive_json()["status"] == 404
    assert [s["frames_seen"] for s in a.get("/v1/streams").json()["data"]] == [1]  # untouched
    assert b.post("/v1/streams", json={"stream_id": "cam"}).status_code == 409  # ids are one namespace


def test_streams_per_key_are_bounded(tiny_llava):
    service = make_service(tiny_llava, max_streams_per_key=2)
    a, b = client_of(service, KEY_A), client_of(service, KEY_B)
    assert [a.post("/v1/streams").status_code for _ in range(3)] == [200, 200, 429]
    assert a.post("/v1/streams").json()["error"]["code"] == "too_many_streams_for_key"
    assert b.post("/v1/streams").status_code == 200  # another key is not held up


def test_ownership_survives_a_restart(tiny_llava, tmp_path):
    a = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)), KEY_A)
    a.post("/v1/streams", json={"stream_id": "cam"})
    service = make_service(tiny_llava, store_of(tmp_path, tiny_llava))
    assert client_of(service, KEY_B).get("/v1/streams/cam").status_code == 404
    assert client_of(service, KEY_A).get("/v1/streams/cam").status_code == 200


# ---- deadline ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_past_its_deadline_stops_with_504(tiny_llava, stream):
    service = make_service(tiny_llava, answer_timeout_s=1e-6)  # expires before the first decoding step
    client = client_of(service)
    client.post("/v1/streams", json={"stream_id": "cam"})
    client.post("/v1/streams/cam/frames", params={"timestamp_s": 0}, content=jpeg(0))
    response = client.post("/v1/chat/completions", json={**ask("cam", 16), "stream": stream})
    if stream:
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        assert events[-1]["error"]["code"] == "deadline_exceeded"
    else:
        assert response.status_code == 504 and response.json()["error"]["code"] == "deadline_exceeded"
    assert service._answer_slots.acquire(blocking=False)  # the answer's slot came back


def test_answers_within_the_deadline_are_untouched(tiny_llava):
    client = client_of(make_service(tiny_llava, answer_timeout_s=60))
    client.post("/v1/streams", json={"stream_id": "cam"})
    client.post("/v1/streams/cam/frames", params={"timestamp_s": 0}, content=jpeg(0))
    response = client.post("/v1/chat/completions", json=ask("cam", 4))
    assert response.status_code == 200
    tokens, finish = response.json()["usage"]["completion_tokens"], response.json()["choices"][0]["finish_reason"]
    assert (finish, tokens) == ("length", 4) or (finish == "stop" and 1 <= tokens <= 4)


# ---- the command line ----------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "expected"), [
    (["--ram-budget-mb", "64"], "--ram-budget-mb needs --store"),
    (["--memory", "flash_vstream", "--max-blocks", "10"], "only apply to --memory rekv"),
    (["--memory", "flash_vstream", "--store", "x"], "--store only apply to --memory rekv"),
    (["--answer-timeout-s", "-1"], "answer_timeout_s must be a positive number"),
    (["--torch-threads", "0"], "--torch-threads 0 is not a positive number"),
])
def test_serve_refuses_budget_flags_that_cannot_hold(tiny_llava_dir, capsys, flags, expected):
    assert main(["serve", "--model", str(tiny_llava_dir), *flags]) == 2
    assert expected in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model: Path, store: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "memstream.streaming.cli", "serve", "--model", str(model), "--device", "cpu",
               "--dtype", "float32", "--window-frames", "4", "--topk", "3", "--max-blocks", "64",
               "--store", str(store), "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_ready(process: subprocess.Popen, base: str, timeout_s: float = 120.0):
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("the server did not come up")


@pytest.mark.network
@pytest.mark.timeout(400)
def test_kill_9_mid_ingest_then_restart_answers_from_the_store(tiny_llava_dir, tiny_llava, tmp_path):
    import httpx
    from openai import OpenAI

    port, store = _free_port(), tmp_path / "store"
    base = f"http://127.0.0.1:{port}"
    server = _start(tiny_llava_dir, store, port)
    try:
        _wait_ready(server, base)
        httpx.post(f"{base}/v1/streams", json={"stream_id": "cam"}, timeout=10).raise_for_status()
        for i in range(12):
            r = httpx.post(f"{base}/v1/streams/cam/frames", params={"timestamp_s": i * 0.5}, content=jpeg(i), timeout=30)
            assert r.json() == {"frames_seen": i + 1}
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    kv = store / "streams" / "cam" / "kv"
    found = check_store(kv)  # the integrity check: the index replays, every block decodes to finite numbers
    assert (found.blocks, found.frames, found.seconds) == (12, (0, 11), (0.0, 5.5))
    assert main(["check-store", str(store)]) == 0
    server = _start(tiny_llava_dir, store, port)
    try:
        _wait_ready(server, base)
        listed = httpx.get(f"{base}/v1/streams", timeout=10).json()["data"]
        assert [(s["stream_id"], s["frames_seen"], s["covered_until_s"]) for s in listed] == [("cam", 12, 5.5)]
        client = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model=str(tiny_llava_dir), messages=[{"role": "user", "content": "What moved?"}],
                                                max_tokens=3, extra_body={"stream_id": "cam"})
        assert answer.choices[0].finish_reason in ("stop", "length")
        assert answer.model_extra["memstream"]["frames_seen"] == 12
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) in (0, -signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal
    layout = json.loads((kv / "memory.json").read_text())
    assert layout["frames_seen"] == 12 and layout["covered_until_s"] == 5.5  # written by the memory's close()
    assert check_store(kv).blocks == 12  # a clean stop leaves it whole too


# ---- answers first -------------------------------------------------------------------------------
def test_frames_wait_while_an_answer_generates_and_no_longer_than_the_bound():
    from memstream.streaming.videomem.service.streams import AnswersFirst

    gate, passed = AnswersFirst(max_wait_s=5.0), []
    with gate.answering():
        frame = threading.Thread(target=lambda: (gate.wait_for_answers(), passed.append(time.monotonic())))
        frame.start()
        time.sleep(0.2)
        assert passed == []  # held back while the answer runs
        released = time.monotonic()
    frame.join(5)
    assert passed and passed[0] >= released  # let through once it ended
    starved = AnswersFirst(max_wait_s=0.1)
    with starved.answering():
        start = time.monotonic()
        starved.wait_for_answers()  # a flow of answers never holds a frame longer than max_wait_s
        assert 0.09 <= time.monotonic() - start < 2.0


# ---- the store check -----------------------------------------------------------------------------
def test_check_store_reports_a_torn_tail_and_refuses_a_corrupt_line(tiny_llava, tmp_path, capsys):
    client = client_of(make_service(tiny_llava, store_of(tmp_path, tiny_llava)))
    client.post("/v1/streams", json={"stream_id": "cam"})
    for i in range(3):
        client.post("/v1/streams/cam/frames", params={"timestamp_s": i}, content=jpeg(i))
    index = tmp_path / "streams" / "cam" / "kv" / "index.jsonl"
    whole = index.read_bytes()
    index.write_bytes(whole + b'{"id": 3, "sl')  # a put interrupted mid-line
    with pytest.warns(RuntimeWarning, match="interrupted"):
        found = check_store(index.parent)
    assert found.blocks == 3 and found.torn_tail and index.read_bytes().endswith(b'"sl')  # reported, not changed
    with pytest.warns(RuntimeWarning, match="interrupted"):
        assert main(["check-store", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["torn_tail"] is True
    lines = whole.splitlines(keepends=True)
    index.write_bytes(lines[0] + b"garbage\n" + b"".join(lines[2:]))
    with pytest.raises(StoreError, match="line 2 is corrupt"):
        check_store(index.parent)
    assert main(["check-store", str(tmp_path)]) == 2
    assert "stream 'cam'" in capsys.readouterr().err


def test_check_store_names_a_directory_that_is_not_a_store(tmp_path, capsys):
    assert main(["check-store", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["check-store", str(tmp_path)]) == 2
    assert "is not a block store" in capsys.readouterr().err


# ---- one clock a stream --------------------------------------------------------------------------
@pytest.mark.parametrize("first_timed", [True, False])
def test_a_stream_keeps_the_clock_of_its_first_frame(tiny_llava, first_timed):
    client = client_of(make_service(tiny_llava))
    client.post("/v1/streams", json={"stream_id": "cam"})
    timed = {"params": {"timestamp_s": 100}}
    assert client.post("/v1/streams/cam/frames", content=jpeg(0), **(timed if first_timed else {})).status_code == 200
    mixed = client.post("/v1/streams/cam/frames", content=jpeg(1), **({} if first_timed else timed))
    assert mixed.status_code == 400 and mixed.json()["error"]["code"] == "clock_mismatch"
    assert client.post("/v1/streams/cam/frames", content=jpeg(2), **(timed if first_timed else {})).status_code == 200
    assert client.get("/v1/streams").json()["data"][0]["frames_seen"] == 2
